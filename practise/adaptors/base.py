"""The adaptor itself, where one goes, and the registry of placement rules.

A placement rule recognises one kind of unit (a ResNet basic block, an inverted
residual, ...) by structure, not class name, and names the convolutions that *write*
into the residual stream (adaptors after them) or *read* from it (adaptors before
them). Rules are tried in registration order; fallback rules (the generic residual
stream rule) after all others, so a new specific rule never has to be placed before them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..registry import Registry, named
from ..tracing import ModelTrace

WRITER, READER = "writer", "reader"


class Adaptor(nn.Conv2d):
    """Bias-free CxC 1x1 convolution starting as the identity."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, kernel_size=1, bias=False)
        with torch.no_grad():
            self.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))


class TokenAdaptor(nn.Linear):
    """Bias-free DxD linear map on each token's features, starting as the identity: the
    1x1-conv adaptor's analogue on a (batch, tokens, width) residual stream."""

    def __init__(self, width: int):
        super().__init__(width, width, bias=False)
        with torch.no_grad():
            self.weight.copy_(torch.eye(width))


ADAPTOR_KINDS = {"conv": Adaptor, "token": TokenAdaptor}


@dataclass(frozen=True)
class AdaptorSite:
    module: str   # dotted path of the conv (or unit) to wrap
    where: str    # "after" (on its output) or "before" (on its input)
    channels: int
    kind: str = "conv"  # a name in ADAPTOR_KINDS


def conv_site(name: str, conv: nn.Conv2d, role: str) -> AdaptorSite:
    """An adaptor on a writer conv's output or a reader conv's input."""
    if role == WRITER:
        return AdaptorSite(name, "after", conv.out_channels)
    return AdaptorSite(name, "before", conv.in_channels)


class PlacementRule:
    name = ""
    fallback = False  # tried only after every other rule declined

    def sites(self, unit_name: str, unit: nn.Module, role: str, trace: ModelTrace) -> list[AdaptorSite] | None:
        """The adaptor sites of ``unit`` as a ``role`` ("writer" or "reader") of the residual
        stream, or None if this rule does not recognise the unit."""
        raise NotImplementedError


PLACEMENT_RULES: Registry[PlacementRule] = Registry("adaptor placement rule")


def register_placement_rule(name: str, rule: PlacementRule | type[PlacementRule] | None = None):
    """Add a placement rule (an instance, or a subclass to instantiate) under ``name``;
    rules are tried in registration order, ``fallback`` ones last. Without ``rule``, a decorator."""
    return PLACEMENT_RULES.add(name, rule, lambda r: named(r, name))


def ordered_rules() -> list[PlacementRule]:
    rules = [rule for _, rule in PLACEMENT_RULES.items()]
    return [r for r in rules if not r.fallback] + [r for r in rules if r.fallback]
