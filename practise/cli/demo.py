"""`practise demo`: PRACTISE on the shipped resnet56 Fashion-MNIST teacher and images, offline."""
from __future__ import annotations

from ..artifacts import check_output_folder, write_compressed_outputs
from ..data import HeadSource, build_tiny_set
from ..data.fashion_mnist import demo_source, fashion_mnist_transforms
from ..demo import DEMO_RECOVERY_ITERATIONS, DEMO_AUTOCAST, DEMO_SCORE_ITERATIONS, DEMO_TEACHER
from ..device import resolve_device
from ..model_io import load_model
from ..pipeline import compress
from ..preprocessing import RECORDED, Preprocessing
from ..scoring import ScoringConfig
from ..seeding import seed_everything
from .arguments import (POSITIVE, add_device_arg, add_eval_limit_arg, add_latency_args, add_output_args,
                        add_recovery_autocast_arg, add_score_autocast_arg, add_seed_arg, int_at_least, latency_target)
from .common import compress_config, progress_for
from .summary import print_summary
from .text import command_line


def add_parser(sub, common) -> None:
    p = sub.add_parser("demo", parents=[common], help="run PRACTISE on the shipped resnet56 Fashion-MNIST "
                       "teacher and images (offline, a few minutes on a CPU)")
    add_output_args(p, "output folder (default practise-demo)", required=False)
    p.set_defaults(out="practise-demo")
    p.add_argument("--target-latency", type=latency_target, default="22%", help="latency reduction to reach (default 22%%)")
    p.add_argument("--num-images", type=int_at_least(1), default=100, help="tiny-set size, at most 500 (default 100)")
    add_eval_limit_arg(p)
    add_seed_arg(p)
    add_device_arg(p)
    for flag, default in (("--score-iterations", DEMO_SCORE_ITERATIONS), ("--recovery-iterations", DEMO_RECOVERY_ITERATIONS)):
        p.add_argument(flag, type=POSITIVE, default=default,
                       help=f"default {default}: fewer than the paper's (1000 / 2000) so the demo ends in minutes on a CPU")
    add_score_autocast_arg(p, DEMO_AUTOCAST)
    add_recovery_autocast_arg(p, DEMO_AUTOCAST)
    add_latency_args(p)
    p.set_defaults(func=run, num_blocks=None, include=None, exclude=None, feature_layer=None, criterion="practise",
                   score_protocol="cached", score_lr=ScoringConfig().lr, recovery="mimic", recovery_lr=None,
                   workdir=None)


def run(a) -> None:
    out = check_output_folder(a.out, a.overwrite)
    if not DEMO_TEACHER.is_file():
        raise FileNotFoundError(f"the demo teacher is missing: {DEMO_TEACHER} (reinstall the package)")
    teacher = load_model("resnet56", str(DEMO_TEACHER))
    preprocessing = Preprocessing(fashion_mnist_transforms(), {k: RECORDED for k in ("image_size", "mean", "std")})
    transforms = preprocessing.transforms
    tiny = build_tiny_set(demo_source("train"), a.num_images, seed_everything(a.seed), transforms)
    config = compress_config(a)
    precision = {k: c.autocast or "float32" for k, c in (("scoring", config.scoring), ("recovery", config.recovery))}
    print(f"PRACTISE demo: resnet56 teacher (Fashion-MNIST), tiny set of {len(tiny)} images, target "
          f"{100 * config.target_latency:.0f}% lower latency on {resolve_device(a.device)}; "
          f"scoring {a.score_iterations} ({precision['scoring']}) and recovery {a.recovery_iterations} "
          f"({precision['recovery']}) iterations per block/model.")
    test = demo_source("test")
    result = compress(teacher, tiny, config, eval_source=HeadSource(test, a.eval_limit or len(test)),
                      eval_transforms=transforms, workdir=out / "work", progress=progress_for(a))
    written = write_compressed_outputs(result, teacher, preprocessing, out, a.overwrite, command=command_line(a))
    print_summary(written.report, written.paths.values())
