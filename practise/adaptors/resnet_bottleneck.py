"""ResNet bottleneck: ``conv1``, ``conv2``, ``conv3`` and an optional ``downsample``.
Writers: conv3 and the downsample conv; readers: conv1 and the downsample conv."""
from __future__ import annotations

from .base import WRITER, AdaptorSite, PlacementRule, conv_site
from .resnet_basic import downsample_conv, has_convs


class ResNetBottleneckRule(PlacementRule):

    def sites(self, unit_name, unit, role, trace) -> list[AdaptorSite] | None:
        if not has_convs(unit, "conv1", "conv2", "conv3"):
            return None
        first = ("conv3" if role == WRITER else "conv1")
        convs = [(f"{unit_name}.{first}", getattr(unit, first))] + downsample_conv(unit_name, unit)
        return [conv_site(n, c, role) for n, c in convs]
