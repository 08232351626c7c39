"""PRACTISE's score, re-measured after each drop (iterative selection; practise/iterative.py).

Greedy like SLEB, with PRACTISE's measure: drop the block of lowest R_b / r_b, re-score the
blocks left on the network with it dropped and repaired, repeat until the selection can
stop; the blocks left are ordered by their last scores (those not re-scored at the last step
after them). The first step uses the one-shot scores (the same measurement on the unpruned
teacher).
"""
from __future__ import annotations

import logging
import math

from .base import RankingInputs, greedy_steps, need

log = logging.getLogger(__name__)


def rank_practise_iterative(inputs: RankingInputs) -> list[str]:
    current = dict(need(inputs, "scores", "practise-iterative"))
    rescore = need(inputs, "rescore", "practise-iterative")
    steps = greedy_steps(inputs)
    removed, left = [], list(inputs.names)
    while left and len(removed) < steps:
        if removed:
            current = rescore(removed, left)
        # a re-scorer may return only a shortlist of ``left``: the best of those scored this step
        best = min((b for b in left if b in current), key=lambda b: (current[b], b))
        removed.append(best)
        left.remove(best)
        log.info("practise-iterative: step %d drops %s (score %.5g)", len(removed), best, current[best])
    return removed + sorted(left, key=lambda b: (current.get(b, math.inf), b))
