import copy
import json
import math

import pytest
import torch

from helpers import tiny_llama, tiny_resnet, tiny_set, token_tiny_set, weird_model
from practise.scoring import Scorer, ScoringConfig, practise_score, score_blocks
from practise.tracing import feature_chain, find_feature_layer, trace_model


def make_scorer(model, shape=(1, 16, 16), **config):
    x = torch.zeros(1, *shape)
    trace = trace_model(model, x)
    layer = find_feature_layer(model, trace)
    return Scorer(model, tiny_set(48), trace, feature_chain(model, trace, layer, x), layer,
                  ScoringConfig(**{"iterations": 15, "batch_size": 16, **config}))


def test_training_adaptors_lowers_feature_mse_and_leaves_teacher_alone():
    teacher = tiny_resnet()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    after, start, protocol = make_scorer(teacher).recoverability("layer2.1")
    assert protocol == "cached" and 0 < after < start
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_cached_prefix_gives_the_same_loss_as_full_passes():
    teacher = tiny_resnet()
    cached = make_scorer(teacher, iterations=1, lr=0.0).recoverability("layer3.1")
    full = make_scorer(teacher, iterations=1, lr=0.0, protocol="paper").recoverability("layer3.1")
    assert cached[2] == "cached" and full[2] == "paper"
    assert cached[1] == pytest.approx(full[1], rel=1e-5) and cached[0] == pytest.approx(full[0], rel=1e-5)


def test_custom_model_without_chain_falls_back_to_full_passes():
    after, start, protocol = make_scorer(weird_model()).recoverability("trunk.1")
    assert protocol == "cached-full" and after < start


def test_same_seed_same_scores_other_seed_differs():
    teacher = tiny_resnet()
    a = make_scorer(teacher, seed=3).recoverability("layer1.1")
    b = make_scorer(teacher, seed=3).recoverability("layer1.1")
    c = make_scorer(teacher, seed=4).recoverability("layer1.1")
    assert a == b and a[0] != c[0]


def test_scores_resume_without_recomputing(tmp_path, monkeypatch):
    teacher = tiny_resnet()
    r_b = {"layer1.1": 0.1, "layer2.1": 0.2, "layer3.1": 0.0}
    first = score_blocks(make_scorer(teacher), list(r_b), r_b, tmp_path / "scores.json")
    assert set(json.loads((tmp_path / "scores.json").read_text())["blocks"]) == set(r_b)
    scorer = make_scorer(teacher)
    monkeypatch.setattr(scorer, "recoverability", lambda *a, **k: pytest.fail("recomputed a finished block"))
    again = score_blocks(scorer, list(r_b), r_b, tmp_path / "scores.json")
    assert [s.block for s in again] == [s.block for s in first]
    # a block with no measured saving is never preferred
    assert again[-1].block == "layer3.1" and math.isinf(again[-1].score)
    # other settings: the cache is ignored and blocks are scored again
    calls = []
    other = make_scorer(teacher, iterations=2)
    real = other.recoverability
    monkeypatch.setattr(other, "recoverability", lambda b, p=None: calls.append(b) or real(b))
    score_blocks(other, ["layer1.1"], r_b, tmp_path / "scores.json")
    assert calls == ["layer1.1"]


def test_score_is_recoverability_over_latency_reduction():
    assert practise_score(0.5, 0.25) == 2.0 and math.isinf(practise_score(0.5, -0.01))


def test_bad_protocol_is_named():
    with pytest.raises(ValueError, match="'fast'.*cached, paper"):
        ScoringConfig(protocol="fast")


def test_in_place_first_layer_does_not_corrupt_cached_inputs():
    import torch.nn as nn

    from helpers import calibrate_bn_, tiny_images
    from practise.models.resnet import BasicBlock

    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(1, 8, 3, padding=1), BasicBlock(8, 8), BasicBlock(8, 8))
    model = calibrate_bn_(model, (tiny_images(32).float() / 255 - 0.5) / 0.25)
    scorer = make_scorer(model, iterations=3)
    scorer.recoverability("2")
    tiny = scorer.tiny_set
    expected = torch.stack([tiny.transforms.evaluate(im) for im in tiny.images])
    assert (expected < 0).any() and torch.equal(scorer.eval_images, expected)


