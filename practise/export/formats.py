"""Writing a model (compressed or not) in the formats it is deployed with.

* ``onnx``: ``torch.onnx.export`` with a dynamic batch axis; the file is then run in
  onnxruntime (CPU execution provider) on a seeded batch and its logits compared with
  PyTorch's: the largest absolute difference is reported, and above ``tolerance`` the
  export is an error (the file is not kept).
* ``torchscript``: ``torch.jit.trace`` (a model whose forward branches on data is traced
  along the example's path; its output is checked against PyTorch too). PyTorch deprecates
  TorchScript in favour of torch.export; it is offered for runtimes that still load it.
* ``torch-export``: ``torch.export.export`` with a dynamic batch dimension, saved with
  ``torch.export.save`` (``.pt2``).

Every file is written atomically; an existing file is replaced only with ``overwrite``.
"""
from __future__ import annotations

import copy
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..files import atomic_write
from ..model_output import select_logits
from ..registry import Registry
from ..errors import UsageError
from ..text.model import is_token_model

log = logging.getLogger(__name__)
ONNX_OPSET = 18


@dataclass
class ExportResult:
    format: str
    path: Path
    max_abs_diff: float | None     # against PyTorch's logits on a seeded batch
    checked_batch: int | None
    runtime: str | None            # what the check ran in


def _example(sample_shape: tuple[int, ...], batch: int) -> torch.Tensor:
    return torch.randn((batch, *sample_shape), generator=torch.Generator().manual_seed(0))


class _LogitsOnly(nn.Module):
    """The model with its logits selected from whatever its forward returns (tuples, dicts)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.key = getattr(model, "practise_output", None)

    def forward(self, x):
        return select_logits(self.model(x), self.key)


def prepared(model: nn.Module) -> nn.Module:
    """A private eval-mode CPU copy whose forward returns the logits tensor."""
    return _LogitsOnly(copy.deepcopy(model).cpu().eval()).eval()


def onnx_bytes(model: nn.Module, sample_shape: tuple[int, ...], batch: int = 2) -> bytes:
    """The ONNX program of ``model`` (logits output, dynamic batch axis) as bytes."""
    import warnings

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations of its own options)
        torch.onnx.export(prepared(model), (_example(sample_shape, batch),), buffer, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=ONNX_OPSET, dynamo=False)
    return buffer.getvalue()


def onnx_session(program: bytes, threads: int | None = None):
    """An onnxruntime session on the CPU execution provider with ``threads`` intra-op threads."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("ONNX needs onnxruntime: pip install onnx onnxruntime (or pip install -e \".[deploy]\")") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # no spin-waiting after a run: several sessions take turns on the same cores while
    # variants are timed, and one session's spinning threads would slow the next one down
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(program, options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def onnx_parity(model: nn.Module, program: bytes, sample_shape: tuple[int, ...], batch: int = 4) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's logits on a seeded batch
    (a batch size other than the exported example's, so the dynamic axis is exercised)."""
    x = _example(sample_shape, batch)
    expected = prepared(model)(x).numpy()
    got = onnx_session(program).run(None, {"input": x.numpy()})[0]
    if got.shape != expected.shape:
        raise UsageError(f"the ONNX program returns shape {got.shape}, PyTorch {expected.shape}")
    return float(abs(got - expected).max())


def _write_onnx(model, sample_shape, path, tolerance, batch):
    program = onnx_bytes(model, sample_shape)
    diff = onnx_parity(model, program, sample_shape, batch)
    if diff > tolerance:
        raise UsageError(f"ONNX export differs from PyTorch by up to {diff:.3g} in the logits (tolerance {tolerance:g}); "
                         f"not written")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(program))
    return ExportResult("onnx", Path(path), diff, batch, "onnxruntime (CPUExecutionProvider)")


@torch.no_grad()
def _write_torchscript(model, sample_shape, path, tolerance, batch):
    module = prepared(model)
    traced = torch.jit.trace(module, _example(sample_shape, 2), check_trace=False)
    x = _example(sample_shape, batch)
    diff = float((traced(x) - module(x)).abs().max())
    if diff > tolerance:
        raise UsageError(f"the TorchScript trace differs from the model by up to {diff:.3g} (tolerance {tolerance:g})")
    atomic_write(path, lambda tmp: torch.jit.save(traced, tmp))
    return ExportResult("torchscript", Path(path), diff, batch, "torch.jit")


def _write_torch_export(model, sample_shape, path, tolerance, batch):
    module = prepared(model)
    batch_dim = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(module, (_example(sample_shape, 2),), dynamic_shapes=({0: batch_dim},))
    x = _example(sample_shape, batch)
    with torch.no_grad():
        diff = float((program.module()(x) - module(x)).abs().max())
    if diff > tolerance:
        raise UsageError(f"the torch.export program differs from the model by up to {diff:.3g} (tolerance {tolerance:g})")
    buffer = io.BytesIO()  # torch.export.save wants a .pt2 name; the atomic temporary file has none
    torch.export.save(program, buffer)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    return ExportResult("torch-export", Path(path), diff, batch, "torch.export")


@dataclass(frozen=True)
class Exporter:
    suffix: str
    write: Callable  # (model, sample_shape, path, tolerance, check_batch) -> ExportResult


EXPORTERS: Registry[Exporter] = Registry("export format")


def register_exporter(name: str, exporter: Exporter | None = None):
    """Add an export format under ``name`` (a valid ``export_model(formats=)`` value).
    Without ``exporter``, a decorator."""
    return EXPORTERS.add(name, exporter)


register_exporter("onnx", Exporter(".onnx", _write_onnx))
register_exporter("torchscript", Exporter(".torchscript.pt", _write_torchscript))
register_exporter("torch-export", Exporter(".pt2", _write_torch_export))


def refuse_token_models(model: nn.Module, what: str) -> None:
    """Export and the onnxruntime backend trace image inputs; token models are refused in one line."""
    if is_token_model(model):
        raise UsageError(f"{what} of token models (hf:) is not supported: it traces float image inputs, and a "
                         "token model takes integer ids and a mask; deploy the saved Hugging Face folder with "
                         "its own tooling (e.g. optimum's ONNX export)")


def export_model(model: nn.Module, sample_shape: tuple[int, ...], out_dir: str | Path, formats: list[str],
                 stem: str = "model", tolerance: float = 1e-4, check_batch: int = 4,
                 overwrite: bool = False) -> list[ExportResult]:
    """Write ``model`` in each of ``formats`` into ``out_dir`` (``<stem><suffix>``), each
    checked against PyTorch on a seeded batch of ``check_batch`` inputs."""
    exporters = {f: EXPORTERS.get(f) for f in formats}  # an unknown name lists the valid ones
    if not stem or stem in (".", "..") or Path(stem).name != stem or "\\" in stem:
        raise UsageError(f"`name` {stem!r} must be a plain file name (no folders): the files go into `out_dir`")
    refuse_token_models(model, "export")
    out_dir = Path(out_dir)
    paths = {f: out_dir / f"{stem}{e.suffix}" for f, e in exporters.items()}
    taken = [str(p) for p in paths.values() if p.exists()]
    if taken and not overwrite:
        raise FileExistsError(f"output files exist: {', '.join(taken)}; pass `overwrite` or choose another `out_dir`")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for f in formats:
        results.append(exporters[f].write(model, sample_shape, paths[f], tolerance, check_batch))
        log.info("wrote %s (max abs difference %.3g against PyTorch)", paths[f], results[-1].max_abs_diff)
    return results
