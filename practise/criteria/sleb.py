"""Baseline criterion: SLEB's greedy elimination (Song et al., ICML 2024).

Remove the block whose removal hurts the calibration loss least, then re-score the blocks
that are left with it removed, and repeat: every step is a measurement of the network as it
will be, so interactions between removed blocks count (the one-shot criteria assume none).
The loss is SLEB's for a causal language model (perplexity of the tiny set's next tokens,
real tokens only), and for any other model the mean squared difference of its output from
the teacher's (the logits of a classifier, the hidden states of an encoder).

Greedy steps run until the removed blocks' latency savings reach the target (or the block
count), plus one in reserve for the selection's measured check; the blocks left are ordered
by their loss at the last step.

Cost. Each step makes one pass of the network as it stands over a batch, keeping what enters
every block left; each candidate then runs only the blocks after it, fed that input
(prefix_skip.py: the blocks before pass their input through), so a step costs about half a
pass per block left instead of a whole one. Whether skipping reproduces the full pass is
checked once; if it does not (or blocks nest), every candidate runs full passes.
"""
from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..call_structure import primary_input
from ..inputs import batches_by_length, token_mask, used_length
from ..latency.eager import SwappedVariant
from ..model_output import logits
from ..modes import eval_mode
from ..prefix_skip import PrefixSkip
from ..text.decode import is_causal_lm
from ..text.model import unwrap
from .base import RankingInputs, greedy_steps, need

log = logging.getLogger(__name__)


class _Loss:
    """Summed calibration loss and its count, per candidate."""

    def __init__(self, causal: bool):
        self.causal, self.total, self.count = causal, 0.0, 0

    def add(self, out: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None, reference: torch.Tensor | None):
        out = out.float()
        if self.causal:
            real = (mask[:, 1:] * mask[:, :-1]).bool() if mask is not None else \
                torch.ones(out.shape[0], out.shape[1] - 1, dtype=torch.bool)
            losses = F.cross_entropy(out[:, :-1].transpose(1, 2), x[:, 0, 1:], reduction="none")
            self.total, self.count = self.total + float(losses[real].sum()), self.count + int(real.sum())
        else:
            self.total, self.count = self.total + float(((out - reference) ** 2).sum()), self.count + out.numel()

    @property
    def value(self) -> float:
        return self.total / max(self.count, 1)


def _trimmed(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch with its padding columns cut, and its token mask (None: not tokens)."""
    mask = token_mask(model, x)
    length = used_length(mask)
    if length is not None:
        x, mask = x[..., :length], mask[:, :length]
    return x, mask


def rank_sleb(inputs: RankingInputs) -> list[str]:
    model, data = need(inputs, "model", "sleb"), need(inputs, "images", "sleb")
    causal = is_causal_lm(unwrap(model))
    batches = batches_by_length(token_mask(model, data), data.shape[0], inputs.batch_size)
    steps = greedy_steps(inputs)
    with eval_mode(model):
        reference = None if causal else [logits(model, _trimmed(model, data[rows])[0]).float() for rows in batches]
        elimination = _Elimination(model, list(inputs.names), data, batches, reference, causal)
        removed: list[str] = []
        left = list(inputs.names)
        loss: dict[str, float] = {}
        while left and len(removed) < steps:
            loss = elimination.losses(removed, left)
            best = min(left, key=lambda b: (loss[b], b))
            removed.append(best)
            left.remove(best)
            log.info("sleb: step %d removes %s (calibration loss %.4f)", len(removed), best, loss[best])
    return removed + sorted(left, key=lambda b: (loss.get(b, 0.0), b))


class _Elimination:
    """The calibration loss of the network with ``removed`` and one more block dropped, for
    every block left, batch by batch (what enters each block kept for one batch at a time)."""

    def __init__(self, model, names, data, batches, reference, causal, skip_prefix: bool = True):
        self.model, self.data, self.batches, self.reference, self.causal = model, data, batches, reference, causal
        nested = any(a.startswith(b + ".") for a in names for b in names)
        self.order = _call_order(model, names, _trimmed(model, data[batches[0]])[0])
        self.skip = skip_prefix and not nested and len(self.order) == len(names)
        self.checked = False

    @torch.no_grad()
    def losses(self, removed: list[str], left: list[str]) -> dict[str, float]:
        totals = {b: _Loss(self.causal) for b in left}
        for i, rows in enumerate(self.batches):
            x, mask = _trimmed(self.model, self.data[rows])
            reference = None if self.causal else self.reference[i]
            with SwappedVariant(self.model, removed) as student:
                entering = _inputs_entering(student, left, x) if self.skip else {}
                for b in left:
                    totals[b].add(self._without(student, b, left, entering, x), x, mask, reference)
        return {b: loss.value for b, loss in totals.items()}

    def _without(self, student, block, left, entering, x) -> torch.Tensor:
        """Outputs of ``student`` with ``block`` dropped too, from ``block`` on when skipping."""
        later = [b for b in self.order if b in left and self.order.index(b) > self.order.index(block)]
        if not self.skip or not later or block not in entering:
            return self._full(student, block, x)
        earlier = [b for b in self.order[:self.order.index(later[0])] if b in left]
        with PrefixSkip(student, later[0], entering[block], earlier).active():
            out = logits(student, x.clone())
        if not self.checked:  # once: skipping must give what the full pass gives
            self.checked = True
            full = self._full(student, block, x)
            if not torch.allclose(out.float(), full.float(), rtol=1e-3, atol=1e-4):
                log.info("sleb: skipping the blocks before %s does not reproduce the full pass; running full "
                         "passes", later[0])
                self.skip = False
                return full
        return out

    def _full(self, student, block, x) -> torch.Tensor:
        with SwappedVariant(student, [block]) as variant:
            return logits(variant, x.clone())


def _inputs_entering(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What enters each of ``names`` in one pass of ``model`` over ``x``."""
    seen: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(module, args, kwargs):
            value = primary_input(args, kwargs)
            if value is not None:
                seen.setdefault(name, value.detach())
        return record

    handles = [model.get_submodule(n).register_forward_pre_hook(hook(n), with_kwargs=True) for n in names]
    try:
        logits(model, x.clone())
    finally:
        for h in handles:
            h.remove()
    return seen


def _call_order(model: nn.Module, names: list[str], x: torch.Tensor) -> list[str]:
    """``names`` in the order one pass calls them first (those never called are left out)."""
    with torch.no_grad():
        called = _inputs_entering(model, names, x)
    return list(called)
