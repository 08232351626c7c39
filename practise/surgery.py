"""Model surgery: dropping blocks. Functions return a new model; the input is untouched.

A dropped unit becomes a :class:`PassThrough`: it accepts whatever its caller passes
(an attention mask, a cache, position embeddings) and returns its input in the structure
the unit returned (a tensor, or a tuple/ModelOutput starting with the hidden state). A
dropped *branch* (a pre-norm layer's attention or MLP) becomes a :class:`ZeroBranch`,
so the layer's ``x + branch(...)`` is ``x``. Which one a name needs was recorded when
the model was traced (``call_structure.REMOVALS``).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .call_structure import IDENTITY, OutputStructure, primary_input, removal_for
from .tracing import check_module_name


class _StandIn(nn.Module):
    """Takes any call; returns ``replacement(primary input)`` in the recorded output structure."""

    what = ""

    def __init__(self, structure: OutputStructure = OutputStructure()):
        super().__init__()
        self.structure = structure

    def replacement(self, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, *args, **kwargs):
        hidden = primary_input(args, kwargs)
        if hidden is None:
            raise TypeError(f"a dropped {self.what} was called without a tensor input")
        return self.structure.rebuild(self.replacement(hidden))


class PassThrough(_StandIn):
    """A dropped unit: its input, as the unit's output."""

    what = "block"

    def replacement(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden


class ZeroBranch(_StandIn):
    """A dropped branch: zeros shaped like its input (so the residual add leaves the stream as it was)."""

    what = "branch"

    def replacement(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(hidden)


def replace_module_(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at dotted path ``name`` (in place); returns the module that was there."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


def stand_in(model: nn.Module, name: str) -> nn.Module:
    """The module that takes the place of ``name`` when it is dropped."""
    removal = removal_for(model, name)
    return (PassThrough if removal.how == IDENTITY else ZeroBranch)(removal.structure)


def drop_module_(model: nn.Module, name: str) -> nn.Module:
    """Drop one block in place; returns the module that was there (to put it back)."""
    new = stand_in(model, name)
    copy_plain_attributes_(model.get_submodule(name), new)
    return replace_module_(model, name, new)


def copy_plain_attributes_(original: nn.Module, new: nn.Module) -> None:
    """The original's plain attributes (strings, numbers, flags: ModernBERT's ``attention_type``,
    a layer's index) on its stand-in, so callers that read them find them."""
    for key, value in vars(original).items():
        if not key.startswith("_") and key != "training" and not hasattr(new, key) \
                and (value is None or isinstance(value, (str, int, float, bool))):
            setattr(new, key, value)


def drop_blocks_(model: nn.Module, names: list[str]) -> nn.Module:
    """Replace each named block by its stand-in, in place."""
    for name in names:
        check_module_name(model, name, "block")
    for name in names:
        drop_module_(model, name)
    return model


def drop_blocks(model: nn.Module, names: list[str]) -> nn.Module:
    """A copy of ``model`` with the named blocks dropped (skipped in the forward pass)."""
    return drop_blocks_(copy.deepcopy(model), list(names))
