"""Any other unit: one adaptor on the residual stream itself, on the unit's output
(writers) or input (readers), when the stream is a 4-D feature map. Units without
convolutions (pooling, activations) get none. A fallback: tried after every other rule."""
from __future__ import annotations

import torch.nn as nn

from .base import WRITER, AdaptorSite, PlacementRule


class GenericStreamRule(PlacementRule):
    fallback = True

    def sites(self, unit_name, unit, role, trace) -> list[AdaptorSite] | None:
        if not any(isinstance(m, nn.Conv2d) for m in unit.modules()):
            return []
        shape = trace.output_shapes[unit_name] if role == WRITER else trace.input_shapes[unit_name]
        if len(shape) != 4:
            return []
        return [AdaptorSite(unit_name, "after" if role == WRITER else "before", shape[1])]
