"""The embedded demo: the shipped resnet56 Fashion-MNIST teacher and the Fashion-MNIST
subset shipped with the package (``data/fashion_mnist.py``), so the whole pipeline runs
offline right after installation."""
from __future__ import annotations

from pathlib import Path

DEMO_TEACHER = Path(__file__).resolve().parent / "assets" / "teachers" / "resnet56_fashion_mnist.safetensors"
DEMO_SCORE_ITERATIONS, DEMO_RECOVERY_ITERATIONS = 200, 500  # fewer than the paper's 1000 / 2000: minutes on a CPU
