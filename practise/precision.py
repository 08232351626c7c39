"""Mixed precision for the training loops (adaptor scoring, recovery): bf16 autocast for the
student's passes, float32 everywhere else (weights, optimizer, targets, reported losses)."""
from __future__ import annotations

import contextlib

import torch
from .errors import UsageError

AUTOCAST = {None: None, "bfloat16": torch.bfloat16}


def check_autocast(value: str | None, what: str) -> None:
    if value not in AUTOCAST:
        raise UsageError(f"{what}: unknown autocast {value!r}; valid choices: {', '.join(str(k) for k in AUTOCAST)}")


def autocast(device: torch.device | str, value: str | None):
    """The autocast context for ``value`` ("bfloat16") on ``device``; a no-op for None."""
    dtype = AUTOCAST[value]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def full_precision(device: torch.device | str):
    """Autocast switched off inside a mixed-precision region (the teacher's targets)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)
