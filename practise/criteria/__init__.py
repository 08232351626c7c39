"""Orders in which to drop blocks: PRACTISE's score and the criteria it is compared with.

A new criterion is one file with a ``RankingInputs -> list[str]`` function plus one
``register_criterion(name, Criterion(...))`` line (below for the built-in ones; anywhere for a plug-in).

* ``practise``: score R_b / r_b ascending (needs recoverability scores).
* ``random``: a seeded shuffle.
* ``latency``: largest measured latency saving r_b first.
* ``cosine``: smallest 1 - cos(block input, block output) first (needs the teacher and images).
* ``last``: the deepest candidates first.
* ``sleb``: greedy elimination, re-scoring the rest after each removal (SLEB).
* ``angular``: the contiguous span of least angular distance (Gromov et al.; ReplaceMe).
* ``practise-iterative``: PRACTISE's score, re-measured on the pruned network after each drop.
"""
from .base import CRITERIA, Criterion, RankingInputs, rank_blocks, register_criterion
from .cosine import cosine_dissimilarity, rank_cosine
from .largest_latency import rank_latency
from .last_layers import rank_last
from .practise_score import rank_practise
from .random_order import rank_random
from .sleb import rank_sleb
from .angular_span import rank_angular_span
from .practise_iterative import rank_practise_iterative

register_criterion("practise", Criterion(rank_practise, needs_scores=True,
                                         description="recoverability / latency saving, lowest first (the paper)"))
register_criterion("random", Criterion(rank_random, description="a seeded shuffle"))
register_criterion("latency", Criterion(rank_latency, description="largest latency saving first"))
register_criterion("cosine", Criterion(rank_cosine, needs_images=True,
                                       description="smallest 1 - cos(block input, output) first"))
register_criterion("last", Criterion(rank_last, description="the deepest blocks first"))
register_criterion("sleb", Criterion(rank_sleb, needs_images=True,
                                     description="greedy: drop the block that hurts the tiny-set loss least, re-score, "
                                                 "repeat (SLEB; perplexity for causal LMs)"))
register_criterion("angular", Criterion(rank_angular_span, needs_images=True,
                                        description="the contiguous span whose input and output are closest in angle "
                                                    "(Gromov et al.)"))

register_criterion("practise-iterative", Criterion(
    rank_practise_iterative, needs_scores=True, needs_rescoring=True,
    description="PRACTISE's score, re-measured after each drop on the network with the dropped blocks repaired "
                "in closed form (greedy)"))

__all__ = ["CRITERIA", "Criterion", "RankingInputs", "rank_blocks", "register_criterion", "cosine_dissimilarity"]
