"""Block-ranking criteria, order-driven selection, channel pruning and model-vs-model timing."""
import pytest
import torch

from helpers import WEIRD_BLOCKS, tiny_images, tiny_llama, tiny_resnet, token_tiny_set, weird_model
from practise.blocks import count_flops, count_params
from practise.criteria import CRITERIA, RankingInputs, cosine_dissimilarity, rank_blocks
from practise.latency import LatencyConfig, LatencyStats, measure_models
from practise.selection import UnreachableTarget, select_in_order

FAST = LatencyConfig(device="cpu", batch_size=2, warmup=1, repeats=5)


def images(n=16):
    return (tiny_images(n).float() / 255 - 0.5) / 0.25


def test_random_is_seeded_and_latency_orders_by_saving():
    inputs = RankingInputs(WEIRD_BLOCKS, {b: 0.01 * i for i, b in enumerate(WEIRD_BLOCKS)}, seed=3)
    first = rank_blocks("random", inputs)
    assert first == rank_blocks("random", inputs) and sorted(first) == sorted(WEIRD_BLOCKS)
    assert any(rank_blocks("random", RankingInputs(WEIRD_BLOCKS, inputs.latency_reduction, seed=s)) != first
               for s in range(4, 10))
    assert rank_blocks("latency", inputs) == WEIRD_BLOCKS[::-1]


def test_practise_criterion_sorts_by_score_and_needs_scores():
    inputs = RankingInputs(["a", "b", "c"], {"a": 0.1, "b": 0.1, "c": 0.1}, scores={"a": 3.0, "b": 1.0, "c": 2.0})
    assert rank_blocks("practise", inputs) == ["b", "c", "a"]
    with pytest.raises(ValueError, match="needs scores"):
        rank_blocks("practise", RankingInputs(["a"], {"a": 0.1}))
    with pytest.raises(ValueError, match="unknown criterion 'nope'.*random"):
        rank_blocks("nope", inputs)
    assert set(CRITERIA) == {"practise", "random", "latency", "cosine", "last", "sleb", "angular",
                             "practise-iterative"}


def test_cosine_ranks_a_block_with_a_silenced_branch_first():
    model = weird_model()
    with torch.no_grad():  # trunk.3's branch now adds nothing: its output is relu(input) = input (input >= 0)
        model.trunk[3].f[4].weight.zero_()
        model.trunk[3].f[4].bias.zero_()
    dissimilarity = cosine_dissimilarity(model, WEIRD_BLOCKS, images())
    assert dissimilarity["trunk.3"] == pytest.approx(0.0, abs=1e-5)
    assert all(dissimilarity[b] > 1e-4 for b in WEIRD_BLOCKS if b != "trunk.3")
    order = rank_blocks("cosine", RankingInputs(WEIRD_BLOCKS, {}, model=model, images=images()))
    assert order[0] == "trunk.3"
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())


COST_MS = {"a": 1.0, "b": 1.0, "c": 4.0, "d": 4.0}  # latency = 1 ms + the blocks still present


def test_select_in_order_follows_the_order(modelled_latency):
    r_b = {b: c / 11 for b, c in COST_MS.items()}
    selection = select_in_order(weird_model(), (1, 16, 16), ["c", "a", "d", "b"], r_b, 0.4, FAST)
    assert selection.blocks == ["c", "a"] and selection.measured_reduction == pytest.approx(5 / 11)


def test_select_in_order_takes_blocks_off_when_the_prediction_undershoots(modelled_latency):
    r_b = {"c": 0.01, "d": 0.01, "a": 0.5, "b": 0.01}
    selection = select_in_order(weird_model(), (1, 16, 16), ["c", "d", "a", "b"], r_b, 0.4, FAST)
    assert selection.blocks == ["c", "d"] and selection.measured_reduction == pytest.approx(8 / 11)
    assert [t["blocks"] for t in selection.trials] == [["c", "d", "a"], ["c", "d"], ["c"]]


