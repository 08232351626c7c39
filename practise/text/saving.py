"""Writing a compressed Hugging Face model so that stock transformers reloads it.

Whole layers dropped from a model's layer list (``model.layers``, ``encoder.layer``,
``transformer.h``) are *removed*, not left as pass-throughs: the list is shortened, the
layers' ``layer_idx`` (their KV-cache slot) renumbered and ``config.num_hidden_layers``
(and per-layer config lists such as ``layer_types``) updated. The result is the same
architecture with fewer layers: ``save_pretrained`` writes it and
``AutoModel.from_pretrained`` reloads it without remote code, and generation with a KV
cache indexes the remaining layers correctly.

Dropped *sub-layers* (an attention or MLP branch returning zeros) have no stock
equivalent. The folder then also holds ``practise.json`` naming them;
:func:`load_pretrained` reloads the folder and puts the zero branches back. (Stock
``from_pretrained`` alone would re-create those branches with random weights.)
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch.nn as nn

from ..surgery import PassThrough, ZeroBranch, replace_module_
from ..call_structure import OutputStructure
from .model import model_class, refuse_remote_code, refused_as_untrusted

log = logging.getLogger(__name__)
SIDE_FILE = "practise.json"
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


def layer_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]


def remove_dropped_layers_(model: nn.Module) -> dict[str, list[int]]:
    """Remove PassThrough elements from the model's layer list (in place); returns
    {list name: removed indices}. Only the list whose length is the config's layer count
    is shortened (other lists keep their pass-throughs)."""
    config = getattr(model, "config", None)
    count_key = next((k for k in LAYER_COUNT_KEYS if isinstance(getattr(config, k, None), int)), None)
    removed: dict[str, list[int]] = {}
    for name, layers in layer_lists(model):
        dropped = [i for i, layer in enumerate(layers) if isinstance(layer, PassThrough)]
        if not dropped or count_key is None or len(layers) != getattr(config, count_key):
            continue
        kept = [layer for layer in layers if not isinstance(layer, PassThrough)]
        for new_index, layer in enumerate(kept):
            for sub in layer.modules():
                if isinstance(getattr(sub, "layer_idx", None), int):
                    sub.layer_idx = new_index  # the KV-cache slot follows the new position
        replace_module_(model, name, nn.ModuleList(kept))
        _shorten_config_(config, count_key, len(layers), dropped)
        removed[name] = dropped
    return removed


def _shorten_config_(config, count_key: str, length: int, dropped: list[int]) -> None:
    setattr(config, count_key, length - len(dropped))
    for key, value in list(vars(config).items()):  # per-layer settings (layer_types, sliding windows)
        if isinstance(value, list) and len(value) == length and key != count_key:
            setattr(config, key, [v for i, v in enumerate(value) if i not in dropped])


def zero_branches(model: nn.Module) -> dict[str, dict]:
    """Names of dropped sub-layers (ZeroBranch) and their output structures."""
    return {name: {"kind": m.structure.kind, "length": m.structure.length}
            for name, m in model.named_modules() if isinstance(m, ZeroBranch)}


def save_pretrained(hf_model: nn.Module, tokenizer, out_dir: str | Path, extra: dict | None = None,
                    overwrite: bool = False) -> Path:
    """Write ``hf_model`` (whole-layer drops removed first; left untouched otherwise: a copy
    is saved) and its tokenizer into ``out_dir``, atomically (a temporary folder renamed)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass `overwrite` to replace it")
    model = copy.deepcopy(hf_model)
    removed = remove_dropped_layers_(model)
    branches = zero_branches(model)
    leftover = [n for n, m in model.named_modules() if isinstance(m, PassThrough)]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        side = {"removed_layers": removed, "zero_branches": branches, "pass_throughs": leftover, **(extra or {})}
        (tmp / SIDE_FILE).write_text(json.dumps(side, indent=1))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    if branches or leftover:
        log.warning("%s holds dropped sub-layers (%s): reload it with practise.text.load_pretrained, which puts "
                    "them back; stock from_pretrained would re-create them with random weights",
                    out_dir, ", ".join(list(branches) + leftover)[:200])
    return out_dir


def load_pretrained(path: str | Path, auto_class=None) -> nn.Module:
    """Reload a folder written by :func:`save_pretrained` (dropped sub-layers put back)."""
    path = Path(path)
    refuse_remote_code(path)
    side = json.loads((path / SIDE_FILE).read_text()) if (path / SIDE_FILE).is_file() else {}
    with refused_as_untrusted(path, "model"):
        model = (auto_class or model_class(path)).from_pretrained(path, local_files_only=True,
                                                                  trust_remote_code=False).eval()
    for name, structure in side.get("zero_branches", {}).items():
        replace_module_(model, name, ZeroBranch(OutputStructure(structure["kind"], structure["length"])))
    for name in side.get("pass_throughs", []):
        replace_module_(model, name, PassThrough())
    return model
