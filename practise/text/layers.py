"""Removing dropped layers from a Hugging Face model, so it is the same architecture with fewer layers.

Whole layers dropped from the model's layer list (``model.layers``, ``encoder.layer``,
``transformer.h``) become pass-throughs first; :func:`remove_dropped_layers_` then
*removes* them: the list is shortened, every integer attribute a kept layer holds its own
index in (``layer_idx``, ``layer_id``: its KV-cache slot) renumbered, the config's layer
count lowered and per-layer config lists shortened. Whether the result is what the config
now describes is not assumed here: ``saving.save_pretrained`` reloads it and compares.
"""
from __future__ import annotations

import logging

import torch.nn as nn

from ..surgery import PassThrough, replace_module_

log = logging.getLogger(__name__)
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


def layer_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]


def layer_count_key(config) -> str | None:
    return next((k for k in LAYER_COUNT_KEYS if isinstance(getattr(config, k, None), int)), None)


def remove_dropped_layers_(model: nn.Module) -> dict[str, list[int]]:
    """Remove PassThrough elements from the model's layer list (in place); returns
    {list name: removed indices}. Only the list whose length is the config's layer count
    is shortened (other lists keep their pass-throughs)."""
    config = getattr(model, "config", None)
    count_key = layer_count_key(config)
    removed: dict[str, list[int]] = {}
    for name, layers in layer_lists(model):
        dropped = [i for i, layer in enumerate(layers) if isinstance(layer, PassThrough)]
        if not dropped or count_key is None or len(layers) != getattr(config, count_key):
            continue
        kept = [(i, layer) for i, layer in enumerate(layers) if not isinstance(layer, PassThrough)]
        for new_index, (old_index, layer) in enumerate(kept):
            renumber_(layer, old_index, new_index)
        replace_module_(model, name, nn.ModuleList([layer for _, layer in kept]))
        _shorten_config_(config, count_key, len(layers), dropped)
        removed[name] = dropped
    return removed


def renumber_(layer: nn.Module, old: int, new: int) -> None:
    """Every integer attribute named for a layer (``layer_idx``, ``layer_id``, ...) that holds
    this layer's old index, in the layer and its submodules, set to the new one."""
    for module in layer.modules():
        for key, value in list(vars(module).items()):
            if "layer" in key and type(value) is int and value == old:
                setattr(module, key, new)


def _shorten_config_(config, count_key: str, length: int, dropped: list[int]) -> None:
    setattr(config, count_key, length - len(dropped))
    for key, value in list(vars(config).items()):  # per-layer settings (layer_types, sliding windows)
        if isinstance(value, list) and len(value) == length and key != count_key:
            setattr(config, key, [v for i, v in enumerate(value) if i not in dropped])
