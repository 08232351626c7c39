"""What happens with imperfect but legitimate input: outputs that are not a tensor, unreadable
evaluation images, an interrupted synthesis, preprocessing nobody recorded."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from helpers import tiny_resnet, tiny_set, write_png_folder
from practise.cli import main
from practise.model_output import select_logits
from practise.pipeline import CompressConfig, compress
from practise.recovery import RecoveryConfig
from practise.scoring import ScoringConfig
from practise.latency import LatencyConfig

FAST = dict(device="cpu", scoring=ScoringConfig(iterations=2, batch_size=8),
            latency=LatencyConfig(device="cpu", batch_size=2, repeats=2, warmup=0))


class DictOutput(nn.Module):
    """A classifier whose forward returns a dict with the logits under a custom key."""

    def __init__(self, key: str = "logits"):
        super().__init__()
        self.net = tiny_resnet()
        self.key = key

    def forward(self, x):
        return {"aux": torch.zeros(1), self.key: self.net(x)}


class TupleOutput(DictOutput):
    def forward(self, x):
        return (self.net(x), torch.ones(1))


@pytest.mark.parametrize("make, method", [(lambda: DictOutput(), "kd"), (lambda: TupleOutput(), "ce"),
                                          (lambda: _keyed(DictOutput("pred")), "kd")])
def test_models_returning_tuples_or_dicts_compress_end_to_end(make, method):
    from practise.data import TensorSource

    teacher = make()
    tiny = tiny_set(24)
    images = torch.stack(tiny.images)
    evaluation = TensorSource(images, tiny.labels)
    config = CompressConfig(num_blocks=2, recovery=RecoveryConfig(method=method, iterations=2, batch_size=8), **FAST)
    result = compress(teacher, tiny, config, eval_source=evaluation)
    assert len(result.selection.blocks) == 2 and all(b.startswith("net.") for b in result.selection.blocks)
    assert 0 <= result.report.evaluation["compressed"]["top1"] <= 1


def _keyed(model: nn.Module) -> nn.Module:
    model.practise_output = "pred"  # the documented selector, for an output the automatic rule gets wrong
    return model


def test_output_selection_rule():
    t = torch.ones(2, 3)
    assert select_logits(t) is t
    assert select_logits({"loss": None, "logits": t}) is t
    assert select_logits({"hidden": t}) is t
    assert select_logits((None, t)) is t
    assert select_logits({"a": torch.zeros(1), "pred": t}, "pred") is t
    with pytest.raises(ValueError, match="has no item 'score'"):
        select_logits({"pred": t}, "score")


def _png_folder(root, n=6, size=20):
    return write_png_folder(root, classes=2, per_class=n, size=size, seed=1, prefix="c")


@pytest.mark.slow
def test_unreadable_and_bomb_evaluation_images_are_skipped_and_reported(tmp_path, monkeypatch, capsys):
    from practise.data import ImageFolderSource

    data = _png_folder(tmp_path / "data")
    evaluation = _png_folder(tmp_path / "eval")
    (evaluation / "c0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.fromarray(np.zeros((40, 40), dtype=np.uint8), "L").save(evaluation / "c1" / "huge.png")
    # a "decompression bomb" relative to a lowered limit (a real one would take seconds to write)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Exception, match="decompression bomb"):
        source = ImageFolderSource(evaluation)
        source.load(source.files.index(evaluation / "c1" / "huge.png"), 1)
    torch.save(tiny_resnet().state_dict(), tmp_path / "t.pth")
    out = tmp_path / "out"
    code = main(["-q", "compress", "--model", "resnet20", "--weights", str(tmp_path / "t.pth"), "--data", str(data),
                 "--num-images", "10", "--num-blocks", "1", "--eval-data", str(evaluation), "--out", str(out),
                 "--score-iterations", "2", "--recovery-iterations", "2", "--repeats", "2", "--warmup", "0",
                 "--batch-size", "2", "--device", "cpu", "--image-size", "16", "--mean", "0.5", "--std", "0.25"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    skipped = report["evaluation"]["skipped_unreadable"]
    assert len(skipped) == 2 and any("broken.png" in s for s in skipped) and any("bomb" in s for s in skipped)
    assert report["evaluation"]["compressed"]["images"] == 12
    markdown = (out / "report.md").read_text()
    assert "evaluation: unreadable images (2)" in markdown and "broken.png" in markdown


def test_defaulted_preprocessing_is_announced_in_log_summary_report_and_file(tmp_path, capsys, caplog):
    from practise.model_io import read_metadata

    data = _png_folder(tmp_path / "data")
    torch.save(tiny_resnet().state_dict(), tmp_path / "t.pth")
    out = tmp_path / "out"
    code = main(["-q", "compress", "--model", "resnet20", "--weights", str(tmp_path / "t.pth"), "--data", str(data),
                 "--num-images", "10", "--num-blocks", "1", "--out", str(out), "--score-iterations", "2",
                 "--recovery-iterations", "2", "--repeats", "2", "--warmup", "0", "--batch-size", "2",
                 "--device", "cpu", "--image-size", "16"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "defaults were used" in caplog.text and "ImageNet's" in caplog.text  # the log
    assert "note: no preprocessing is recorded with the model for mean, std" in captured.out  # the printed summary
    report = json.loads((out / "report.json").read_text())
    assert report["preprocessing"]["defaulted"] == ["mean", "std"]
    assert report["preprocessing"]["origins"]["image_size"] == "given"
    assert "**Note:** no preprocessing is recorded with the model" in (out / "report.md").read_text()
    extra = read_metadata(out / "model.safetensors")["extra"]
    assert extra["preprocessing_defaults"] == ["mean", "std"] and extra["image_size"] == 16
    assert extra["mean"] == pytest.approx([0.449], abs=1e-3)  # what was actually used is what is recorded


def test_interrupted_synthesis_resumes_with_the_same_images(tmp_path):
    from practise.progress import Progress
    from practise.synthesis import STATE_FILE, SynthesisConfig, synthesize

    model = tiny_resnet()
    config = SynthesisConfig(steps=3, batch_size=4, seed=5)
    args = (model, 10, (1, 16, 16))
    norm = ((0.5,), (0.25,))
    whole = synthesize(*args, tmp_path / "whole", *norm, config)

    class StopAfter(Progress):
        def __init__(self, steps):
            self.left = steps

        def advance(self, n=1):
            self.left -= n
            if self.left < 0:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # interrupted in the second of three batches
        synthesize(*args, tmp_path / "part", *norm, config, progress=StopAfter(4))
    state = json.loads((tmp_path / "part" / STATE_FILE).read_text())
    assert len(state["batches"]) == 1
    resumed = synthesize(*args, tmp_path / "part", *norm, config)  # no overwrite needed
    assert len(resumed["files"]) == 10
    for a, b in zip(whole["files"], resumed["files"]):
        assert a.replace("whole", "part") == b
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    # other settings do not resume into the same folder without --overwrite
    with pytest.raises(FileExistsError, match="no interrupted synthesis with these settings"):
        synthesize(*args, tmp_path / "part", *norm, SynthesisConfig(steps=4, batch_size=4, seed=5))


def test_divergence_messages_tell_bad_input_from_high_lr():
    from practise.recovery import divergence_message

    assert "inputs are bad, not the learning rate" in divergence_message("recovery", 0, float("nan"), 0.02, "--recovery-lr")
    assert "lower it (--recovery-lr)" in divergence_message("recovery", 17, float("inf"), 5.0, "--recovery-lr")


def test_synthesize_cli_rerun_resumes_without_overwrite(tmp_path, capsys):
    torch.save(tiny_resnet().state_dict(), tmp_path / "t.pth")
    args = ["-q", "synthesize", "--model", "resnet20", "--weights", str(tmp_path / "t.pth"), "--num-images", "6",
            "--synth-steps", "2", "--synth-batch-size", "3", "--image-size", "16", "--mean", "0.5", "--std", "0.25",
            "--device", "cpu", "--out", str(tmp_path / "s")]
    assert main(args) == 0
    first = {p.name: p.read_bytes() for p in (tmp_path / "s").rglob("*.png")}
    assert main(args) == 0, capsys.readouterr().err  # a finished synthesis is found, not refused
    assert {p.name: p.read_bytes() for p in (tmp_path / "s").rglob("*.png")} == first and len(first) == 6
