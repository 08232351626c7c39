import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_resnet, tiny_set
from practise.features import forward_features
from practise.recovery import RECOVERY_METHODS, RecoveryConfig, recover_
from practise.scoring import ScoringConfig
from practise.surgery import drop_blocks


def feature_mse(student, teacher, x):
    with torch.no_grad():
        return float(F.mse_loss(forward_features(student.eval(), x, "layer3"), forward_features(teacher.eval(), x, "layer3")))


def test_feature_mimicking_recovers_and_leaves_classifier_alone():
    teacher = tiny_resnet()
    data = tiny_set(48)
    student = drop_blocks(teacher, ["layer1.1", "layer2.1"])
    fc = student.fc.weight.clone()
    x = data.eval_tensor()
    before = feature_mse(student, teacher, x)
    losses = recover_(student, teacher, data, "layer3", RecoveryConfig(iterations=30, batch_size=16))
    assert len(losses) == 30 and feature_mse(student, teacher, x) < before
    assert torch.equal(student.fc.weight, fc)  # no gradient reaches the classifier
    assert not teacher.training


def test_registry_has_the_baselines_and_names_bad_choices():
    assert {"mimic", "ce", "kd"} <= set(RECOVERY_METHODS)
    assert RecoveryConfig(method="ce").resolved_lr == 1e-4 and RecoveryConfig().resolved_lr == 0.02
    with pytest.raises(ValueError, match="'bp'.*mimic"):
        RecoveryConfig(method="bp")


@pytest.mark.parametrize("config", [RecoveryConfig, ScoringConfig])
@pytest.mark.parametrize("setting, bad", [("batch_size", 0), ("lr", -0.1), ("momentum", 1.0),
                                          ("weight_decay", -1e-4), ("lr_drop_at", 1.5), ("iterations", -1)])
def test_bad_optimisation_settings_are_named(config, setting, bad):
    with pytest.raises(ValueError, match=f"{setting} .*{bad}"):
        config(**{setting: bad})


def test_zero_iterations_mean_no_recovery_but_scoring_needs_some():
    assert RecoveryConfig(iterations=0).iterations == 0
    with pytest.raises(ValueError, match="scoring: iterations must be at least 1, got 0"):
        ScoringConfig(iterations=0)


@pytest.mark.parametrize("method", ["ce", "kd"])
def test_baselines_train(method):
    teacher = tiny_resnet()
    student = drop_blocks(teacher, ["layer3.1"])
    losses = recover_(student, teacher, tiny_set(48), "layer3", RecoveryConfig(method=method, iterations=8,
                                                                            batch_size=16, lr=0.01))
    assert len(losses) == 8 and all(l == l for l in losses)
    assert not torch.equal(student.fc.weight, teacher.fc.weight)  # logit losses do train the classifier


def test_cross_entropy_without_labels_is_a_clear_error():
    teacher = tiny_resnet()
    with pytest.raises(ValueError, match="no labels"):
        recover_(drop_blocks(teacher, ["layer3.1"]), teacher, tiny_set(16, labelled=False), "layer3",
                RecoveryConfig(method="ce", iterations=2))


@pytest.mark.parametrize("method", ["mimic", "kd", "ce"])
def test_bf16_autocast_recovery_trains_float32_weights_like_float32(method):
    teacher = tiny_resnet()
    data = tiny_set(48)
    x = data.eval_tensor()
    results = {}
    for autocast in (None, "bfloat16"):
        student = drop_blocks(teacher, ["layer1.1", "layer2.1"])
        losses = recover_(student, teacher, data, "layer3",
                          RecoveryConfig(method=method, iterations=20, batch_size=16, autocast=autocast))
        assert all(p.dtype == torch.float32 for p in student.parameters())
        results[autocast] = (losses, feature_mse(student, teacher, x))
    (fp32_losses, fp32_mse), (bf16_losses, bf16_mse) = results[None], results["bfloat16"]
    assert bf16_losses[0] == pytest.approx(fp32_losses[0], rel=0.05)  # the same objective, in bf16 passes
    assert bf16_mse == pytest.approx(fp32_mse, rel=0.1)  # and ends where float32 training ends
    if method == "mimic":
        assert bf16_mse < feature_mse(drop_blocks(teacher, ["layer1.1", "layer2.1"]), teacher, x)
    with pytest.raises(ValueError, match="recovery: unknown autocast 'fp8'"):
        RecoveryConfig(autocast="fp8")


def test_neighbours_are_the_kept_blocks_around_each_run_of_dropped_ones():
    from practise.recovery import neighbours

    assert neighbours(list("abcdef"), ["b", "c", "f"]) == ["a", "d", "e"]
    assert neighbours(list("abc"), ["a"]) == ["b"]


def test_recovery_in_neighbours_scope_trains_only_those_blocks():
    teacher = tiny_resnet()
    data = tiny_set(48)
    student = drop_blocks(teacher, ["layer1.1", "layer2.1"])
    before = {k: v.clone() for k, v in student.state_dict().items()}
    x = data.eval_tensor()
    start = feature_mse(student, teacher, x)
    recover_(student, teacher, data, "layer3", RecoveryConfig(iterations=30, batch_size=16, scope="neighbours"),
             trainable=["layer1.2", "layer2.0"])
    changed = {k.split(".")[0] + "." + k.split(".")[1] for k, v in student.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])}
    assert changed == {"layer1.2", "layer2.0"} and feature_mse(student, teacher, x) < start
    assert all(p.requires_grad for p in student.parameters())  # the scope does not stay on the model
