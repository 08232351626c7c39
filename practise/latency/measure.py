"""Latency measured on the user's device, honestly.

Variants of one model (the full network, and the network with some blocks dropped)
are timed *interleaved*: every repeat runs each variant once, in a rotated order, so
drifts in machine load hit all variants alike. How a variant is made runnable is the
backend's business (``LatencyConfig.backend``; eager PyTorch swaps blocks for
their stand-ins on one private copy); ``measure_models`` times distinct models, e.g.
channel-pruned ones, the same way. Medians and the interquartile range are reported
with every setting that affects the numbers.
"""
from __future__ import annotations

import logging
import platform
import statistics
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from ..device import resolve_device
from ..inputs import example_input
from ..machine import cpu_model
from ..progress import Progress, silent
from ..tracing import check_module_name
from .backend import BACKENDS, LatencyBackend, Runnable
from .config import DTYPES, LatencyConfig

log = logging.getLogger(__name__)


@dataclass
class LatencyStats:
    median_ms: float
    q25_ms: float
    q75_ms: float
    min_ms: float
    max_ms: float
    samples: int

    @classmethod
    def from_samples(cls, seconds: list[float]) -> "LatencyStats":
        ms = sorted(s * 1000 for s in seconds)
        quart = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
        return cls(statistics.median(ms), quart[0], quart[2], ms[0], ms[-1], len(ms))

    @property
    def iqr_ms(self) -> float:
        return self.q75_ms - self.q25_ms


@dataclass
class LatencySettings:
    device: str
    device_name: str
    threads: int
    batch_size: int
    input_shape: list[int]
    dtype: str
    channels_last: bool
    warmup: int
    repeats: int
    torch_version: str = field(default_factory=lambda: torch.__version__)
    backend: str = "eager"
    metric: str = "prefill"          # "decode": one generated token with the KV cache at the input's length
    paired: bool = False             # savings from per-repeat differences against the full model
    resolution: float | None = None  # the interval half-width aimed at (paired only)
    stopped_by: str | None = None    # paired: "resolution", "max_repeats" or "time budget"
    reached: float | None = None     # paired: the widest interval half-width per block when it stopped

    def as_dict(self) -> dict:
        record = asdict(self)
        for key in ("stopped_by", "reached"):  # absent from timings that do not add rounds
            if record[key] is None:
                del record[key]
        return record


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({platform.system()})"


def time_once(runnable: Runnable, x: torch.Tensor, backend: LatencyBackend, device: torch.device) -> float:
    """One timed pass: entering the runnable (block swaps, bindings) stays outside the clock."""
    with runnable as run:
        backend.synchronize(device)
        began = backend.clock()
        run(x)
        backend.synchronize(device)
        return backend.clock() - began


class TimingSession:
    """Threads set, the input made and the backend chosen for one measurement; restores
    torch's thread count when it ends."""

    def __init__(self, sample_shape: tuple[int, ...], config: LatencyConfig, device: torch.device,
                 model: nn.Module | None = None):
        self.config, self.device, self.sample_shape = config, device, sample_shape
        self.model = model  # says what kind of input it takes (inputs.py); None: an image tensor
        self.backend = BACKENDS.get(config.backend)
        self.batch = config.resolved_batch(device)

    def __enter__(self) -> "TimingSession":
        self.previous_threads = torch.get_num_threads()
        if self.config.threads is not None:
            torch.set_num_threads(self.config.threads)
        self.x = example_input(self.model or nn.Module(), self.sample_shape, self.batch, self.device, random=True,
                               dtype=DTYPES[self.config.dtype])
        if self.x.is_floating_point():
            self.x = self.x.contiguous(memory_format=_memory_format(self.config, self.sample_shape))
        self._inference = torch.inference_mode()
        self._inference.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._inference.__exit__(*exc)
        self.threads = self.config.threads or torch.get_num_threads()
        torch.set_num_threads(self.previous_threads)

    def timed(self, runnable: Runnable) -> float:
        return time_once(runnable, self.x, self.backend, self.device)

    def settings(self, repeats: int, paired: bool = False, stopped_by: str | None = None,
                 reached: float | None = None) -> LatencySettings:
        c = self.config
        return LatencySettings(str(self.device), _device_name(self.device), self.threads, self.batch,
                               [self.batch, *self.sample_shape], c.dtype, c.channels_last, c.warmup, repeats,
                               backend=c.backend, metric=c.metric, paired=paired, resolution=c.resolution if paired else None,
                               stopped_by=stopped_by, reached=reached)


