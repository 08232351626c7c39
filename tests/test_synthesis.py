"""DeepInversion synthesis: every loss term is optimisable on its own, errors, and the output folder."""
import pytest
import torch
import torch.nn as nn

from helpers import calibrate_bn_
from practise.data import ImageFolderSource
from practise.modes import hooks_removed
from practise.synthesis import (BNStatistics, SynthesisConfig, balanced_targets, synthesis_losses, synthesize,
                                synthesize_batch)

SHAPE = (1, 8, 8)


def bn_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return calibrate_bn_(model, torch.rand(64, *SHAPE) * 2 + 0.5)


def term(model, x, targets, name, config) -> float:
    stats = BNStatistics(model, config.first_bn_multiplier)
    with torch.no_grad(), hooks_removed(stats.register()):
        model.eval()
        return float(synthesis_losses(model, x, targets, stats, config)[name])


ALONE = {"bn": dict(bn_weight=1.0), "ce": dict(ce_weight=1.0), "tv": dict(tv_weight=1.0), "l2": dict(l2_weight=1.0)}


@pytest.mark.parametrize("name", list(ALONE))
def test_each_term_decreases_when_optimised_alone(name):
    weights = dict(bn_weight=0.0, ce_weight=0.0, tv_weight=0.0, l2_weight=0.0) | ALONE[name]
    config = SynthesisConfig(steps=40, lr=0.05, jitter=0, flip=False, **weights)
    model = bn_model()
    targets = torch.tensor([0, 1, 2, 0])
    start = torch.randn((4, *SHAPE), generator=torch.Generator().manual_seed(1))
    images, final = synthesize_batch(model, SHAPE, targets, config, torch.Generator().manual_seed(1))
    assert term(model, images, targets, name, config) < 0.7 * term(model, start, targets, name, config)
    assert all(p.requires_grad for p in model.parameters()) and not model[1]._forward_hooks


def test_first_batchnorm_is_weighted_more():
    model = bn_model()
    x = torch.randn(4, *SHAPE)
    plain = term(model, x, torch.zeros(4, dtype=torch.long), "bn", SynthesisConfig(bn_weight=1, first_bn_multiplier=1))
    weighted = term(model, x, torch.zeros(4, dtype=torch.long), "bn", SynthesisConfig(bn_weight=1, first_bn_multiplier=10))
    assert weighted > plain * 1.5


def test_model_without_batchnorm_is_a_clear_error(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, *SHAPE))
    with pytest.raises(ValueError, match="needs BatchNorm layers"):
        synthesize(model, 4, SHAPE, tmp_path / "out", (0.5,), (0.25,), SynthesisConfig(steps=1))
    assert not (tmp_path / "out").exists()


def test_balanced_targets_spread_evenly():
    targets = balanced_targets(23, 10, torch.Generator().manual_seed(0))
    counts = torch.bincount(targets, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 23


def test_synthesize_writes_a_labelled_image_folder_and_never_overwrites(tmp_path):
    out = tmp_path / "synth"
    summary = synthesize(bn_model(), 7, SHAPE, out, (0.5,), (0.25,), SynthesisConfig(steps=3, batch_size=4))
    assert summary["images"] == 7 and summary["classes"] == 3 and len(summary["batches"]) == 2
    source = ImageFolderSource(out)
    assert len(source) == 7 and sorted(set(source.labels)) == [0, 1, 2]
    assert source.load(0, 1).shape == (1, 8, 8)
    with pytest.raises(FileExistsError, match="not empty"):
        synthesize(bn_model(), 2, SHAPE, out, (0.5,), (0.25,), SynthesisConfig(steps=1))
    with pytest.raises(ValueError, match="one per input channel"):
        synthesize(bn_model(), 2, SHAPE, tmp_path / "other", (0.5, 0.5), (0.25,), SynthesisConfig(steps=1))


def test_overwrite_leaves_no_image_of_an_earlier_synthesis(tmp_path):
    out = tmp_path / "synth"
    synthesize(bn_model(), 7, SHAPE, out, (0.5,), (0.25,), SynthesisConfig(steps=2, batch_size=4))
    (out / "notes.txt").write_text("mine")
    synthesize(bn_model(), 3, SHAPE, out, (0.5,), (0.25,), SynthesisConfig(steps=2, batch_size=4, seed=1),
               overwrite=True)
    assert len(ImageFolderSource(out)) == 3  # not 3 new + 4 left over from the first run
    assert (out / "notes.txt").read_text() == "mine"  # a file synthesis did not write stays