def test_bf16_autocast_scores_close_to_float32_and_is_part_of_the_cache_key():
    from practise.scoring import scoring_fingerprint

    teacher = tiny_resnet()
    fp32 = make_scorer(teacher, iterations=10).recoverability("layer2.1")
    bf16 = make_scorer(teacher, iterations=10, autocast="bfloat16").recoverability("layer2.1")
    assert bf16[1] == fp32[1]  # the MSE before training is measured in float32 either way
    assert bf16[0] == pytest.approx(fp32[0], rel=0.05) and bf16[0] < bf16[1]
    tiny = tiny_set(48)
    plain = scoring_fingerprint(teacher, tiny, ScoringConfig(), "layer3")
    assert scoring_fingerprint(teacher, tiny, ScoringConfig(autocast="bfloat16"), "layer3") != plain
    with pytest.raises(ValueError, match="unknown autocast 'int8'; valid choices: None, bfloat16"):
        ScoringConfig(autocast="int8")


def test_fingerprint_ignores_thread_count_and_sees_any_weight_change(monkeypatch):
    import practise.score_cache as score_cache
    import practise.scoring as scoring

    teacher = tiny_resnet()
    teacher.register_buffer("big", torch.randn(300_000, generator=torch.Generator().manual_seed(0)))
    tiny, config = tiny_set(48), ScoringConfig()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = scoring.scoring_fingerprint(teacher, tiny, config, "layer3")
        torch.set_num_threads(max(2, threads))
        assert scoring.scoring_fingerprint(teacher, tiny, config, "layer3") == one
    finally:
        torch.set_num_threads(threads)
    # a large tensor is sampled, but its exact word sum still notices one changed element
    monkeypatch.setattr(score_cache, "_WHOLE_BYTES", 1 << 16)
    sampled = scoring.scoring_fingerprint(teacher, tiny, config, "layer3")
    with torch.no_grad():
        teacher.big[123_457] += 1e-3
    assert scoring.scoring_fingerprint(teacher, tiny, config, "layer3") != sampled


def test_a_cache_resumes_as_typed_records_and_is_ignored_for_other_settings(tmp_path):
    from practise.score_cache import ScoreRecord, load_score_cache
    from practise.scoring import recoverabilities, scoring_fingerprint

    scorer = make_scorer(tiny_resnet(), iterations=2)
    cache = tmp_path / "scores.json"
    key = scoring_fingerprint(scorer.teacher, scorer.tiny_set, scorer.config, scorer.feature_layer)
    old = {"recoverability": 0.5, "mse_before": 1.0, "protocol": "cached", "seconds": 1.0}
    cache.write_text(json.dumps({"fingerprint": key, "blocks": {"layer2.1": old}}))
    done = recoverabilities(scorer, ["layer2.1", "layer3.1"], cache)
    assert done["layer2.1"] == ScoreRecord(0.5, 1.0, "cached", 1.0)  # read, not rescored
    assert isinstance(done["layer3.1"], ScoreRecord) and done["layer3.1"].device == "cpu"
    assert set(load_score_cache(cache, key)) == {"layer2.1", "layer3.1"}
    assert load_score_cache(cache, "something else") == {}
    cache.write_text(json.dumps({"fingerprint": key, "blocks": {"layer2.1": {**old, "seconds": "soon"}}}))
    assert load_score_cache(cache, key) == {}  # a malformed record: rescored, never trusted


