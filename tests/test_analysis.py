"""Tools for the theory experiments: variance across runs, straight-line paths, BN re-estimation."""
import pytest
import torch
import torch.nn as nn

from theory_analysis import (barrier_height, convexity_gap, float_state, interpolate, output_variance,
                               parameter_variance, path_losses, reestimate_bn_)


def test_parameter_variance_per_tensor_and_overall():
    a = {"w": torch.tensor([0.0, 0.0]), "b": torch.tensor([1.0])}
    b = {"w": torch.tensor([2.0, 0.0]), "b": torch.tensor([1.0])}
    per_tensor, overall = parameter_variance([a, b])
    assert per_tensor == {"w": pytest.approx(1.0), "b": pytest.approx(0.0)}  # var of (0, 2) is 2; mean over w is 1
    assert overall == pytest.approx(2.0 / 3)
    with pytest.raises(ValueError, match="at least 2 runs"):
        parameter_variance([a])


def test_output_variance_is_zero_for_identical_models_and_positive_otherwise():
    torch.manual_seed(0)
    m1 = nn.Linear(4, 3)
    m2 = nn.Linear(4, 3)
    x = torch.randn(10, 4)
    assert output_variance([m1, m1], x) == pytest.approx(0.0)
    assert output_variance([m1, m2], x) > 0


def test_interpolation_endpoints_and_midpoint_keep_integer_buffers():
    a = {"w": torch.zeros(3), "n": torch.tensor(5)}
    b = {"w": torch.ones(3) * 4, "n": torch.tensor(9)}
    assert torch.equal(interpolate(a, b, 0.0)["w"], a["w"]) and torch.equal(interpolate(a, b, 1.0)["w"], b["w"])
    mid = interpolate(a, b, 0.5)
    assert torch.allclose(mid["w"], torch.full((3,), 2.0)) and int(mid["n"]) == 5


def test_reestimate_bn_sets_running_stats_to_the_data_and_restores_modes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)).eval()
    images = torch.randn(40, 1, 3, 3) * 3 + 1
    reestimate_bn_(model, images, batch_size=20)  # equal batches: the cumulative average is the overall mean
    with torch.no_grad():
        conv_out = model[0](images)
    assert torch.allclose(model[1].running_mean, conv_out.mean(dim=(0, 2, 3)), atol=1e-5)
    assert model[1].momentum == 0.1 and not model.training


def test_path_of_a_convex_loss_stays_under_its_chord():
    model = nn.Linear(2, 1, bias=False)
    before = model.weight.detach().clone()
    start = {"weight": torch.tensor([[2.0, -1.0]])}
    end = {"weight": torch.tensor([[-1.0, 3.0]])}
    curves = path_losses(model, start, end, lambda m: {"norm": float((m.weight.detach() ** 2).sum())}, points=11)
    assert curves["norm"][0] == pytest.approx(5.0) and curves["norm"][-1] == pytest.approx(10.0)
    assert convexity_gap(curves["norm"]) <= 1e-6
    assert torch.equal(model.weight, before)  # the caller's model is not loaded with path weights
    with pytest.raises(ValueError, match="at least 3 points"):
        path_losses(model, start, end, lambda m: {}, points=2)


def test_gap_and_barrier_of_a_bump():
    bump = [1.0, 1.5, 3.0, 1.5, 2.0]
    assert convexity_gap(bump) == pytest.approx(3.0 - 1.5)
    assert barrier_height(bump) == pytest.approx(1.0)
    assert convexity_gap([3.0, 2.0, 1.0]) == pytest.approx(0.0)


def test_float_state_holds_parameters_only():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    state = float_state(model)
    assert set(state) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    state["0.weight"].add_(1)
    assert not torch.equal(state["0.weight"], model[0].weight)


def test_on_device_returns_the_model_itself_when_already_there():
    from practise.modes import on_device

    model = nn.Linear(2, 2)
    assert on_device(model, "cpu") is model
    assert on_device(model, torch.device("cpu")) is model
    moved = on_device(model, "meta")  # any other device: a moved copy, the original stays
    assert moved is not model and moved.weight.device.type == "meta" and model.weight.device.type == "cpu"
