"""Shared by the benchmark scripts: provenance of every result, and the Fashion-MNIST teachers."""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import torch

from practise.machine import usable_cores
from practise.model_io import load_model

ROOT = Path(__file__).resolve().parent.parent
TEACHERS = ROOT / "practise" / "assets" / "teachers"


def provenance() -> dict:
    """The exact command, commit and machine behind a result."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.strip()

    cpu = "unknown"
    if Path("/proc/cpuinfo").is_file():
        names = [l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                 if l.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"command": " ".join(["python"] + sys.argv), "commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
            "machine": {"cpu": cpu, "cores": usable_cores(), "torch_threads": torch.get_num_threads(),
                        "torch": torch.__version__, "python": platform.python_version(),
                        "platform": platform.platform()}}


def fmnist_teacher(arch: str = "resnet56"):
    path = TEACHERS / f"{arch}_fashion_mnist.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: train it with benchmarks/train_teacher.py --arch {arch}")
    return load_model(arch, str(path))
