"""ResNet basic block: ``conv1``, ``conv2`` and an optional ``downsample`` whose first
layer is a conv. Writers: conv2 and the downsample conv; readers: conv1 and the
downsample conv."""
from __future__ import annotations

import torch.nn as nn

from .base import WRITER, AdaptorSite, PlacementRule, conv_site


def downsample_conv(unit_name: str, unit: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    downsample = getattr(unit, "downsample", None)
    if isinstance(downsample, nn.Sequential) and len(downsample) and isinstance(downsample[0], nn.Conv2d):
        return [(f"{unit_name}.downsample.0", downsample[0])]
    return []


def has_convs(unit: nn.Module, *names: str) -> bool:
    return all(isinstance(getattr(unit, n, None), nn.Conv2d) for n in names)


class ResNetBasicRule(PlacementRule):

    def sites(self, unit_name, unit, role, trace) -> list[AdaptorSite] | None:
        if not has_convs(unit, "conv1", "conv2") or has_convs(unit, "conv3"):
            return None
        first = ("conv2" if role == WRITER else "conv1")
        convs = [(f"{unit_name}.{first}", getattr(unit, first))] + downsample_conv(unit_name, unit)
        return [conv_site(n, c, role) for n, c in convs]
