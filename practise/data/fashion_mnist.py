"""Everything practise knows about Fashion-MNIST, in one place: where Debian installs it,
how to read its IDX files, its classes and statistics, its transforms, and the subset
shipped with the package for the offline demo (500 training and 2,000 test images)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from .sources import TensorSource
from .transforms import TransformConfig, Transforms
from ..errors import UsageError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)  # of the 60,000 training images
FASHION_MNIST_SIZE = 28
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PREPROCESSING = {"image_size": FASHION_MNIST_SIZE, "mean": FASHION_MNIST_MEAN, "std": FASHION_MNIST_STD}
SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
DEMO_DATA = Path(__file__).resolve().parent.parent / "assets" / "fashion_mnist_demo.npz"
DEMO_SPLITS = ("train", "test")


def fashion_mnist_transforms() -> Transforms:
    return Transforms(TransformConfig(image_size=FASHION_MNIST_SIZE, channels=1, mean=FASHION_MNIST_MEAN,
                                      std=FASHION_MNIST_STD))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic, dims, then big-endian uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise UsageError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {root}. Install the data set with "
        f"'apt-get update && apt-get install -y dataset-fashion-mnist' (files land in "
        f"{FASHION_MNIST_DIR}) or pass the folder holding the IDX files.")


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> TensorSource:
    """Fashion-MNIST as a TensorSource of 1x28x28 uint8 images with labels 0-9."""
    if split not in SPLITS:
        raise UsageError(f"unknown Fashion-MNIST split {split!r}; valid choices: {', '.join(SPLITS)}")
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    image_file, label_file = (_find_idx(root, stem) for stem in SPLITS[split])
    images = torch.from_numpy(read_idx(image_file).copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(label_file).astype(np.int64))
    if images.shape[0] != labels.shape[0]:
        raise UsageError(f"{image_file} and {label_file} disagree on the number of images")
    return TensorSource(images, labels, FASHION_MNIST_CLASSES, name=f"fashion-mnist:{split}")


def open_fashion_mnist(argument: str) -> TensorSource:
    """``fashion-mnist[:split][@folder]``'s part after the name: ``test``, ``test@/idx/folder``, ``""``."""
    split, _, root = argument.partition("@")
    return load_fashion_mnist(split or "train", root or None)


def demo_source(split: str) -> TensorSource:
    """``train`` (500 images) or ``test`` (2,000 images) of the shipped subset."""
    if split not in DEMO_SPLITS:
        raise UsageError(f"unknown demo split {split!r}; valid choices: {', '.join(DEMO_SPLITS)}")
    if not DEMO_DATA.is_file():
        raise FileNotFoundError(f"demo data missing: {DEMO_DATA} (reinstall the package)")
    with np.load(DEMO_DATA, allow_pickle=False) as data:
        images = torch.from_numpy(data[f"{split}_images"].copy()).unsqueeze(1)
        labels = torch.from_numpy(data[f"{split}_labels"].astype(np.int64))
    return TensorSource(images, labels, FASHION_MNIST_CLASSES, name=f"demo:{split}")
