"""Out-of-domain tiny sets from data that maintained packages ship (no download): the
paper's claim that PRACTISE still works when the only images at hand come from another
domain. Both sources are unlabelled: their classes mean nothing to the teacher.

* ``sklearn-digits``: scikit-learn's bundled 1,797 handwritten digits (8x8, 17 grey
  levels), scaled to 0-255 and resized to ``size`` pixels.
* ``photo-crops``: random square crops of scikit-image's bundled sample photographs
  (camera, astronaut, coffee, ...), converted to grey and resized to ``size`` pixels.
* ``gaussian-noise``: independent Gaussian pixels (mean 127.5, std 64 grey levels,
  clipped): no image structure at all, the floor any real source should beat.
"""
from __future__ import annotations

import importlib

import numpy as np
import torch
from PIL import Image

from .sources import TensorSource
from ..errors import UsageError

# photographs bundled in scikit-image's wheel (loaded by these names from skimage.data)
PHOTOS = ("astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass", "gravel", "horse",
          "hubble_deep_field", "moon", "page", "retina", "rocket", "text")


def _needs(module: str, pip_name: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"this out-of-domain source needs {pip_name}: pip install {pip_name}") from exc


def _resize(gray: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def sklearn_digits(size: int = 28) -> TensorSource:
    datasets = _needs("sklearn.datasets", "scikit-learn")
    digits = datasets.load_digits().images  # (1797, 8, 8), values 0..16
    gray = np.round(digits / 16.0 * 255).astype(np.uint8)
    images = np.stack([_resize(g, size) for g in gray])
    return TensorSource(torch.from_numpy(images).unsqueeze(1), None, name="sklearn-digits")


def _gray_photo(name: str) -> np.ndarray:
    data = _needs("skimage.data", "scikit-image")
    image = np.asarray(getattr(data, name)())
    if image.ndim == 3:  # RGB(A) -> grey with ITU-R 601 luma, as PIL's convert does
        image = image[..., :3] @ np.array([0.299, 0.587, 0.114])
    return np.clip(image, 0, 255).astype(np.uint8)


def photo_crops(count: int = 2000, size: int = 28, seed: int = 0, min_side: int = 32, max_side: int = 160) -> TensorSource:
    """``count`` random square crops (side between min_side and max_side) of the bundled photos."""
    if count < 1:
        raise UsageError(f"number of crops must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    photos = [_gray_photo(name) for name in PHOTOS]
    crops = []
    for _ in range(count):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(min_side, min(max_side, *photo.shape[:2]) + 1))
        top, left = (int(rng.integers(0, photo.shape[k] - side + 1)) for k in (0, 1))
        crops.append(_resize(photo[top:top + side, left:left + side], size))
    return TensorSource(torch.from_numpy(np.stack(crops)).unsqueeze(1), None, name="photo-crops")


def gaussian_noise(count: int = 2000, size: int = 28, seed: int = 0, mean: float = 127.5, std: float = 64.0,
                   channels: int = 1) -> TensorSource:
    """``count`` images of independent Gaussian pixels (grey levels, clipped to 0..255)."""
    if count < 1:
        raise UsageError(f"number of noise images must be at least 1, got {count}")
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.round(rng.normal(mean, std, size=(count, channels, size, size))), 0, 255).astype(np.uint8)
    return TensorSource(torch.from_numpy(pixels), None, name="gaussian-noise")
