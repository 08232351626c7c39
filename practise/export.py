"""The compressed model file: one .safetensors file, no pickled code.

Besides the weights it holds, as JSON metadata, how to rebuild the network: the
architecture (a registered name, or an importable ``module:function`` factory, with
keyword arguments), the dropped blocks and the feature layer. Loading rebuilds the
architecture, drops the same blocks and loads the weights strictly.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from .io import atomic_write
from .models import create_model, list_models, load_state_dict_strict
from .surgery import drop_blocks_

FORMAT = "practise-compressed/1"


def arch_spec(model: nn.Module, factory: str | None = None, factory_kwargs: dict | None = None) -> dict | None:
    """How to rebuild ``model``: from the registry (models made by create_model) or a factory."""
    if factory is not None:
        return {"factory": factory, "kwargs": factory_kwargs or {}}
    return getattr(model, "practise_arch", None)


def build_from_spec(spec: dict) -> nn.Module:
    if "name" in spec:
        if spec["name"] not in list_models():
            raise ValueError(f"unknown model {spec['name']!r} in file; valid choices: {', '.join(list_models())}")
        return create_model(spec["name"], **spec.get("kwargs", {}))
    module_name, _, attr = spec["factory"].partition(":")
    if not attr:
        raise ValueError(f"factory {spec['factory']!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module_name), attr)(**spec.get("kwargs", {}))


def save_compressed(path: str | Path, model: nn.Module, dropped: list[str], feature_layer: str,
                    spec: dict | None, extra: dict | None = None, overwrite: bool = False) -> Path:
    """Write the pruned ``model``; ``spec`` None means loading needs the caller's architecture."""
    metadata = {"format": FORMAT, "arch": json.dumps(spec), "dropped_blocks": json.dumps(list(dropped)),
                "feature_layer": feature_layer, "extra": json.dumps(extra or {})}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata), overwrite=overwrite)


def read_metadata(path: str | Path) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a practise compressed model (format {meta.get('format')!r})")
    return {"arch": json.loads(meta["arch"]), "dropped_blocks": json.loads(meta["dropped_blocks"]),
            "feature_layer": meta["feature_layer"], "extra": json.loads(meta.get("extra", "{}"))}


def is_compressed_file(path: str | Path) -> bool:
    try:
        read_metadata(path)
        return True
    except Exception:
        return False


def load_compressed(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a compressed model from its file alone (or onto ``model``, a fresh instance of
    the original architecture, when the file records none). Returns it in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"compressed model not found: {path}")
    meta = read_metadata(path)
    if model is None:
        if meta["arch"] is None:
            raise ValueError(f"{path} records no architecture (a custom model saved without a factory); "
                             "pass an instance of the original architecture as model=")
        model = build_from_spec(meta["arch"])
    drop_blocks_(model, meta["dropped_blocks"])
    from safetensors.torch import load_file

    load_state_dict_strict(model, load_file(str(path)), source=str(path))
    model.practise_arch = meta["arch"]
    model.practise_dropped = meta["dropped_blocks"]
    model.practise_feature_layer = meta["feature_layer"]
    model.practise_extra = meta["extra"]  # preprocessing recorded at compression time
    return model.eval()