def _timed_interleaved(runners: dict[str, Runnable], sample_shape: tuple[int, ...], config: LatencyConfig,
                       device: torch.device, progress: Progress, model: nn.Module | None = None
                       ) -> tuple[dict[str, LatencyStats], LatencySettings]:
    """Every repeat runs each variant once, in a rotated order; medians per variant."""
    names = list(runners)
    samples: dict[str, list[float]] = {n: [] for n in names}
    progress.start("latency", (config.warmup + config.repeats) * len(names))
    try:
        with TimingSession(sample_shape, config, device, model) as session:
            for _ in range(config.warmup):
                for name in names:
                    session.timed(runners[name])
                    progress.advance(1)
            for rep in range(config.repeats):
                shift = rep % len(names)  # rotate the order so no variant always runs first
                for name in names[shift:] + names[:shift]:
                    samples[name].append(session.timed(runners[name]))
                    progress.advance(1)
    finally:
        progress.end()
    return {n: LatencyStats.from_samples(s) for n, s in samples.items()}, session.settings(config.repeats)


def _memory_format(config: LatencyConfig, sample_shape: tuple[int, ...]) -> torch.memory_format:
    """channels_last applies to image inputs (C, H, W) only."""
    return torch.channels_last if config.channels_last and len(sample_shape) == 3 else torch.contiguous_format


def measure_variants(model: nn.Module, sample_shape: tuple[int, ...], variants: dict[str, list[str]],
                     config: LatencyConfig, progress: Progress = silent) -> tuple[dict[str, LatencyStats], LatencySettings]:
    """Time each variant (name -> blocks to drop) interleaved; the caller's model is untouched.

    ``sample_shape`` is one input without the batch dimension, e.g. (3, 224, 224).
    """
    for blocks in variants.values():
        for name in blocks:
            check_module_name(model, name, "block")
    device = resolve_device(config.device)
    runners = BACKENDS.get(config.backend).prepare(model, variants, sample_shape, config, device)
    return _timed_interleaved(runners, sample_shape, config, device, progress, model)


def measure_models(models: dict[str, nn.Module], sample_shape: tuple[int, ...], config: LatencyConfig,
                   progress: Progress = silent) -> tuple[dict[str, LatencyStats], LatencySettings]:
    """Time distinct models (e.g. a teacher and a channel-pruned copy) interleaved, on private copies."""
    device = resolve_device(config.device)
    runners = BACKENDS.get(config.backend).prepare_models(models, sample_shape, config, device)
    return _timed_interleaved(runners, sample_shape, config, device, progress, next(iter(models.values()), None))


def reduction(full: LatencyStats, pruned: LatencyStats) -> float:
    """Fractional latency reduction from medians: (lat_full - lat_pruned) / lat_full."""
    return (full.median_ms - pruned.median_ms) / full.median_ms


def noise_warning(full: LatencyStats, pruned: LatencyStats) -> str | None:
    """A warning when the timings spread as much as the saving they are meant to show.

    On a busy machine the medians can move by more than a dropped block saves; a
    reduction whose saving is under twice the larger interquartile range is not to be
    trusted (the threshold is a judgement call: it flags the runs where noise could turn
    the reported percentage into a different one, not mild jitter).
    """
    saving = full.median_ms - pruned.median_ms
    spread = max(full.iqr_ms, pruned.iqr_ms)
    if abs(saving) >= 2 * spread:
        return None
    return (f"latency timings are noisy: the measured saving ({saving:.3f} ms) is under twice their "
            f"interquartile range ({spread:.3f} ms), so the measured reduction is uncertain; "
            "measure on a quiet machine or raise the repeats")


FULL = "<full model>"  # variant name; angle brackets cannot clash with a module path
