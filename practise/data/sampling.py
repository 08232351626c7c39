"""Tiny-set sampling with the paper's rule."""
from __future__ import annotations

import torch
from ..errors import UsageError


def sample_tiny_set(num_images: int, n: int, generator: torch.Generator,
                    labels: list[int] | None = None) -> list[int]:
    """Indices of a tiny set of ``n`` images out of ``num_images``.

    Labelled data follows the authors' rule: for n of 1000 or more that divides evenly
    over the classes (the ImageNet case) take n / classes images of every class;
    otherwise repeatedly pick a random class, then a random unused image of it, so the
    set is not class-balanced. Unlabelled data is sampled uniformly without replacement.
    """
    if n <= 0:
        raise UsageError(f"tiny-set size must be positive, got {n}")
    if n > num_images:
        raise UsageError(f"asked for {n} images but the source holds only {num_images}")
    if labels is None:
        return torch.randperm(num_images, generator=generator)[:n].tolist()
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    classes = sorted(by_class)
    if n >= 1000 and n % len(classes) == 0 and all(len(v) >= n // len(classes) for v in by_class.values()):
        per_class = n // len(classes)
        chosen = []
        for c in classes:
            order = torch.randperm(len(by_class[c]), generator=generator)[:per_class]
            chosen += [by_class[c][i] for i in order.tolist()]
        return chosen
    remaining = {c: list(v) for c, v in by_class.items()}
    chosen = []
    while len(chosen) < n:
        live = [c for c in classes if remaining[c]]
        c = live[int(torch.randint(len(live), (1,), generator=generator))]
        pick = int(torch.randint(len(remaining[c]), (1,), generator=generator))
        chosen.append(remaining[c].pop(pick))
    return chosen
