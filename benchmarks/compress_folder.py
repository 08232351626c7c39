"""`practise compress` end to end on a folder of images (issue: the practise package, "Done means").

Writes 500 Fashion-MNIST training images as PNG files in class subfolders, then runs the
command line on the shipped resnet56 teacher with a 22% latency target, evaluating on all
10,000 test images, and copies the report next to this script's other results.

    python benchmarks/compress_folder.py [--score-iterations 200 --recovery-iterations 500]
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from PIL import Image

from common import ROOT, TEACHERS, provenance
from practise.cli import main as practise
from practise.data import load_fashion_mnist
from practise.files import atomic_write_text
from practise.seeding import seed_everything


def write_pngs(folder: Path, n: int, seed: int) -> None:
    source = load_fashion_mnist("train")
    for i in torch.randperm(len(source), generator=seed_everything(seed))[:n].tolist():
        label = source.classes[source.labels[i]].replace("/", "-")
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(source.images[i, 0].numpy(), "L").save(folder / label / f"train-{i:05d}.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=500, help="PNG files written to the folder")
    p.add_argument("--num-images", type=int, default=500, help="tiny-set size drawn from the folder")
    p.add_argument("--score-iterations", type=int, default=200)
    p.add_argument("--recovery-iterations", type=int, default=500)
    p.add_argument("--target", default="22%")
    p.add_argument("--workdir", default="runs/compress_folder")
    args = p.parse_args()
    workdir = Path(args.workdir)
    folder = workdir / "pngs"
    if not folder.is_dir():
        write_pngs(folder, args.images, seed=7)
    out = workdir / "out"
    began = time.time()
    code = practise(["-q", "compress", "--model", "resnet56",
                     "--weights", str(TEACHERS / "resnet56_fashion_mnist.safetensors"),
                     "--data", str(folder), "--num-images", str(args.num_images), "--target-latency", args.target,
                     "--score-iterations", str(args.score_iterations),
                     "--recovery-iterations", str(args.recovery_iterations),
                     "--mean", "0.2860", "--std", "0.3530", "--image-size", "28",
                     "--eval-data", "fashion-mnist:test", "--device", "cpu", "--out", str(out), "--overwrite"])
    if code != 0:
        raise SystemExit(code)
    results = ROOT / "benchmarks" / "results" / "compress_folder"
    results.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "report.json", "blocks.png"):
        shutil.copyfile(out / name, results / name)
    report = json.loads((out / "report.json").read_text())
    atomic_write_text(results / "provenance.json", json.dumps(
        {**provenance(), "wall_seconds": time.time() - began,
         "model_file_bytes": (out / "model.safetensors").stat().st_size,
         "teacher_file_bytes": (TEACHERS / "resnet56_fashion_mnist.safetensors").stat().st_size,
         "measured_reduction": report["selection"]["measured_reduction"]}, indent=1))


if __name__ == "__main__":
    main()
