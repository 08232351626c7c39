"""Taking the feature map before global pooling out of a forward pass."""
from __future__ import annotations

import torch
import torch.nn as nn


class _Stop(Exception):
    def __init__(self, output: torch.Tensor):
        self.output = output


def forward_features(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Run ``model`` on ``x`` and return ``layer``'s output; the layers after it are not run."""

    def hook(module, args, output):
        raise _Stop(output)

    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        model(x)
    except _Stop as stop:
        return stop.output
    finally:
        handle.remove()
    raise RuntimeError(f"feature layer {layer!r} was not called during the forward pass")


def run_chain(modules: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for module in modules:
        x = module(x)
    return x


def as_format(x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """``x`` in ``memory_format`` when that format applies (4-D tensors), else unchanged."""
    return x.contiguous(memory_format=memory_format) if x.dim() == 4 else x
