"""Train a Fashion-MNIST teacher, resumably, and save it with its model card.

    python benchmarks/train_teacher.py --arch resnet56 --epochs 20

is `practise train` with the project's settings, run from the repository root (so the
command recorded in the model card has no machine-specific paths); rerunning resumes
from runs/teacher-<arch>/checkpoint.pt.
"""
from __future__ import annotations

import argparse
import os
import sys

from common import ROOT, TEACHERS
from practise.cli import main as practise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet56")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--optimizer", default=None, help="default: adamw for transformers (vit_*), else sgd")
    p.add_argument("--lr", type=float, default=None, help="default: 0.001 with adamw, 0.1 with sgd")
    args = p.parse_args()
    optimizer = args.optimizer or ("adamw" if args.arch.startswith("vit") else "sgd")
    extra = ["--optimizer", optimizer]
    if optimizer == "adamw":  # transformer recipe: AdamW, lr 1e-3, weight decay 0.05
        extra += ["--lr", str(args.lr or 0.001), "--weight-decay", "0.05"]
    elif args.lr:
        extra += ["--lr", str(args.lr)]
    os.chdir(ROOT)
    sys.exit(practise(["train", "--model", args.arch, "--num-classes", "10", "--in-channels", "1",
                       "--data", "fashion-mnist:train", "--eval-data", "fashion-mnist:test",
                       "--epochs", str(args.epochs), "--seed", str(args.seed), "--device", "cpu", *extra,
                       "--workdir", f"runs/teacher-{args.arch}",
                       "--out", str((TEACHERS / f"{args.arch}_fashion_mnist.safetensors").relative_to(ROOT)), "--overwrite"]))


if __name__ == "__main__":
    main()
