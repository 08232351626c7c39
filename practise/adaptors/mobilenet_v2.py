"""MobileNetV2 inverted residual: a ``conv`` Sequential. Writer: its last conv (the
projection); reader: its first conv (the expansion)."""
from __future__ import annotations

import torch.nn as nn

from .base import WRITER, AdaptorSite, PlacementRule, conv_site


class MobileNetV2Rule(PlacementRule):

    def sites(self, unit_name, unit, role, trace) -> list[AdaptorSite] | None:
        body = getattr(unit, "conv", None)
        if not isinstance(body, nn.Sequential):
            return None
        convs = [(f"{unit_name}.conv.{n}", m) for n, m in body.named_modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            return None
        name, conv = convs[-1] if role == WRITER else convs[0]
        return [conv_site(name, conv, role)]
