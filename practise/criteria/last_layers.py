"""Baseline criterion: the last candidates first (the deepest layers), the simple rule
layer-dropping work on LLMs and BERTs often starts from."""
from __future__ import annotations

from .base import RankingInputs


def rank_last(inputs: RankingInputs) -> list[str]:
    return list(reversed(inputs.names))  # names come in forward order
