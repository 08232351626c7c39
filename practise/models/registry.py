"""The architecture registry: name -> keyword-only builder.

Saved compressed models store the architecture name and its keyword arguments, so
names must be unique and builders deterministic given their kwargs.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ..registry import Registry

Builder = Callable[..., nn.Module]
MODELS: Registry[Builder] = Registry("model")


def register_model(name: str, builder: Builder | None = None):
    """Add an architecture under ``name`` (``create_model(name, **kwargs)`` builds it and
    model files record the name). Without ``builder``, a decorator."""
    return MODELS.add(name, builder)


def list_models() -> list[str]:
    return sorted(MODELS.names())


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered architecture with fresh (untrained) weights."""
    model = builder_of(name)(**kwargs)
    # Remember how to rebuild it: saved compressed models record this spec.
    model.practise_arch = {"name": name, "kwargs": dict(kwargs)}
    return model


def builder_of(name: str) -> Builder:
    """The registered builder itself (its signature tells which keyword arguments it takes)."""
    return MODELS.get(name)