class LinearUnit(torch.nn.Module):
    """x + conv1x1(x), no bias: exactly linear in its input, per pixel."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 1, bias=False)

    def forward(self, x):
        return x + self.conv(x)


class ScaledUnit(torch.nn.Module):
    """x + scale * relu(conv(x)): near the identity for a small scale, far from linear for a large one."""

    def __init__(self, c: int, scale: float):
        super().__init__()
        self.conv, self.scale = torch.nn.Conv2d(c, c, 3, padding=1), scale

    def forward(self, x):
        return x + self.scale * torch.relu(self.conv(x))


def closed_form_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), LinearUnit(8), ScaledUnit(8, 0.01),
                               ScaledUnit(8, 3.0), torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()


def test_closed_form_recovers_an_exactly_linear_block_and_ranks_near_identity_before_nonlinear():
    scorer = make_scorer(closed_form_model(), protocol="closed-form", closed_form_before=True)
    linear, linear_before, protocol = scorer.recoverability("1")
    near_identity, _, _ = scorer.recoverability("2")
    nonlinear, nonlinear_before, _ = scorer.recoverability("3")
    assert protocol == "closed-form"
    assert linear < 1e-4 * linear_before  # the linear map reproduces the block: nothing left to recover
    assert near_identity < nonlinear and nonlinear < nonlinear_before


def test_closed_form_scores_token_models_over_real_tokens_only():
    pytest.importorskip("transformers")
    model = tiny_llama(layers=3)
    tiny = token_tiny_set(12, 9, pad_every=2, pad_from=6)
    mask = tiny.tokens[:, 1]
    trace = trace_model(model, tiny.tokens[:1])
    layer = find_feature_layer(model, trace)
    scorer = Scorer(model, tiny, trace, None, layer, ScoringConfig(protocol="closed-form", iterations=1,
                                                                  closed_form_before=True, linear_map="in-place"))
    scores = {b: scorer.recoverability(b)[:2] for b in trace.candidates()}
    assert len(scores) == 3 and all(0 <= after < before for after, before in scores.values())
    folded = Scorer(model, tiny, trace, None, layer, ScoringConfig(protocol="closed-form", iterations=1,
                                                                  closed_form_before=True))  # auto: folded
    first, *rest = [folded.recoverability(b)[:2] for b in trace.candidates()]
    assert first[0] == first[1]  # no layer before the first to fold a patch into: dropped outright
    assert all(0 <= after < before for after, before in rest)
    stats = scorer._teacher_pass.statistics
    assert all(count == int(mask.sum()) for name, count in stats.count.items() if name in scores)


@pytest.mark.parametrize("linear_map,fit_scale", [("in-place", "global"), ("folded", "global"), ("folded", "token")])
def test_closed_form_on_a_decoder_runs_only_the_layers_after_the_candidate_and_gives_the_full_pass_value(
        linear_map, fit_scale):
    """Prefix skipping (the layers before the candidate pass through, its input comes from the
    teacher pass) must give the R_b of the definition: the whole model run with the block
    replaced by its fitted map (in place), or dropped with the map folded into the previous
    layer's MLP output projection (folded), on the evaluated examples."""
    pytest.importorskip("transformers")
    from practise.call_structure import removal_for
    from practise.closed_form import LinearStandIn, patch_key
    from practise.features import feature_error, forward_features
    from practise.linear_patch import fold_
    from practise.surgery import drop_module_, replace_module_

    model = tiny_llama(layers=4)
    tiny = token_tiny_set(10, 8, pad_every=3, pad_from=5, seed=1)
    mask = tiny.tokens[:, 1]
    trace = trace_model(model, tiny.tokens[:1])
    layer = find_feature_layer(model, trace)
    config = ScoringConfig(protocol="closed-form", iterations=1, eval_examples=6, eval_batch_size=4,
                           linear_map=linear_map, fit_scale=fit_scale)
    scorer = Scorer(model, tiny, trace, None, layer, config)
    per_channel = fit_scale == "token"
    calls = []
    for name in trace.candidates():
        model.get_submodule(name).register_forward_pre_hook(lambda m, a, n=name: calls.append(n))
    layers = trace.candidates()
    block = layers[2]
    scorer.recoverability(layers[3])  # the teacher pass is made once, here
    calls.clear()
    after, before, _ = scorer.recoverability(block)
    reference = copy.deepcopy(model)
    stats = scorer._teacher_pass.statistics
    if linear_map == "in-place":
        assert before is None and set(calls) == {layers[3]}  # the layers before the block were skipped
        weight = stats.fit(block, True, config.ridge, per_channel)
        replace_module_(reference, block, LinearStandIn(weight, removal_for(model, block).structure))
    else:
        assert before is None and set(calls) == {layers[1], layers[3]}  # from the layer the patch is folded into
        drop_module_(reference, block)
        fold_(reference.get_submodule(f"{layers[1]}.mlp.down_proj"),
              stats.fit(patch_key(block), True, config.ridge, per_channel))
    with torch.no_grad():
        out = forward_features(reference, tiny.tokens[:6], layer)
        target = forward_features(model, tiny.tokens[:6], layer)
    error, count = feature_error(out, target, mask[:6])
    assert after == pytest.approx(float(error) / count, rel=1e-4)


def test_the_cross_validated_ridge_lets_exact_fits_go_and_pulls_noisy_small_ones_to_the_prior():
    from practise.closed_form import LinearStatistics

    g = torch.Generator().manual_seed(0)
    stats = LinearStatistics()
    w = torch.randn(16, 16, generator=g)
    x = torch.randn(64, 10, 16, generator=g)
    stats.add("exact", x, x @ w, None)  # many tokens, exactly linear
    small = torch.randn(4, 3, 16, generator=g)
    stats.add("noisy", small, small + torch.randn(4, 3, 16, generator=g), None)  # 12 tokens: identity + noise
    fitted = stats.fit("exact", True, None)
    stats.fit("noisy", True, None)
    assert stats.chosen_ridge["exact"] <= 1e-3 and torch.allclose(fitted, w, atol=1e-2)
    assert stats.chosen_ridge["noisy"] >= 1.0
