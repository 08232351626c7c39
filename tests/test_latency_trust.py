"""Latency estimates that rank blocks the same way twice, under a simulated noisy clock.

The simulated backend makes every pass take its true cost (a base plus the cost of each
block still present) times a slow drift and a few percent of per-pass noise, with rare
spikes: the conditions measured on these shared machines,
where one pass's noise is as large as one block's cost. No real time is spent timing.
"""
import math
import random
from contextlib import contextmanager

import pytest
import torch
from scipy.stats import spearmanr

from helpers import tiny_resnet
from practise.blocks import find_blocks
from practise.latency import (BACKENDS, FULL, LatencyBackend, LatencyConfig, block_latency_reductions, measure_variants,
                              reduction, register_backend, structural_groups)
from practise.selection import select_in_order

SHAPE = (1, 16, 16)
BASE_MS = 30.0
# resnet20's candidates in three structurally identical groups; per-block true costs (ms)
STAGE_COST_MS = {"layer1": 1.2, "layer2": 1.0, "layer3": 0.75}
# recoverability R_b: PRACTISE scores R_b / r_b about 25% apart, so only latency noise can reorder them
RECOVERABILITY = {"layer1.0": 0.35, "layer1.1": 0.17, "layer1.2": 0.10, "layer2.1": 0.11, "layer2.2": 0.24,
                  "layer3.1": 0.05, "layer3.2": 0.14}


class NoisyClockBackend(LatencyBackend):
    """Eager-free simulation: a pass advances a private clock by its noisy true cost."""

    name = "noisy-clock"

    def __init__(self, seed: int, noise: float = 0.035):  # per-pass IQR 4-6%, as measured here
        self.rng, self.noise, self.now, self.passes = random.Random(seed), noise, 0.0, 0
        self.drift_phase = self.rng.uniform(0, 2 * math.pi)

    def cost_ms(self, dropped: set[str]) -> float:
        return BASE_MS + sum(STAGE_COST_MS[b.split(".")[0]] for b in RECOVERABILITY if b not in dropped)

    def prepare(self, model, variants, sample_shape, config, device):
        return {name: SimulatedVariant(self, set(blocks)) for name, blocks in variants.items()}

    def run(self, dropped: set[str]) -> None:
        self.passes += 1
        drift = 1 + 0.08 * math.sin(self.passes / 150 + self.drift_phase)  # load that comes and goes
        spike = 1.5 if self.rng.random() < 0.02 else 1.0                 # another process wakes up
        self.now += self.cost_ms(dropped) / 1000 * drift * spike * (1 + self.rng.gauss(0, self.noise))

    def clock(self) -> float:
        return self.now

    def synchronize(self, device) -> None:
        pass


class SimulatedVariant:
    """A runnable: entered for every pass, like the eager backend's block swaps."""

    def __init__(self, backend: NoisyClockBackend, dropped: set[str]):
        self.backend, self.dropped = backend, dropped

    def __enter__(self):
        return lambda x: self.backend.run(self.dropped)

    def __exit__(self, *exc):
        return None


@contextmanager
def noisy_clock(seed: int):
    backend = NoisyClockBackend(seed)
    register_backend(backend.name, backend)
    try:
        yield backend
    finally:
        BACKENDS.unregister(backend.name)


def candidates(model) -> list[str]:
    names = [b.name for b in find_blocks(model, torch.zeros(1, *SHAPE))]
    assert names == list(RECOVERABILITY)
    return names


def config() -> LatencyConfig:  # made while the simulated backend is registered
    return LatencyConfig(backend="noisy-clock", device="cpu", warmup=2, repeats=20)


def test_identical_blocks_form_groups():
    model = tiny_resnet()
    groups = structural_groups(model, candidates(model), SHAPE)
    assert groups == {"layer1.0": ["layer1.0", "layer1.1", "layer1.2"], "layer2.1": ["layer2.1", "layer2.2"],
                      "layer3.1": ["layer3.1", "layer3.2"]}


def test_two_runs_rank_blocks_alike_and_estimates_are_close_to_the_truth():
    model = tiny_resnet()
    names = candidates(model)
    true_total = NoisyClockBackend(0).cost_ms(set())
    rhos = []
    for seeds in ((1, 2), (3, 4), (5, 6)):
        runs = []
        for seed in seeds:
            with noisy_clock(seed):
                r_b, details, settings = block_latency_reductions(model, SHAPE, names, config())
            runs.append([r_b[b] for b in names])
            assert settings.paired and settings.repeats >= 20
            for b in names:
                truth = STAGE_COST_MS[b.split(".")[0]] / true_total
                assert details[b].low - 0.002 <= truth <= details[b].high + 0.002, b
                assert r_b[b] == pytest.approx(truth, abs=0.005), b
        rhos.append(spearmanr(*runs).statistic)
    assert min(rhos) >= 0.9, rhos


