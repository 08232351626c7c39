"""Getting a model from a name or file, with architecture arguments inferred from weights."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..models import create_model, list_models
from ..preprocessing import checked_recording
from .model_file import is_compressed_file, load_compressed, read_header
from .weights import load_state_dict_strict, read_state_dict
from ..errors import UsageError


def _first_conv_and_last_linear(model: nn.Module) -> tuple[str | None, str | None]:
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return (convs[0] if convs else None), (linears[-1] if linears else None)


def infer_arch_kwargs(name: str, state: dict[str, torch.Tensor]) -> dict:
    """num_classes and in_channels read off the weights' first conv and last linear layer."""
    conv, linear = _first_conv_and_last_linear(create_model(name))
    kwargs = {}
    if linear and f"{linear}.weight" in state:
        kwargs["num_classes"] = int(state[f"{linear}.weight"].shape[0])
    if conv and f"{conv}.weight" in state:
        kwargs["in_channels"] = int(state[f"{conv}.weight"].shape[1])
    return kwargs


def load_model(spec: str, weights: str | None = None, **arch_kwargs) -> nn.Module:
    """A registered architecture (optionally with a weights file), or a compressed model file.

    Architecture keyword arguments not given are inferred from the weights file.
    """
    if Path(spec).is_dir() and (Path(spec) / "config.json").is_file():
        raise UsageError(f"`model` {spec} is a Hugging Face model folder: give it as hf:{spec}")
    if Path(spec).is_dir():
        raise IsADirectoryError(f"`model` {spec} is a folder; give an architecture name or a compressed model file")
    if Path(spec).is_file():
        if not is_compressed_file(spec):
            if Path(spec).suffix == ".safetensors":
                read_header(Path(spec))  # an unreadable file is reported as damaged, not as "some other file"
            raise UsageError(f"{spec} is not a practise compressed model; give an architecture name "
                             f"({', '.join(list_models())}) and pass the file as `weights`")
        if weights:
            raise UsageError("`weights` is not used with a compressed model file (it holds its weights)")
        return load_compressed(spec)
    if spec not in list_models() and ("/" in spec or Path(spec).suffix in (".safetensors", ".pth", ".pt")):
        raise FileNotFoundError(f"model file not found: {spec} (or give an architecture name: {', '.join(list_models())})")
    if spec not in list_models():
        raise UsageError(f"unknown model {spec!r}; valid choices: {', '.join(list_models())}, or a compressed model file")
    state = read_state_dict(weights) if weights else None
    kwargs = {**(infer_arch_kwargs(spec, state) if state else {}),
              **{k: v for k, v in arch_kwargs.items() if v is not None}}
    model = create_model(spec, **kwargs)
    if state is not None:
        shapes = model.state_dict()
        wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(shapes[k].shape)}" for k, v in state.items()
                 if k in shapes and v.shape != shapes[k].shape]
        if wrong:
            raise UsageError(f"{weights} does not fit {spec}{kwargs}: shape mismatch in {'; '.join(wrong[:5])}")
        load_state_dict_strict(model, state, source=str(weights))
        preprocessing = recorded_preprocessing(weights)
        if preprocessing:
            model.practise_extra = preprocessing  # read like a compressed file's (cli.transforms_for)
    return model.eval()


def recorded_preprocessing(weights: str | Path) -> dict | None:
    """The input size and normalisation a weights file was trained with, where recorded:
    in a .safetensors file's metadata ("preprocessing", written by ``practise train``), or
    in the model card ``practise train`` writes beside it (same name, .json). None if neither.
    Recorded values are checked like any other input (a bad one is a ValueError)."""
    import json

    weights = Path(weights)
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            text = (handle.metadata() or {}).get("preprocessing")
        if text:
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):
                raise UsageError(f"{weights} records preprocessing that is not valid JSON") from None
            return checked_recording(value, str(weights))
    card = weights.with_suffix(".json")
    if not card.is_file():
        return None
    try:
        data = json.loads(card.read_text())
        found = {"image_size": data["image_size"], "mean": data["normalization"]["mean"],
                 "std": data["normalization"]["std"]}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):  # some other JSON file
        return None
    return checked_recording(found, str(card))


def input_channels(model: nn.Module) -> int:
    conv, _ = _first_conv_and_last_linear(model)
    return model.get_submodule(conv).in_channels if conv else 3
