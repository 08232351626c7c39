"""Find the droppable residual blocks of any model (read-only inspection)."""
from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .files import one_line
from .modes import eval_mode
from .tracing import LAYER, ModelTrace, check_granularity, trace_model
from .errors import UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Block:
    """A residual unit that can be dropped: replaced by identity, or (a branch) by zeros."""

    name: str                     # dotted module path, e.g. "layer3.2"
    kind: str                     # class name of the module
    params: int
    flops: int | None             # FLOPs of the block for the example input (None: unknown)
    shape: tuple[int, ...]        # input (= output) shape for the example input
    removal: str = "identity"     # "identity" (a unit) or "zero" (a branch of a sub-layer)

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "params": self.params, "flops": self.flops,
                "shape": list(self.shape), "removal": self.removal}


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, example_input: torch.Tensor) -> tuple[int | None, dict[str, int]]:
    """Total FLOPs (torch's FlopCounterMode) and per-module FLOPs keyed by dotted path; (None,
    {}) where torch's counter cannot run on the model (the count is unknown, the rest goes on)."""
    try:
        with eval_mode(model), FlopCounterMode(display=False) as counter:
            model(example_input)
    except Exception as exc:  # noqa: BLE001 - torch's counter asserts on some models (DeBERTa, DBRX)
        log.warning("FLOPs unknown: torch's FLOP counter fails on %s (%s: %s)", type(model).__name__,
                    type(exc).__name__, one_line(exc)[:160])
        return None, {}
    prefix = type(model).__name__ + "."
    per_module = {key[len(prefix):]: sum(ops.values()) for key, ops in counter.get_flop_counts().items()
                  if key.startswith(prefix)}
    return counter.get_total_flops(), per_module


def matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select_by_patterns(names: list[str], include: list[str] | None, exclude: list[str] | None,
                       what: str = "block") -> list[str]:
    """Filter names by glob patterns. A pattern that matches nothing is an error naming the valid names."""
    for pattern in (include or []) + (exclude or []):
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise UsageError(f"{what} name or pattern {pattern!r} matches no candidate; valid names: {', '.join(names)}")
    kept = [n for n in names if include is None or matches(n, include)]
    return [n for n in kept if not (exclude and matches(n, exclude))]


def log_undecided(trace: ModelTrace) -> None:
    """Say why each module that joined a branch into its skip path is not a candidate."""
    for name, reason in trace.undecided.items():
        if name in trace.looked_residual:  # it looked like a block and might be one
            log.warning("not a candidate: %s (%s)", name, reason)
    for name, reason in trace.rejected.items():
        if name not in trace.undecided:
            log.info("not a candidate: %s (%s)", name, reason)


def find_blocks(model: nn.Module, example_input: torch.Tensor, include: list[str] | None = None,
                exclude: list[str] | None = None, trace: ModelTrace | None = None,
                module_flops: dict[str, int] | None = None, granularity: str = LAYER) -> list[Block]:
    """Residual units whose output has their input's shape, in forward order.

    ``include`` / ``exclude`` take exact names or glob patterns (``layer3.*``).
    ``trace`` and ``module_flops`` (count_flops' second value) skip recomputing them.
    ``granularity``: "layer" (whole units) or "sublayer" (attention / MLP parts where a
    layer has them; see tracing.py).
    """
    check_granularity(granularity)
    trace = trace or trace_model(model, example_input)
    names = trace.candidates(granularity)
    log_undecided(trace)
    names = select_by_patterns(names, include, exclude)
    flops = module_flops if module_flops is not None else count_flops(model, example_input)[1]
    modules = dict(model.named_modules())
    return [Block(n, type(modules[n]).__name__, count_params(modules[n]), flops.get(n) if flops else None,
                  trace.input_shapes[n], "zero" if n in trace.branches and n not in trace.units else "identity")
            for n in names]
