"""What a latency backend is: how to make a model (with some blocks dropped) runnable on
a device, and how to wait for the device to finish.

The timing loop (``measure.py``) is the same for every backend: it enters a runnable
(outside the timed region: swapping blocks, binding a session), calls it on the input
between two ``synchronize`` calls, and leaves it. A backend for another runtime
(onnxruntime, TorchScript, a compiled graph) is one file with a :class:`LatencyBackend`
subclass plus one ``register_backend`` line.
"""
from __future__ import annotations

import time
from typing import Any, Callable, ContextManager

import torch
import torch.nn as nn

from ..registry import named
from .config import BACKENDS, LatencyConfig

# entered (outside the timed region) for every pass, so it must be reusable, not a one-shot
# generator context manager; yields the function that is timed on the input
Runnable = ContextManager[Callable[[torch.Tensor], Any]]


class LatencyBackend:
    name = ""

    def prepare(self, model: nn.Module, variants: dict[str, list[str]], sample_shape: tuple[int, ...],
                config: LatencyConfig, device: torch.device) -> dict[str, Runnable]:
        """One runnable per variant (variant name -> blocks of ``model`` to drop), for inputs
        of ``sample_shape`` (without the batch) in ``config``'s dtype, memory format and
        threads. The caller's ``model`` must stay untouched."""
        raise NotImplementedError

    def prepare_models(self, models: dict[str, nn.Module], sample_shape: tuple[int, ...], config: LatencyConfig,
                       device: torch.device) -> dict[str, Runnable]:
        """One runnable per distinct model (e.g. a teacher and a channel-pruned copy)."""
        return {name: self.prepare(m, {name: []}, sample_shape, config, device)[name] for name, m in models.items()}

    def clock(self) -> float:
        """Seconds on a monotonic clock (a test's simulated backend keeps its own time)."""
        return time.perf_counter()

    def synchronize(self, device: torch.device) -> None:
        """Wait until work queued on ``device`` has finished (the timer reads the clock after it)."""
        if device.type == "cuda":
            torch.cuda.synchronize(device)


def register_backend(name: str, backend: LatencyBackend | type[LatencyBackend] | None = None):
    """Make ``backend`` (an instance, or a subclass to instantiate) a valid
    ``LatencyConfig.backend`` value under ``name``. Without ``backend``, a decorator."""
    return BACKENDS.add(name, backend, lambda b: named(b, name))
