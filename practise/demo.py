"""The embedded demo: the shipped resnet56 Fashion-MNIST teacher and the Fashion-MNIST
subset shipped with the package (``data/fashion_mnist.py``), so the whole pipeline runs
offline right after installation."""
from __future__ import annotations

from pathlib import Path

DEMO_TEACHER = Path(__file__).resolve().parent / "assets" / "teachers" / "resnet56_fashion_mnist.safetensors"
# fewer than the paper's 1000 / 2000 so the demo ends in minutes on a CPU; with bf16 autocast
# (where the CPU has it) 100 scoring iterations rank blocks like the authors' protocol
# (Spearman 0.976, benchmarks/results/scoring_speed) and the demo drops the same blocks with
# the same accuracy as at 200 float32 iterations (benchmarks/results/demo/README.md)
DEMO_SCORE_ITERATIONS, DEMO_RECOVERY_ITERATIONS = 100, 500
DEMO_AUTOCAST = "auto"  # bf16 autocast for scoring and recovery where it measures clearly faster
