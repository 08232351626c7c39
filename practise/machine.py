"""What machine a time was measured on: the CPU model and its measured matrix throughput.

Machines of one kind differ (the same demo took 5 min 44 s on one and 12 min 6 s on
another), so every reported time carries these figures and times from different machines
can be compared by throughput rather than by name.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from functools import lru_cache
from pathlib import Path

import torch


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n x n matrix product on the CPU with torch's current thread count
    (median of ``repeats`` after one warm-up)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - began)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def has_fast_bf16() -> bool:
    """The CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


@lru_cache(maxsize=1)
def machine_info() -> dict:
    """CPU model, cores, torch threads, and measured fp32 (and bf16, where the CPU has
    AVX512-BF16 or AMX) matrix throughput; measured once per process (about a second)."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "fp32_gflops": round(matmul_gflops(torch.float32), 1)}
    if has_fast_bf16():
        info["bf16_gflops"] = round(matmul_gflops(torch.bfloat16), 1)
    return info


def describe(info: dict) -> str:
    """'Intel(R) Xeon(R) Processor, 2 cores, 2 torch threads, 110 GFLOP/s fp32 (410 bf16)'."""
    bf16 = f" ({info['bf16_gflops']:.0f} bf16)" if "bf16_gflops" in info else ""
    return (f"{info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads, "
            f"{info['fp32_gflops']:.0f} GFLOP/s fp32{bf16} (2048x2048 matmul)")
