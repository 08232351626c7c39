"""Accuracy and teacher agreement on an evaluation source, in batches."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
import torch.nn as nn

from .data.sources import ImageSource, UnreadableImage
from .data.transforms import Transforms
from .modes import eval_mode
from .model_output import logits
from .errors import UsageError

log = logging.getLogger(__name__)


def iterate_eval_batches(source: ImageSource, transforms: Transforms, batch_size: int = 256,
                         limit: int | None = None, skipped: list[str] | None = None,
                         ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield (images, labels or None) under the evaluation transform, in source order.

    Images that cannot be decoded are left out; their reasons go to ``skipped`` if given."""
    total = len(source) if limit is None else min(limit, len(source))
    for start in range(0, total, batch_size):
        images, kept = [], []
        for i in range(start, min(total, start + batch_size)):
            try:
                images.append(transforms.evaluate(source.load(i, transforms.config.channels)))
            except UnreadableImage as exc:
                if skipped is not None:
                    skipped.append(str(exc))
                continue
            kept.append(i)
        if not images:
            continue
        labels = torch.tensor([source.labels[i] for i in kept]) if source.labels is not None else None
        yield torch.stack(images), labels


@torch.no_grad()
def evaluate_models(models: dict[str, nn.Module], source: ImageSource, transforms: Transforms,
                    device: torch.device | str = "cpu", batch_size: int = 256, limit: int | None = None,
                    reference: str | None = None) -> dict[str, dict[str, float]]:
    """Top-1 accuracy of each model (if labelled) and its agreement with ``reference``'s predictions.

    All models see the same batches, so the images are decoded once. Unreadable images
    are skipped; when there are any, ``results["skipped_unreadable"]`` lists them.
    """
    correct = {name: 0 for name in models}
    agree = {name: 0 for name in models}
    seen = 0
    skipped: list[str] = []
    with eval_mode(*models.values()):
        for images, labels in iterate_eval_batches(source, transforms, batch_size, limit, skipped):
            images = images.to(device)
            preds = {name: logits(m, images).argmax(1).cpu() for name, m in models.items()}
            seen += images.shape[0]
            for name, p in preds.items():
                if labels is not None:
                    correct[name] += int((p == labels).sum())
                if reference is not None:
                    agree[name] += int((p == preds[reference]).sum())
    if not seen:
        raise UsageError(f"no readable evaluation images ({len(skipped)} unreadable: {'; '.join(skipped[:3])})")
    if skipped:
        log.warning("evaluation skipped %d unreadable images: %s", len(skipped), "; ".join(skipped[:5]))
    results: dict = {}
    for name in models:
        results[name] = {"images": seen}
        if source.labels is not None:
            results[name]["top1"] = correct[name] / max(seen, 1)
        if reference is not None:
            results[name]["agreement_with_" + reference] = agree[name] / max(seen, 1)
    if skipped:
        results["skipped_unreadable"] = skipped
    return results
