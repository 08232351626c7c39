"""Training a classifier from scratch (the project's own teachers), resumably."""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data.sources import ImageSource
from .data.transforms import Transforms
from .evaluation import evaluate_models
from .files import atomic_write_text, atomic_torch_save
from .model_output import logits
from .errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1  # peak learning rate, cosine-decayed per step to 0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    channels_last: bool = True  # faster convolutions on CPU
    # "sgd" (nesterov; the CNN teachers) or "adamw" (transformers, which SGD trains poorly)
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; valid choices: {', '.join(OPTIMIZERS)}")


OPTIMIZERS = ("sgd", "adamw")


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, nesterov=True)


def cosine_lr(step: int, total: int, peak: float) -> float:
    return 0.5 * peak * (1 + math.cos(math.pi * step / total))


def _load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, list, torch.Tensor | None]:
    if not path.is_file():
        return 0, [], None
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("resuming from %s after epoch %d", path, state["epoch"])
    return int(state["epoch"]), list(state["history"]), state["generator"]


def train_classifier_(model: nn.Module, train: ImageSource, test: ImageSource, transforms: Transforms,
                     config: TrainConfig, workdir: str | Path, device: str = "cpu",
                     progress=None) -> list[dict]:
    """Cross-entropy training with SGD + cosine schedule; checkpoints after every epoch.

    Rerunning with the same ``workdir`` resumes after the last finished epoch.
    Returns the per-epoch history (loss, test accuracy, seconds).
    """
    if train.labels is None:
        raise UsageError("training a classifier needs labelled images (class subfolders)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = workdir / "checkpoint.pt"
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    optimizer = make_optimizer(model, config)
    start_epoch, history, gen_state = _load_checkpoint(ckpt, model, optimizer)
    generator = torch.Generator().manual_seed(config.seed)
    if gen_state is not None:
        generator.set_state(gen_state)
    labels = torch.tensor(train.labels)
    steps_per_epoch = len(train) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    for epoch in range(start_epoch, config.epochs):
        began = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=generator)
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size:(step + 1) * config.batch_size].tolist()
            images = torch.stack([transforms.train(train.load(i, transforms.config.channels), generator) for i in idx])
            images = images.to(device=device, memory_format=memory_format)
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(epoch * steps_per_epoch + step, total_steps, config.lr)
            loss = F.cross_entropy(logits(model, images), labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            running += value
            if progress is not None:
                progress(epoch, step, steps_per_epoch, value)
        acc = evaluate_models({"model": model}, test, transforms, device)["model"]["top1"]
        record = {"epoch": epoch + 1, "train_loss": running / steps_per_epoch, "test_top1": acc,
                  "seconds": time.perf_counter() - began}
        history.append(record)
        log.info("epoch %d/%d loss %.4f test top-1 %.4f (%.0f s)", epoch + 1, config.epochs,
                 record["train_loss"], acc, record["seconds"])
        atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                           "history": history, "generator": generator.get_state(),
                           "config": asdict(config)}, ckpt)
        atomic_write_text(workdir / "history.json", json.dumps(history, indent=2))
    model.to(memory_format=torch.contiguous_format)
    return history


def save_trained_model(model: nn.Module, path: str | Path, history: list[dict], config: TrainConfig,
                       data: str, transforms: Transforms, command: str, overwrite: bool = False) -> Path:
    """Weights as .safetensors plus a model card beside them (.json for machines, .md for people)."""
    import subprocess

    from .machine import describe, machine_info

    from safetensors.torch import save_file

    from .files import atomic_write

    path = Path(path)
    arch = getattr(model, "practise_arch", None)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tc = transforms.config
    # preprocessing travels with the weights, so later commands (e.g. compress --data-free) need no flags
    preprocessing = {"image_size": tc.image_size, "mean": list(tc.mean), "std": list(tc.std)}
    metadata = {"arch": json.dumps(arch), "preprocessing": json.dumps(preprocessing)}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata), overwrite=overwrite)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    card = {"arch": arch, "data": data, "image_size": tc.image_size, "channels": tc.channels,
            "normalization": {"mean": list(tc.mean), "std": list(tc.std)}, "train_config": asdict(config),
            "epochs_run": len(history), "test_top1": history[-1]["test_top1"] if history else None,
            "history": history, "train_seconds_total": sum(h["seconds"] for h in history),
            "command": command, "commit": commit,
            "machine": f"{describe(machine_info())}, torch {torch.__version__}"}
    atomic_write_text(path.with_suffix(".json"), json.dumps(card, indent=2), overwrite=True)
    name = arch["name"] if arch else type(model).__name__
    lines = [f"# {name} trained on {data}", "",
             f"- architecture: `{name}` {arch['kwargs'] if arch else ''}",
             f"- test top-1: **{100 * card['test_top1']:.2f}%**" if history else "- not trained",
             f"- {len(history)} epochs, batch {config.batch_size}, "
             f"{'AdamW' if config.optimizer == 'adamw' else 'SGD (nesterov)'} lr {config.lr} cosine, "
             f"weight decay {config.weight_decay}, {tc.train_augment} + flip augmentation, seed {config.seed}",
             f"- training time: {card['train_seconds_total'] / 60:.1f} min on {card['machine']}",
             f"- command: `{command}` (commit {commit})", "",
             "| epoch | train loss | test top-1 | seconds |", "|---|---|---|---|"]
    lines += [f"| {h['epoch']} | {h['train_loss']:.4f} | {100 * h['test_top1']:.2f}% | {h['seconds']:.0f} |"
              for h in history]
    atomic_write_text(path.with_suffix(".md"), "\n".join(lines) + "\n", overwrite=True)
    return path
