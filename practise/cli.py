"""The `practise` command: argument parsing only. Everything it does is a library call."""
from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from .blocks import count_flops
from .data import Transforms, build_tiny_set, open_source
from .data.sources import HeadSource
from .evaluation import evaluate_models
from .artifacts import check_output_folder, check_writable_file, check_writable_folder, write_compressed_outputs
from .device import resolve_device
from .io import one_line
from .latency import DTYPES, FULL, LatencyConfig, block_latency_reductions, measure_variants, noise_warning, reduction
from .model_io import input_channels, load_model
from .models import create_model
from .pipeline import CompressConfig, check_against_model, compress, inspect_model
from .progress import Progress
from .recovery import RECOVERY_METHODS, RecoveryConfig
from .preprocessing import Preprocessing, resolve_preprocessing
from .compress_report import CompressReport
from .report import summary_rows
from .scoring import PROTOCOLS, Scorer, ScoringConfig, score_blocks
from .seeding import seed_everything
from .selection import UnreachableTarget, parse_target
from .synthesis import SynthesisConfig, synthesize

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


def _csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the reason and where help is), exit code 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_at_least(minimum: int):
    """An argparse type: a whole number >= ``minimum``; the message names the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def number(minimum: float = 0.0, strict: bool = False):
    """An argparse type: a finite number >= ``minimum`` (> if ``strict``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if strict else '>='} {minimum:g}, "
                                             f"got {text!r}")
        return value

    return parse