def test_select_in_order_bisects_when_predictions_are_useless(modelled_latency):
    # a noisy per-block table (all savings negative) must not make it drop every block
    r_b = {b: -0.1 for b in COST_MS}
    selection = select_in_order(weird_model(), (1, 16, 16), ["c", "d", "a", "b"], r_b, 0.5, FAST)
    assert selection.blocks == ["c", "d"]
    with pytest.raises(UnreachableTarget, match="gives 90.9% measured"):
        select_in_order(weird_model(), (1, 16, 16), ["c", "d", "a", "b"], r_b, 0.95, FAST)


def test_measure_models_times_distinct_models_with_settings():
    small, big = tiny_resnet("resnet20"), tiny_resnet("resnet56")
    stats, settings = measure_models({"small": small, "big": big}, (1, 16, 16), FAST)
    assert set(stats) == {"small", "big"} and all(s.samples == 5 for s in stats.values())
    assert settings.batch_size == 2 and settings.repeats == 5
    assert next(small.parameters()).device.type == "cpu" and small.training is False


torch_pruning = pytest.importorskip("torch_pruning")


def test_inner_channel_pruning_keeps_the_feature_map_and_cuts_flops():
    from practise.baselines.channel_pruning import prune_channels

    teacher = tiny_resnet("resnet20")
    x = images(4)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    pruned = prune_channels(teacher, x[:1], 0.5, scope="inner")
    assert pruned.layer3(pruned.layer2(pruned.layer1(pruned.relu(pruned.bn1(pruned.conv1(x)))))).shape == (4, 64, 4, 4)
    assert pruned.layer1[0].conv1.out_channels == 8 and pruned.fc.out_features == 10
    assert count_flops(pruned, x[:1])[0] < 0.6 * count_flops(teacher, x[:1])[0]
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # teacher untouched
    everything = prune_channels(teacher, x[:1], 0.5, scope="all")
    assert count_params(everything) < count_params(pruned) and everything(x).shape == (4, 10)
    with pytest.raises(ValueError, match="unknown pruning scope 'some'.*inner, features, all"):
        prune_channels(teacher, x[:1], 0.5, scope="some")
    # 16 -> 12 channels at 25% unrounded; rounding to 8 keeps a multiple of 8
    assert prune_channels(teacher, x[:1], 0.25, scope="inner").layer1[0].conv1.out_channels == 12
    rounded = prune_channels(teacher, x[:1], 0.25, scope="inner", round_to=8)
    assert {m.out_channels % 8 for m in rounded.modules() if isinstance(m, torch.nn.Conv2d)} == {0}
    assert rounded.layer1[0].conv1.out_channels in (8, 16) and rounded(x).shape == (4, 10)
    with pytest.raises(ValueError, match="round_to must be a positive channel count.*got 0"):
        prune_channels(teacher, x[:1], 0.25, round_to=0)


def test_features_scope_prunes_streams_but_keeps_the_feature_map():
    from practise.baselines.channel_pruning import prune_channels
    from practise.features import forward_features

    teacher = tiny_resnet("resnet20")
    x = images(2)
    inner = prune_channels(teacher, x[:1], 0.5, scope="inner")
    pruned = prune_channels(teacher, x[:1], 0.5, scope="features", feature_layer="layer3")
    assert forward_features(pruned, x, "layer3").shape == forward_features(teacher, x, "layer3").shape
    assert pruned.layer2[0].conv2.out_channels == 16 and pruned.layer3[0].conv2.out_channels == 64
    assert count_params(pruned) < count_params(inner)
    with pytest.raises(ValueError, match="needs the feature layer"):
        prune_channels(teacher, x[:1], 0.5, scope="features")


