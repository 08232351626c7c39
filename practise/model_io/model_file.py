"""The compressed model file: one .safetensors file, data only.

Besides the weights it holds, as JSON metadata, how to rebuild the network: the
architecture (a registered name with keyword arguments; for a custom model the name of
its factory, for the reader's information only), the dropped blocks, the feature layer
and the preprocessing used. Loading treats all of it as untrusted data:

* the metadata is parsed against a strict schema (known keys, types, ranges); anything
  else is an :class:`UntrustedModelFile` error;
* a built-in (registered) architecture is rebuilt by name, first on the meta device so
  that its tensor shapes are checked against the file's header before any memory is
  allocated; a custom one only from a ``model`` or ``factory`` the caller passes in code,
  or from an architecture the caller registered (``practise.models.register_model``)
  under the factory name the file records. Loading never imports a module or calls a
  function because the file names it;
* dropped blocks and the feature layer must be modules of the rebuilt network, and the
  dropped ones residual blocks of it when the file records the input size;
* the weights must match the rebuilt network key for key and shape for shape.
"""
from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..files import atomic_write, one_line
from ..models import create_model, list_models
from ..models.registry import builder_of
from ..preprocessing import valid_image_size, valid_numbers
from ..surgery import drop_blocks_
from .weights import load_state_dict_strict
from ..errors import UntrustedFile, UsageError

FORMAT = "practise-compressed/1"
METADATA_KEYS = ("format", "arch", "dropped_blocks", "feature_layer", "extra")
MODULE_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
MAX_NAME = 300          # characters in a module or factory name
MAX_ITEMS = 10_000      # dropped blocks, kwargs
MAX_INT = 2 ** 31 - 1   # architecture keyword arguments are sizes and counts, never more


class UntrustedModelFile(UntrustedFile):
    """A model file that is damaged, or whose metadata does not follow the schema."""

    def __init__(self, path: str | Path, what: str):
        super().__init__(f"model file {path}", what)
        self.path = str(path)


def arch_spec(model: nn.Module, factory: str | None = None, factory_kwargs: dict | None = None) -> dict | None:
    """How to rebuild ``model``: its registered name (models made by create_model), or the
    name of the factory that makes it (recorded for the reader; loading needs the factory
    passed in code, or registered under that name)."""
    if factory is not None:
        return {"factory": factory, "kwargs": dict(factory_kwargs or {})}
    return getattr(model, "practise_arch", None)


def save_compressed(path: str | Path, model: nn.Module, dropped: list[str], feature_layer: str,
                    spec: dict | None, extra: dict | None = None, overwrite: bool = False) -> Path:
    """Write the pruned ``model``; ``spec`` None means loading needs the caller's architecture.

    The metadata is checked against the schema the loader applies, so a file this writes
    always loads."""
    metadata = {"format": FORMAT, "arch": json.dumps(spec), "dropped_blocks": json.dumps(list(dropped)),
                "feature_layer": feature_layer, "extra": json.dumps(extra or {})}
    parse_metadata(metadata, Path(path))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata), overwrite=overwrite)


# ---- reading: the schema ------------------------------------------------------------------

def read_header(path: Path) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """The raw metadata and each tensor's shape, from the header alone (no tensor is read)."""
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise UntrustedModelFile(path, f"not a readable .safetensors file ({one_line(exc)})") from None
    return meta, shapes



def _json(path: Path, meta: dict[str, str], key: str):
    try:
        return json.loads(meta[key])
    except KeyError:
        raise UntrustedModelFile(path, f"metadata key {key!r} is missing") from None
    except (ValueError, RecursionError):
        raise UntrustedModelFile(path, f"metadata {key!r} is not valid JSON") from None


def _name(path: Path, value, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or not MODULE_NAME.match(value):
        raise UntrustedModelFile(path, f"{what} {str(value)[:60]!r} is not a module name (letters, digits, _ and .)")
    return value


def _scalar_kwargs(path: Path, kwargs) -> dict:
    """Keyword arguments: at most MAX_ITEMS JSON scalars under identifier keys."""
    if not isinstance(kwargs, dict) or len(kwargs) > MAX_ITEMS:
        raise UntrustedModelFile(path, "arch kwargs must be an object of scalar values")
    for key, value in kwargs.items():
        if not key.isidentifier():
            raise UntrustedModelFile(path, f"arch kwarg {key[:60]!r} is not an identifier")
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int) and abs(value) <= MAX_INT:
            continue
        if isinstance(value, float) and math.isfinite(value):
            continue
        if isinstance(value, str) and len(value) <= MAX_NAME:
            continue
        raise UntrustedModelFile(path, f"arch kwarg {key!r} has an unsupported value {str(value)[:60]!r} "
                                       f"(allowed: booleans, integers up to {MAX_INT}, finite numbers, short strings)")
    return dict(kwargs)


