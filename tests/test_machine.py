"""What a reported time carries (the machine's cores, throughput, ISA limits) and how
``--score-autocast auto`` decides: by measured bf16 speed, not by CPU flags alone."""
import logging
import os

import pytest
import torch

from practise import machine
from practise.precision import resolve_autocast

XEON = {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2, "torch_threads": 2, "torch": "2.13.0",
        "fp32_gflops": 369.0, "bf16_gflops": 2506.0}


@pytest.mark.parametrize("bf16, expected", [(2506.0, True), (410.0, True), (164.0, False), (104.0, False),
                                            (None, False)])
def test_bf16_pays_off_only_when_measured_clearly_faster(bf16, expected):
    info = dict(XEON, fp32_gflops=110.0 if bf16 == 410.0 else XEON["fp32_gflops"])
    if bf16 is None:
        del info["bf16_gflops"]
    else:
        info["bf16_gflops"] = bf16
    assert machine.bf16_pays_off(info) is expected


@pytest.mark.parametrize("conv, expected", [(2.4, True), (1.1, False), (0.7, False)])
def test_fast_bf16_matmul_alone_is_not_enough_when_convolutions_measure_slow(conv, expected):
    epyc_like = dict(XEON, fp32_gflops=110.0, bf16_gflops=410.0, conv_bf16_speedup=conv)
    assert machine.bf16_pays_off(epyc_like) is expected
    assert machine.bf16_speedup(epyc_like) == pytest.approx(min(410 / 110, conv))


@pytest.mark.parametrize("bf16", [False, True])
def test_conv_probe_times_the_work_it_is_given(bf16):
    small = machine.conv_step_ms(bf16, channels=16, side=8, batch=1, repeats=5)
    large = machine.conv_step_ms(bf16, channels=16, side=8, batch=128, repeats=5)
    assert 0 < small < large  # 128x the arithmetic takes longer, in either precision


def test_machine_record_follows_the_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = machine.machine_info()
        assert one["torch_threads"] == 1
        torch.set_num_threads(2)
        assert machine.machine_info()["torch_threads"] == 2  # not the cached 1-thread record
    finally:
        torch.set_num_threads(threads)


def test_auto_autocast_follows_the_measurement(monkeypatch, caplog):
    slow_bf16 = dict(XEON, bf16_gflops=194.0, fp32_gflops=316.0)  # flags say bf16, kernels don't use it
    monkeypatch.setattr(machine, "machine_info", lambda: slow_bf16)
    with caplog.at_level(logging.INFO, logger="practise"):
        assert resolve_autocast("auto", "cpu") is None
    assert "0.6x" in caplog.text
    monkeypatch.setattr(machine, "machine_info", lambda: XEON)
    assert resolve_autocast("auto", "cpu") == "bfloat16"
    assert resolve_autocast("none", "cpu") is None
    assert resolve_autocast("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(ValueError, match="valid choices: auto, none, bfloat16"):
        resolve_autocast("fp8", "cpu")


def test_description_names_usable_cores_and_isa_limits():
    info = dict(XEON, cores=1, machine_cores=2, isa_limits={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"})
    text = machine.describe(info)
    assert "1 of 2 cores" in text and "ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16" in text
    assert machine.describe(XEON).startswith("Intel(R) Xeon(R) Processor, 2 cores, 2 torch threads, 369 GFLOP/s")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no affinity mask on this OS")
def test_usable_cores_is_the_affinity_mask():
    assert machine.usable_cores() == len(os.sched_getaffinity(0)) <= os.cpu_count()
