"""Flag types and the argument groups the subcommands share, each declared once."""
from __future__ import annotations

import argparse
import math

from ..criteria import CRITERIA
from ..latency import BACKENDS, DTYPES, LatencyConfig
from ..latency.config import METRICS
from ..recovery import RECOVERY_METHODS, SCOPES, RecoveryConfig
from ..pipeline import REPAIRS, CompressConfig
from ..scoring import FIT_SCALES, LINEAR_MAPS, PROTOCOLS, ScoringConfig
from ..selection import parse_target
from ..synthesis import SynthesisConfig
from ..tracing import GRANULARITIES, LAYER


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


def csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


POSITIVE, NON_NEGATIVE = int_at_least(1), int_at_least(0)
MEAN, STD = number_list(positive=False), number_list(positive=True)


# ---- groups shared by several subcommands ---------------------------------------------

def add_device_arg(g) -> None:
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default: auto)")


def add_seed_arg(g, what: str = "seeds the tiny set, scoring and recovery") -> None:
    g.add_argument("--seed", type=int, default=0, help=f"{what} (default 0)")


def add_output_args(p, help: str, required: bool = True, overwrite_help: str = "replace existing output files") -> None:
    p.add_argument("--out", required=required, help=help)
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)


def add_normalisation_args(g, mean_help: str = "normalisation mean, comma-separated (default: what the weights "
                           "recorded, else the data set's, else ImageNet's)") -> None:
    g.add_argument("--mean", type=MEAN, help=mean_help)
    g.add_argument("--std", type=STD, help="normalisation std, comma-separated, all above 0")


def add_image_size_arg(g) -> None:
    g.add_argument("--image-size", type=int_at_least(1), help="input side in pixels (default: what the weights "
                   "recorded, else 28 for Fashion-MNIST, else the architecture's)")


def add_architecture_args(g) -> None:
    g.add_argument("--num-classes", type=POSITIVE, help="default: read from --weights, else the architecture's")
    g.add_argument("--in-channels", type=POSITIVE, help="default: read from --weights, else 3")


def add_model_args(p) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="architecture name (see `practise blocks --list`), a compressed "
                   "model file, or hf:<folder or installed package> for a Hugging Face model (local files only)")
    g.add_argument("--weights", help=".pth/.pt/.safetensors state dict (loaded weights-only)")
    add_architecture_args(g)
    add_image_size_arg(g)
    g.add_argument("--seq-len", type=int_at_least(2), help="token models: tokens per sequence for tracing and "
                   "timing (default: the tiny set's longest example, else --max-length)")
    add_device_arg(g)


def add_eval_limit_arg(g) -> None:
    g.add_argument("--eval-limit", type=POSITIVE, help="evaluate on at most this many images (or held-out text lines)")


def add_data_args(p, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=required,
                   help="image folder (class subfolders = labelled, flat = unlabelled) or a named data set "
                        "(fashion-mnist:train, demo:train, sklearn-digits, photo-crops, gaussian-noise); for hf: "
                        "token models a .txt (one example per line) or .jsonl (\"text\", optional \"label\") file")
    g.add_argument("--num-images", "--num-examples", dest="num_images", type=POSITIVE, default=500,
                   help="tiny-set size: images, or text examples (default 500, or all if fewer)")
    g.add_argument("--max-length", type=int_at_least(2), default=128,
                   help="token models: truncate text examples to this many tokens (default 128)")
    g.add_argument("--eval-data", help="held-out data: images (folder or fashion-mnist:test) for top-1 / agreement, or for hf: models a .txt/.jsonl of text for perplexity (causal LMs) or embedding similarity (encoders)")
    add_eval_limit_arg(g)
    add_normalisation_args(g)
    add_seed_arg(g)


def add_candidate_args(p) -> None:
    g = p.add_argument_group("candidates")
    g.add_argument("--include", help="only these blocks: names or glob patterns, comma-separated (layer3.*)")
    g.add_argument("--exclude", help="never these blocks: names or glob patterns, comma-separated")
    g.add_argument("--feature-layer", help="module whose output is mimicked (default: found automatically)")
    g.add_argument("--granularity", choices=GRANULARITIES, default=LAYER,
                   help="layer: whole residual units (default); sublayer: a transformer layer's attention and MLP "
                        "as separate candidates where it has them")


