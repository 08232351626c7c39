"""Image sources: an indexable collection of images with optional labels.

A source only knows how to list and load images; sampling, transforms and batching
live elsewhere. Every image has a stable identifier (a file path or
``fashion-mnist:train:123``) so the chosen tiny set can be written to the report.
Named data sets (``fashion-mnist:test``, ``sklearn-digits``, ...) are opened through
``catalog.py``; this module holds only the generic kinds.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from ..errors import UsageError

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
        raise UsageError(f"image channels must be 1 or 3, got {channels}")
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
    raise UsageError(f"cannot convert a {image.shape[0]}-channel image to {channels} channels")


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
        loose = [p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if subdirs and loose:  # labelled by subfolder, or not: the folder cannot say which it meant
            raise UsageError(f"{self.root} holds class subfolders ({', '.join(p.name for p in subdirs[:3])}) and "
                             f"{len(loose)} images beside them ({loose[0].name}); put every image in a class "
                             "subfolder (labelled) or all in the folder itself (unlabelled)")
        if subdirs:
            self.classes = [p.name for p in subdirs]
            pairs = [(f, i) for i, d in enumerate(subdirs) for f in self._images_in(d)]
            self.files = [f for f, _ in pairs]
            self.labels = [label for _, label in pairs]
        else:
            self.files = self._images_in(self.root)
        if not self.files:
            raise UsageError(f"no images found in {self.root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
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
            raise UsageError(f"expected uint8 images of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
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
