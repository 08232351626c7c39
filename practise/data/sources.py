"""Image sources: an indexable collection of images with optional labels.

A source only knows how to list and load images; sampling, transforms and batching
live elsewhere. Every image has a stable identifier (a file path or
``fashion-mnist:train:123``) so the chosen tiny set can be written to the report.
"""
from __future__ import annotations

import gzip
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class ImageSource:
    """Base: ``len``, ``load(i)`` -> uint8 tensor (C, H, W), ``identifier(i)``, ``labels``."""

    labels: list[int] | None = None
    classes: list[str] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int, channels: int) -> torch.Tensor:
        raise NotImplementedError

    def identifier(self, index: int) -> str:
        raise NotImplementedError


def pil_to_uint8(image: Image.Image, channels: int) -> torch.Tensor:
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise ValueError(f"image channels must be 1 or 3, got {channels}")
    array = np.asarray(image.convert(mode), dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def match_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey -> RGB by repetition, RGB -> grey by ITU-R 601 luma, as PIL's convert does."""
    if image.shape[0] == channels:
        return image
    if image.shape[0] == 1 and channels == 3:
        return image.expand(3, -1, -1).contiguous()
    if image.shape[0] == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (image.float() * weights).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert a {image.shape[0]}-channel image to {channels} channels")


class UnreadableImage(Exception):
    """Raised by a source when one image cannot be decoded."""


class ImageFolderSource(ImageSource):
    """A folder of images: class subfolders (labelled) or a flat folder (unlabelled).

    Files whose suffix is not an image suffix are skipped and counted at scan time;
    files that fail to decode are reported by ``load`` and skipped by the caller.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        if not self.root.is_dir():
            raise NotADirectoryError(f"not a folder: {self.root}")
        self.skipped_files: list[str] = []
        subdirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if subdirs:
            self.classes = [p.name for p in subdirs]
            pairs = [(f, i) for i, d in enumerate(subdirs) for f in self._images_in(d)]
            self.files = [f for f, _ in pairs]
            self.labels = [label for _, label in pairs]
        else:
            self.files = self._images_in(self.root)
        if not self.files:
            raise ValueError(f"no images found in {self.root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        if self.skipped_files:
            log.warning("skipped %d non-image files in %s", len(self.skipped_files), self.root)

    def _images_in(self, folder: Path) -> list[Path]:
        found = []
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.append(path)
            else:
                self.skipped_files.append(str(path))
        return found

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int, channels: int) -> torch.Tensor:
        path = self.files[index]
        try:
            with warnings.catch_warnings():
                # PIL only warns between MAX_IMAGE_PIXELS and twice that; such a file is a
                # decompression bomb to us too (no tiny-set image needs ~90 megapixels).
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    return pil_to_uint8(image, channels)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise UnreadableImage(f"{path}: too many pixels, a possible decompression bomb ({exc})") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
            raise UnreadableImage(f"{path}: {exc}") from exc

    def identifier(self, index: int) -> str:
        return str(self.files[index])


class TensorSource(ImageSource):
    """Images already in memory: uint8 (N, C, H, W), optional labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | list[int] | None = None,
                 classes: list[str] | None = None, name: str = "tensor"):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.labels = [int(v) for v in labels] if labels is not None else None
        self.classes = classes
        self.name = name

    def __len__(self) -> int:
        return self.images.shape[0]

    def load(self, index: int, channels: int) -> torch.Tensor:
        return match_channels(self.images[index], channels)

    def identifier(self, index: int) -> str:
        return f"{self.name}:{index}"


class HeadSource(ImageSource):
    """The first ``n`` images of another source (e.g. evaluation on a subset)."""

    def __init__(self, source: ImageSource, n: int):
        self.source, self.n = source, min(n, len(source))
        self.labels = source.labels[:self.n] if source.labels is not None else None
        self.classes = source.classes

    def __len__(self) -> int:
        return self.n

    def load(self, index: int, channels: int) -> torch.Tensor:
        return self.source.load(index, channels)

    def identifier(self, index: int) -> str:
        return self.source.identifier(index)


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)  # of the 60,000 training images
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_FMNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic, dims, then big-endian uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
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


@dataclass
class _Arrays:
    images: torch.Tensor
    labels: torch.Tensor


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> TensorSource:
    """Fashion-MNIST as a TensorSource of 1x28x28 uint8 images with labels 0-9."""
    if split not in _FMNIST_FILES:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; valid choices: train, test")
    root = Path(root) if root is not None else FASHION_MNIST_DIR
    image_file, label_file = (_find_idx(root, stem) for stem in _FMNIST_FILES[split])
    images = torch.from_numpy(read_idx(image_file).copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(label_file).astype(np.int64))
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{image_file} and {label_file} disagree on the number of images")
    return TensorSource(images, labels, FASHION_MNIST_CLASSES, name=f"fashion-mnist:{split}")


# out-of-domain source names -> their functions in out_of_domain.py
OUT_OF_DOMAIN = {"sklearn-digits": "sklearn_digits", "photo-crops": "photo_crops", "gaussian-noise": "gaussian_noise"}


def source_preprocessing(spec: str | Path) -> dict | None:
    """The input size and normalisation a named data set implies (Fashion-MNIST's for
    ``fashion-mnist:*`` and ``demo:*``), or None for image folders and other sources."""
    text = str(spec)
    if text.startswith(("fashion-mnist", "demo:")):
        return {"image_size": 28, "mean": FASHION_MNIST_MEAN, "std": FASHION_MNIST_STD}
    return None


def open_source(spec: str | Path) -> ImageSource:
    """A data set from a command-line spec: ``fashion-mnist:train`` / ``fashion-mnist:test``
    (optionally ``fashion-mnist:test@/folder/with/idx``), ``demo:train`` / ``demo:test`` (the
    Fashion-MNIST subset shipped with the package), ``sklearn-digits`` / ``photo-crops`` /
    ``gaussian-noise`` (unlabelled out-of-domain images at 28 px, from scikit-learn /
    scikit-image / a seeded generator), or a folder of images."""
    text = str(spec)
    if text in OUT_OF_DOMAIN:  # unlabelled (see out_of_domain.py)
        from . import out_of_domain

        return getattr(out_of_domain, OUT_OF_DOMAIN[text])()
    if text.startswith("demo:"):
        from ..demo import demo_source

        return demo_source(text.partition(":")[2])
    if text.startswith("fashion-mnist"):
        name, _, root = text.partition("@")
        split = name.partition(":")[2] or "train"
        return load_fashion_mnist(split, root or None)
    return ImageFolderSource(text)
