"""Adaptors around a dropped block while scoring its recoverability (``placement.py``).

A new kind of unit is one file with a :class:`PlacementRule` subclass plus one
``register_placement_rule`` line below (or in a plug-in).
"""
from .base import (PLACEMENT_RULES, Adaptor, AdaptorSite, TokenAdaptor, PlacementRule, conv_site, ordered_rules,
                   register_placement_rule)
from .generic_stream import GenericStreamRule
from .mobilenet_v2 import MobileNetV2Rule
from .placement import adaptor_sites, block_group, insert_adaptors_, unit_sites
from .resnet_basic import ResNetBasicRule
from .resnet_bottleneck import ResNetBottleneckRule
from .token_stream import TokenStreamRule

register_placement_rule("resnet-basic", ResNetBasicRule())
register_placement_rule("resnet-bottleneck", ResNetBottleneckRule())
register_placement_rule("mobilenet-v2", MobileNetV2Rule())
register_placement_rule("token-stream", TokenStreamRule())
register_placement_rule("generic-stream", GenericStreamRule())

__all__ = ["PLACEMENT_RULES", "Adaptor", "AdaptorSite", "TokenAdaptor", "PlacementRule", "conv_site", "ordered_rules",
           "register_placement_rule", "adaptor_sites", "block_group", "insert_adaptors_", "unit_sites"]