@pytest.mark.slow
def test_prune_to_latency_reports_measured_reduction(monkeypatch):
    import practise.baselines.channel_pruning as cp

    def fake(models, shape, config, progress=None):  # latency proportional to parameters
        return {k: LatencyStats.from_samples([count_params(m) / 1e6]) for k, m in models.items()}, None

    monkeypatch.setattr(cp, "measure_models", fake)
    teacher = tiny_resnet("resnet20")
    result = cp.prune_to_latency(teacher, (1, 16, 16), 0.3, FAST, steps=3)
    assert result.measured_reduction >= 0.3
    assert result.measured_reduction == pytest.approx(1 - result.params / count_params(teacher))
    assert min(t["ratio"] for t in result.trials if t["measured"] >= 0.3) == result.ratio
    scanned = [t["ratio"] for t in result.trials]
    assert scanned[:2] == [0.1, 0.2] and len(scanned) == scanned.index(max(scanned)) + 1 + 3
    with pytest.raises(ValueError, match=r"not reachable by channel pruning \(inner\).*best of ratios 0.1-0.9"):
        cp.prune_to_latency(teacher, (1, 16, 16), 0.99, FAST, steps=1)


def test_prune_to_latency_times_each_distinct_network_once(monkeypatch):
    import practise.baselines.channel_pruning as cp

    draws = iter([0.5, 0.9, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])  # a noisy timer: later draws would all "pass"
    timed = []

    def noisy(models, shape, config, progress=None):
        timed.append(count_params(models["pruned"]))
        return {"full": LatencyStats.from_samples([1.0]), "pruned": LatencyStats.from_samples([next(draws)])}, None

    monkeypatch.setattr(cp, "measure_models", noisy)
    teacher = tiny_resnet("resnet20")
    # with round_to=8 the 16-channel groups can only be 16 or 8: ratios 0.1-0.4 give few distinct networks
    result = cp.prune_to_latency(teacher, (1, 16, 16), 0.3, FAST, steps=3, round_to=8)
    assert len(timed) == len(set(timed)) < len(result.trials)  # no network timed twice
    repeats = [t for t in result.trials if t["same_network_as_earlier_trial"]]
    assert repeats and all(t["measured"] in (0.5, 0.1, 0.8) for t in result.trials)
    first = {}
    for t in result.trials:  # a repeated network keeps its first measurement
        first.setdefault(t["flops_reduction"], t["measured"])
        assert t["measured"] == first[t["flops_reduction"]]


def test_prune_to_latency_scans_past_a_non_monotonic_dip(monkeypatch):
    import practise.baselines.channel_pruning as cp

    def fake(models, shape, config, progress=None):  # faster up to half the channels, slower beyond
        params = count_params(models["pruned"]) / count_params(models["full"])
        return {"full": LatencyStats.from_samples([1.0]),
                "pruned": LatencyStats.from_samples([params if params > 0.3 else 1.0])}, None

    monkeypatch.setattr(cp, "measure_models", fake)
    result = cp.prune_to_latency(tiny_resnet("resnet20"), (1, 16, 16), 0.2, FAST, steps=2, max_ratio=0.9)
    assert 0.1 <= result.ratio <= 0.3 and result.measured_reduction >= 0.2


def test_last_criterion_drops_the_deepest_first_and_cosine_reads_token_layers():
    inputs = RankingInputs(["layers.0", "layers.1", "layers.2"], {"layers.0": 0.1, "layers.1": 0.1, "layers.2": 0.1})
    assert rank_blocks("last", inputs) == ["layers.2", "layers.1", "layers.0"]
    from test_discovery import IDS, Encoder, PreNormLayer

    from practise.criteria import cosine_dissimilarity

    torch.manual_seed(0)
    model = Encoder(PreNormLayer).eval()
    with torch.no_grad():  # keyword-called layers returning tuples: compared per token
        values = cosine_dissimilarity(model, ["layers.0", "layers.1", "layers.2"], IDS.repeat(3, 1))
    assert all(0 < v < 2 for v in values.values()) and len(set(values.values())) == 3


