"""Leave callers' models as found: train/eval flags restored, hooks removed."""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
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


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat subnormal floats (< 1e-38) as zero on CPU while training: tiny gradients and
    activations in deep frozen stacks otherwise make CPU kernels many times slower."""
    enabled = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if enabled:
            torch.set_flush_denormal(False)


def on_device(model: nn.Module, device: torch.device | str) -> nn.Module:
    """``model`` itself if its parameters are already on ``device``, else a copy moved there,
    so a caller's model (a teacher, say) is never moved behind its back."""
    device = torch.device(device)
    first = next(model.parameters(), None)
    if first is None or (first.device.type == device.type and
                         (device.index is None or first.device.index == device.index)):
        return model
    return copy.deepcopy(model).to(device)
