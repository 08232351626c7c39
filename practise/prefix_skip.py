"""Running a model from the teacher's activations entering one unit, without its prefix.

Scoring a candidate deep in a network needs only the network *after* it, fed with what the
teacher gives the candidate. Image models with a feature chain run that suffix directly
(``tracing.feature_chain``). A Hugging Face decoder has no such chain: its layers take
keyword arguments the model makes on the fly (attention masks, rotary position embeddings,
caches). Here the model's own forward runs instead, with every candidate layer before the
entry unit swapped for its pass-through stand-in (nearly free) and the entry unit's hidden
input replaced by the cached teacher activation; embeddings, masks and position tables are
still made by the model, as it makes them. Cost: the suffix, not the whole network.

Whether this reproduces the teacher is checked once on the deepest entry (a model whose
earlier layers leave side outputs that later ones read would not): if not, callers run
full passes.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
import torch.nn as nn

from .call_structure import primary_input
from .inputs import used_length
from .surgery import drop_module_, replace_module_
from .tracing import ModelTrace

log = logging.getLogger(__name__)


def with_primary_input(args: tuple, kwargs: dict, value: torch.Tensor) -> tuple[tuple, dict]:
    """``args``/``kwargs`` with the primary input (see call_structure.primary_input) replaced."""
    if args and isinstance(args[0], torch.Tensor):
        return (value,) + tuple(args[1:]), kwargs
    key = "hidden_states" if isinstance(kwargs.get("hidden_states"), torch.Tensor) else \
        next(k for k, v in kwargs.items() if isinstance(v, torch.Tensor))
    return args, {**kwargs, key: value}


def entry_unit(trace: ModelTrace, candidate: str) -> str | None:
    """The outermost layer-level unit that is, or holds, ``candidate`` (None: not inside one)."""
    holders = [u for u in trace.candidates() if candidate == u or candidate.startswith(u + ".")]
    return min(holders, key=len) if holders else None


def earlier_units(trace: ModelTrace, entry: str) -> list[str]:
    """Layer-level units called before ``entry`` that neither hold it nor lie inside it."""
    order = trace.call_order.index(entry)
    return [u for u in trace.candidates() if trace.call_order.index(u) < order
            and not entry.startswith(u + ".") and not u.startswith(entry + ".")]


class PrefixSkip:
    """Feeds one entry unit cached inputs (``rows`` chooses the examples of the next call)
    while the units ``skipped`` (those before it) pass their input through."""

    def __init__(self, model: nn.Module, entry: str, cached: torch.Tensor, skipped: list[str]):
        self.model, self.entry, self.cached, self.skipped = model, entry, cached, list(skipped)
        self.rows: slice | torch.Tensor = slice(None)

    @classmethod
    def for_trace(cls, model: nn.Module, trace: ModelTrace, entry: str, cached: torch.Tensor) -> "PrefixSkip":
        """Skipping every layer-level unit of ``trace`` called before ``entry``."""
        return cls(model, entry, cached, earlier_units(trace, entry))

    @contextlib.contextmanager
    def active(self) -> Iterator["PrefixSkip"]:
        originals = [(name, drop_module_(self.model, name)) for name in self.skipped]
        handle = self.model.get_submodule(self.entry).register_forward_pre_hook(self._swap, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()
            for name, module in reversed(originals):
                replace_module_(self.model, name, module)

    def _swap(self, module, args, kwargs):
        hidden = primary_input(args, kwargs)
        value = self.cached[self.rows].to(device=hidden.device)
        if value.dim() == 3:  # a token batch whose padding was cut: the same cut
            value = value[:, :hidden.shape[1]]
        return with_primary_input(args, kwargs, value.to(hidden.dtype) if hidden.is_floating_point() else value)


def reproduces_teacher(skip: PrefixSkip, run, inputs: torch.Tensor, targets: torch.Tensor,
                       masks: torch.Tensor | None) -> bool:
    """Whether ``run`` (features of ``skip.model`` on a batch) with the prefix skipped gives the
    teacher's features on the first few examples (at their real tokens)."""
    rows = slice(0, min(4, inputs.shape[0], targets.shape[0]))
    x, target = inputs[rows], targets[rows]
    mask = masks[rows] if masks is not None else None
    length = used_length(mask)
    if length is not None:
        x, target, mask = x[..., :length], target[:, :length], mask[:, :length]
    with torch.no_grad(), skip.active():
        skip.rows = rows
        out = run(x.clone())
    if mask is not None and out.shape == target.shape:
        keep = mask.bool()
        out, target = out[keep], target[keep]
    same = out.shape == target.shape and torch.allclose(out.float(), target.float(), rtol=1e-3, atol=1e-4)
    if not same:
        log.info("skipping the layers before %s does not reproduce the teacher's features; scoring runs full "
                 "passes", skip.entry)
    return same
