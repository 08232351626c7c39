"""Taking the feature map (or final hidden state) out of a forward pass, and the feature loss."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .call_structure import first_tensor


class _Stop(Exception):
    def __init__(self, output: torch.Tensor):
        self.output = output


def forward_features(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """Run ``model`` on ``x`` and return ``layer``'s output (its hidden state, if it returns a
    tuple or ModelOutput); the layers after it are not run."""

    def hook(module, args, output):
        raise _Stop(first_tensor(output))

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


def feature_error(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, int]:
    """(sum of squared errors, number of values) between two feature tensors.

    ``mask`` (batch, tokens) weights token positions of (batch, tokens, width) features:
    padding (0) is left out, so the loss is the mean over real tokens only."""
    if mask is None:
        return F.mse_loss(out, target, reduction="sum"), target.numel()
    squared = (out.float() - target.float()) ** 2
    weights = mask.to(squared.dtype).reshape(*mask.shape, *([1] * (squared.dim() - mask.dim())))
    return (squared * weights).sum(), int(weights.sum()) * squared[0, 0].numel()


def feature_mse(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over all values, or over the real tokens when ``mask`` is given."""
    if mask is None:
        return F.mse_loss(out.float(), target)
    total, count = feature_error(out, target, mask)
    return total / max(count, 1)
