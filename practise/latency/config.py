"""How latency is measured: the settings every backend and timing loop reads.

The registry of backends lives here too (filled by ``backend.register_backend``), so
that a config checks its backend's name when built, before any work, without this
module importing the backends.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UsageError
from ..registry import Registry

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
BACKENDS: Registry = Registry("latency backend")  # name -> backend.LatencyBackend
# what a pass costs: the whole input at once (images; a language model's prompt), or one
# generated token of a causal LM with the KV cache at the input's length (text.decode.DecodeStep)
METRICS = ("prefill", "decode")


@dataclass
class LatencyConfig:
    device: str = "auto"
    # None: 64 on a GPU (the paper's 64x3x224x224), 8 on a CPU (a full 64-image batch
    # of a 224 px network takes seconds per pass on a few cores).
    batch_size: int | None = None
    warmup: int = 5              # untimed passes per variant before timing
    repeats: int = 20            # timed passes per variant (interleaved); the minimum when paired
    # Paired estimates (block savings, selections) add repeats in rounds until every
    # saving's 95% interval is at most +-resolution (a fraction of the full model's
    # latency, per block), or max_repeats is reached; the interval is reported either way.
    max_repeats: int | None = None   # None: 10 x repeats
    resolution: float = 0.001
    # ... and stop adding rounds once this many seconds went into one measurement (the first
    # `repeats` always run); the report says which resolution was reached. None: no budget.
    budget_s: float | None = 120.0
    group_identical: bool = True  # blocks of the same class, parameter shapes and input shape share one estimate
    threads: int | None = None   # torch CPU threads; None leaves torch's default
    dtype: str = "float32"
    channels_last: bool = False
    backend: str = "eager"       # a name in practise.latency.BACKENDS
    metric: str = "prefill"      # a name in METRICS

    def __post_init__(self) -> None:
        BACKENDS.get(self.backend)  # an unknown name lists the valid ones
        if self.metric not in METRICS:
            raise UsageError(f"unknown latency metric {self.metric!r}; valid choices: {', '.join(METRICS)}")
        if self.dtype not in DTYPES:
            raise UsageError(f"unknown dtype {self.dtype!r}; valid choices: {', '.join(DTYPES)}")
        if self.repeats < 1 or self.warmup < 0:
            raise UsageError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats} and {self.warmup}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"latency batch size must be at least 1, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be at least 1, got {self.threads}")
        if self.max_repeats is not None and self.max_repeats < self.repeats:
            raise UsageError(f"max_repeats ({self.max_repeats}) must be at least repeats ({self.repeats})")
        if self.budget_s is not None and not self.budget_s > 0:
            raise UsageError(f"the latency time budget must be positive seconds (or None), got {self.budget_s}")
        if not 0 < self.resolution < 1:
            raise UsageError(f"latency resolution must be a fraction between 0 and 1, got {self.resolution}")

    @property
    def resolved_max_repeats(self) -> int:
        return self.max_repeats if self.max_repeats is not None else 10 * self.repeats

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def resolved_batch(self, device: torch.device) -> int:
        if self.batch_size is not None:
            return self.batch_size
        return 64 if device.type == "cuda" else 8
