"""Loading state dicts from user files without unpickling arbitrary objects."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from .safetensors, or from .pth/.pt with ``weights_only=True``.

    Common checkpoint wrappers ({"state_dict": ...}, {"model": ...}) and the
    ``module.`` prefix left by DataParallel are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    elif path.suffix in WEIGHT_SUFFIXES:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors carry many types
            raise ValueError(f"cannot read {path} as a weights-only checkpoint: {exc}") from exc
    else:
        raise ValueError(f"unsupported weights file {path.name!r}; valid suffixes: {', '.join(WEIGHT_SUFFIXES)}")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """Load with strict key matching; a mismatch names the missing and unexpected keys."""
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match the model: missing keys {missing[:20]}"
            f"{' ...' if len(missing) > 20 else ''}; unexpected keys {unexpected[:20]}"
            f"{' ...' if len(unexpected) > 20 else ''}"
        )
    model.load_state_dict(state, strict=True)


def load_weights_(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a weights file into ``model`` in place and return it."""
    load_state_dict_strict(model, read_state_dict(path), source=str(path))
    return model
