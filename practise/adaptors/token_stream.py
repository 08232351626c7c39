"""A transformer layer (or any unit) on a (batch, tokens, width) residual stream: one
token adaptor (a DxD linear map) on the stream itself, on the unit's output (writers) or
input (readers). Units without a linear map (a final norm) get none."""
from __future__ import annotations

from .base import WRITER, AdaptorSite, PlacementRule


class TokenStreamRule(PlacementRule):

    def sites(self, unit_name, unit, role, trace) -> list[AdaptorSite] | None:
        shape = trace.output_shapes.get(unit_name) if role == WRITER else trace.input_shapes.get(unit_name)
        if shape is None or len(shape) != 3:
            return None  # not a token stream: another rule's unit
        if not trace.linear_maps.get(unit_name):
            return []
        return [AdaptorSite(unit_name, "after" if role == WRITER else "before", shape[-1], "token")]
