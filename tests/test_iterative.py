"""Iterative selection: PRACTISE's score re-measured on the pruned, repaired network after each drop."""
import pytest
import torch

from helpers import tiny_llama, tiny_resnet, tiny_set, token_tiny_set
from practise.compress_report import CompressReport
from practise.criteria import RankingInputs, rank_blocks
from practise.errors import UsageError
from practise.features import feature_error, forward_features
from practise.iterative import Rescorer
from practise.latency import LatencyConfig
from practise.pipeline import CompressConfig, compress, inspect_model
from practise.recovery import RecoveryConfig
from practise.report import to_markdown
from practise.scoring import Scorer, ScoringConfig, block_scores, recoverabilities
from practise.surgery import drop_blocks

FAST = dict(recovery=RecoveryConfig(iterations=2, batch_size=8), latency=LatencyConfig(repeats=2, warmup=0, batch_size=2))


def _llama_scorer(layers=6):
    pytest.importorskip("transformers")
    model = tiny_llama(layers=layers, vocab=60, hidden=16)
    tiny = token_tiny_set(12, 9, vocab=60, pad_every=3, pad_from=5)
    info = inspect_model(model, (2, 9))
    config = ScoringConfig(protocol="closed-form", linear_map="folded", fit_scale="token")
    return model, tiny, info, Scorer(model, tiny, info.trace, info.chain, info.feature_layer, config)


def _feature_mse(model, scorer) -> float:
    with torch.no_grad():
        out = forward_features(model.eval(), scorer.eval_images, scorer.feature_layer)
    error, count = feature_error(out, scorer.targets, scorer.masks)
    return float(error) / count


def test_each_step_scores_the_network_the_next_step_keeps():
    """The R_b a block gets at one step is the feature error of the network the next step
    scores (the same repair kept, measured against the original teacher), and the teacher
    the caller passed is never touched."""
    model, tiny, info, scorer = _llama_scorer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = [b.name for b in info.blocks]
    r_b = {n: 0.25 for n in names}
    rescore = Rescorer(scorer, r_b)
    first = names[3]
    left = [n for n in names if n != first]
    step = rescore([first], left)
    second = min(left, key=step.get)
    rescore([first, second], [n for n in left if n != second])
    assert _feature_mse(rescore.scorer.teacher, scorer) == pytest.approx(step[second] * r_b[second], rel=1e-4)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError):  # removals must extend the earlier ones
        rescore([second], left)


def test_a_linear_patch_folds_past_dropped_layers_into_the_kept_one_before():
    model, tiny, info, scorer = _llama_scorer(layers=4)
    names = [b.name for b in info.blocks]
    pruned = drop_blocks(model, [names[1]])
    partly = Scorer(pruned, tiny, info.trace, info.chain, info.feature_layer, scorer.config, dropped=[names[1]])
    assert partly.closed_form_repair(names[2]).start == names[0]
    assert scorer.closed_form_repair(names[2]).start == names[1]


def test_iterative_ranking_starts_from_the_one_shot_scores_and_re_scores_after_each_drop():
    model, tiny, info, scorer = _llama_scorer()
    names = [b.name for b in info.blocks]
    r_b = {n: 0.25 for n in names}
    done = recoverabilities(scorer, names)
    scores = {s.block: s.score for s in block_scores(done, names, r_b, 1)}
    rescore = Rescorer(scorer, r_b)
    order = rank_blocks("practise-iterative", RankingInputs(names, r_b, scores=scores, rescore=rescore,
                                                            num_blocks=2))
    assert order[0] == min(names, key=scores.get) and sorted(order) == names
    assert [len(s["removed"]) for s in rescore.steps] == [1, 2]  # two blocks needed, one in reserve
    fresh = Rescorer(scorer, r_b)
    second = fresh([order[0]], order[1:])
    assert order[1] == min(order[1:], key=lambda b: (second[b], b))


def test_compress_with_the_iterative_criterion_on_token_and_image_models():
    pytest.importorskip("transformers")
    model = tiny_llama(layers=4, vocab=60, hidden=16)
    result = compress(model, token_tiny_set(8, 9, vocab=60), CompressConfig(num_blocks=2,
                                                                          criterion="practise-iterative", **FAST))
    assert len(result.selection.blocks) == 2 and result.report.config["scoring"]["protocol"] == "closed-form"
    assert "ranking_s" in result.report.timings
    steps = result.report.ranking_steps
    assert [s["removed"] for s in steps] == [result.report.selection.blocks[:i + 1] for i in range(len(steps))]
    assert "Ranked iteratively" in to_markdown(result.report)
    assert CompressReport.from_dict(result.report.to_dict()).ranking_steps == steps
    image = compress(tiny_resnet(), tiny_set(16), CompressConfig(num_blocks=2, criterion="practise-iterative", **FAST))
    assert len(image.selection.blocks) == 2 and image.report.config["scoring"]["linear_map"] == "in-place"
    with pytest.raises(UsageError, match="closed-form"):
        CompressConfig(num_blocks=1, criterion="practise-iterative", scoring=ScoringConfig(protocol="cached"))


def test_a_shortlist_re_scores_the_best_of_the_last_step_and_the_neighbours_of_dropped_runs():
    model, tiny, info, scorer = _llama_scorer(layers=8)
    names = [b.name for b in info.blocks]
    r_b = {n: 0.1 for n in names}
    first = {n: float(i) for i, n in enumerate(names)}  # layer 0 best ... layer 7 worst
    rescore = Rescorer(scorer, r_b, shortlist=2, first_scores=first)
    left = [n for n in names if n != names[5]]
    step = rescore([names[5]], left)
    assert set(step) == {names[0], names[1], names[4], names[6]}  # 2 best, and 5's neighbours
    # the copy's error is what layer 5 was scored with; a block not re-scored keeps its added cost
    assert rescore.error == pytest.approx(first[names[5]] * r_b[names[5]])
    assert rescore.added[names[2]] == first[names[2]]
    assert rescore.added[names[0]] == pytest.approx((step[names[0]] * r_b[names[0]] - rescore.error) / r_b[names[0]])
    full = Rescorer(scorer, r_b)([names[5]], left)
    assert step == pytest.approx({b: full[b] for b in step})
    shortlisted = Rescorer(scorer, r_b, shortlist=2, first_scores=first)
    order = rank_blocks("practise-iterative", RankingInputs(names, r_b, scores=first, rescore=shortlisted,
                                                            num_blocks=3))
    assert order[0] == names[0] and sorted(order) == names  # the criterion picks among what was re-scored
    assert all(s["candidates"] < len(names) - len(s["removed"]) for s in shortlisted.steps)