def budget(text: str) -> float | None:
    """Seconds, or 'none' for no time budget."""
    return None if text.strip().lower() == "none" else number(0.0, strict=True)(text)


def add_latency_args(p) -> None:
    d = LatencyConfig()
    g = p.add_argument_group("latency measurement")
    g.add_argument("--batch-size", type=POSITIVE, help="batch for timing (default 64 on GPU, 8 on CPU)")
    g.add_argument("--repeats", type=POSITIVE, default=d.repeats,
                   help=f"timed passes per variant; the minimum for block savings and selections (default {d.repeats})")
    g.add_argument("--max-repeats", type=POSITIVE,
                   help="block savings and selections add repeats until their 95%% interval is within "
                        "--latency-resolution, up to this many (default 10 x --repeats)")
    g.add_argument("--latency-resolution", type=number(0.0, strict=True), default=d.resolution,
                   help=f"interval half-width aimed at, a fraction of the full model's latency per block "
                        f"(default {d.resolution}, i.e. {100 * d.resolution:g} points)")
    g.add_argument("--latency-budget", type=budget, default=d.budget_s, metavar="SECONDS",
                   help=f"stop adding repeats to one measurement (the block table, a selection) after this many "
                        f"seconds, whatever resolution is reached (reported); 'none' for no limit "
                        f"(default {d.budget_s:g})")
    g.add_argument("--latency-metric", choices=METRICS, default=d.metric,
                   help="what the latency target and the savings are measured on: prefill (a whole input: an image "
                        "batch, a prompt of --seq-len/--max-length tokens) or decode (a causal LM generating one token "
                        f"with the KV cache at that context length) (default {d.metric})")
    g.add_argument("--no-latency-groups", action="store_true",
                   help="time every block on its own instead of timing structurally identical blocks together")
    g.add_argument("--warmup", type=NON_NEGATIVE, default=d.warmup, help=f"untimed passes per variant (default {d.warmup})")
    g.add_argument("--threads", type=POSITIVE, help="CPU threads for timing (default: torch's)")
    g.add_argument("--dtype", default=d.dtype, choices=list(DTYPES), help="float32, float16 or bfloat16")
    g.add_argument("--channels-last", action="store_true", help="time with channels_last memory format")
    g.add_argument("--latency-backend", default=d.backend, choices=BACKENDS.names(),
                   help=f"runtime whose latency counts (default {d.backend}: PyTorch as is)")


def add_scoring_args(p) -> None:
    d = ScoringConfig()
    g = p.add_argument_group("recoverability scoring")
    g.add_argument("--score-iterations", type=POSITIVE, default=d.iterations, help=f"adaptor SGD steps per block (default {d.iterations}, paper)")
    g.add_argument("--score-protocol", choices=PROTOCOLS, default=d.protocol,
                   help="auto (default): closed-form for token models, cached for image models; cached: fixed "
                        "eval-transformed batches, teacher and frozen prefix computed once; paper: augmented batches "
                        "and full passes every step; closed-form: each block replaced by its least-squares linear "
                        "map, no SGD (about one pass per block)")
    g.add_argument("--score-lr", type=number(0.0), default=d.lr, help=f"adaptor SGD lr (default {d.lr}, paper)")
    g.add_argument("--score-batch-size", type=POSITIVE, default=d.batch_size,
                   help=f"examples per adaptor SGD step (default {d.batch_size}, paper); lower it for long sequences")
    g.add_argument("--score-eval-examples", type=POSITIVE, default=d.eval_examples,
                   help="measure R_b on the first N tiny-set examples (adaptors are still fitted on all); fewer "
                        "passes per block for large tiny sets (default: all)")
    g.add_argument("--score-linear-map", choices=LINEAR_MAPS, default=d.linear_map,
                   help="closed-form scoring: the fitted map in the dropped block's place (in-place) or folded into "
                        "the layer before it (folded, the linear-patch repair); auto (default): folded for token "
                        "models when the repair is linear-patch, in place otherwise")
    g.add_argument("--fit-scale", choices=FIT_SCALES, default=d.fit_scale,
                   help="closed-form fits and the linear patch: global (plain least squares) or token (each token's "
                        "error relative to its RMS, the ridge per input channel: an LLM's few huge channels do not "
                        "set the fit); auto (default): token for token models, global otherwise")
    g.add_argument("--score-before", action="store_true",
                   help="closed-form: also measure each block's MSE when dropped outright (one more pass per block)")
    add_score_autocast_arg(g, "none")
    g.add_argument("--workdir", help="folder keeping per-block scores so an interrupted run resumes")


