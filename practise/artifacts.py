"""The output folder of a compression run: model file, report.md / report.json, plot.

One library function writes them, so the Python API gives what the CLI gives. The folder
is checked before any long step (:func:`check_output_folder`), and every file is written
atomically (a crash leaves the old file or the new one, never half of one).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch.nn as nn

from .data.transforms import TransformConfig, Transforms
from .model_io import arch_spec, save_compressed
from .preprocessing import GIVEN, Preprocessing
from .compress_report import CompressReport
from .report import OUTPUT_FILES, write_report_files

MODEL_FILE = "model.safetensors"


@dataclasses.dataclass(frozen=True)
class WrittenOutputs:
    paths: dict[str, Path]     # file name -> where it was written
    report: CompressReport     # as written to report.json


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(folder: str | Path, what: str = "`out_dir`") -> Path:
    """A folder that exists or can be created, and can be written to."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{what} {folder} is a file, not a folder; choose a folder")
    base = nearest_existing(folder.resolve())
    if not base.is_dir():
        raise NotADirectoryError(f"{what} {folder}: {base} is a file, so the folder cannot be made")
    if not os.access(base, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {folder}: {base} is not writable; choose another folder")
    return folder


def check_writable_file(path: str | Path, overwrite: bool, what: str = "`out`") -> Path:
    """A file path that can be written: not a folder, not an existing file unless ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{what} {path} exists; pass `overwrite` or choose another name")
    check_writable_folder(path.parent if str(path.parent) else Path("."), what)
    return path


def check_output_folder(out_dir: str | Path, overwrite: bool) -> Path:
    """Fail before any work if the outputs cannot be written or may not be replaced."""
    out_dir = check_writable_folder(out_dir)
    taken = [str(out_dir / f) for f in OUTPUT_FILES if (out_dir / f).exists()]
    if taken and not overwrite:
        raise FileExistsError(f"output files exist: {', '.join(taken)}; pass `overwrite` or choose another `out_dir`")
    return out_dir


def write_compressed_outputs(result, teacher: nn.Module, preprocessing: Preprocessing | None = None,
                             out_dir: str | Path = ".", overwrite: bool = False, spec: dict | None = None
                             ) -> WrittenOutputs:
    """Write ``result`` (a CompressResult) into ``out_dir``: the model file (with the
    preprocessing it expects, and which of it was defaulted), report.json/.md and blocks.png.

    ``preprocessing`` defaults to the tiny set's transform settings (as the report records
    them, taken as given); ``spec`` is how to rebuild the architecture (default:
    ``arch_spec(teacher)``). ``result`` itself is left as it is; the report as written
    (with the preprocessing) comes back with the paths."""
    out_dir = Path(out_dir)
    if preprocessing is None:
        preprocessing = preprocessing_of_report(result.report.preprocessing)
    c = preprocessing.transforms.config
    report = dataclasses.replace(result.report, preprocessing=preprocessing.as_dict())
    extra = {"image_size": c.image_size, "channels": c.channels, "mean": list(c.mean), "std": list(c.std),
             "measured_latency_reduction": result.selection.measured_reduction}
    if preprocessing.defaulted:
        extra["preprocessing_defaults"] = preprocessing.defaulted
    model_path = save_compressed(out_dir / MODEL_FILE, result.model, result.selection.blocks, result.feature_layer,
                                 spec if spec is not None else arch_spec(teacher), extra, overwrite=overwrite)
    return WrittenOutputs({MODEL_FILE: model_path, **write_report_files(report, out_dir)}, report)


def preprocessing_of_report(recorded: dict) -> Preprocessing:
    config = TransformConfig(image_size=recorded["image_size"], channels=recorded["channels"],
                             mean=tuple(recorded["mean"]), std=tuple(recorded["std"]))
    return Preprocessing(Transforms(config), {k: GIVEN for k in ("image_size", "mean", "std")})
