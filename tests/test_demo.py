"""The embedded demo: shipped teacher and data, whole pipeline, offline."""
import json

import pytest
import torch

from practise.cli import main
from practise.data.fashion_mnist import demo_source, fashion_mnist_transforms
from practise.demo import DEMO_TEACHER
from practise.model_io import load_model


def test_shipped_subset():
    train, test = demo_source("train"), demo_source("test")
    assert len(train) == 500 and len(test) == 2000 and train.images.shape[1:] == (1, 28, 28)
    assert sorted(set(test.labels)) == list(range(10))


def test_shipped_teacher_is_accurate_on_shipped_test_images():
    from practise.evaluation import evaluate_models

    teacher = load_model("resnet56", str(DEMO_TEACHER))
    result = evaluate_models({"t": teacher}, demo_source("test"), fashion_mnist_transforms(), limit=500)
    assert result["t"]["top1"] > 0.85


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-q", "--out", str(out), "--num-images", "16", "--target-latency", "5%",
                 "--score-iterations", "2", "--recovery-iterations", "2", "--repeats", "2", "--warmup", "1",
                 "--eval-limit", "300"]) == 0
    printed = capsys.readouterr().out
    assert "top-1 accuracy (300 images)" in printed and "dropped blocks" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["selection"]["measured_reduction"] >= 0.05 and report["tiny_set"]["size"] == 16
    assert (out / "blocks.png").is_file() and (out / "model.safetensors").is_file()
    assert torch.is_tensor(load_model(str(out / "model.safetensors"))(torch.zeros(1, 1, 28, 28)))
