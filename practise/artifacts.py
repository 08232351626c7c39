"""The output folder of a compression run: the model, report.md / report.json, plot, model card.

An image model is written as ``model.safetensors`` (``load_compressed`` reloads it) with
``README.md`` beside it; a token model as a Hugging Face folder ``model/`` (stock
``from_pretrained`` reloads it; its ``README.md`` is the model card). One library function
writes them, so the Python API gives what the CLI gives. The folder
is checked before any long step (:func:`check_output_folder`), and every file is written
atomically (a crash leaves the old file or the new one, never half of one).
"""
from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

import torch
import torch.nn as nn

from .compress_report import CompressReport
from .data.transforms import TransformConfig, Transforms
from .files import atomic_write_text
from .model_card import model_card
from .inputs import example_input
from .model_io import arch_spec, load_compressed, save_compressed
from .model_output import logits
from .modes import eval_mode
from .preprocessing import GIVEN, Preprocessing
from .report import REPORT_FILES, write_report_files
from .text.model import is_token_model, unwrap
from .text.saving import PRACTISE, save_pretrained

MODEL_FILE = "model.safetensors"
HF_FOLDER = "model"  # a token model's save_pretrained folder inside the output folder
CARD = "README.md"


def output_names(token_model: bool) -> tuple[str, ...]:
    """What a run writes into its output folder, for an image or a token model."""
    return ((HF_FOLDER,) if token_model else (MODEL_FILE, CARD)) + REPORT_FILES


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


def check_output_folder(out_dir: str | Path, overwrite: bool, token_model: bool = False) -> Path:
    """Fail before any work if the outputs cannot be written or may not be replaced."""
    out_dir = check_writable_folder(out_dir)
    taken = [str(out_dir / f) for f in output_names(token_model) if (out_dir / f).exists()]
    if taken and not overwrite:
        raise FileExistsError(f"output files exist: {', '.join(taken)}; pass `overwrite` or choose another `out_dir`")
    return out_dir


def write_compressed_outputs(result, teacher: nn.Module, preprocessing: Preprocessing | None = None,
                             out_dir: str | Path = ".", overwrite: bool = False, spec: dict | None = None,
                             tokenizer=None, command: str | None = None) -> WrittenOutputs:
    """Write ``result`` (a CompressResult) into ``out_dir``: the model, report.json/.md,
    blocks.png and the model card (``command``, if given, is recorded in it).

    An image model: ``model.safetensors`` with the preprocessing it expects (and which of it
    was defaulted); ``preprocessing`` defaults to the tiny set's transform settings (as the
    report records them, taken as given); ``spec`` is how to rebuild the architecture
    (default: ``arch_spec(teacher)``). A token model: a Hugging Face folder with
    ``tokenizer`` saved beside the weights. ``result`` itself is left as it is; the report
    as written comes back with the paths."""
    out_dir = Path(out_dir)
    if is_token_model(result.model):
        return _write_token_model(result, teacher, out_dir, overwrite, tokenizer, command)
    if preprocessing is None:
        preprocessing = preprocessing_of_report(result.report.preprocessing)
    c = preprocessing.transforms.config
    report = dataclasses.replace(result.report, preprocessing=preprocessing.as_dict())
    extra = {"image_size": c.image_size, "channels": c.channels, "mean": list(c.mean), "std": list(c.std),
             "measured_latency_reduction": result.selection.measured_reduction}
    if preprocessing.defaulted:
        extra["preprocessing_defaults"] = preprocessing.defaulted
    model_path = save_verified(out_dir / MODEL_FILE, result, teacher, spec if spec is not None else arch_spec(teacher),
                               extra, overwrite)
    base = _base_name(teacher)
    card = atomic_write_text(out_dir / CARD, model_card(report, base, f'model = practise.load_compressed('
                                                                      f'"{MODEL_FILE}")', command))
    return WrittenOutputs({MODEL_FILE: model_path, **write_report_files(report, out_dir), CARD: card}, report)


def _write_token_model(result, teacher: nn.Module, out_dir: Path, overwrite: bool, tokenizer,
                       command: str | None) -> WrittenOutputs:
    """The pruned HF model as a stock save_pretrained folder (plus practise.json when
    sub-layers were dropped), the reports beside it and the model card inside it."""
    source = (getattr(teacher, "practise_arch", None) or {}).get("source")
    saved = save_pretrained(unwrap(result.model), tokenizer, out_dir / HF_FOLDER,
                            extra={"dropped_blocks": result.selection.blocks, "source": source},
                            overwrite=overwrite)
    report = dataclasses.replace(result.report, saved={**saved.as_dict(), "path": HF_FOLDER})
    auto = "AutoModelForCausalLM" if unwrap(result.model).__class__.__name__.endswith("ForCausalLM") else "AutoModel"
    load = (f'from practise.text.saving import load_pretrained\nmodel = load_pretrained("{HF_FOLDER}")'
            if saved.form == PRACTISE else
            f'from transformers import {auto}\nmodel = {auto}.from_pretrained("{HF_FOLDER}")')
    atomic_write_text(saved.path / CARD, model_card(report, _base_name(teacher), load, command))
    return WrittenOutputs({HF_FOLDER: saved.path, **write_report_files(report, out_dir)}, report)


def _base_name(teacher: nn.Module) -> str:
    arch = getattr(teacher, "practise_arch", None) or {}
    return str(arch.get("source") or arch.get("name") or arch.get("factory") or type(teacher).__name__)


def save_verified(path: Path, result, teacher: nn.Module, spec: dict | None, extra: dict, overwrite: bool) -> Path:
    """The model file, kept only once ``load_compressed`` rebuilds it to the outputs of the
    pruned model on a seeded input (written beside ``path`` first, then renamed)."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass `overwrite` to replace it")
    unverified = path.with_name(f".unverified.{path.name}")
    try:
        save_compressed(unverified, result.model, result.selection.blocks, result.feature_layer, spec, extra,
                        overwrite=True)
        custom = {} if spec and "name" in spec else {"model": copy.deepcopy(teacher).cpu()}
        reloaded = load_compressed(unverified, **custom)
        x = example_input(result.model, tuple(result.report.model.input_shape), batch=2, random=True)
        with torch.no_grad(), eval_mode(result.model):
            expected, got = logits(result.model, x).float().cpu(), logits(reloaded, x.cpu()).float()
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
            raise RuntimeError(f"{path.name} does not reload to the pruned model (outputs differ by up to "
                               f"{float((got - expected).abs().max()):.3g}); nothing was kept")
        os.replace(unverified, path)
    finally:
        unverified.unlink(missing_ok=True)
    return path


def preprocessing_of_report(recorded: dict) -> Preprocessing:
    config = TransformConfig(image_size=recorded["image_size"], channels=recorded["channels"],
                             mean=tuple(recorded["mean"]), std=tuple(recorded["std"]))
    return Preprocessing(Transforms(config), {k: GIVEN for k in ("image_size", "mean", "std")})
