"""Leave callers' models as found: train/eval flags restored, hooks removed."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch.nn as nn


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Put models (and every submodule) in eval mode, restoring each module's flag after."""
    saved = [(m, m.training) for model in models for m in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for module, flag in saved:
            module.training = flag


@contextlib.contextmanager
def hooks_removed(handles: list) -> Iterator[list]:
    """Collect hook handles into ``handles``; every one is removed on exit."""
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()
