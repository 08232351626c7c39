"""Which device a run uses: "auto" resolved, and a named one checked to exist here."""
from __future__ import annotations

import torch
from .errors import UsageError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def available_devices() -> list[str]:
    """The device names this machine can run on, for error messages."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> cuda if available, else mps, else cpu; a named device must exist on this machine."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}; valid choices: {DEVICE_CHOICES}") from None
    here = ", ".join(available_devices())
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {device!r} asked for, but CUDA is not available on this machine "
                             f"(torch {torch.__version__}); valid choices here: {here}")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise UsageError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s); valid choices here: {here}")
    elif resolved.type == "mps" and not _mps_available():
        raise UsageError(f"device {device!r} asked for, but MPS is not available here; valid choices here: {here}")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unsupported device {device!r}; valid choices here: {here}")
    return resolved
