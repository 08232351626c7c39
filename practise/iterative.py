"""Iterative selection: after each drop, re-score the candidates left on the network as it will be.

PRACTISE scores every block alone on the full teacher (one shot), so it cannot see that a
layer next to dropped ones costs less once they are gone (SLEB's lesson for deep cuts;
benchmarks/results/llm_comparison: a contiguous run of SmolLM2 layers beats the one-shot set
even unrepaired). Here the block chosen at each step is replaced by the closed-form repair it
was scored with (its linear map in place, or the linear patch folded into the kept layer
before it: scoring.ClosedFormRepair), in a copy of the teacher, and every candidate left is
scored again on that copy, against the *original* teacher's features. A step costs what one
closed-form scoring pass does (one pass of the pruned network for the fits, then the network
after each candidate), so k steps cost about k one-shot rankings.

``shortlist`` bounds that. What a block costs at a step is the error it *adds* to the network
as it stands (its R_b minus the error of the copy, which is the R_b its last drop was chosen
with), per unit of latency saved, taken to change little with a drop far from the block (the
blocks next to it are always re-scored). Each step re-scores the ``shortlist`` blocks of lowest added
cost as last measured (at any earlier step) and the kept neighbours of every dropped run; the
others keep their last added cost and come back to the shortlist when it is among the lowest.
The drop is chosen among the re-scored blocks only (scores of different steps are never
compared). SmolLM2-135M, 64 sequences: re-scoring every candidate at every step took 17.6 min
to rank 12 of 30 layers (AMD EPYC, 2 cores).
"""
from __future__ import annotations

import copy
import logging
import math
import time

from .errors import UsageError
from .progress import Progress, silent
from .recovery import neighbours
from .scoring import CLOSED_FORM, Scorer, practise_score

log = logging.getLogger(__name__)


class Rescorer:
    """``(removed, left) -> {block: R_b / r_b}`` for the blocks left, on a copy of the scorer's
    teacher with ``removed`` dropped and repaired in closed form, one removal at a time (the
    removals of successive calls must extend each other, as a greedy criterion's do)."""

    def __init__(self, scorer: Scorer, latency_reduction: dict[str, float], progress: Progress = silent,
                 shortlist: int | None = None, first_scores: dict[str, float] | None = None):
        """``first_scores``: the one-shot scores (the first step's shortlist comes from them)."""
        if scorer.config.protocol != CLOSED_FORM:
            raise UsageError(f"iterative re-scoring fits closed-form repairs: it needs scoring protocol "
                             f"{CLOSED_FORM!r}, got {scorer.config.protocol!r}")
        if shortlist is not None and shortlist < 1:
            raise UsageError(f"iterative shortlist must be at least 1 (or None: every candidate), got {shortlist}")
        self.base, self.latency_reduction, self.progress = scorer, latency_reduction, progress
        self.shortlist = shortlist
        # per block, when it was last scored: the error it added per unit of latency saved (the
        # one-shot score: the teacher's own error is zero), and its R_b
        self.added = dict(first_scores or {})
        self.recoverability = {b: s * latency_reduction[b] for b, s in self.added.items() if math.isfinite(s)}
        self.error = 0.0  # feature error of the copy as it stands
        self.removed: list[str] = []
        self.scorer: Scorer | None = None  # scores the pruned copy as it stands
        self.steps: list[dict] = []        # per re-scoring: what had been removed, how many re-scored, seconds

    def __call__(self, removed: list[str], left: list[str]) -> dict[str, float]:
        """Scores of the shortlisted blocks of ``left`` (all of them without a shortlist)."""
        if removed[:len(self.removed)] != self.removed:
            raise ValueError(f"removals must extend the earlier ones ({self.removed}), got {removed}")
        for block in removed[len(self.removed):]:
            self._remove(block)
        chosen = self._shortlisted(left)
        began = time.perf_counter()
        self.progress.start(f"re-scoring {len(chosen)} blocks ({len(self.removed)} dropped)", len(chosen))
        scores = {}
        for block in chosen:
            recoverability = self.scorer.recoverability(block)[0]
            scores[block] = practise_score(recoverability, self.latency_reduction[block])
            self.recoverability[block] = recoverability
            self.added[block] = practise_score(recoverability - self.error, self.latency_reduction[block])
            self.progress.advance(1)
        self.progress.end()
        seconds = time.perf_counter() - began
        self.steps.append({"removed": list(self.removed), "candidates": len(chosen), "seconds": seconds,
                           "scores": scores})
        log.info("iterative: %d of %d blocks re-scored with %s dropped (%.1f s)", len(chosen), len(left),
                 ", ".join(self.removed), seconds)
        return scores

    def _shortlisted(self, left: list[str]) -> list[str]:
        """The ``shortlist`` blocks of ``left`` of lowest added cost when last scored (never
        scored: first), and the kept neighbours of every dropped run, in ``left``'s order (all
        of ``left`` without a shortlist)."""
        if self.shortlist is None or len(left) <= self.shortlist:
            return list(left)
        known = [b for b in left if b in self.added]
        best = set(sorted(known, key=lambda b: (self.added[b], b))[:self.shortlist])
        best |= {b for b in left if b not in self.added}  # never scored: scored now
        order = self.base.trace.call_order
        in_order = sorted(set(left) | set(self.removed), key=lambda b: order.index(b) if b in order else len(order))
        near = set(neighbours(in_order, self.removed))
        return [b for b in left if b in best or b in near]

    def _remove(self, block: str) -> None:
        """Drop ``block`` from the copy, repaired as it was scored, and start a fresh scorer on it."""
        current = self.scorer or self._scorer_for(copy.deepcopy(self.base.teacher))
        current.closed_form_repair(block).apply_(current.teacher, block)
        self.removed.append(block)
        self.scorer = self._scorer_for(current.teacher)
        known = self.recoverability.get(block)  # what the copy now gives (test_iterative checks they agree)
        self.error = known if known is not None else self.scorer.feature_error()

    def _scorer_for(self, model) -> Scorer:
        base = self.base
        return Scorer(model, base.tiny_set, base.trace, base.chain, base.feature_layer, base.config, base.device,
                      targets=base.targets, dropped=self.removed)
