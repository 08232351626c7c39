"""A tiny model registry: architecture name -> keyword-only builder.

Saved compressed models store the architecture name and its keyword arguments, so
names must be unique and builders deterministic given their kwargs.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn
from ..errors import UsageError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder under ``name``; a duplicate name is a programming error."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise UsageError(f"model name {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    return sorted(_BUILDERS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered architecture with fresh (untrained) weights."""
    if name not in _BUILDERS:
        raise UsageError(f"unknown model {name!r}; valid choices: {', '.join(list_models())}")
    model = _BUILDERS[name](**kwargs)
    # Remember how to rebuild it: saved compressed models record this spec.
    model.practise_arch = {"name": name, "kwargs": dict(kwargs)}
    return model


def builder_of(name: str) -> Callable[..., nn.Module]:
    """The registered builder itself (its signature tells which keyword arguments it takes)."""
    if name not in _BUILDERS:
        raise UsageError(f"unknown model {name!r}; valid choices: {', '.join(list_models())}")
    return _BUILDERS[name]
