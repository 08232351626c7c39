import pytest
import torch
import torch.nn as nn


from practise.device import resolve_device
from practise.latency import FULL, LatencyConfig, LatencyStats, block_latency_reductions, measure_variants, noise_warning
from practise.criteria import RankingInputs
from practise.criteria.practise_score import rank_practise
from practise.selection import Selection, UnreachableTarget, parse_target, select_in_order


class Heavy(nn.Module):
    """A residual block whose cost is set by its width: dropping it saves measurable time."""

    def __init__(self, c: int, repeat: int):
        super().__init__()
        self.body = nn.Sequential(*[nn.Conv2d(c, c, 3, padding=1) for _ in range(repeat)])

    def forward(self, x):
        return x + self.body(x)


def heavy_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 1), Heavy(16, 8), Heavy(16, 1), nn.AdaptiveAvgPool2d(1))


FAST = LatencyConfig(device="cpu", batch_size=4, warmup=2, repeats=15)


def test_variants_are_timed_and_settings_recorded():
    model = heavy_model()
    stats, settings = measure_variants(model, (1, 32, 32), {FULL: [], "no-heavy": ["1"]}, FAST)
    assert set(stats) == {FULL, "no-heavy"} and stats[FULL].samples == FAST.repeats
    assert stats[FULL].q25_ms <= stats[FULL].median_ms <= stats[FULL].q75_ms
    assert settings.batch_size == 4 and settings.input_shape == [4, 1, 32, 32] and settings.repeats == FAST.repeats
    assert settings.torch_version == torch.__version__ and settings.threads >= 1
    # the heavy block holds most of the work: its saving must dominate the light one's
    r_b, _, _ = block_latency_reductions(model, (1, 32, 32), ["1", "2"], FAST)
    assert r_b["1"] > r_b["2"]  # 8 convolutions against 1
    # the caller's model is untouched: blocks restored, still in train mode, no hooks
    assert isinstance(model[1], Heavy) and model.training


def test_stats_and_config_validation():
    s = LatencyStats.from_samples([0.001, 0.002, 0.003, 0.004, 0.100])
    assert s.median_ms == pytest.approx(3.0) and s.max_ms == pytest.approx(100.0)
    with pytest.raises(ValueError, match="'int8'.*float32"):
        LatencyConfig(dtype="int8")
    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")
    assert LatencyConfig(batch_size=None).resolved_batch(torch.device("cpu")) == 8



def test_noisy_timings_are_flagged_in_the_selection_and_report():
    steady_full = LatencyStats.from_samples([0.0100, 0.0101, 0.0100, 0.0102, 0.0100])
    steady_pruned = LatencyStats.from_samples([0.0078, 0.0079, 0.0078, 0.0078, 0.0080])
    noisy_pruned = LatencyStats.from_samples([0.0040, 0.0078, 0.0079, 0.0120, 0.0150])
    assert noise_warning(steady_full, steady_pruned) is None
    warning = noise_warning(steady_full, noisy_pruned)
    assert warning and "uncertain" in warning and "repeats" in warning
    noisy = Selection(["a"], 0.2, 0.22, steady_full, noisy_pruned)
    assert noisy.timing_warning == warning and Selection(["a"], 0.2).timing_warning is None
    assert Selection(["a"], 0.2, 0.22, steady_full, steady_pruned).timing_warning is None

def test_parse_target():
    assert parse_target("22%") == pytest.approx(0.22) and parse_target("0.16") == pytest.approx(0.16)
    for bad in ["120%", "0", "fast"]:
        with pytest.raises(ValueError, match=repr(bad)):
            parse_target(bad)


def practise_order(pairs):
    """The PRACTISE ranking of (block, R_b, r_b) triples and the r_b table, as compress makes them."""
    r_b = {b: r for b, _, r in pairs}
    order = rank_practise(RankingInputs([b for b, _, _ in pairs], r_b, scores={b: rec / r for b, rec, r in pairs}))
    return order, r_b


def test_the_practise_ranking_takes_the_lowest_scores_first():
    order, _ = practise_order([("a", 1.0, 0.1), ("b", 0.1, 0.1), ("c", 0.5, 0.1)])
    assert order[:2] == ["b", "c"]


COST_MS = {"1": 8.0, "2": 1.0}  # a cost model: latency = 1 ms base + the blocks still present


def test_select_by_target_measures_and_stops_when_reached(modelled_latency):
    # the prediction says block "2" alone is enough; the measurement (10%) says no, so "1" is added
    selection = select_in_order(heavy_model(), (1, 32, 32), *practise_order([("2", 0.01, 0.5), ("1", 1.0, 0.5)]),
                                0.5, FAST)
    assert selection.blocks == ["2", "1"] and selection.measured_reduction == pytest.approx(0.9)
    assert [t["blocks"] for t in selection.trials] == [["2"], ["2", "1"]]
    assert selection.trials[0]["measured"] == pytest.approx(0.1)
    # a prediction that falls short keeps adding blocks before measuring; then one block
    # fewer is measured too, in case the prediction undershot
    trials = select_in_order(heavy_model(), (1, 32, 32), *practise_order([("2", 0.01, 0.05), ("1", 1.0, 0.5)]),
                             0.5, FAST).trials
    assert [t["blocks"] for t in trials] == [["2", "1"], ["2"]]


def test_unreachable_target_reports_best_achievable(modelled_latency):
    order, r_b = practise_order([("2", 0.01, 0.01), ("1", 1.0, 0.01)])
    with pytest.raises(UnreachableTarget, match=r"95.0% is not reachable.*gives 90.0% measured"):
        select_in_order(heavy_model(), (1, 32, 32), order, r_b, 0.95, FAST)
