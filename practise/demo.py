"""The embedded demo: the shipped resnet56 Fashion-MNIST teacher and a shipped subset of
Fashion-MNIST (500 training images to draw the tiny set from, 2,000 test images), so the
whole pipeline runs offline right after installation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data import TensorSource, TransformConfig, Transforms
from .data.sources import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_TEACHER = ASSETS / "teachers" / "resnet56_fashion_mnist.safetensors"
DEMO_DATA = ASSETS / "fashion_mnist_demo.npz"


def fashion_mnist_transforms() -> Transforms:
    return Transforms(TransformConfig(image_size=28, channels=1, mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD))


def demo_source(split: str) -> TensorSource:
    """``train`` (500 images) or ``test`` (2,000 images) of the shipped subset."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown demo split {split!r}; valid choices: train, test")
    if not DEMO_DATA.is_file():
        raise FileNotFoundError(f"demo data missing: {DEMO_DATA} (reinstall the package)")
    with np.load(DEMO_DATA, allow_pickle=False) as data:
        images = torch.from_numpy(data[f"{split}_images"].copy()).unsqueeze(1)
        labels = torch.from_numpy(data[f"{split}_labels"].astype(np.int64))
    return TensorSource(images, labels, FASHION_MNIST_CLASSES, name=f"demo:{split}")
