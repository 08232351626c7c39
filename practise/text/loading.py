"""``hf:`` models: a local Hugging Face folder or installed package, as a token model and its tokenizer.

Weights are read by transformers (safetensors, or weights-only ``torch.load``); a folder
practise wrote in its own form (``practise.json``) is reloaded exactly as it was saved;
custom code is never run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..model_io.weights import check_finite
from .model import SequenceModel, import_transformers, refuse_remote_code, refused_as_untrusted, resolve_hf_path
from .gguf import find_gguf, load_gguf
from .saving import load_pretrained

log = logging.getLogger(__name__)


@dataclass
class HFBundle:
    model: SequenceModel
    tokenizer: object
    path: Path


def load_hf(spec: str) -> HFBundle:
    """A local HF model (as its saved class, head included) and its tokenizer."""
    transformers = import_transformers()
    gguf = find_gguf(spec)
    path = gguf if gguf is not None else resolve_hf_path(spec)
    refuse_remote_code(path.parent if gguf is not None else path)
    progress_bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a local load takes a moment; practise shows its own steps
    try:
        if gguf is not None:
            model, tokenizer, _ = load_gguf(gguf)
        else:
            model = load_pretrained(path)  # stock, or the practise form with its dropped modules put back
            with refused_as_untrusted(path, "tokenizer"):
                tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True,
                                                                       trust_remote_code=False)
    finally:
        if progress_bars:
            transformers.utils.logging.enable_progress_bar()
    check_finite(model.state_dict(), f"hf:{path}")
    log.info("loaded %s (%s) from %s", type(model).__name__, model.config.model_type, path)
    wrapped = SequenceModel(model)
    wrapped.practise_arch = {"name": f"hf:{type(model).__name__}", "source": str(path),
                             **({"gguf": gguf.name, "dequantized": True} if gguf is not None else {})}
    return HFBundle(wrapped, tokenizer, path)
