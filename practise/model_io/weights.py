"""Loading state dicts from user files without unpickling arbitrary objects."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..files import one_line
from ..errors import UsageError

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from .safetensors, or from .pth/.pt with ``weights_only=True``.

    Common checkpoint wrappers ({"state_dict": ...}, {"model": ...}) and the
    ``module.`` prefix left by DataParallel are unwrapped.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"weights file {path} is a folder; give the weights file itself")
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise UsageError(f"unsupported weights file {path.name!r}; valid suffixes: {', '.join(WEIGHT_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise UsageError(f"weights file {path} is empty")
    state = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{path} does not hold a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors has its own error types for every kind of damage
        raise UsageError(f"cannot read {path}: damaged or not a .safetensors file ({one_line(exc)})") from None


def _read_torch(path: Path):
    """``torch.load`` with ``weights_only=True``; a file holding other objects is refused outright."""
    import pickle
    import zipfile

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, i.e. running the file's code: never that.
        raise UsageError(f"{path} is not a weights-only checkpoint: it holds Python objects besides tensors, "
                         f"which practise never unpickles; save model.state_dict() with torch.save, or convert "
                         f"it to .safetensors") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise UsageError(f"cannot read {path}: damaged or not a PyTorch checkpoint ({one_line(exc)[:200]})") from None



def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """NaN or Inf in any floating tensor is an error naming the first such tensor."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise UsageError(f"{source}: tensor {key!r} holds {bad} NaN/Inf value(s) of {tensor.numel()}; "
                             f"the weights are damaged (or came from a diverged training run)")


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """Load with strict key matching; a mismatch names the missing and unexpected keys."""
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise UsageError(
            f"{source} does not match the model: missing keys {missing[:20]}"
            f"{' ...' if len(missing) > 20 else ''}; unexpected keys {unexpected[:20]}"
            f"{' ...' if len(unexpected) > 20 else ''}"
        )
    expected = model.state_dict()
    wrong = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}" for k, v in state.items()
             if v.shape != expected[k].shape]
    if wrong:
        raise UsageError(f"{source} does not match the model: shape mismatch in {'; '.join(wrong[:5])}")
    check_finite(state, source)
    model.load_state_dict(state, strict=True)


def load_weights_(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a weights file into ``model`` in place and return it."""
    load_state_dict_strict(model, read_state_dict(path), source=str(path))
    return model