AUTOCAST_CHOICES = ("none", "bfloat16", "auto")


def add_score_autocast_arg(g, default: str) -> None:
    g.add_argument("--score-autocast", choices=AUTOCAST_CHOICES, default=default,
                   help="scoring passes (adaptor training; closed-form's per-block passes) under bfloat16 autocast "
                        "(float32 weights, targets and R_b; the ranking holds: "
                        "benchmarks/results/scoring_speed); auto: bfloat16 where the CPU's measured bf16 "
                        f"matmul and conv speed is at least 1.3x float32's (default {default})")


def add_recovery_autocast_arg(g, default: str) -> None:
    g.add_argument("--recovery-autocast", choices=AUTOCAST_CHOICES, default=default,
                   help="the student's passes in recovery under bfloat16 autocast (float32 weights, optimizer and "
                        f"teacher targets); auto: as --score-autocast auto (default {default})")


def add_repair_arg(p) -> None:
    p.add_argument("--repair", choices=REPAIRS, default=CompressConfig.repair,
                   help="training-free repair before recovery: linear-patch: each run of dropped layers replaced by a "
                        "least-squares linear map folded into the layer before it (the model stays stock); none; "
                        "auto (default): linear-patch for token models, none for image models")


def add_criterion_arg(p) -> None:
    p.add_argument("--criterion", default="practise", choices=CRITERIA.names(),
                   help="block ranking: " + "; ".join(f"{n}: {c.description}" for n, c in CRITERIA.items())
                        + " (default practise; the others skip recoverability scoring)")
    p.add_argument("--rescore-shortlist", type=optional_count, default=CompressConfig.rescore_shortlist,
                   metavar="N|all",
                   help="criteria that re-score after each drop (practise-iterative): 'all' (default) re-scores "
                        "every candidate at every step; N: only the N of lowest added error and the neighbours of "
                        "the dropped ones (faster; on SmolLM2 8 picked a worse set)")


def optional_count(text: str) -> int | None:
    """A positive integer, or 'all' (None)."""
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    return value


def add_recovery_args(p) -> None:
    d = RecoveryConfig()
    g = p.add_argument_group("recovery")
    g.add_argument("--recovery", choices=list(RECOVERY_METHODS), default=d.method,
                   help="mimic: feature mimicking (PRACTISE); ce: cross-entropy with labels; kd: logit distillation")
    g.add_argument("--recovery-iterations", type=NON_NEGATIVE, default=d.iterations,
                   help=f"default {d.iterations} (paper). A step costs about three passes of a batch: SmolLM2-135M at "
                        "batch 16 x up to 128 tokens took 3.8-4.5 s on a 2-core AMD EPYC (bf16), so 50 steps "
                        "(3-4 min) fit a 20-minute LLM job")
    g.add_argument("--recovery-lr", type=number(0.0), help="default: 0.02 for mimic/kd, 1e-4 for ce (the authors')")
    g.add_argument("--recovery-batch-size", type=POSITIVE, default=d.batch_size,
                   help=f"examples per recovery step (default {d.batch_size}, paper); lower it for long sequences")
    g.add_argument("--recovery-scope", choices=SCOPES, default=d.scope,
                   help="which weights recovery trains: all (default, paper) or neighbours: only the kept blocks "
                        "right before and after each run of dropped ones (cheaper per step for large models)")
    add_recovery_autocast_arg(g, "none")


def add_synthesis_args(p) -> None:
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
