"""Accuracy and teacher agreement on an evaluation source, in batches."""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn as nn

from .data.sources import ImageSource
from .data.transforms import Transforms
from .modes import eval_mode


def iterate_eval_batches(source: ImageSource, transforms: Transforms, batch_size: int = 256,
                         limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield (images, labels or None) under the evaluation transform, in source order."""
    total = len(source) if limit is None else min(limit, len(source))
    for start in range(0, total, batch_size):
        idx = range(start, min(total, start + batch_size))
        images = torch.stack([transforms.evaluate(source.load(i, transforms.config.channels)) for i in idx])
        labels = torch.tensor([source.labels[i] for i in idx]) if source.labels is not None else None
        yield images, labels


@torch.no_grad()
def evaluate_models(models: dict[str, nn.Module], source: ImageSource, transforms: Transforms,
                    device: torch.device | str = "cpu", batch_size: int = 256, limit: int | None = None,
                    reference: str | None = None) -> dict[str, dict[str, float]]:
    """Top-1 accuracy of each model (if labelled) and its agreement with ``reference``'s predictions.

    All models see the same batches, so the images are decoded once.
    """
    correct = {name: 0 for name in models}
    agree = {name: 0 for name in models}
    seen = 0
    with eval_mode(*models.values()):
        for images, labels in iterate_eval_batches(source, transforms, batch_size, limit):
            images = images.to(device)
            preds = {name: m(images).argmax(1).cpu() for name, m in models.items()}
            seen += images.shape[0]
            for name, p in preds.items():
                if labels is not None:
                    correct[name] += int((p == labels).sum())
                if reference is not None:
                    agree[name] += int((p == preds[reference]).sum())
    results: dict[str, dict[str, float]] = {}
    for name in models:
        results[name] = {"images": seen}
        if source.labels is not None:
            results[name]["top1"] = correct[name] / max(seen, 1)
        if reference is not None:
            results[name]["agreement_with_" + reference] = agree[name] / max(seen, 1)
    return results