def _arch(path: Path, arch) -> dict | None:
    if arch is None:
        return None
    if not isinstance(arch, dict) or set(arch) - {"name", "factory", "kwargs"} or ("name" in arch) == ("factory" in arch):
        raise UntrustedModelFile(path, "arch must be null or an object with 'name' or 'factory' and 'kwargs'")
    kwargs = _scalar_kwargs(path, arch.get("kwargs", {}))
    if "factory" in arch:
        factory = arch["factory"]
        if not isinstance(factory, str) or not factory or len(factory) > MAX_NAME:
            raise UntrustedModelFile(path, "arch factory must be a short string")
        return {"factory": factory, "kwargs": kwargs}
    name = arch["name"]
    if name not in list_models():
        raise UntrustedModelFile(path, f"unknown architecture {str(name)[:60]!r}; valid choices: {', '.join(list_models())}")
    _check_builder_kwargs(path, name, kwargs)
    return {"name": name, "kwargs": kwargs}


def _check_builder_kwargs(path: Path, name: str, kwargs: dict) -> None:
    params = inspect.signature(builder_of(name)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UntrustedModelFile(path, f"{name} takes no argument {unknown[0]!r}; valid: {', '.join(params) or 'none'}")


def _extra(path: Path, extra) -> dict:
    """The preprocessing and measurements recorded at compression time."""
    if not isinstance(extra, dict):
        raise UntrustedModelFile(path, "extra must be an object")
    checks = {"image_size": valid_image_size,
              "channels": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64,
              "mean": lambda v: valid_numbers(v, positive=False),
              "std": lambda v: valid_numbers(v, positive=True),
              "measured_latency_reduction": lambda v: v is None or (isinstance(v, (int, float)) and math.isfinite(v)),
              "preprocessing_defaults": lambda v: isinstance(v, list) and all(isinstance(s, str) and len(s) < 40
                                                                             for s in v)}
    for key, value in extra.items():
        if key not in checks:
            raise UntrustedModelFile(path, f"unknown extra key {key[:60]!r}; valid keys: {', '.join(checks)}")
        if not checks[key](value):
            raise UntrustedModelFile(path, f"extra {key!r} has an invalid value {str(value)[:60]!r}")
    channels = extra.get("channels")
    for key in ("mean", "std"):
        if channels is not None and key in extra and len(extra[key]) not in (1, channels):
            raise UntrustedModelFile(path, f"extra {key!r} has {len(extra[key])} values for {channels} channels")
    return dict(extra)


def parse_metadata(meta: dict[str, str], path: Path) -> dict:
    """The file's metadata as checked Python values, or UntrustedModelFile."""
    if meta.get("format") != FORMAT:
        raise UntrustedModelFile(path, f"not a practise compressed model (format {str(meta.get('format'))[:60]!r}, "
                                       f"expected {FORMAT!r})")
    unknown = sorted(set(meta) - set(METADATA_KEYS))
    if unknown:
        raise UntrustedModelFile(path, f"unknown metadata key {unknown[0][:60]!r}; valid keys: {', '.join(METADATA_KEYS)}")
    dropped = _json(path, meta, "dropped_blocks")
    if not isinstance(dropped, list) or len(dropped) > MAX_ITEMS:
        raise UntrustedModelFile(path, "dropped_blocks must be a list of module names")
    dropped = [_name(path, n, "dropped block") for n in dropped]
    if len(set(dropped)) != len(dropped):
        raise UntrustedModelFile(path, "dropped_blocks lists a block twice")
    return {"arch": _arch(path, _json(path, meta, "arch")), "dropped_blocks": dropped,
            "feature_layer": _name(path, meta.get("feature_layer"), "feature layer"),
            "extra": _extra(path, _json(path, meta, "extra"))}


def read_metadata(path: str | Path) -> dict:
    """The checked metadata of a compressed model file (no tensor is read)."""
    path = Path(path)
    meta, _ = read_header(path)
    return parse_metadata(meta, path)


def is_compressed_file(path: str | Path) -> bool:
    """Whether ``path`` claims to be a compressed model file (its format key says so).

    A file that claims it but breaks the schema is still "compressed": loading it then
    reports what is wrong, instead of calling it some other kind of file."""
    try:
        meta, _ = read_header(Path(path))
    except (UntrustedModelFile, FileNotFoundError):
        return False
    return meta.get("format") == FORMAT


# ---- reading: rebuilding ------------------------------------------------------------------

def _registered_name(spec: dict | None) -> str | None:
    """The registry name to rebuild from: a built-in, or a factory name the caller registered."""
    if spec is None:
        return None
    name = spec.get("name") or spec.get("factory")
    return name if name in list_models() else None


def _builder(path: Path, spec: dict | None, factory):
    """A no-argument callable building the architecture: the caller's factory, else the registry's."""
    kwargs = dict(spec["kwargs"]) if spec else {}
    if factory is not None:
        return lambda: factory(**kwargs)
    name = _registered_name(spec)
    if name is None:
        recorded = f"a custom architecture (factory {spec['factory']!r})" if spec else "no architecture"
        raise UsageError(f"{path} records {recorded}; pass model= (an instance of the original architecture) or "
                         f"factory= in code, or register it with practise.models.register_model under that name. "
                         f"Loading never imports code a file names.")
    return lambda: create_model(name, **kwargs)


def _checked_build(path: Path, build) -> nn.Module:
    try:
        return build()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise UntrustedModelFile(path, f"its architecture cannot be built ({one_line(exc)})") from None


def _on_meta(build) -> nn.Module | None:
    """``build()`` on the meta device (no memory), or None if the builder cannot run there."""
    try:
        with torch.device("meta"):
            return build()
    except Exception:  # a caller's factory may do real work; its shapes are then checked after building
        return None


def _check_shapes(path: Path, model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise UntrustedModelFile(path, f"its tensors do not match the architecture: missing {missing[:5]}, "
                                       f"unexpected {unexpected[:5]}")
    wrong = [f"{k} {shapes[k]} vs {expected[k]}" for k in expected if shapes[k] != expected[k]]
    if wrong:
        raise UntrustedModelFile(path, f"tensor shapes do not match the architecture: {'; '.join(wrong[:3])}")


def _check_modules(path: Path, model: nn.Module, meta: dict) -> None:
    modules = dict(model.named_modules())
    for name in meta["dropped_blocks"]:
        if name not in modules:
            raise UntrustedModelFile(path, f"dropped block {name!r} is not a module of the architecture")
    if meta["feature_layer"] not in modules:
        raise UntrustedModelFile(path, f"feature layer {meta['feature_layer']!r} is not a module of the architecture")


def _check_droppable(path: Path, model: nn.Module, meta: dict) -> None:
    """Dropped names must be residual blocks (when the file says which input to trace with)."""
    extra = meta["extra"]
    if not meta["dropped_blocks"] or "image_size" not in extra or "channels" not in extra:
        return
    from ..tracing import trace_model

    size = extra["image_size"]
    try:
        trace = trace_model(model, torch.zeros(1, extra["channels"], size, size))
    except Exception as exc:  # the recorded input does not run: the metadata is wrong
        raise UntrustedModelFile(path, f"the architecture does not run on its recorded input ({one_line(exc)})") from None
    for name in meta["dropped_blocks"]:
        if not trace.is_residual_block(name):
            raise UntrustedModelFile(path, f"dropped module {name!r} is not a droppable residual block")


def load_compressed(path: str | Path, model: nn.Module | None = None, factory=None) -> nn.Module:
    """Rebuild a compressed model from its file (see the module docstring for what is trusted).

    ``model``: a fresh instance of the original architecture, for files of custom models;
    ``factory``: a callable the caller trusts, called with the file's (checked, scalar)
    keyword arguments. Returns the model in eval mode on the CPU."""
    path = Path(path)
    raw, shapes = read_header(path)
    meta = parse_metadata(raw, path)
    if model is None:
        build = _builder(path, meta["arch"], factory)
        ghost = _on_meta(build)  # sizes checked against the header before any memory is allocated
        if ghost is not None:
            _check_modules(path, ghost, meta)
            _check_shapes(path, drop_blocks_(ghost, meta["dropped_blocks"]), shapes)
        target = _checked_build(path, build)
    else:
        target = model
    _check_modules(path, target, meta)
    _check_droppable(path, target, meta)
    drop_blocks_(target, meta["dropped_blocks"])
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise UntrustedModelFile(path, f"its tensors cannot be read ({one_line(exc)})") from None
    load_state_dict_strict(target, state, source=str(path))
    target.practise_arch = meta["arch"]
    target.practise_dropped = meta["dropped_blocks"]
    target.practise_feature_layer = meta["feature_layer"]
    target.practise_extra = meta["extra"]  # preprocessing recorded at compression time
    return target.eval()
