"""The eager PyTorch backend: the model itself, run by PyTorch as the user runs it.

Variants are made by swapping blocks for their stand-ins (surgery.py) on *one* private copy of the model
while a variant is entered, so no extra copies of the weights are held; the swap stays
outside the timed region.
"""
from __future__ import annotations

import copy

import torch.nn as nn

from ..surgery import drop_module_, replace_module_
from .backend import LatencyBackend
from .config import DTYPES


class SwappedVariant:
    """``model`` with ``blocks`` dropped while inside ``with``."""

    def __init__(self, model: nn.Module, blocks: list[str] | tuple[str, ...] = ()):
        self.model, self.blocks = model, list(blocks)
        self._originals: list[tuple[str, nn.Module]] = []

    def __enter__(self) -> nn.Module:
        self._originals = [(name, drop_module_(self.model, name)) for name in self.blocks]
        return self.model

    def __exit__(self, *exc) -> None:
        for name, module in reversed(self._originals):
            replace_module_(self.model, name, module)
        self._originals = []


class EagerBackend(LatencyBackend):

    def prepare(self, model, variants, sample_shape, config, device):
        private = copy.deepcopy(model).to(device=device, dtype=DTYPES[config.dtype],
                                          memory_format=config.memory_format).eval()
        return {name: SwappedVariant(private, blocks) for name, blocks in variants.items()}
