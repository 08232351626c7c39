"""Images from the teacher alone (DeepInversion, Yin et al., CVPR 2020), for data-free compression.

A batch of inputs, initialised as noise, is optimised (Adam) so that
* every BatchNorm layer's batch mean and variance of its input match its running
  statistics (the first BatchNorm weighted ``first_bn_multiplier`` times more),
* the teacher classifies each image as its target class (classes spread evenly),
* total variation and the L2 norm of the images stay small (image priors),
while random jitter (a circular shift) and horizontal flips are applied each step so the
images do not overfit one alignment. Defaults follow the PRACTISE authors' data-free
setting (BN 0.01-0.05, TV 1e-4, L2 1e-5, Adam lr 0.2-0.25 with betas (0.5, 0.9)).

Images are synthesized in the model's normalised input space and written as PNGs in
one subfolder per target class, so any command accepts the folder as a (labelled) tiny set.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from .files import atomic_write, atomic_write_text
from .modes import eval_mode, hooks_removed
from .model_output import logits
from .progress import Progress, silent
from .errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class SynthesisConfig:
    steps: int = 2000                 # optimisation steps per batch ("a few thousand")
    batch_size: int = 64              # images optimised together (BN statistics are per batch)
    lr: float = 0.25
    betas: tuple[float, float] = (0.5, 0.9)
    bn_weight: float = 0.05
    first_bn_multiplier: float = 10.0
    ce_weight: float = 1.0
    tv_weight: float = 1e-4
    l2_weight: float = 1e-5
    jitter: int = 2                   # max circular shift in pixels (DeepInversion: 30 at 224 px)
    flip: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise UsageError(f"steps and batch_size must be at least 1, got {self.steps} and {self.batch_size}")
        weights = (self.bn_weight, self.ce_weight, self.tv_weight, self.l2_weight)
        if min(weights) < 0 or not all(math.isfinite(w) for w in weights):
            raise UsageError(f"loss weights must be finite and non-negative, got bn {self.bn_weight}, "
                             f"ce {self.ce_weight}, tv {self.tv_weight}, l2 {self.l2_weight}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"synthesis lr must be positive, got {self.lr}")
        if self.jitter < 0:
            raise UsageError(f"jitter must be non-negative, got {self.jitter}")


class BNStatistics:
    """Forward hooks that compare each BatchNorm input's batch statistics with the running ones."""

    def __init__(self, model: nn.Module, first_multiplier: float):
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                      and m.running_mean is not None]
        if not self.norms:
            raise UsageError("data-free synthesis needs BatchNorm layers with running statistics; this model has "
                             "none (DeepInversion matches their statistics), so use an image folder instead")
        self.first_multiplier = first_multiplier
        self.losses: list[torch.Tensor] = []

    def hook(self, module, args, output) -> None:
        x = args[0]
        dims = [0] + list(range(2, x.dim()))
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)
        self.losses.append(torch.norm(module.running_mean - mean, 2) + torch.norm(module.running_var - var, 2))

    def register(self) -> list:
        return [m.register_forward_hook(self.hook) for m in self.norms]

    def take(self) -> torch.Tensor:
        """Weighted sum of the losses recorded since the last call."""
        losses, self.losses = self.losses, []
        return sum(loss * (self.first_multiplier if i == 0 else 1.0) for i, loss in enumerate(losses))


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """L2 total variation: mean squared difference of neighbouring pixels."""
    return ((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean() + ((x[..., :, 1:] - x[..., :, :-1]) ** 2).mean()


def balanced_targets(count: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Target classes spread evenly (counts differ by at most one), in random order."""
    targets = torch.arange(count) % num_classes
    return targets[torch.randperm(count, generator=generator)]


def _augment(x: torch.Tensor, config: SynthesisConfig, generator: torch.Generator) -> torch.Tensor:
    if config.jitter > 0:
        dx, dy = (int(v) for v in torch.randint(-config.jitter, config.jitter + 1, (2,), generator=generator))
        x = torch.roll(x, shifts=(dx, dy), dims=(2, 3))
    if config.flip and bool(torch.rand(1, generator=generator) < 0.5):
        x = torch.flip(x, dims=(3,))
    return x


def synthesis_losses(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, stats: BNStatistics,
                     config: SynthesisConfig) -> dict[str, torch.Tensor]:
    """Each weighted term and their sum for one batch (hooks must be registered)."""
    scores = logits(model, x)
    terms = {"bn": config.bn_weight * stats.take(), "ce": config.ce_weight * F.cross_entropy(scores, targets),
             "tv": config.tv_weight * total_variation(x), "l2": config.l2_weight * torch.norm(x, 2)}
    terms["total"] = sum(terms.values())
    return terms


def synthesize_batch(model: nn.Module, shape: tuple[int, ...], targets: torch.Tensor, config: SynthesisConfig,
                     generator: torch.Generator, device: torch.device | str = "cpu",
                     progress: Progress = silent) -> tuple[torch.Tensor, dict[str, float]]:
    """Optimise one batch of images (normalised input space) for ``targets``; returns them and
    the final loss terms. ``model`` is used in eval mode and left as it was."""
    stats = BNStatistics(model, config.first_bn_multiplier)
    x = torch.randn((len(targets), *shape), generator=generator).to(device).requires_grad_(True)
    targets = targets.to(device)
    optimizer = torch.optim.Adam([x], lr=config.lr, betas=config.betas)
    requires = [(p, p.requires_grad) for p in model.parameters()]
    terms: dict[str, torch.Tensor] = {}
    try:
        for p, _ in requires:
            p.requires_grad_(False)
        with eval_mode(model), hooks_removed(stats.register()):
            for step in range(config.steps):
                terms = synthesis_losses(model, _augment(x, config, generator), targets, stats, config)
                optimizer.zero_grad(set_to_none=True)
                terms["total"].backward()
                optimizer.step()
                progress.advance(1)
                if step % 500 == 0:
                    log.info("synthesis step %d/%d: %s", step, config.steps,
                             ", ".join(f"{k} {float(v.detach()):.4f}" for k, v in terms.items()))
    finally:
        for p, flag in requires:
            p.requires_grad_(flag)
    return x.detach(), {k: float(v.detach()) for k, v in terms.items()}


def _num_classes(model: nn.Module, shape: tuple[int, ...], device) -> int:
    with torch.no_grad(), eval_mode(model):
        return int(logits(model, torch.zeros(1, *shape, device=device)).shape[-1])


def to_uint8(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Normalised (C, H, W) -> uint8 (H, W) or (H, W, C) for PNG."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    pixels = ((x * s + m).clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    return pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()


STATE_FILE = ".synthesis.json"  # hidden: image folders skip dot files


def _settings(config: SynthesisConfig, num_images: int, shape, mean, std, classes: int) -> dict:
    """Everything the images depend on; a resumed run must match it exactly."""
    return {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
            "num_images": num_images, "shape": list(shape), "mean": [float(m) for m in mean],
            "std": [float(s) for s in std], "classes": classes}


def _resume_state(out_dir: Path, settings: dict, overwrite: bool) -> dict | None:
    """The finished batches of an interrupted run with the same settings, or None to start afresh."""
    state_path = out_dir / STATE_FILE
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
        except (ValueError, UnicodeDecodeError):
            state = None
        if isinstance(state, dict) and state.get("settings") == settings:
            log.info("resuming synthesis in %s after %d finished batches", out_dir, len(state["batches"]))
            return state
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} is not empty and holds no interrupted synthesis with these settings; "
                              "pass `overwrite` or choose another folder")
    if overwrite:
        remove_earlier_synthesis_(out_dir)
    return None


def remove_earlier_synthesis_(out_dir: Path) -> None:
    """Delete what an earlier synthesis wrote here (its images and state), so none of its
    images joins the new set; files it did not write are left alone."""
    for path in list(out_dir.glob("class_*/synth_*.png")) + [out_dir / STATE_FILE]:
        path.unlink(missing_ok=True)
    for folder in out_dir.glob("class_*"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def synthesize(model: nn.Module, num_images: int, shape: tuple[int, ...], out_dir: str | Path,
               mean: tuple[float, ...], std: tuple[float, ...], config: SynthesisConfig = SynthesisConfig(),
               device: torch.device | str = "cpu", progress: Progress = silent,
               overwrite: bool = False) -> dict:
    """Synthesize ``num_images`` images from ``model`` into ``out_dir``/class_K/*.png.

    ``shape`` is one input (C, H, W); ``mean``/``std`` are the normalisation the model
    expects, used to turn optimised inputs into pixels. Returns a summary (per-batch
    final loss terms, files written). Resumable: after each batch its images and the
    random state are saved, so rerunning an interrupted call with the same settings
    continues after the last finished batch and gives the same images.
    """
    if num_images < 1:
        raise UsageError(f"number of images to synthesize must be at least 1, got {num_images}")
    if len(mean) != shape[0] or len(std) != shape[0]:
        raise UsageError(f"mean and std need {shape[0]} values (one per input channel), got {len(mean)} and {len(std)}")
    out_dir = Path(out_dir)
    BNStatistics(model, config.first_bn_multiplier)  # fail early on a model without BatchNorm
    generator = torch.Generator().manual_seed(config.seed)
    classes = _num_classes(model, shape, device)
    settings = _settings(config, num_images, shape, mean, std, classes)
    state = _resume_state(out_dir, settings, overwrite)
    targets = balanced_targets(num_images, classes, generator)
    batches, files = (state["batches"], state["files"]) if state else ([], [])
    if state:
        generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
    starts = list(range(0, num_images, config.batch_size))
    progress.start("synthesis", config.steps * (len(starts) - len(batches)))
    try:
        for start in starts[len(batches):]:
            batch_targets = targets[start:start + config.batch_size]
            images, terms = synthesize_batch(model, shape, batch_targets, config, generator, device, progress)
            batches.append(terms)
            for i, (image, target) in enumerate(zip(images, batch_targets.tolist())):
                path = out_dir / f"class_{target:03d}" / f"synth_{start + i:05d}.png"
                pixels = to_uint8(image, mean, std)
                atomic_write(path, lambda tmp, px=pixels: Image.fromarray(px).save(tmp, format="PNG"))
                files.append(str(path))
            atomic_write_text(out_dir / STATE_FILE, json.dumps({
                "settings": settings, "batches": batches, "files": files,
                "generator": generator.get_state().tolist()}))
    finally:
        progress.end()
    return {"images": len(files), "classes": classes, "batches": batches, "files": files}
