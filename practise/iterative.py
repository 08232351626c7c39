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

``shortlist`` bounds that: each step re-scores only the candidates the previous step ranked
best (this many) and the kept neighbours of every dropped run (whose scores change most);
the others are left out of that step. Scores of different steps are never compared (each
includes the error of what was dropped before it), so leaving a block out never lets a stale,
lower score win.
"""
from __future__ import annotations

import copy
import logging
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
        self.shortlist, self.last = shortlist, dict(first_scores or {})
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
            scores[block] = practise_score(self.scorer.recoverability(block)[0], self.latency_reduction[block])
            self.progress.advance(1)
        self.progress.end()
        seconds = time.perf_counter() - began
        self.steps.append({"removed": list(self.removed), "candidates": len(chosen), "seconds": seconds})
        log.info("iterative: %d of %d blocks re-scored with %s dropped (%.1f s)", len(chosen), len(left),
                 ", ".join(self.removed), seconds)
        self.last = scores
        return scores

    def _shortlisted(self, left: list[str]) -> list[str]:
        """The ``shortlist`` best of ``left`` by the last scores, and the kept neighbours of
        every dropped run, in ``left``'s order (all of ``left`` without a shortlist)."""
        known = [b for b in left if b in self.last]
        if self.shortlist is None or len(left) <= self.shortlist or not known:
            return list(left)
        best = set(sorted(known, key=lambda b: (self.last[b], b))[:self.shortlist])
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

    def _scorer_for(self, model) -> Scorer:
        base = self.base
        return Scorer(model, base.tiny_set, base.trace, base.chain, base.feature_layer, base.config, base.device,
                      targets=base.targets, dropped=self.removed)
