"""Baseline criterion: SLEB's greedy elimination (Song et al., ICML 2024).

Remove the block whose removal hurts the calibration loss least, then re-score the blocks
that are left with it removed, and repeat: every step is a measurement of the network as it
will be, so interactions between removed blocks count (the one-shot criteria assume none).
The loss is SLEB's for a causal language model (perplexity of the tiny set's next tokens,
real tokens only), and for any other model the mean squared difference of its output from
the teacher's (the logits of a classifier, the hidden states of an encoder).

Greedy steps run until the removed blocks' latency savings reach the target (or the block
count), plus one in reserve for the selection's measured check; the blocks left are ordered
by their loss at the last step. Each step costs one pass of the tiny set per block left.
"""
from __future__ import annotations

import logging

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..inputs import batches_by_length, token_mask, used_length
from ..latency.eager import SwappedVariant
from ..modes import eval_mode
from ..model_output import logits
from ..text.decode import is_causal_lm
from ..text.model import unwrap
from .base import RankingInputs, blocks_for_target, need

log = logging.getLogger(__name__)
RESERVE = 1  # greedy steps past the predicted count: the measured saving may fall short of the sum


@torch.no_grad()
def calibration_loss(model: nn.Module, teacher_outputs: list[torch.Tensor] | None, data: torch.Tensor,
                     batches: list[torch.Tensor], causal: bool) -> float:
    """Perplexity's log (causal LMs) or the output MSE against ``teacher_outputs``, over ``data``."""
    total, count = 0.0, 0
    for i, rows in enumerate(batches):
        x = data[rows]
        mask = token_mask(model, x)
        length = used_length(mask)
        if length is not None:
            x, mask = x[..., :length], mask[:, :length]
        out = logits(model, x).float()
        if causal:
            real = (mask[:, 1:] * mask[:, :-1]).bool()
            losses = F.cross_entropy(out[:, :-1].transpose(1, 2), x[:, 0, 1:], reduction="none")
            total, count = total + float(losses[real].sum()), count + int(real.sum())
        else:
            reference = teacher_outputs[i]
            total, count = total + float(((out - reference) ** 2).sum()), count + out.numel()
    return total / max(count, 1)


def rank_sleb(inputs: RankingInputs) -> list[str]:
    model, data = need(inputs, "model", "sleb"), need(inputs, "images", "sleb")
    causal = is_causal_lm(unwrap(model))
    batches = batches_by_length(token_mask(model, data), data.shape[0], inputs.batch_size)
    steps = _greedy_steps(inputs)
    with eval_mode(model):
        reference = None if causal else [_trimmed_logits(model, data[rows]) for rows in batches]
        removed: list[str] = []
        left = list(inputs.names)
        loss: dict[str, float] = {}
        while left and len(removed) < steps:
            loss = {b: _loss_without(model, removed + [b], reference, data, batches, causal) for b in left}
            best = min(left, key=lambda b: (loss[b], b))
            removed.append(best)
            left.remove(best)
            log.info("sleb: step %d removes %s (calibration loss %.4f)", len(removed), best, loss[best])
    return removed + sorted(left, key=lambda b: (loss.get(b, 0.0), b))


def _loss_without(model, blocks, reference, data, batches, causal) -> float:
    with SwappedVariant(model, blocks) as variant:
        return calibration_loss(variant, reference, data, batches, causal)


def _trimmed_logits(model, x):
    length = used_length(token_mask(model, x))
    return logits(model, x[..., :length] if length is not None else x).float()


def _greedy_steps(inputs: RankingInputs) -> int:
    """How many blocks to remove greedily: the most the selection may need (smallest savings
    first), plus the reserve; all of them when no count or target is given."""
    needed = blocks_for_target(inputs, largest_first=False)
    return len(inputs.names) if needed is None else min(len(inputs.names), needed + RESERVE)
