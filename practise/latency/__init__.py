"""Latency measured on the user's device, honestly (see ``measure.py``), by a pluggable
backend: eager PyTorch built in; a new runtime is one file plus one ``register_backend``
line below."""
from .backend import BACKENDS, LatencyBackend, Runnable, register_backend
from .eager import EagerBackend
from .onnxruntime_backend import OnnxRuntimeBackend
from .config import DTYPES, LatencyConfig
from .measure import (FULL, LatencySettings, LatencyStats, measure_models, measure_variants,
                      noise_warning, reduction)
from .savings import (BlockLatency, Saving, block_latency_reductions, interval_warning, measure_saving, paired_savings,
                      structural_groups)

register_backend("eager", EagerBackend())
register_backend("onnxruntime", OnnxRuntimeBackend())  # needs onnxruntime installed when used

__all__ = ["BACKENDS", "LatencyBackend", "Runnable", "register_backend", "EagerBackend", "OnnxRuntimeBackend", "DTYPES", "FULL",
           "LatencyConfig", "LatencySettings", "LatencyStats", "block_latency_reductions", "measure_models",
           "measure_variants", "noise_warning", "reduction", "BlockLatency", "Saving", "interval_warning",
           "measure_saving", "paired_savings", "structural_groups"]
