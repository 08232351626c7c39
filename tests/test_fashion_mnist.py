"""Real data: Fashion-MNIST images through the whole pipeline (skipped without the Debian package)."""
import json

import pytest
import torch
from PIL import Image

from helpers import tiny_resnet
from practise.cli import main
from practise.data import load_fashion_mnist

try:
    TEST = load_fashion_mnist("test")
except FileNotFoundError:
    TEST = None
needs_data = pytest.mark.skipif(TEST is None, reason="dataset-fashion-mnist is not installed")


@needs_data
def test_fashion_mnist_test_split():
    assert len(TEST) == 10_000 and TEST.images.shape == (10_000, 1, 28, 28)
    assert sorted(set(TEST.labels)) == list(range(10))


@pytest.mark.slow
@needs_data
def test_compress_on_a_folder_of_fashion_mnist_pngs(tmp_path):
    folder = tmp_path / "pngs"
    for i in range(40):
        label = TEST.labels[i]
        (folder / TEST.classes[label].replace("/", "-")).mkdir(parents=True, exist_ok=True)
        Image.fromarray(TEST.images[i, 0].numpy(), "L").save(folder / TEST.classes[label].replace("/", "-") / f"{i}.png")
    torch.save(tiny_resnet(size=28).state_dict(), tmp_path / "teacher.pt")
    out = tmp_path / "out"
    code = main(["-q", "compress", "--model", "resnet20", "--weights", str(tmp_path / "teacher.pt"),
                 "--data", str(folder), "--num-images", "32", "--image-size", "28",
                 "--mean", "0.286", "--std", "0.353", "--num-blocks", "2", "--score-iterations", "3",
                 "--recovery-iterations", "3", "--repeats", "3", "--warmup", "1", "--batch-size", "2",
                 "--device", "cpu", "--out", str(out), "--eval-data", "fashion-mnist:test", "--eval-limit", "200"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["selection"]["blocks"]) == 2 and report["evaluation"]["teacher"]["images"] == 200
    assert all(p.endswith(".png") for p in report["tiny_set"]["images"])
    assert (out / "model.safetensors").is_file()
