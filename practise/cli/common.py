"""What the subcommands share beyond flags: the progress bar, configs built from flags,
and the model, preprocessing and tiny set a command line asks for."""
from __future__ import annotations

import logging
import sys

import torch

from ..artifacts import check_writable_folder
from ..data import Transforms, build_tiny_set, open_source
from ..latency import LatencyConfig
from ..precision import resolve_autocast
from ..model_io import input_channels, load_model
from ..pipeline import CompressConfig
from ..preprocessing import Preprocessing, resolve_preprocessing
from ..progress import Progress
from ..recovery import RecoveryConfig
from ..scoring import ScoringConfig
from ..seeding import seed_everything
from ..synthesis import SynthesisConfig
from ..text import SequenceModel, load_hf
from .arguments import csv
from .text import is_hf_spec, token_shape

log = logging.getLogger("practise")


class TqdmProgress(Progress):
    def __init__(self, enabled: bool = True):
        self.enabled, self.bar = enabled, None

    def start(self, task: str, total: int) -> None:
        from tqdm import tqdm

        # In a terminal, smooth updates; in a log file or pipe, a line every 30 s at most.
        interval = 0.5 if sys.stderr.isatty() else 30.0
        self.bar = tqdm(total=total, desc=task, disable=not self.enabled, mininterval=interval, file=sys.stderr,
                        dynamic_ncols=True)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_for(a) -> TqdmProgress:
    return TqdmProgress(not a.quiet)


# ---- configs from flags ----------------------------------------------------------------

def latency_config(a) -> LatencyConfig:
    return LatencyConfig(device=a.device, batch_size=a.batch_size, warmup=a.warmup, repeats=a.repeats,
                         max_repeats=a.max_repeats, resolution=a.latency_resolution,
                         group_identical=not a.no_latency_groups, threads=a.threads, dtype=a.dtype,
                         channels_last=a.channels_last, backend=a.latency_backend,
                         budget_s=getattr(a, "latency_budget", LatencyConfig.budget_s),
                         metric=getattr(a, "latency_metric", LatencyConfig.metric))


def scoring_config(a) -> ScoringConfig:
    return ScoringConfig(iterations=a.score_iterations, protocol=a.score_protocol, lr=a.score_lr, seed=a.seed,
                         batch_size=getattr(a, "score_batch_size", ScoringConfig.batch_size),
                         eval_examples=getattr(a, "score_eval_examples", None),
                         closed_form_before=getattr(a, "score_before", False),
                         linear_map=getattr(a, "score_linear_map", ScoringConfig.linear_map),
                         fit_scale=getattr(a, "fit_scale", ScoringConfig.fit_scale),
                         autocast=resolve_autocast(getattr(a, "score_autocast", "none"), a.device))


def recovery_config(a) -> RecoveryConfig:
    return RecoveryConfig(method=a.recovery, iterations=a.recovery_iterations, lr=a.recovery_lr, seed=a.seed,
                          batch_size=getattr(a, "recovery_batch_size", RecoveryConfig.batch_size),
                          scope=getattr(a, "recovery_scope", RecoveryConfig.scope),
                          autocast=resolve_autocast(getattr(a, "recovery_autocast", "none"), a.device))


def synthesis_config(a) -> SynthesisConfig:
    return SynthesisConfig(steps=a.synth_steps, batch_size=a.synth_batch_size, lr=a.synth_lr, bn_weight=a.bn_weight,
                           ce_weight=a.ce_weight, tv_weight=a.tv_weight, l2_weight=a.l2_weight, jitter=a.jitter,
                           flip=not a.no_flip, seed=a.seed)


def compress_config(a) -> CompressConfig:
    return CompressConfig(
        target_latency=a.target_latency, num_blocks=a.num_blocks, include=csv(a.include), exclude=csv(a.exclude),
        feature_layer=a.feature_layer, granularity=getattr(a, "granularity", "layer"), criterion=a.criterion, device=a.device, seed=a.seed,
        repair=getattr(a, "repair", CompressConfig.repair),
        rescore_shortlist=getattr(a, "rescore_shortlist", CompressConfig.rescore_shortlist),
        scoring=scoring_config(a), latency=latency_config(a), recovery=recovery_config(a))


# ---- model, preprocessing, data --------------------------------------------------------

def model_from_args(a) -> torch.nn.Module:
    if is_hf_spec(a.model):
        return load_hf(a.model).model
    return load_model(a.model, a.weights, num_classes=a.num_classes, in_channels=a.in_channels)


def preprocessing_for(a, model: torch.nn.Module, data: str | None) -> Preprocessing:
    """Flags first, then what the weights / compressed file recorded, then the data set's
    or the architecture's defaults; defaulted values are announced (log), never silent."""
    pre = resolve_preprocessing(model, input_channels(model), data, getattr(a, "image_size", None),
                                getattr(a, "mean", None), getattr(a, "std", None))
    if pre.note:
        log.warning(pre.note)
    return pre


def transforms_for(a, model: torch.nn.Module, data: str | None) -> Transforms:
    return preprocessing_for(a, model, data).transforms


def shape_for(a, model: torch.nn.Module) -> tuple[int, int, int]:
    """The input shape alone (blocks, latency): only a defaulted size is worth a warning."""
    if isinstance(model, SequenceModel):
        return token_shape(a)
    pre = resolve_preprocessing(model, input_channels(model), None, a.image_size)
    if "image_size" in pre.defaulted:
        log.warning("no input size is recorded with the weights and none was given: using %d px (%s); "
                    "pass --image-size if the model runs at another size",
                    pre.transforms.config.image_size, pre.origins["image_size"])
    return pre.transforms.config.sample_shape


def tiny_set_from_args(a, transforms: Transforms):
    source = open_source(a.data)
    n = min(a.num_images, len(source))
    if n < a.num_images:
        log.warning("%s holds %d images; using all of them", a.data, len(source))
    return build_tiny_set(source, n, seed_everything(a.seed), transforms)


def check_workdir(workdir: str | None) -> None:
    if workdir:
        check_writable_folder(workdir, "--workdir")
