"""How a module is called and what it returns, reduced to the hidden state practise follows.

Residual units are called in many ways: ``block(x)`` in a CNN, ``layer(hidden_states,
attention_mask, cache=..., position_embeddings=...)`` in a transformer. Their *primary
input* is the first positional argument when it is a tensor, else the ``hidden_states``
keyword, else the first tensor keyword. They return a tensor, or a tuple/list or
``ModelOutput`` whose first item is the hidden state: the *primary output*. The rest of
the structure is recorded (:class:`OutputStructure`) so that a module standing in for a
dropped one returns what its caller unpacks.

Which stand-in a dropped module needs is learned while tracing and kept per
(parent class, attribute, module class) in :data:`REMOVALS`: the same attribute of the
same class plays the same role in every instance and every copy of an architecture
(copies made for scoring or timing included), which a per-object record would not survive.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn

IDENTITY, ZERO = "identity", "zero"  # a dropped unit returns its input / a branch returns zeros


def primary_input(args: tuple, kwargs: dict) -> torch.Tensor | None:
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    if args:  # the first positional argument is something else (None, a cache): not a unit's input
        return None
    if isinstance(kwargs.get("hidden_states"), torch.Tensor):
        return kwargs["hidden_states"]
    return next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)


@dataclass(frozen=True)
class OutputStructure:
    kind: str = "tensor"         # "tensor", "tuple", "list" or "mapping" (a dict or ModelOutput)
    length: int = 1
    cls: type | None = None      # the mapping's class (a ModelOutput subclass)
    key: str | None = None       # the mapping's first key

    def rebuild(self, hidden: torch.Tensor):
        """``hidden`` in this structure; other items None (attention weights, caches)."""
        if self.kind == "tensor":
            return hidden
        if self.kind in ("tuple", "list"):
            items = (hidden,) + (None,) * (self.length - 1)
            return items if self.kind == "tuple" else list(items)
        return self.cls(**{self.key: hidden})


def primary_output(output) -> tuple[torch.Tensor | None, OutputStructure | None]:
    """The hidden state a module returned and the structure it came in (None, None: no tensor first)."""
    if isinstance(output, torch.Tensor):
        return output, OutputStructure()
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0], OutputStructure(type(output).__name__ if type(output) in (tuple, list) else "tuple",
                                          len(output))
    if isinstance(output, Mapping) and output:
        key, value = next(iter(output.items()))
        if isinstance(value, torch.Tensor):
            return value, OutputStructure("mapping", len(output), type(output), key)
    return None, None


def first_tensor(output) -> torch.Tensor:
    """The primary output of ``output``; an error names what came instead."""
    hidden, _ = primary_output(output)
    if hidden is None:
        raise RuntimeError(f"expected a tensor or a tuple/ModelOutput starting with one, got {type(output).__name__}")
    return hidden


@dataclass(frozen=True)
class Removal:
    how: str                     # IDENTITY or ZERO
    structure: OutputStructure


# (parent class, attribute name, module class) -> how a dropped module of that role is replaced
REMOVALS: dict[tuple[str, str, str], Removal] = {}


def role_key(model: nn.Module, name: str) -> tuple[str, str, str]:
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    module = getattr(parent, attribute)
    # list indices are not roles: every element of a ModuleList plays the same one
    attribute = "#" if attribute.isdigit() else attribute
    return type(parent).__qualname__, attribute, type(module).__qualname__


def record_removal(model: nn.Module, name: str, how: str, structure: OutputStructure) -> None:
    REMOVALS[role_key(model, name)] = Removal(how, structure)


def removal_for(model: nn.Module, name: str) -> Removal:
    """How to drop ``name`` of ``model``: as traced, else identity returning a tensor."""
    return REMOVALS.get(role_key(model, name), Removal(IDENTITY, OutputStructure()))
