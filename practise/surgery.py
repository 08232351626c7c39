"""Model surgery: dropping blocks. Functions return a new model; the input is untouched."""
from __future__ import annotations

import copy

import torch.nn as nn

from .tracing import check_module_name


def replace_module_(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at dotted path ``name`` (in place); returns the module that was there."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


def drop_blocks_(model: nn.Module, names: list[str]) -> nn.Module:
    """Replace each named block by nn.Identity, in place."""
    for name in names:
        check_module_name(model, name, "block")
    for name in names:
        replace_module_(model, name, nn.Identity())
    return model


def drop_blocks(model: nn.Module, names: list[str]) -> nn.Module:
    """A copy of ``model`` with the named blocks replaced by identity (skipped in the forward pass)."""
    return drop_blocks_(copy.deepcopy(model), list(names))
