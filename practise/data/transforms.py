"""Image transforms on uint8 tensors (C, H, W).

Written here because torchvision (which has these) cannot be installed beside the CPU
torch wheel on our machines. They follow torchvision's definitions: RandomResizedCrop
(scale 0.08-1, ratio 3/4-4/3, 10 tries then a centre crop), resize of the shorter
side, centre crop, pad + random crop, horizontal flip. Randomness comes from an
explicit torch.Generator so a seed fixes every augmentation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from ..errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_IMAGE_SIZE = 16384
AUGMENTATIONS = ("random-resized-crop", "pad-crop", "none")


@dataclass
class TransformConfig:
    image_size: int = 224  # side of the square the network sees
    # Shorter side before the centre crop at evaluation; None: image_size * 256 / 224
    # (ImageNet's 256 -> 224), or image_size itself for small images (<= 64 px).
    resize_size: int | None = None
    channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    # Training augmentation: the paper's random-resized-crop + flip for large images;
    # pad-crop (4 px) + flip suits 28-32 px images. "auto" picks by image_size.
    augment: str = "auto"
    padding: int = 4

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """One input as the network takes it, without the batch dimension: (C, H, W)."""
        return (self.channels, self.image_size, self.image_size)

    def __post_init__(self) -> None:
        if not 1 <= self.image_size <= MAX_IMAGE_SIZE:
            raise UsageError(f"image size must be between 1 and {MAX_IMAGE_SIZE} pixels, got {self.image_size}")
        if self.channels < 1:
            raise UsageError(f"channels must be at least 1, got {self.channels}")
        values = tuple(self.mean) + tuple(self.std)
        if not all(math.isfinite(v) for v in values) or min(self.std, default=1) <= 0:
            raise UsageError(f"mean must be finite and std finite and positive, got mean {tuple(self.mean)} "
                             f"and std {tuple(self.std)}")
        if self.augment not in AUGMENTATIONS + ("auto",):
            raise UsageError(f"unknown augmentation {self.augment!r}; valid choices: auto, {', '.join(AUGMENTATIONS)}")
        self.mean, self.std = self._per_channel(self.mean), self._per_channel(self.std)

    def _per_channel(self, values: tuple[float, ...]) -> tuple[float, ...]:
        """One value per channel: a single value is repeated; RGB statistics for grey images averaged."""
        values = tuple(float(v) for v in values)
        if len(values) == self.channels:
            return values
        if len(values) == 1:
            return values * self.channels
        if len(values) == 3 and self.channels == 1:
            return (sum(values) / 3,)
        raise UsageError(f"mean and std need {'1 value' if self.channels == 1 else f'1 or {self.channels} values'} "
                         f"(one per input channel), "
                         f"got mean {tuple(self.mean)} and std {tuple(self.std)}")

    @property
    def small(self) -> bool:
        return self.image_size <= 64

    @property
    def eval_resize(self) -> int:
        if self.resize_size is not None:
            return self.resize_size
        return self.image_size if self.small else int(round(self.image_size * 256 / 224))

    @property
    def train_augment(self) -> str:
        if self.augment != "auto":
            return self.augment
        return "pad-crop" if self.small else "random-resized-crop"


def resize_shorter(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    if min(h, w) == size:
        return image
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    return _resize(image, new)


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    out = F.interpolate(image.unsqueeze(0).float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return out.squeeze(0).round().clamp(0, 255).to(torch.uint8)


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    if h < size or w < size:
        image = _resize(image, (max(h, size), max(w, size)))
        h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top:top + size, left:left + size]


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)
    return (images.float() / 255.0 - m) / s


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def random_resized_crop(image: torch.Tensor, size: int, generator: torch.Generator,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    h, w = image.shape[-2:]
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(generator, *scale)
        aspect = math.exp(_uniform(generator, *log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(h - ch + 1, (1,), generator=generator))
            left = int(torch.randint(w - cw + 1, (1,), generator=generator))
            return _resize(image[..., top:top + ch, left:left + cw], (size, size))
    return _resize(center_crop(image, min(h, w)), (size, size))


def pad_random_crop(image: torch.Tensor, size: int, padding: int, generator: torch.Generator) -> torch.Tensor:
    image = center_crop(resize_shorter(image, size), size)
    padded = F.pad(image, (padding,) * 4)
    top = int(torch.randint(2 * padding + 1, (1,), generator=generator))
    left = int(torch.randint(2 * padding + 1, (1,), generator=generator))
    return padded[..., top:top + size, left:left + size]


def maybe_flip(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return image.flip(-1) if float(torch.rand((), generator=generator)) < 0.5 else image


@dataclass
class Transforms:
    """The evaluation ("metric") and training transforms for one configuration."""

    config: TransformConfig = field(default_factory=TransformConfig)

    def eval_uint8(self, image: torch.Tensor) -> torch.Tensor:
        return center_crop(resize_shorter(image, self.config.eval_resize), self.config.image_size)

    def evaluate(self, image: torch.Tensor) -> torch.Tensor:
        return normalize(self.eval_uint8(image), self.config.mean, self.config.std)

    def train(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        kind, size = self.config.train_augment, self.config.image_size
        if kind == "random-resized-crop":
            image = maybe_flip(random_resized_crop(image, size, generator), generator)
        elif kind == "pad-crop":
            image = maybe_flip(pad_random_crop(image, size, self.config.padding, generator), generator)
        else:
            image = self.eval_uint8(image)
        return normalize(image, self.config.mean, self.config.std)
