"""A tiny set held in memory: the sampled images, their labels and where they came from."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from .sampling import sample_tiny_set
from .sources import ImageSource, UnreadableImage
from .transforms import Transforms, resize_shorter
from ..compress_report import TinySetInfo
from ..errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class TinySet:
    images: list[torch.Tensor]  # uint8 (C, H, W), shorter side already at the eval resize
    labels: list[int] | None
    identifiers: list[str]
    transforms: Transforms
    skipped: list[str] = field(default_factory=list)  # unreadable files, with the reason
    non_images: list[str] = field(default_factory=list)  # files ignored for their suffix
    _eval_cache: torch.Tensor | None = field(default=None, repr=False)
    kind: str = "images"

    def __len__(self) -> int:
        return len(self.images)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return self.transforms.config.sample_shape

    def info(self) -> TinySetInfo:
        return TinySetInfo(len(self), self.labels is not None, self.skipped, self.non_images, self.identifiers,
                           self.kind)

    def eval_tensor(self) -> torch.Tensor:
        """All images under the evaluation transform, (N, C, H, W) float; computed once."""
        if self._eval_cache is None:
            self._eval_cache = torch.stack([self.transforms.evaluate(im) for im in self.images])
        return self._eval_cache

    def train_batch(self, indices: list[int], generator: torch.Generator) -> torch.Tensor:
        return torch.stack([self.transforms.train(self.images[i], generator) for i in indices])

    def preprocessing_record(self) -> dict:
        c = self.transforms.config
        return {"image_size": c.image_size, "channels": c.channels, "mean": list(c.mean), "std": list(c.std)}

    def label_tensor(self) -> torch.Tensor:
        if self.labels is None:
            raise UsageError("this tiny set has no labels (a flat folder or synthesized images); "
                             "use a folder with one subfolder per class for label-based methods")
        return torch.tensor(self.labels, dtype=torch.long)


def build_tiny_set(source: ImageSource, n: int | None, generator: torch.Generator,
                   transforms: Transforms) -> TinySet:
    """Sample ``n`` images (all of them if None) with the paper's rule and load them.

    Images that fail to decode are skipped with a warning, counted, and replaced by
    further draws so the set still holds ``n`` images when the source allows it.
    """
    n = len(source) if n is None else n
    if n < 1:
        raise UsageError(f"the tiny set needs at least 1 image, asked for {n}")
    channels = transforms.config.channels
    excluded: set[int] = set()
    chosen: list[int] = []
    images: list[torch.Tensor] = []
    skipped: list[str] = []
    while len(chosen) < n:
        pool = [i for i in range(len(source)) if i not in excluded]
        if not pool:
            break
        labels = [source.labels[i] for i in pool] if source.labels is not None else None
        want = min(n - len(chosen), len(pool))
        for k in sample_tiny_set(len(pool), want, generator, labels):
            index = pool[k]
            excluded.add(index)
            try:
                image = source.load(index, channels)
            except UnreadableImage as exc:
                skipped.append(str(exc))
                continue
            chosen.append(index)
            images.append(resize_shorter(image, transforms.config.eval_resize))
    if skipped:
        log.warning("skipped %d unreadable images: %s", len(skipped), "; ".join(skipped[:5]))
    if not chosen:
        raise UsageError("no readable images in the source")
    if len(chosen) < n:
        log.warning("asked for %d images, only %d readable ones exist", n, len(chosen))
    labels = [source.labels[i] for i in chosen] if source.labels is not None else None
    return TinySet(images, labels, [source.identifier(i) for i in chosen], transforms, skipped,
                   list(getattr(source, "skipped_files", [])))
