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


def batches_by_length(mask: torch.Tensor | None, count: int, batch: int) -> list[torch.Tensor]:
    """Row indices of the first ``count`` examples in batches of at most ``batch``: in order
    for images; for token sequences (``mask``, (N, tokens)) shortest first, so that each
    batch can drop the padding columns none of its rows use (``trim_padding``)."""
    rows = torch.arange(count)
    if mask is not None:
        rows = torch.sort(mask[:count].sum(1), stable=True).indices
    return [rows[i:i + batch] for i in range(0, count, batch)]


def used_length(mask: torch.Tensor | None) -> int | None:
    """One past the last token position any row of ``mask`` (N, tokens) uses; None for images.
    Padding after it costs compute and changes nothing (masked out of attention and of the
    loss), so a batch may be cut there (``batches_by_length`` groups rows so that the cut is deep)."""
    if mask is None or mask.dim() != 2:
        return None
    used = mask.bool().any(0).nonzero()
    return int(used[-1]) + 1 if len(used) else 1
