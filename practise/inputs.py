"""The inputs practise feeds a model when it needs one it was not given: to trace it,
count its FLOPs and time it.

An image model takes a float tensor of ``(batch, *sample_shape)``. A model that takes
something else (token ids and an attention mask, say) says how to make an example batch
with a ``practise_example_input(batch, sample_shape, generator)`` method, and which
positions of a batch hold real data with ``practise_token_mask(x)`` (padding is left
out of the feature loss). ``practise.text.SequenceModel`` has both.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def example_input(model: nn.Module, sample_shape: tuple[int, ...], batch: int = 1, device=None,
                  random: bool = False, dtype: torch.dtype | None = None) -> torch.Tensor:
    """An input batch for ``model``: zeros (or seeded normal noise), or the model's own kind."""
    device = model_device(model) if device is None else device
    generator = torch.Generator().manual_seed(0)
    make = getattr(model, "practise_example_input", None)
    if make is not None:
        return make(batch, tuple(sample_shape), generator).to(device)
    x = torch.randn((batch, *sample_shape), generator=generator) if random else torch.zeros(batch, *sample_shape)
    return x.to(device=device, dtype=dtype or torch.float32)


def token_mask(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """(batch, tokens) 1/0 weights of the real positions of ``x``, or None (every position counts)."""
    mask_of = getattr(model, "practise_token_mask", None)
    return mask_of(x) if mask_of is not None else None
