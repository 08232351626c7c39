"""The linear patch: a dropped run of layers repaired inside the weights of the layer before it."""
import pytest
import torch

from helpers import tiny_llama
from practise.features import feature_error, forward_features
from practise.linear_patch import find_fold_sites, patch_runs_, runs_of
from practise.surgery import drop_blocks
from practise.tracing import find_feature_layer, trace_model

transformers = pytest.importorskip("transformers")


def tokens(vocab: int, n: int = 16, length: int = 10, seed: int = 0) -> torch.Tensor:
    ids = torch.randint(5, vocab, (n, length), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[::3, 6:] = 0
    return torch.stack([ids, mask], 1)


def wrapped(model):
    from practise.text import SequenceModel
    return SequenceModel(model.eval())


def llama(layers: int = 5):
    return tiny_llama(layers=layers, vocab=100)


def test_runs_are_maximal_stretches_of_dropped_layers_in_network_order():
    assert runs_of(list("abcdefg"), ["f", "b", "c", "e"]) == [["b", "c"], ["e", "f"]]


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert"])
def test_fold_sites_are_the_layers_added_to_the_residual_stream_found_by_measurement(family):
    if family == "llama":
        model, site = llama(), "mlp.down_proj"
    elif family == "gpt2":  # transformers' Conv1D, weight stored (in, out)
        torch.manual_seed(0)
        model, site = wrapped(transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=100, n_embd=32, n_layer=3, n_head=2, n_positions=32))), "mlp.c_proj"
    else:  # post-norm: the layer's output is LayerNorm(x + dense(...)), nothing can be folded
        torch.manual_seed(0)
        model, site = wrapped(transformers.BertModel(transformers.BertConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64))), None
    x = tokens(100)[:2]
    units = trace_model(model, x).candidates()
    sites = find_fold_sites(model, units, x)
    assert sites == ({u: f"{u}.{site}" for u in units} if site else {})


@pytest.mark.parametrize("fit_scale", ["global", "token"])
def test_the_patch_repairs_a_dropped_run_better_than_dropping_it_and_keeps_the_architecture(fit_scale):
    teacher = llama()
    x = tokens(100, n=48)
    layer = find_feature_layer(teacher, trace_model(teacher, x[:1]))
    units = trace_model(teacher, x[:1]).candidates()
    dropped = [units[2], units[3]]
    student = drop_blocks(teacher, dropped)
    names = {k: v.shape for k, v in student.state_dict().items()}
    mask = x[:, 1]

    def error(model, at=layer, reference=layer):
        with torch.no_grad():
            total, count = feature_error(forward_features(model, x, at), forward_features(teacher, x, reference), mask)
        return float(total) / count

    plain, plain_at_run = error(student), error(student, units[1], units[3])
    records = patch_runs_(student, teacher, units, dropped, x, ridge=1e-3, fit_scale=fit_scale)
    assert [(r.run, r.unit, r.linear, r.fit_scale) for r in records] == \
        [(dropped, units[1], f"{units[1]}.mlp.down_proj", fit_scale)]
    # the fitted quantity: the patched layer's output against the teacher's run output (least
    # squares beats the identity, i.e. dropping outright, on the data it was fitted on) ...
    assert error(student, units[1], units[3]) < 0.9 * plain_at_run
    assert error(student) < plain  # ... and the final features follow
    assert {k: v.shape for k, v in student.state_dict().items()} == names  # only weights changed


def test_a_run_at_the_start_or_a_dropped_sub_layer_is_left_unpatched_and_says_why():
    teacher = llama(3)
    x = tokens(100)
    units = trace_model(teacher, x[:1]).candidates()
    dropped = [units[0], f"{units[2]}.self_attn"]
    student = drop_blocks(teacher, dropped)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    records = patch_runs_(student, teacher, units, dropped, x, ridge=1e-3)
    assert all(r.linear is None and r.reason for r in records) and len(records) == 2
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())


def test_statistics_with_a_scale_per_token_are_weighted_least_squares():
    """Each token's error counts relative to its scale: the fit equals least squares on rows
    divided by the scale, and a token with a huge scale no longer dominates the fit."""
    from practise.closed_form import LinearStatistics

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 3, generator=g)
    w_true = torch.randn(3, 3, generator=g)
    y = x @ w_true
    y[0, 0] = 1000.0  # one outlier token, as an LLM's massive activation
    scale = y.pow(2).mean(-1).sqrt()
    stats = LinearStatistics()
    stats.add("a", x, y, None, scale)
    rows = (1 / scale).reshape(-1, 1)
    xs, ys = x.reshape(-1, 3) * rows, y.reshape(-1, 3) * rows
    assert torch.allclose(stats.xtx["a"].float(), xs.T @ xs, atol=1e-4)
    assert torch.allclose(stats.xty["a"].float(), xs.T @ ys, atol=1e-4)
    plain = LinearStatistics()
    plain.add("a", x, y, None)
    error = {name: float((x[1:] @ s.fit("a", False, 1e-6) - y[1:]).abs().mean()) for name, s in
             (("relative", stats), ("plain", plain))}
    assert error["relative"] < error["plain"] / 2  # the ordinary tokens are fitted, not the outlier


def test_token_models_get_token_scaled_fits_by_default_and_image_models_keep_global_ones():
    from practise.scoring import ScoringConfig, resolve_protocol
    from helpers import tiny_resnet

    assert resolve_protocol(ScoringConfig(), llama()).fit_scale == "token"
    assert resolve_protocol(ScoringConfig(), tiny_resnet()).fit_scale == "global"
    assert resolve_protocol(ScoringConfig(fit_scale="global"), llama()).fit_scale == "global"
    with pytest.raises(ValueError, match="valid choices: auto, global, token"):
        ScoringConfig(fit_scale="local")
