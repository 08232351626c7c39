"""Train a Fashion-MNIST teacher, resumably, and export it with a model card.

    python benchmarks/train_teacher.py --arch resnet56 --epochs 15 --out practise/assets/teachers

Rerunning the same command resumes from runs/teacher-<arch>/checkpoint.pt.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from practise.data import load_fashion_mnist
from practise.data.sources import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from practise.demo import fashion_mnist_transforms
from practise.io import atomic_write, atomic_write_text
from practise.models import create_model
from practise.seeding import seed_everything
from practise.training import TrainConfig, train_classifier



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet56")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="checkpoint folder (default runs/teacher-<arch>)")
    p.add_argument("--out", default="practise/assets/teachers")
    p.add_argument("--data", default=None, help="folder with the Fashion-MNIST IDX files")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    seed_everything(args.seed)
    model = create_model(args.arch, num_classes=10, in_channels=1)
    transforms = fashion_mnist_transforms()
    train, test = load_fashion_mnist("train", args.data), load_fashion_mnist("test", args.data)
    config = TrainConfig(epochs=args.epochs, seed=args.seed)
    workdir = Path(args.workdir or f"runs/teacher-{args.arch}")
    began = time.time()
    history = train_classifier(model, train, test, transforms, config, workdir)
    out = Path(args.out)
    weights = out / f"{args.arch}_fashion_mnist.safetensors"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda tmp: save_file(state, tmp, metadata={"arch": args.arch}))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    card = {
        "arch": args.arch, "arch_kwargs": {"num_classes": 10, "in_channels": 1},
        "data": "Fashion-MNIST (60,000 train / 10,000 test), Debian dataset-fashion-mnist",
        "normalization": {"mean": FASHION_MNIST_MEAN, "std": FASHION_MNIST_STD}, "image_size": 28,
        "train_config": config.__dict__, "epochs_run": len(history),
        "test_top1": history[-1]["test_top1"], "history": history,
        "train_seconds_total": sum(h["seconds"] for h in history),
        "command": " ".join([Path(sys.executable).name] + sys.argv), "commit": commit,
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, "
                   f"torch {torch.__version__}",
        "wall_seconds_this_invocation": time.time() - began,
    }
    atomic_write_text(weights.with_suffix(".json"), json.dumps(card, indent=2))
    lines = [f"# {args.arch} teacher on Fashion-MNIST", "",
             f"- architecture: `{args.arch}` (num_classes=10, in_channels=1), torchvision-style names",
             f"- test top-1 (10,000 images): **{card['test_top1'] * 100:.2f}%**",
             f"- epochs: {len(history)}, batch {config.batch_size}, SGD nesterov lr {config.lr} cosine, "
             f"wd {config.weight_decay}, pad-4 crop + flip, seed {args.seed}",
             f"- training time: {card['train_seconds_total'] / 60:.1f} min on {card['machine']}",
             f"- command: `{card['command']}` at commit {commit}", "",
             "| epoch | train loss | test top-1 | seconds |", "|---|---|---|---|"]
    lines += [f"| {h['epoch']} | {h['train_loss']:.4f} | {h['test_top1'] * 100:.2f}% | {h['seconds']:.0f} |"
              for h in history]
    atomic_write_text(weights.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"saved {weights} (test top-1 {card['test_top1'] * 100:.2f}%)")


if __name__ == "__main__":
    main()