def test_unpaired_single_block_medians_do_not_rank_reliably():
    """The estimator this replaced (each block alone, medians of separate passes) under the same
    noise: the test above would fail with it, so the test can tell the two apart."""
    model = tiny_resnet()
    names = candidates(model)
    rhos = []
    for seeds in ((1, 2), (3, 4), (5, 6)):
        runs = []
        for seed in seeds:
            with noisy_clock(seed):
                stats, _ = measure_variants(model, SHAPE, {FULL: [], **{b: [b] for b in names}}, config())
            runs.append([reduction(stats[FULL], stats[b]) for b in names])
        rhos.append(spearmanr(*runs).statistic)
    assert min(rhos) < 0.9


def test_the_same_seed_gives_the_same_blocks_in_nine_of_ten_noisy_runs():
    model = tiny_resnet()
    names = candidates(model)
    chosen, errors = [], []
    for seed in range(10):
        with noisy_clock(100 + seed) as backend:
            r_b, _, _ = block_latency_reductions(model, SHAPE, names, config())
            order = sorted(names, key=lambda b: (RECOVERABILITY[b] / r_b[b], b))  # the PRACTISE score
            selection = select_in_order(model, SHAPE, order, r_b, 0.095, config())
            true = 1 - backend.cost_ms(set(selection.blocks)) / backend.cost_ms(set())
        chosen.append(tuple(selection.blocks))
        errors.append(abs(selection.predicted_reduction - true))
    most = max(set(chosen), key=chosen.count)
    assert chosen.count(most) >= 9, chosen
    assert max(errors) < 0.02  # the summed r_b predicts the true reduction within 2 points


def test_blocks_with_equal_shapes_but_other_settings_are_not_grouped():
    class Dilated(torch.nn.Module):
        def __init__(self, dilation):
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 4, 3, padding=dilation, dilation=dilation)

        def forward(self, x):
            return x + self.conv(x)

    model = torch.nn.Sequential(Dilated(1), Dilated(1), Dilated(2))  # same weight shapes, other dilation
    assert structural_groups(model, ["0", "1", "2"], (4, 8, 8)) == {"0": ["0", "1"], "2": ["2"]}


def test_a_time_budget_stops_the_paired_repeats_on_time_and_says_so(caplog):
    """A slow clock: every repeat of the table costs about 0.23 simulated seconds. Aiming at an
    unreachable resolution, the measurement stops once the budget is spent, not at max_repeats."""
    model = tiny_resnet()
    names = candidates(model)
    with noisy_clock(1) as backend:
        tight = LatencyConfig(backend="noisy-clock", device="cpu", warmup=2, repeats=20, max_repeats=1000,
                              resolution=1e-6, budget_s=5.0)
        with caplog.at_level("WARNING"):
            _, _, settings = block_latency_reductions(model, SHAPE, names, tight)
        spent = backend.clock()
    assert settings.stopped_by == "time budget" and settings.repeats == 30  # 20, then one round of 10 past 5 s
    assert settings.reached > 1e-6 and spent < 10 and "time budget of 5 s spent" in caplog.text
    with noisy_clock(1):
        free = LatencyConfig(backend="noisy-clock", device="cpu", warmup=2, repeats=20, max_repeats=60,
                             resolution=1e-6, budget_s=None)
        _, _, settings = block_latency_reductions(model, SHAPE, names, free)
    assert settings.stopped_by == "max_repeats" and settings.repeats == 60
    assert settings.as_dict()["stopped_by"] == "max_repeats"


def test_a_selection_measurement_stops_once_its_interval_clears_the_target():
    """A selection only needs to know which side of the target it lies on: a target far below
    the saving is decided after the minimum repeats; without a target, rounds continue."""
    from practise.latency import measure_saving

    model = tiny_resnet()
    names = candidates(model)
    with noisy_clock(1):
        config = LatencyConfig(backend="noisy-clock", device="cpu", warmup=1, repeats=20, max_repeats=40,
                               resolution=1e-6, budget_s=None)
        _, decided = measure_saving(model, SHAPE, names[:2], config, target=-0.5)
        _, undecided = measure_saving(model, SHAPE, names[:2], config)
    assert decided.stopped_by == "decided" and decided.repeats == 20
    assert undecided.stopped_by == "max_repeats" and undecided.repeats == 40