def number_list(positive: bool):
    """An argparse type: comma-separated finite numbers (all > 0 if ``positive``), e.g. 0.485,0.456,0.406."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(t) for t in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
        if not all(math.isfinite(v) for v in values) or (positive and min(values) <= 0):
            raise argparse.ArgumentTypeError(f"{text!r} must hold finite numbers{', all above 0' if positive else ''}")
        return values

    return parse


def latency_target(text: str) -> float:
    try:
        return parse_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


POSITIVE, NON_NEGATIVE = int_at_least(1), int_at_least(0)
MEAN, STD = number_list(positive=False), number_list(positive=True)


# ---- argument groups -------------------------------------------------------------------

def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="architecture name (see `practise blocks --list`) or a compressed model file")
    g.add_argument("--weights", help=".pth/.pt/.safetensors state dict (loaded weights-only)")
    g.add_argument("--num-classes", type=POSITIVE, help="default: read from --weights, else the architecture's")
    g.add_argument("--in-channels", type=POSITIVE, help="default: read from --weights, else 3")
    g.add_argument("--image-size", type=int_at_least(1), help="input side in pixels (default: what the weights "
                   "recorded, else 28 for Fashion-MNIST, else the architecture's)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default: auto)")


def add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=required,
                   help="image folder (class subfolders = labelled, flat = unlabelled) or fashion-mnist:train")
    g.add_argument("--num-images", type=POSITIVE, default=500, help="tiny-set size (default 500, or all if fewer)")
    g.add_argument("--eval-data", help="evaluation images (folder or fashion-mnist:test) for accuracy / agreement")
    g.add_argument("--eval-limit", type=POSITIVE, help="evaluate on at most this many images")
    g.add_argument("--mean", type=MEAN, help="normalisation mean, comma-separated (default: what the weights "
                   "recorded, else Fashion-MNIST's for it, else ImageNet's)")
    g.add_argument("--std", type=STD, help="normalisation std, comma-separated, all above 0")
    g.add_argument("--seed", type=int, default=0, help="seeds the tiny set, scoring and recovery (default 0)")


def add_candidate_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("candidates")
    g.add_argument("--include", help="only these blocks: names or glob patterns, comma-separated (layer3.*)")
    g.add_argument("--exclude", help="never these blocks: names or glob patterns, comma-separated")
    g.add_argument("--feature-layer", help="module whose output is mimicked (default: found automatically)")


def add_latency_args(p: argparse.ArgumentParser) -> None:
    d = LatencyConfig()
    g = p.add_argument_group("latency measurement")
    g.add_argument("--batch-size", type=POSITIVE, help="batch for timing (default 64 on GPU, 8 on CPU)")
    g.add_argument("--repeats", type=POSITIVE, default=d.repeats, help=f"timed passes per variant (default {d.repeats})")
    g.add_argument("--warmup", type=NON_NEGATIVE, default=d.warmup, help=f"untimed passes per variant (default {d.warmup})")
    g.add_argument("--threads", type=POSITIVE, help="CPU threads for timing (default: torch's)")
    g.add_argument("--dtype", default=d.dtype, choices=list(DTYPES), help="float32, float16 or bfloat16")
    g.add_argument("--channels-last", action="store_true", help="time with channels_last memory format")


def add_scoring_args(p: argparse.ArgumentParser) -> None:
    d = ScoringConfig()
    g = p.add_argument_group("recoverability scoring")
    g.add_argument("--score-iterations", type=POSITIVE, default=d.iterations, help=f"adaptor SGD steps per block (default {d.iterations}, paper)")
    g.add_argument("--score-protocol", choices=PROTOCOLS, default=d.protocol,
                   help="cached: fixed eval-transformed batches, teacher and frozen prefix computed once (fast); "
                        "paper: augmented batches and full passes every step")
    g.add_argument("--score-lr", type=number(0.0), default=d.lr, help=f"adaptor SGD lr (default {d.lr}, paper)")
    g.add_argument("--workdir", help="folder keeping per-block scores so an interrupted run resumes")


def add_recovery_args(p: argparse.ArgumentParser) -> None:
    d = RecoveryConfig()
    g = p.add_argument_group("recovery")
    g.add_argument("--recovery", choices=list(RECOVERY_METHODS), default=d.method,
                   help="mimic: feature mimicking (PRACTISE); ce: cross-entropy with labels; kd: logit distillation")
    g.add_argument("--recovery-iterations", type=NON_NEGATIVE, default=d.iterations, help=f"default {d.iterations} (paper)")
    g.add_argument("--recovery-lr", type=number(0.0), help="default: 0.02 for mimic/kd, 1e-4 for ce (the authors')")


def add_synthesis_args(p: argparse.ArgumentParser) -> None:
    d = SynthesisConfig()
    g = p.add_argument_group("data-free synthesis (DeepInversion)")
    g.add_argument("--synth-steps", type=POSITIVE, default=d.steps, help=f"optimisation steps per batch (default {d.steps})")
    g.add_argument("--synth-batch-size", type=POSITIVE, default=d.batch_size, help=f"images optimised together (default {d.batch_size})")
    g.add_argument("--synth-lr", type=number(0.0, strict=True), default=d.lr, help=f"Adam learning rate (default {d.lr})")
    g.add_argument("--bn-weight", type=number(0.0), default=d.bn_weight, help=f"BatchNorm statistics term (default {d.bn_weight})")
    g.add_argument("--ce-weight", type=number(0.0), default=d.ce_weight, help=f"cross-entropy to the target class (default {d.ce_weight})")
    g.add_argument("--tv-weight", type=number(0.0), default=d.tv_weight, help=f"total-variation prior (default {d.tv_weight})")
    g.add_argument("--l2-weight", type=number(0.0), default=d.l2_weight, help=f"L2 prior (default {d.l2_weight})")
    g.add_argument("--jitter", type=NON_NEGATIVE, default=d.jitter, help=f"max random shift in pixels (default {d.jitter})")
    g.add_argument("--no-flip", action="store_true", help="no random horizontal flips")


# ---- configs from arguments ------------------------------------------------------------


def synthesis_config(a) -> SynthesisConfig:
    return SynthesisConfig(steps=a.synth_steps, batch_size=a.synth_batch_size, lr=a.synth_lr, bn_weight=a.bn_weight,
                           ce_weight=a.ce_weight, tv_weight=a.tv_weight, l2_weight=a.l2_weight, jitter=a.jitter,
                           flip=not a.no_flip, seed=a.seed)


def synthesize_from_args(a, model: torch.nn.Module, transforms: Transforms, num_images: int, out: Path,
                         overwrite: bool) -> dict:
    tc = transforms.config
    return synthesize(model, num_images, sample_shape(transforms), out, tc.mean, tc.std, synthesis_config(a),
                      resolve_device(a.device), TqdmProgress(not a.quiet), overwrite=overwrite)

def latency_config(a) -> LatencyConfig:
    return LatencyConfig(device=a.device, batch_size=a.batch_size, warmup=a.warmup, repeats=a.repeats,
                         threads=a.threads, dtype=a.dtype, channels_last=a.channels_last)


def model_from_args(a) -> torch.nn.Module:
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
    pre = resolve_preprocessing(model, input_channels(model), None, a.image_size)
    if "image_size" in pre.defaulted:
        log.warning("no input size is recorded with the weights and none was given: using %d px (%s); "
                    "pass --image-size if the model runs at another size",
                    pre.transforms.config.image_size, pre.origins["image_size"])
    return sample_shape(pre.transforms)


def sample_shape(transforms: Transforms) -> tuple[int, int, int]:
    c = transforms.config
    return (c.channels, c.image_size, c.image_size)


def tiny_set_from_args(a, transforms: Transforms):
    source = open_source(a.data)
    n = min(a.num_images, len(source))
    if n < a.num_images:
        log.warning("%s holds %d images; using all of them", a.data, len(source))
    return build_tiny_set(source, n, seed_everything(a.seed), transforms)


# ---- subcommands ----------------------------------------------------------------------

def cmd_blocks(a) -> None:
    if a.list:
        from .models import list_models

        print("\n".join(list_models()))
        return
    model = model_from_args(a)
    shape = shape_for(a, model)
    info = inspect_model(model, shape, _csv(a.include), _csv(a.exclude), a.feature_layer)
    total, _ = count_flops(model, torch.zeros(1, *shape))
    r_b = {}
    if a.latency:
        r_b, _, settings = block_latency_reductions(model, shape, [b.name for b in info.blocks], latency_config(a),
                                                    TqdmProgress(not a.quiet))
    rows = [{**b.as_dict(), "flops_share": b.flops / total, **({"latency_reduction": r_b[b.name]} if r_b else {})}
            for b in info.blocks]
    if a.json:
        print(json.dumps({"feature_layer": info.feature_layer, "blocks": rows}, indent=2))
        return
    print(f"{len(rows)} droppable blocks; feature layer: {info.feature_layer}")
    print(f"{'block':<16}{'kind':<20}{'params':>12}{'FLOPs share':>13}" + (f"{'latency share':>15}" if r_b else ""))
    for r in rows:
        line = f"{r['name']:<16}{r['kind']:<20}{r['params']:>12,}{100 * r['flops_share']:>12.1f}%"
        print(line + (f"{100 * r['latency_reduction']:>14.1f}%" if r_b else ""))


def cmd_latency(a) -> None:
    model = model_from_args(a)
    shape = shape_for(a, model)
    drop = _csv(a.drop) or []
    if drop:  # only droppable blocks: anything else would change shapes mid-network
        candidates = [b.name for b in inspect_model(model, shape).blocks]
        for name in drop:
            if name not in candidates:
                raise ValueError(f"unknown block {name!r}; droppable blocks: {', '.join(candidates)}")
    variants = {FULL: []} | ({"dropped": drop} if drop else {})
    stats, settings = measure_variants(model, shape, variants, latency_config(a), TqdmProgress(not a.quiet))
    result = {"settings": settings.as_dict(), "latency_ms": {k: asdict(v) for k, v in stats.items()}}
    if drop:
        result["reduction"] = reduction(stats[FULL], stats["dropped"])
        result["warning"] = noise_warning(stats[FULL], stats["dropped"])
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"device {settings.device} ({settings.device_name}), {settings.threads} threads, input {settings.input_shape}, "
          f"{settings.dtype}, {settings.warmup} warm-up + {settings.repeats} repeats, torch {settings.torch_version}")
    for name, s in stats.items():
        print(f"{name:<14} median {s.median_ms:9.3f} ms   IQR {s.iqr_ms:7.3f} ms   min {s.min_ms:9.3f} ms")
    if drop:
        print(f"latency reduction from dropping {', '.join(drop)}: {100 * result['reduction']:.1f}%")
        if result["warning"]:
            print(f"warning: {result['warning']}")


def scoring_config(a) -> ScoringConfig:
    return ScoringConfig(iterations=a.score_iterations, protocol=a.score_protocol, lr=a.score_lr, seed=a.seed)


def cmd_score(a) -> None:
    if a.out:
        check_writable_file(a.out, a.overwrite)
    check_workdir(a.workdir)
    model = model_from_args(a)
    device = resolve_device(a.device)
    transforms = transforms_for(a, model, a.data)
    tiny = tiny_set_from_args(a, transforms)
    shape = sample_shape(transforms)
    model = model.to(device)
    info = inspect_model(model, shape, _csv(a.include), _csv(a.exclude), a.feature_layer)
    names = [b.name for b in info.blocks]
    progress = TqdmProgress(not a.quiet)
    r_b, _, _ = block_latency_reductions(model, shape, names, latency_config(a), progress)
    scorer = Scorer(model, tiny, info.trace, info.chain, info.feature_layer, scoring_config(a), device)
    scores = score_blocks(scorer, names, r_b, Path(a.workdir) / "scores.json" if a.workdir else None, progress)
    rows = [asdict(s) for s in scores]
    if a.out:
        from .io import atomic_write_text

        atomic_write_text(a.out, json.dumps({"scores": rows, "tiny_set": tiny.identifiers}, indent=2), overwrite=a.overwrite)
    print(f"{'rank':<6}{'block':<16}{'recoverability':>16}{'latency red.':>14}{'score':>12}")
    for i, s in enumerate(scores, 1):
        print(f"{i:<6}{s.block:<16}{s.recoverability:>16.5f}{100 * s.latency_reduction:>13.1f}%{s.score:>12.4f}")


def compress_config(a) -> CompressConfig:
    return CompressConfig(
        target_latency=parse_target(a.target_latency) if a.target_latency else None, num_blocks=a.num_blocks,
        include=_csv(a.include), exclude=_csv(a.exclude), feature_layer=a.feature_layer, device=a.device, seed=a.seed,
        scoring=scoring_config(a), latency=latency_config(a),
        recovery=RecoveryConfig(method=a.recovery, iterations=a.recovery_iterations, lr=a.recovery_lr, seed=a.seed))


def cmd_compress(a) -> None:
    if (a.data is None) == (a.data_free is None):
        raise ValueError("give exactly one of --data (a folder or data set) and --data-free N (synthesize N images)")
    config = compress_config(a)
    out = check_output_folder(a.out, a.overwrite)
    check_workdir(a.workdir)
    model = model_from_args(a)
    preprocessing = preprocessing_for(a, model, a.data)
    transforms = preprocessing.transforms
    eval_source = open_source(a.eval_data) if a.eval_data else None
    if eval_source is not None and a.eval_limit:
        eval_source = HeadSource(eval_source, a.eval_limit)
    # candidates, patterns, feature layer and block count checked before synthesis or scoring
    check_against_model(model, sample_shape(transforms), config)
    if a.data_free is not None:  # the synthesized folder then serves as the tiny set, like any other
        synthesize_from_args(a, model, transforms, a.data_free, out / "synthesized", a.overwrite)
        a.data, a.num_images = str(out / "synthesized"), a.data_free
    tiny = tiny_set_from_args(a, transforms)
    result = compress(model, tiny, sample_shape(transforms), config, eval_source, transforms,
                      workdir=a.workdir or out / "work", progress=TqdmProgress(not a.quiet))
    write_outputs(result, model, preprocessing, out, a.overwrite)


def write_outputs(result, teacher, preprocessing: Preprocessing, out: Path, overwrite: bool) -> None:
    write_compressed_outputs(result, teacher, preprocessing, out, overwrite)
    print_summary(result.report, out)


def print_summary(report: CompressReport, out: Path) -> None:
    rows = summary_rows(report)
    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{'':<{width}}{'before':>18}{'after':>18}")
    for name, before, after in rows:
        if name == "dropped blocks":
            print(f"{name:<{width}}{after}")
        else:
            print(f"{name:<{width}}{before:>18}{after:>18}")
    if report.latency.warning:
        print(f"\nwarning: {report.latency.warning}")
    if (report.preprocessing or {}).get("note"):
        print(f"\nnote: {report.preprocessing['note']}")
    if report.evaluation_error:
        print(f"\nwarning: no accuracy: {report.evaluation_error}")
    print(f"\nwrote {out / 'model.safetensors'}, {out / 'report.md'}, {out / 'report.json'}, {out / 'blocks.png'}")


def cmd_demo(a) -> None:
    from .data.fashion_mnist import demo_source, fashion_mnist_transforms
    from .demo import DEMO_TEACHER

    out = check_output_folder(a.out, a.overwrite)
    if not DEMO_TEACHER.is_file():
        raise FileNotFoundError(f"the demo teacher is missing: {DEMO_TEACHER} (reinstall the package)")
    teacher = load_model("resnet56", str(DEMO_TEACHER))
    preprocessing = Preprocessing(fashion_mnist_transforms(), {k: "recorded with the weights"
                                                               for k in ("image_size", "mean", "std")})
    transforms = preprocessing.transforms
    tiny = build_tiny_set(demo_source("train"), a.num_images, seed_everything(a.seed), transforms)
    config = compress_config(a)
    print(f"PRACTISE demo: resnet56 teacher (Fashion-MNIST), tiny set of {len(tiny)} images, target "
          f"{100 * config.target_latency:.0f}% lower latency on {resolve_device(a.device)}; "
          f"scoring {a.score_iterations} and recovery {a.recovery_iterations} iterations per block/model.")
    test = demo_source("test")
    result = compress(teacher, tiny, (1, 28, 28), config, HeadSource(test, a.eval_limit or len(test)), transforms,
                      workdir=out / "work", progress=TqdmProgress(not a.quiet))
    write_outputs(result, teacher, preprocessing, out, a.overwrite)


def cmd_synthesize(a) -> None:
    check_writable_folder(a.out)
    model = model_from_args(a)
    transforms = transforms_for(a, model, None)
    summary = synthesize_from_args(a, model, transforms, a.num_images, Path(a.out), a.overwrite)
    last = summary["batches"][-1]
    print(f"wrote {summary['images']} images ({summary['classes']} classes, one subfolder each) to {a.out}; "
          f"last batch's loss terms: " + ", ".join(f"{k} {v:.4f}" for k, v in last.items()))


def cmd_train(a) -> None:
    from .training import TrainConfig, save_trained_model, train_classifier_

    out = check_writable_file(a.out, a.overwrite)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out {out} must end in .safetensors (the weights file; a model card is written beside it)")
    check_workdir(a.workdir)
    kwargs = {k: v for k, v in (("num_classes", a.num_classes), ("in_channels", a.in_channels)) if v is not None}
    model = create_model(a.model, **kwargs)
    transforms = transforms_for(a, model, a.data)
    train, test = open_source(a.data), open_source(a.eval_data)
    if train.labels is None:
        raise ValueError(f"--data {a.data} is unlabelled; training needs one subfolder per class")
    if len(train) < a.train_batch_size:
        raise ValueError(f"--data {a.data} holds {len(train)} images, fewer than one batch "
                         f"(--train-batch-size {a.train_batch_size}); lower the batch size or add images")
    config = TrainConfig(epochs=a.epochs, batch_size=a.train_batch_size, lr=a.lr, seed=a.seed)
    seed_everything(a.seed)
    device = resolve_device(a.device)
    bar = TqdmProgress(not a.quiet)

    def progress(epoch: int, step: int, steps: int, loss: float) -> None:
        if step == 0:
            bar.end()
            bar.start(f"epoch {epoch + 1}/{config.epochs}", steps)
        bar.advance(1)

    history = train_classifier_(model, train, test, transforms, config, a.workdir or out.with_suffix(".work"),
                               str(device), progress)
    bar.end()
    command = "practise " + shlex.join(a.argv)
    save_trained_model(model, out, history, config, a.data, transforms, command, overwrite=a.overwrite)
    print(f"saved {out} (test top-1 {100 * history[-1]['test_top1']:.2f}%) and its model card {out.with_suffix('.md')}")


def cmd_evaluate(a) -> None:
    model = model_from_args(a)
    transforms = transforms_for(a, model, a.data)
    device = resolve_device(a.device)
    models = {"model": model.to(device)}
    if a.teacher:
        models["teacher"] = load_model(a.teacher, a.teacher_weights).to(device)
    source = open_source(a.data)
    if a.eval_limit:
        source = HeadSource(source, a.eval_limit)
    results = evaluate_models(models, source, transforms, device, reference="teacher" if a.teacher else None)
    print(json.dumps(results, indent=2))


# ---- parser --------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="practise", description="Make a pretrained network faster with a tiny "
                                     "set of images by dropping residual blocks (PRACTISE, CVPR 2023).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    # the same flags after the subcommand; SUPPRESS keeps them from resetting the values above
    common = OneLineParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log every step")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("blocks", parents=[common], help="list the droppable residual blocks of a model")
    p.add_argument("--list", action="store_true", help="list the built-in architectures and exit")
    p.add_argument("--latency", action="store_true", help="also measure each block's latency share")
    p.add_argument("--json", action="store_true")
    add_model_args(p), add_candidate_args(p), add_latency_args(p)
    p.set_defaults(func=cmd_blocks)
    for action in p._actions:  # --model is not needed with --list
        if action.dest == "model":
            action.required = False

    p = sub.add_parser("latency", parents=[common], help="measure latency, optionally against the model with blocks dropped")
    p.add_argument("--drop", help="blocks to drop, comma-separated")
    p.add_argument("--json", action="store_true")
    add_model_args(p), add_latency_args(p)
    p.set_defaults(func=cmd_latency)

    p = sub.add_parser("score", parents=[common], help="score every candidate block: recoverability / latency reduction")
    p.add_argument("--out", help="write the scores as JSON here")
    p.add_argument("--overwrite", action="store_true")
    add_model_args(p), add_data_args(p), add_candidate_args(p), add_latency_args(p), add_scoring_args(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("compress", parents=[common], help="the whole PRACTISE job: score, select, drop, recover, report")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-latency", type=latency_target, help="latency reduction to reach, e.g. 22%% or 0.22")
    target.add_argument("--num-blocks", type=POSITIVE, help="drop this many best-scoring blocks (the paper's rule)")
    p.add_argument("--out", required=True, help="output folder: model.safetensors, report.md/json, blocks.png")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--data-free", type=POSITIVE, metavar="N",
                   help="no images: synthesize N from the model (DeepInversion) into OUT/synthesized and use them")
    add_model_args(p), add_data_args(p, required=False), add_candidate_args(p), add_latency_args(p)
    add_scoring_args(p), add_recovery_args(p), add_synthesis_args(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("synthesize", parents=[common], help="synthesize images from a model with BatchNorm layers "
                       "(DeepInversion): a tiny set when no data can be used")
    p.add_argument("--num-images", type=POSITIVE, default=500, help="how many images (default 500)")
    p.add_argument("--out", required=True, help="output folder: one subfolder of PNGs per target class")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder (an interrupted "
                   "synthesis with the same settings resumes without it)")
    p.add_argument("--mean", type=MEAN, help="the model's input normalisation mean, comma-separated "
                   "(default: what the weights recorded, else ImageNet's)")
    p.add_argument("--std", type=STD, help="normalisation std, comma-separated, all above 0")
    p.add_argument("--seed", type=int, default=0)
    add_model_args(p), add_synthesis_args(p)
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("demo", parents=[common], help="run PRACTISE on the shipped resnet56 Fashion-MNIST "
                       "teacher and images (offline, a few minutes on a CPU)")
    p.add_argument("--out", default="practise-demo", help="output folder (default practise-demo)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--target-latency", type=latency_target, default="22%", help="latency reduction to reach (default 22%%)")
    p.add_argument("--num-images", type=int_at_least(1), default=100, help="tiny-set size, at most 500 (default 100)")
    p.add_argument("--eval-limit", type=POSITIVE, help="evaluate on this many of the 2,000 shipped test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    demo_args = [("--score-iterations", DEMO_SCORE_ITERATIONS), ("--recovery-iterations", DEMO_RECOVERY_ITERATIONS)]
    for flag, default in demo_args:
        p.add_argument(flag, type=POSITIVE, default=default,
                       help=f"default {default}: fewer than the paper's (1000 / 2000) so the demo ends in minutes on a CPU")
    add_latency_args(p)
    p.set_defaults(func=cmd_demo, num_blocks=None, include=None, exclude=None, feature_layer=None,
                   score_protocol="cached", score_lr=ScoringConfig().lr, recovery="mimic", recovery_lr=None,
                   workdir=None)

    p = sub.add_parser("train", parents=[common], help="train a built-in architecture from scratch (teachers), resumably")
    p.add_argument("--model", required=True, help="architecture name")
    p.add_argument("--data", required=True, help="labelled training images: folder or fashion-mnist:train")
    p.add_argument("--eval-data", required=True, help="test images: folder or fashion-mnist:test")
    p.add_argument("--out", required=True, help="weights file (.safetensors); a model card is written beside it")
    p.add_argument("--epochs", type=POSITIVE, default=20)
    p.add_argument("--train-batch-size", type=POSITIVE, default=128)
    p.add_argument("--lr", type=number(0.0, strict=True), default=0.1)
    p.add_argument("--num-classes", type=POSITIVE), p.add_argument("--in-channels", type=POSITIVE)
    p.add_argument("--image-size", type=int_at_least(1)), p.add_argument("--mean", type=MEAN)
    p.add_argument("--std", type=STD)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--workdir", help="checkpoint folder; rerunning resumes after the last finished epoch")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", parents=[common], help="accuracy of a model (and agreement with a teacher) on a data set")
    p.add_argument("--teacher", help="architecture name or compressed file to compare predictions with")
    p.add_argument("--teacher-weights")
    add_model_args(p)
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, help="image folder or fashion-mnist:test")
    g.add_argument("--eval-limit", type=POSITIVE)
    g.add_argument("--mean", type=MEAN), g.add_argument("--std", type=STD)
    p.set_defaults(func=cmd_evaluate)
    return parser


from .demo import DEMO_RECOVERY_ITERATIONS, DEMO_SCORE_ITERATIONS  # noqa: E402
# Mistakes in what the user gave: one line on stderr, exit code 2.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError, UnreachableTarget, FloatingPointError)


def check_workdir(workdir: str | None) -> None:
    if workdir:
        check_writable_folder(workdir, "--workdir")


def check_common(a) -> None:
    """What every subcommand can check before loading anything: the device exists here."""
    if getattr(a, "device", None):
        resolve_device(a.device)



def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in model cards
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "blocks" and not args.list and not args.model:
        print("practise blocks: error: --model is required (or --list)", file=sys.stderr)
        return 2
    try:
        check_common(args)
        args.func(args)
    except USER_ERRORS as exc:
        print(f"practise {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"practise {args.command}: interrupted; finished work is kept in the work folder, and rerunning "
              f"the same command resumes", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not a user mistake: say so in one line; -v shows the traceback
        if args.verbose:
            raise
        print(f"practise {args.command}: internal error: {type(exc).__name__}: {one_line(exc)} "
              f"(rerun with -v for the traceback, and please report it)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