class _Scaled(torch.nn.Module):
    """x + scale * relu(conv(x)): near the identity for a small scale."""

    def __init__(self, scale: float):
        super().__init__()
        self.conv, self.scale = torch.nn.Conv2d(4, 4, 3, padding=1), scale

    def forward(self, x):
        return x + self.scale * torch.relu(self.conv(x))


def test_angular_span_drops_the_most_identity_like_contiguous_span_and_grows_contiguously():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1),
                                *[_Scaled(s) for s in (3.0, 0.01, 0.02, 3.0, 0.5, 3.0)]).eval()
    names = [str(i) for i in range(1, 7)]
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    order = rank_blocks("angular", RankingInputs(names, {n: 0.1 for n in names}, model=model, images=x, num_blocks=2))
    assert order[:2] == ["2", "3"] and sorted(order) == names
    for k in range(1, len(order) + 1):  # every prefix is a contiguous span
        positions = sorted(names.index(n) for n in order[:k])
        assert positions == list(range(positions[0], positions[0] + k))
    by_target = rank_blocks("angular", RankingInputs(names, {n: 0.1 for n in names}, model=model, images=x,
                                                     target_latency=0.15))
    assert by_target[:2] == ["2", "3"]  # 0.15 needs two blocks of 0.1


def test_sleb_removes_greedily_by_calibration_perplexity_re_scoring_after_each_removal():
    pytest.importorskip("transformers")
    import torch.nn.functional as F
    from practise.surgery import drop_blocks

    model = tiny_llama(layers=4, vocab=60, hidden=16)
    data = token_tiny_set(6, 7, vocab=60).tokens
    ids = data[:, 0]
    names = [f"model.model.layers.{i}" for i in range(4)]

    def nll(dropped):
        with torch.no_grad():
            out = drop_blocks(model, dropped)(data).logits[:, :-1]
        return float(F.cross_entropy(out.transpose(1, 2), ids[:, 1:]))

    order = rank_blocks("sleb", RankingInputs(names, {n: 0.1 for n in names}, model=model, images=data,
                                              num_blocks=2))
    first = min(names, key=lambda b: nll([b]))
    second = min((b for b in names if b != first), key=lambda b: nll([first, b]))
    assert order[:2] == [first, second] and sorted(order) == names


@pytest.mark.parametrize("kind", ["llama", "cnn"])
def test_sleb_prefix_skipping_gives_the_full_pass_losses(kind):
    """Each candidate runs only the blocks after it, fed what enters it: the losses (and so the
    greedy order) equal full passes, with padded token batches of several lengths too."""
    from practise.criteria.sleb import _Elimination
    from practise.inputs import batches_by_length, token_mask
    from practise.model_output import logits

    if kind == "llama":
        pytest.importorskip("transformers")
        model = tiny_llama(layers=5, vocab=60, hidden=16)
        data = token_tiny_set(7, 9, vocab=60, pad_every=3, pad_from=4).tokens
        names, causal, reference = [f"model.model.layers.{i}" for i in range(5)], True, None
    else:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1),
                                    *[_Scaled(s) for s in (1.0, 0.3, 0.5, 2.0)]).eval()
        data, names, causal = torch.randn(7, 1, 8, 8), ["1", "2", "3", "4"], False
    batches = batches_by_length(token_mask(model, data), data.shape[0], 3)
    if not causal:
        with torch.no_grad():
            reference = [logits(model, data[rows]) for rows in batches]
    skipping = _Elimination(model, names, data, batches, reference, causal)
    full = _Elimination(model, names, data, batches, reference, causal, skip_prefix=False)
    for removed in ([], [names[1]], [names[0], names[3]]):
        left = [n for n in names if n not in removed]
        fast, slow = skipping.losses(removed, left), full.losses(removed, left)
        assert fast == pytest.approx(slow, rel=1e-4)
    assert skipping.skip and skipping.checked  # the skipping path ran, not the fallback
