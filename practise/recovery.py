"""Recovering the pruned network: feature mimicking (PRACTISE), and the baselines
cross-entropy finetuning (the paper's BP) and logit distillation (KD).

Methods live in a registry: a name maps to a small class with a loss function; the
training loop is shared.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tiny_set import TinySetProtocol
from .features import as_format, feature_mse, forward_features
from .inputs import token_mask, used_length
from .modes import eval_mode, flush_denormals, on_device
from .model_output import logits
from .optim import batch_indices, check_sgd_settings, set_lr_, step_lr
from .precision import autocast, check_autocast, full_precision
from .progress import Progress, silent
from .registry import Registry, named
from .errors import UsageError, NonFiniteError

log = logging.getLogger(__name__)
SCOPES = ("all", "neighbours")


@dataclass
class RecoveryConfig:
    method: str = "mimic"          # a name in RECOVERY_METHODS
    iterations: int = 2000         # paper: 2000 (16000 data-free)
    batch_size: int = 64           # paper
    lr: float | None = None        # None: the method's default (mimic/kd 0.02, ce 1e-4 as the authors' BP)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_drop_at: float = 0.4        # x0.1 after this fraction of the iterations
    kd_temperature: float = 4.0
    seed: int = 0
    channels_last: bool = True     # memory layout only: faster convolutions, same maths
    autocast: str | None = None    # "bfloat16": the student's passes in bf16 autocast (teacher targets float32)
    # which weights train: "all" (the paper), or "neighbours": only the kept blocks right before
    # and after each run of dropped ones (fewer weight gradients and optimizer state: cheaper
    # at LLM scale; the frozen rest still passes gradients through)
    scope: str = "all"

    def __post_init__(self) -> None:
        RECOVERY_METHODS.get(self.method)  # an unknown name lists the valid ones
        if self.scope not in SCOPES:
            raise UsageError(f"unknown recovery scope {self.scope!r}; valid choices: {', '.join(SCOPES)}")
        check_sgd_settings("recovery", self.iterations, 0, self.batch_size, self.lr, self.momentum,
                           self.weight_decay, self.lr_drop_at)
        check_autocast(self.autocast, "recovery")
        if self.kd_temperature <= 0:
            raise UsageError(f"recovery: kd_temperature must be positive, got {self.kd_temperature}")

    @property
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else RECOVERY_METHODS[self.method].default_lr


class RecoveryMethod:
    name: str
    needs_labels = False
    default_lr = 0.02

    def losses(self, student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
               feature_layer: str, config: RecoveryConfig) -> dict[str, torch.Tensor]:
        raise NotImplementedError


RECOVERY_METHODS: Registry[RecoveryMethod] = Registry("recovery method")


def register_recovery(name: str, method: RecoveryMethod | type[RecoveryMethod] | None = None):
    """Add a recovery method (an instance, or a subclass to instantiate) under ``name``, a
    valid ``RecoveryConfig.method`` value. Without ``method``, a class decorator."""
    return RECOVERY_METHODS.add(name, method, lambda m: named(m, name))


@register_recovery("mimic")
class FeatureMimic(RecoveryMethod):
    """MSE between student and teacher feature maps before global pooling; no labels.
    The classifier gets no gradient (the forward stops at the feature layer)."""


    def losses(self, student, teacher, x, y, feature_layer, config):
        with torch.no_grad(), full_precision(x.device):
            target = forward_features(teacher, x, feature_layer)
        out = forward_features(student, x, feature_layer)
        return {"loss": feature_mse(out, target, token_mask(teacher, x))}


@register_recovery("ce")
class CrossEntropy(RecoveryMethod):
    """Plain finetuning on the labelled tiny set (the paper's BP baseline)."""

    needs_labels = True
    default_lr = 1e-4

    def losses(self, student, teacher, x, y, feature_layer, config):
        out = logits(student, x)
        if out.dim() != 2:
            raise UsageError(f"ce recovery needs class logits (batch, classes); this model returns shape "
                             f"{tuple(out.shape)} (a sequence model: use mimic or kd)")
        return {"loss": F.cross_entropy(out.float(), y)}


@register_recovery("kd")
class LogitDistillation(RecoveryMethod):
    """Hinton's KD on logits: KL(teacher || student) at temperature T, times T^2; no labels.
    Per-token logits (batch, tokens, vocabulary) of a language model: the KL per real token
    (padding left out), averaged."""


    def losses(self, student, teacher, x, y, feature_layer, config):
        t = config.kd_temperature
        with torch.no_grad(), full_precision(x.device):
            teacher_logits = logits(teacher, x)
        kl = F.kl_div(F.log_softmax(logits(student, x).float() / t, -1), F.log_softmax(teacher_logits / t, -1),
                      reduction="none", log_target=True).sum(-1)
        if kl.dim() == 1:
            return {"loss": kl.mean() * t * t}
        mask = token_mask(teacher, x)
        weights = mask.to(kl.dtype) if mask is not None else torch.ones_like(kl)
        return {"loss": (kl * weights).sum() / weights.sum().clamp(min=1) * t * t}


def trained_parameters(student: nn.Module, trainable: list[str] | None) -> list[nn.Parameter]:
    """Every parameter (``trainable`` None), or those inside the named modules; the rest frozen."""
    names = None if trainable is None else tuple(trainable)
    chosen = []
    for name, p in student.named_parameters():
        train = names is None or any(name.startswith(m + ".") for m in names)
        p.requires_grad_(train)
        if train:
            chosen.append(p)
    if not chosen:
        raise UsageError(f"recovery has no parameter to train in {', '.join(trainable or [])}")
    return chosen


def divergence_message(what: str, step: int, loss: float, lr: float, parameter: str) -> str:
    """Tell a bad input (non-finite before any update) apart from a too-high learning rate."""
    if step == 0:
        return (f"{what}: the loss is {loss} before any update, so the inputs are bad, not the learning rate: "
                f"the teacher or the images produce NaN/Inf (check the weights file and the normalisation)")
    return f"{what} diverged at step {step} (loss {loss}) with lr {lr}; lower it ({parameter})"


def neighbours(candidates: list[str], dropped: list[str]) -> list[str]:
    """The kept candidates right before and right after each run of dropped ones (in
    ``candidates``' order, the call order)."""
    gone = set(dropped)
    chosen: list[str] = []
    for i, name in enumerate(candidates):
        if name in gone:
            continue
        before = i + 1 < len(candidates) and candidates[i + 1] in gone
        after = i > 0 and candidates[i - 1] in gone
        if before or after:
            chosen.append(name)
    return chosen


def recover_(student: nn.Module, teacher: nn.Module, tiny_set: TinySetProtocol, feature_layer: str,
            config: RecoveryConfig, device: torch.device | str = "cpu", progress: Progress = silent,
            trainable: list[str] | None = None) -> list[float]:
    """Train ``student``'s parameters in place (those of the ``trainable`` modules only, if
    given); student in train mode, teacher in eval mode. Token batches are cut after their
    last real token (padding costs compute and is masked out anyway).

    Returns the loss of every step.
    """
    method = RECOVERY_METHODS[config.method]
    labels = tiny_set.label_tensor() if method.needs_labels else None  # raises if unlabelled
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    student.to(device=device, memory_format=memory_format)
    teacher = on_device(teacher, device)  # the caller's teacher stays where it is
    trained = trained_parameters(student, trainable)
    optimizer = torch.optim.SGD(trained, lr=config.resolved_lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    batches = batch_indices(len(tiny_set), config.batch_size, generator)
    history: list[float] = []
    progress.start(f"recovery ({config.method})", config.iterations)
    was_training = student.training
    try:
        with eval_mode(teacher), flush_denormals():
            student.train(trainable is None)
            for name in trainable or []:  # frozen blocks keep their normalisation statistics too
                student.get_submodule(name).train()
            for step in range(config.iterations):
                idx = next(batches)
                x = as_format(tiny_set.train_batch(idx.tolist(), generator).to(device), memory_format)
                length = used_length(token_mask(teacher, x))
                x = x[..., :length] if length is not None else x
                y = labels[idx].to(device) if labels is not None else None
                set_lr_(optimizer, step_lr(step, config.resolved_lr, config.lr_drop_at, config.iterations))
                with autocast(device, config.autocast):
                    loss = method.losses(student, teacher, x, y, feature_layer, config)["loss"]
                if not torch.isfinite(loss):
                    raise NonFiniteError(divergence_message("recovery", step, float(loss), config.resolved_lr,
                                                                "`recovery.lr`"))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                history.append(float(loss.detach()))
                progress.advance(1)
                if step % 200 == 0:
                    log.info("recovery step %d/%d loss %.5f", step, config.iterations, history[-1])
    finally:
        progress.end()
        student.train(was_training)
        for p in student.parameters():  # a frozen scope is a setting of this run, not of the model
            p.requires_grad_(True)
        student.to(memory_format=torch.contiguous_format)
    return history

