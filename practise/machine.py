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


# Environment variables that narrow what the CPU's kernels may use (a slower machine
# emulated on a faster one, say): recorded beside every time measured under them.
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
# bf16 autocast pays only where bf16 runs clearly faster than float32, for matrix products
# and for small convolutions alike (CNN training steps are mostly the latter, and a CPU's bf16
# matmul speed does not promise its conv speed); CPUs that flag AVX512-BF16 but whose kernels
# do not use it (or not for these shapes) gain nothing and lose precision.
BF16_MIN_SPEEDUP = 1.3


def conv_step_ms(bf16: bool, channels: int = 32, side: int = 14, batch: int = 64, repeats: int = 9) -> float:
    """Median ms of a forward + input-gradient pass through two 3x3 convolutions (the shape of a
    small residual branch, channels_last), in float32 or under bf16 autocast."""
    g = torch.Generator().manual_seed(0)
    convs = [torch.randn(channels, channels, 3, 3, generator=g) * 0.1 for _ in range(2)]
    x = torch.randn(batch, channels, side, side, generator=g).to(memory_format=torch.channels_last)
    x.requires_grad_(True)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = torch.nn.functional.conv2d(torch.relu(torch.nn.functional.conv2d(x, convs[0], padding=1)),
                                           convs[1], padding=1)
        y.float().sum().backward()

    step()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e3


def has_fast_bf16() -> bool:
    """The CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask: ``taskset`` or a container's cpuset),
    not the machine's total."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_info() -> dict:
    """CPU model, usable cores, torch threads, and measured fp32 (and bf16, where the CPU has
    AVX512-BF16 or AMX) matrix throughput and bf16's speed-up on a small conv pass; measured
    once per process and thread count (one to two seconds): a torchrun rank scoring on its
    share of the threads and the same process timing on all of them get their own record."""
    return dict(_measured(torch.get_num_threads(), usable_cores()))


@lru_cache(maxsize=4)
def _measured(threads: int, cores: int) -> dict:
    info = {"cpu": cpu_model(), "cores": cores, "torch_threads": threads,
            "torch": torch.__version__, "fp32_gflops": round(matmul_gflops(torch.float32), 1)}
    if cores != os.cpu_count():
        info["machine_cores"] = os.cpu_count()
    if has_fast_bf16():
        info["bf16_gflops"] = round(matmul_gflops(torch.bfloat16), 1)
        info["conv_bf16_speedup"] = round(conv_step_ms(False) / conv_step_ms(True), 2)
    limits = {k: os.environ[k] for k in ISA_LIMITS if os.environ.get(k)}
    if limits:
        info["isa_limits"] = limits
    return info


def bf16_speedup(info: dict | None = None) -> float | None:
    """Measured bf16 over fp32 speed: the smaller of the matrix-product and the small-conv
    ratios (the matmul one alone for records without the conv figure); None where the CPU has
    no native bf16."""
    info = machine_info() if info is None else info
    if "bf16_gflops" not in info:
        return None
    matmul = info["bf16_gflops"] / info["fp32_gflops"]
    return min(matmul, info["conv_bf16_speedup"]) if "conv_bf16_speedup" in info else matmul


def bf16_pays_off(info: dict | None = None) -> bool:
    """bf16 autocast is worth it on this CPU: native bf16 that measures at least
    BF16_MIN_SPEEDUP times float32's speed for matrix products and small convolutions."""
    speedup = bf16_speedup(info)
    return speedup is not None and speedup >= BF16_MIN_SPEEDUP


def describe(info: dict) -> str:
    """'Intel(R) Xeon(R) Processor, 2 cores, 2 torch threads, 110 GFLOP/s fp32 (410 bf16)'."""
    bf16 = f" ({info['bf16_gflops']:.0f} bf16)" if "bf16_gflops" in info else ""
    cores = f"{info['cores']} of {info['machine_cores']} cores" if "machine_cores" in info else f"{info['cores']} cores"
    limits = "".join(f", {k}={v}" for k, v in info.get("isa_limits", {}).items())
    return (f"{info['cpu']}, {cores}, {info['torch_threads']} torch threads, "
            f"{info['fp32_gflops']:.0f} GFLOP/s fp32{bf16} (2048x2048 matmul){limits}")
