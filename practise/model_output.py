"""What a model's forward returns, reduced to the logits practise needs.

Models return a tensor, a tuple (``(logits, aux)``), a dict or a Hugging Face
``ModelOutput``. The rule, applied wherever logits are used (evaluation, CE/KD recovery,
synthesis, training):

* a tensor is the logits;
* a model with a ``practise_output`` attribute names them: a key (``"pred"``) of a dict
  output, or an index (``0``) of a tuple output. Set it on the model before calling
  practise when the automatic rule below picks the wrong item;
* a dict or ModelOutput: its ``"logits"`` entry, else its first tensor value;
* a tuple or list: its first tensor.

Anything else (no tensor at all) is a ValueError, raised when the model is first
inspected, before any long step.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
from .errors import UsageError


def select_logits(output, key: str | int | None = None) -> torch.Tensor:
    """The logits tensor inside ``output`` (see the module docstring for the rule)."""
    if isinstance(output, torch.Tensor):
        return output
    if key is not None:
        try:
            chosen = output[key]
        except (KeyError, IndexError, TypeError):
            raise UsageError(f"the model's output has no item {key!r} (practise_output); it is a "
                             f"{type(output).__name__}{_keys(output)}") from None
        if isinstance(chosen, torch.Tensor):
            return chosen
        raise UsageError(f"the model's output item {key!r} is a {type(chosen).__name__}, not a tensor")
    if isinstance(output, Mapping):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        values = list(output.values())
    elif isinstance(output, Sequence) and not isinstance(output, (str, bytes)):
        values = list(output)
    else:
        values = []
    for value in values:
        if isinstance(value, torch.Tensor):
            return value
    raise UsageError(f"the model's forward returns a {type(output).__name__}{_keys(output)} with no tensor in it; "
                     "practise needs logits: a tensor, or a tuple/dict/ModelOutput holding them "
                     "(set model.practise_output to the key or index that holds them)")


def _keys(output) -> str:
    return f" with keys {list(output)[:10]}" if isinstance(output, Mapping) else ""


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` reduced to its logits."""
    return select_logits(model(x), getattr(model, "practise_output", None))
