"""`practise synthesize`: images from a model's BatchNorm statistics (DeepInversion), a
tiny set when no data can be used."""
from __future__ import annotations

from pathlib import Path

import torch

from ..artifacts import check_writable_folder
from ..data import Transforms
from ..device import resolve_device
from ..synthesis import synthesize
from .arguments import POSITIVE, add_model_args, add_normalisation_args, add_output_args, add_seed_arg, add_synthesis_args
from .common import model_from_args, progress_for, synthesis_config, transforms_for


def add_parser(sub, common) -> None:
    p = sub.add_parser("synthesize", parents=[common], help="synthesize images from a model with BatchNorm layers "
                       "(DeepInversion): a tiny set when no data can be used")
    p.add_argument("--num-images", type=POSITIVE, default=500, help="how many images (default 500)")
    add_output_args(p, "output folder: one subfolder of PNGs per target class",
                    overwrite_help="write into a non-empty folder (an interrupted synthesis with the same "
                                   "settings resumes without it)")
    add_normalisation_args(p, "the model's input normalisation mean, comma-separated (default: what the weights "
                              "recorded, else ImageNet's)")
    add_seed_arg(p, "seeds the synthesis")
    add_model_args(p), add_synthesis_args(p)
    p.set_defaults(func=run)


def synthesize_from_args(a, model: torch.nn.Module, transforms: Transforms, num_images: int, out: Path,
                         overwrite: bool) -> dict:
    tc = transforms.config
    return synthesize(model, num_images, transforms.config.sample_shape, out, tc.mean, tc.std, synthesis_config(a),
                      resolve_device(a.device), progress_for(a), overwrite=overwrite)


def run(a) -> None:
    check_writable_folder(a.out)
    model = model_from_args(a)
    transforms = transforms_for(a, model, None)
    summary = synthesize_from_args(a, model, transforms, a.num_images, Path(a.out), a.overwrite)
    last = summary["batches"][-1]
    print(f"wrote {summary['images']} images ({summary['classes']} classes, one subfolder each) to {a.out}; "
          f"last batch's loss terms: " + ", ".join(f"{k} {v:.4f}" for k, v in last.items()))
