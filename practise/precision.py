"""Mixed precision for the training loops (adaptor scoring, recovery): bf16 autocast for the
student's passes, float32 everywhere else (weights, optimizer, targets, reported losses)."""
from __future__ import annotations

import contextlib
import logging

import torch

from .device import resolve_device
from .errors import UsageError
from .machine import bf16_pays_off, bf16_speedup

log = logging.getLogger(__name__)
AUTOCAST_CHOICES = ("auto", "none", "bfloat16")  # what a user may ask for; "auto" is decided by measurement

AUTOCAST = {None: None, "bfloat16": torch.bfloat16}


def check_autocast(value: str | None, what: str) -> None:
    if value not in AUTOCAST:
        raise UsageError(f"{what}: unknown autocast {value!r}; valid choices: {', '.join(str(k) for k in AUTOCAST)}")


def resolve_autocast(choice: str | None, device: torch.device | str) -> str | None:
    """The ``autocast`` value for ``ScoringConfig`` / ``RecoveryConfig`` from what a user asks:
    "none" (or None) float32, "bfloat16", or "auto": bf16 on a CPU whose *measured* bf16 speed
    (a matmul and a small conv pass) makes it worth it, else float32; a CUDA/MPS device keeps
    float32 (its speed does not come from this choice). The configs record the result, so
    the score cache and the report name what was used."""
    if choice not in AUTOCAST_CHOICES and choice is not None:
        raise UsageError(f"unknown autocast {choice!r}; valid choices: {', '.join(AUTOCAST_CHOICES)}")
    if choice != "auto":
        return None if choice in (None, "none") else choice
    if resolve_device(device).type != "cpu":
        return None
    speedup = bf16_speedup()
    chosen = "bfloat16" if bf16_pays_off() else None
    log.info("autocast auto: %s (bf16 over float32, the lower of matmul and conv: %s)", chosen or "float32",
             "no native bf16" if speedup is None else f"{speedup:.1f}x")
    return chosen


def autocast(device: torch.device | str, value: str | None):
    """The autocast context for ``value`` ("bfloat16") on ``device``; a no-op for None."""
    dtype = AUTOCAST[value]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def full_precision(device: torch.device | str):
    """Autocast switched off inside a mixed-precision region (the teacher's targets)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)
