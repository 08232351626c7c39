"""Tiny models and data shared by the tests."""
from __future__ import annotations

import torch
import torch.nn as nn

from practise.data import TensorSource, TransformConfig, Transforms, build_tiny_set
from practise.models import create_model


def calibrate_bn_(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Give a random network realistic BatchNorm statistics (init stats make deep
    residual stacks explode), like a trained teacher would have."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


def write_png_folder(root, classes: int = 3, per_class: int = 8, size: int = 20, seed: int = 0, prefix: str = "class"):
    """Random grey PNGs: one subfolder per class (``<prefix><c>``), or flat when ``classes`` is 0."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folders = [root / f"{prefix}{c}" for c in range(classes)] or [root]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8), "L").save(folder / f"{i}.png")
    return root


def tiny_images(n: int = 96, size: int = 16, channels: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, channels, size, size, generator=g) * 255).to(torch.uint8)


def small_transforms(size: int = 16, channels: int = 1) -> Transforms:
    return Transforms(TransformConfig(image_size=size, channels=channels, mean=(0.5,) * channels,
                                      std=(0.25,) * channels))


def tiny_resnet(arch: str = "resnet20", size: int = 16, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=10, in_channels=1)
    x = (tiny_images(64, size, seed=seed).float() / 255 - 0.5) / 0.25
    return calibrate_bn_(model, x)


def tiny_set(n: int = 48, size: int = 16, seed: int = 0, labelled: bool = True):
    images = tiny_images(96, size, seed=seed)
    labels = torch.arange(96) % 10 if labelled else None
    return build_tiny_set(TensorSource(images, labels), n, torch.Generator().manual_seed(seed), small_transforms(size))


class Unit(nn.Module):
    """A residual block named nothing like torchvision's: relu(x + f(x))."""

    def __init__(self, c: int):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                               nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return torch.relu(x + self.f(x))


class Shrink(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.op = nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    def forward(self, x):
        return self.op(x)


class Weird(nn.Module):
    """Custom model: residual Units among shape-preserving modules that are not blocks
    (a lone BatchNorm, a conv Sequential without skip), a stage container, functional
    ops in forward, and a head that pools with torch.mean."""

    def __init__(self, c: int = 8, classes: int = 5):
        super().__init__()
        self.entry = nn.Conv2d(1, c, 3, padding=1)
        self.lonely_norm = nn.BatchNorm2d(c)
        self.trunk = nn.Sequential(Unit(c), Unit(c), nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU()),
                                   Unit(c), Shrink(c, 2 * c), Unit(2 * c), Unit(2 * c))
        self.readout = nn.Linear(2 * c, classes)

    def forward(self, x):
        x = torch.relu(self.lonely_norm(self.entry(x)))
        x = self.trunk(x)
        return self.readout(x.mean(dim=(2, 3)))


WEIRD_BLOCKS = ["trunk.0", "trunk.1", "trunk.3", "trunk.5", "trunk.6"]


def weird_model(seed: int = 0) -> Weird:
    torch.manual_seed(seed)
    return calibrate_bn_(Weird(), (tiny_images(64).float() / 255 - 0.5) / 0.25)


def modelled_saving(cost_ms: dict[str, float], base_ms: float = 1.0):
    """A stand-in for practise.latency.measure_saving: latency = base + the blocks still
    present, exactly (for selection logic, not timing)."""
    from practise.latency import LatencyStats, Saving

    def fake(model, shape, blocks, config, progress=None, target=None):
        full = base_ms + sum(cost_ms.values())
        pruned = full - sum(cost_ms[b] for b in blocks)
        reduction = (full - pruned) / full
        return Saving(list(blocks), reduction, reduction, reduction, 1, LatencyStats.from_samples([full / 1000]),
                      LatencyStats.from_samples([pruned / 1000])), None

    return fake


def tiny_llama(layers: int = 4, vocab: int = 120, hidden: int = 32, seed: int = 0):
    """A seeded random Llama causal LM wrapped as a practise SequenceModel, in eval mode."""
    import transformers

    from practise.text import SequenceModel

    torch.manual_seed(seed)
    return SequenceModel(transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=2 * hidden)).eval())


def token_tiny_set(n: int, length: int, vocab: int = 120, pad_every: int = 2, pad_from: int | None = None,
                   seed: int = 0):
    """A text tiny set of random ids; every ``pad_every``-th row padded from ``pad_from``."""
    from practise.text.tinyset import TextTinySet

    ids = torch.randint(10, vocab, (n, length), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    if pad_from is not None:
        mask[::pad_every, pad_from:] = 0
    return TextTinySet(torch.stack([ids, mask], 1), None, [str(i) for i in range(n)], [""] * n, "t", length)
