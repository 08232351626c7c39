"""`practise export`: a model (compressed or not) as ONNX, checked in onnxruntime, and as a
torch.export or TorchScript program."""
from __future__ import annotations

import argparse

from ..artifacts import check_writable_folder
from ..export import EXPORTERS, export_model
from .arguments import POSITIVE, add_model_args, add_output_args, csv, number
from .common import model_from_args, shape_for

DEFAULT_FORMATS = "onnx,torch-export"


def formats(text: str) -> list[str]:
    chosen = csv(text) or []
    unknown = [f for f in chosen if f not in EXPORTERS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown format {(unknown or [text])[0]!r}; valid choices: "
                                         f"{', '.join(EXPORTERS)} (comma-separated)")
    return chosen


def add_parser(sub, common) -> None:
    p = sub.add_parser("export", parents=[common], help="write a model as ONNX (checked against PyTorch in "
                       "onnxruntime) and as a torch.export / TorchScript program")
    add_output_args(p, "output folder")
    p.add_argument("--formats", type=formats, default=formats(DEFAULT_FORMATS),
                   help=f"comma-separated: {', '.join(EXPORTERS)} (default {DEFAULT_FORMATS})")
    p.add_argument("--name", default="model", help="file name stem (default model: model.onnx, model.pt2, ...)")
    p.add_argument("--tolerance", type=number(0.0, strict=True), default=1e-4,
                   help="largest absolute logit difference to PyTorch accepted (default 1e-4)")
    p.add_argument("--check-batch", type=POSITIVE, default=4, help="inputs in the parity check (default 4)")
    add_model_args(p)
    p.set_defaults(func=run)


def run(a) -> None:
    check_writable_folder(a.out)
    model = model_from_args(a)
    shape = shape_for(a, model)
    results = export_model(model, shape, a.out, a.formats, a.name, a.tolerance, a.check_batch, a.overwrite)
    for r in results:
        print(f"wrote {r.path} ({r.format}, dynamic batch axis): max abs logit difference to PyTorch "
              f"{r.max_abs_diff:.2e} on {r.checked_batch} seeded inputs in {r.runtime}")
