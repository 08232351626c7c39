"""Writing a compressed Hugging Face model, and never a wrong one.

Two forms, and the folder says which (``practise.json``, and the report):

* **stock**: dropped whole layers removed (``layers.remove_dropped_layers_``), the same
  architecture with fewer layers, written by ``save_pretrained``: stock
  ``AutoModel*.from_pretrained`` reloads it, no practise needed.
* **practise**: the original config, the pruned weights in ``practise-model.safetensors``
  (a name stock ``from_pretrained`` does not look for, so it refuses the folder instead of
  filling the dropped parts with random weights) and ``practise.json`` naming every dropped
  module and its output structure. :func:`load_pretrained` (and ``--model hf:<folder>``)
  rebuilds the original architecture, puts the stand-ins back and loads the weights
  strictly. Used when something cannot be expressed as a stock model: dropped sub-layers,
  or a config that describes layers by index in a way the shortened model contradicts.

Every folder is *verified before it is kept*: it is reloaded the way its users will
reload it and compared with the in-memory pruned model on seeded tokens (outputs within
tolerance; for causal LMs, greedy tokens identical with and without the KV cache). A stock
folder that fails is replaced by the practise form, with a warning saying why.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch.nn as nn
from safetensors.torch import load_model, save_model

from ..call_structure import OutputStructure
from ..errors import UntrustedFile
from ..surgery import PassThrough, ZeroBranch, _StandIn, copy_plain_attributes_, replace_module_
from .layers import layer_count_key, layer_lists, remove_dropped_layers_
from .model import model_class, refuse_remote_code, refused_as_untrusted
from .verify import GENERATION_OK, Mismatch, check_reload
from ..modes import eval_mode

log = logging.getLogger(__name__)
SIDE_FILE = "practise.json"
WEIGHTS_FILE = "practise-model.safetensors"
FORMAT = "practise-hf/1"
STOCK, PRACTISE = "stock", "practise"
MODULE_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
MAX_DROPPED = 100_000
KINDS = ("tensor", "tuple", "list", "mapping")


@dataclass
class SavedFolder:
    path: Path
    form: str                       # STOCK or PRACTISE
    reason: str | None = None       # why not stock
    max_abs_diff: float = 0.0       # reloaded against in-memory, on seeded tokens
    generation: str | None = None   # causal LMs: the KV-cache check's outcome

    def as_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def stand_ins(model: nn.Module) -> dict[str, dict]:
    """Every dropped module (PassThrough or ZeroBranch) and how to rebuild it."""
    return {name: {"kind": "pass_through" if isinstance(m, PassThrough) else "zero_branch",
                   "output": _structure_record(m.structure)}
            for name, m in model.named_modules() if isinstance(m, _StandIn)}


def _structure_record(structure: OutputStructure) -> dict:
    record = {"kind": structure.kind, "length": structure.length}
    if structure.kind == "mapping":
        record |= {"class": structure.cls.__name__, "key": structure.key}
    return record


def save_pretrained(hf_model: nn.Module, tokenizer, out_dir: str | Path, extra: dict | None = None,
                    overwrite: bool = False) -> SavedFolder:
    """Write ``hf_model`` (the pruned HF model; left untouched) and its tokenizer into
    ``out_dir``, atomically, in the stock form when it reloads exactly, else the practise form."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass `overwrite` to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    dropped = stand_ins(hf_model)
    sub_layers = [n for n, d in dropped.items() if d["kind"] == "zero_branch"]
    reason = (f"dropped sub-layers ({', '.join(sub_layers)[:120]}) have no stock form" if sub_layers
              else _stock_blocker(hf_model, dropped))
    saved = None
    with eval_mode(hf_model):  # compared in eval mode; the caller's modes are restored
        if reason is None:
            saved, reason = _try_stock(hf_model, tokenizer, out_dir, extra)
        if saved is None:
            saved = _write(out_dir, lambda tmp: _write_practise(hf_model, tokenizer, tmp, dropped, extra),
                           lambda tmp: _verify_practise(hf_model, tmp, reason))
        log.warning("%s is saved in the practise form (reload with practise.text.load_pretrained or --model "
                    "hf:%s): %s", out_dir, out_dir, reason)
    return saved


def _stock_blocker(hf_model: nn.Module, dropped: dict) -> str | None:
    """Why whole-layer drops cannot become a shorter stock model, or None."""
    if not dropped:
        return None
    config = getattr(hf_model, "config", None)
    count_key = layer_count_key(config)
    lists = {name for name, layers in layer_lists(hf_model)
             if count_key is not None and len(layers) == getattr(config, count_key)}
    outside = [n for n in dropped if n.rpartition(".")[0] not in lists]
    if outside:
        return f"{outside[0]} is not an element of the model's layer list"
    return None


def _try_stock(hf_model, tokenizer, out_dir: Path, extra) -> tuple[SavedFolder | None, str | None]:
    """The stock form, kept only if it verifies; else (None, why)."""
    failures = []
    for remap in (False, True):  # as the config says; then index-based config attributes remapped
        model = copy.deepcopy(hf_model)
        removed = remove_dropped_layers_(model)
        if remap and not remap_layer_indices_(model.config, removed, hf_model.config):
            break
        try:
            saved = _write(out_dir, lambda tmp: _write_stock(model, tokenizer, tmp, removed, extra),
                           lambda tmp: _verify_stock(hf_model, tmp))
            return saved, None
        except Mismatch as exc:
            failures.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - stock saving itself fails (shared tensors): the practise form
            failures.append(f"save_pretrained fails: {type(exc).__name__}: {str(exc)[:160]}")
    return None, f"the stock form would not reload as the pruned model ({failures[0]})"


def remap_layer_indices_(config, removed: dict[str, list[int]], original) -> bool:
    """Config attributes that name layers by index rewritten for the kept layers; True if any
    changed. Which attributes those are is read from their values, not from a table of names:
    a list of layer indices (not one entry per layer) is mapped through old -> new index, and an
    integer named for layers (``first_k_dense_replace``, ``max_window_layers``) counting leading
    layers becomes the number of kept layers among them. Lists with one entry per layer in the
    ``original`` config were shortened already and are left alone. The reload check decides
    if the result is right."""
    dropped = sorted({i for indices in removed.values() for i in indices})
    count_key = layer_count_key(config)
    old_count = getattr(original, count_key)
    per_layer = {k for k, v in vars(original).items() if isinstance(v, list) and len(v) == old_count}
    new_index = {old: new for new, old in enumerate(i for i in range(old_count) if i not in dropped)}
    changed = False
    for key, value in list(vars(config).items()):
        if key == count_key or key.startswith("_") or key in per_layer:
            continue
        is_index_list = (isinstance(value, list) and value
                         and all(type(v) is int and 0 <= v < old_count for v in value))
        if is_index_list:
            setattr(config, key, [new_index[v] for v in value if v in new_index])
            changed = True
        elif type(value) is int and ("layer" in key or key.startswith("first_k")) and 0 < value <= old_count:
            setattr(config, key, sum(1 for i in range(value) if i not in dropped))
            changed = True
    return changed


@contextlib.contextmanager
def _quiet_transformers():
    """No progress bars or load reports from transformers while practise writes and checks a
    folder (a failed stock attempt is reported by practise, in one line)."""
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _write(out_dir: Path, write, verify) -> SavedFolder:
    """``write(tmp)`` into a temporary folder beside ``out_dir``, ``verify(tmp)``, then rename."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with _quiet_transformers():
            write(tmp)
            saved = verify(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
        saved.path = out_dir
        return saved
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _side(form: str, dropped: dict, extra: dict | None, **more) -> str:
    return json.dumps({"format": FORMAT, "form": form, "dropped": dropped, **more, **(extra or {})}, indent=1)


def _write_stock(model: nn.Module, tokenizer, tmp: Path, removed: dict, extra) -> None:
    model.save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    (tmp / SIDE_FILE).write_text(_side(STOCK, {}, extra, removed_layers=removed))


def _write_practise(hf_model: nn.Module, tokenizer, tmp: Path, dropped: dict, extra) -> None:
    config = copy.deepcopy(hf_model.config)  # the original architecture: the stand-ins go back where they were
    config.architectures = [type(hf_model).__name__]  # the class, head included, that load_pretrained rebuilds
    config.save_pretrained(tmp)
    save_model(hf_model, str(tmp / WEIGHTS_FILE))
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    (tmp / SIDE_FILE).write_text(_side(PRACTISE, dropped, extra))


def _verify_stock(hf_model: nn.Module, tmp: Path) -> SavedFolder:
    with refused_as_untrusted(tmp, "model"):
        reloaded, info = model_class(tmp).from_pretrained(tmp, local_files_only=True, trust_remote_code=False,
                                                          output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        key, values = next(iter(problems.items()))
        raise Mismatch(f"{key.replace('_', ' ')}: {', '.join(map(str, list(values)[:3]))}")
    diff, generation = check_reload(hf_model, reloaded.eval())
    if generation != GENERATION_OK:
        raise Mismatch(generation)
    return SavedFolder(tmp, STOCK, None, diff, generation)


def _verify_practise(hf_model: nn.Module, tmp: Path, reason: str) -> SavedFolder:
    try:
        diff, generation = check_reload(hf_model, load_pretrained(tmp))
    except Mismatch as exc:  # the practise form rebuilds the very modules in memory: a bug if it differs
        raise RuntimeError(f"the practise form of the pruned model does not reload exactly: {exc}") from None
    if generation != GENERATION_OK:
        log.warning("%s: %s; generate with use_cache=False", tmp.name, generation)
    return SavedFolder(tmp, PRACTISE, reason, diff, generation)


# ---- loading ---------------------------------------------------------------------------

def read_side_file(path: Path) -> dict | None:
    """``practise.json`` checked against its schema, or None if the folder has none."""
    file = path / SIDE_FILE
    if not file.is_file():
        return None
    if file.stat().st_size > 16 << 20:
        raise UntrustedFile(file, "larger than 16 MiB")
    try:
        side = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UntrustedFile(file, f"not valid JSON ({exc})") from None
    if isinstance(side, dict) and "format" not in side and "removed_layers" in side:  # an earlier practise's
        if side.get("zero_branches") or side.get("pass_throughs"):
            raise UntrustedFile(file, "written by an earlier practise with dropped sub-layers, whose weights this "
                                      "version cannot verify; compress the model again to get a verified folder")
        return None  # whole layers removed: a stock folder, checked like any other
    if not isinstance(side, dict) or side.get("format") != FORMAT or side.get("form") not in (STOCK, PRACTISE):
        raise UntrustedFile(file, f"not a {FORMAT} file (format and form missing or unknown)")
    dropped = side.get("dropped")
    if not isinstance(dropped, dict) or len(dropped) > MAX_DROPPED:
        raise UntrustedFile(file, "'dropped' must be an object of at most 100000 module names")
    for name, record in dropped.items():
        _check_dropped(file, name, record)
    if side["form"] == PRACTISE and not dropped:
        raise UntrustedFile(file, "the practise form names no dropped module")
    return side


def _check_dropped(file: Path, name, record) -> None:
    if not isinstance(name, str) or len(name) > 300 or not MODULE_NAME.match(name):
        raise UntrustedFile(file, f"{str(name)[:60]!r} is not a module name")
    output = record.get("output") if isinstance(record, dict) else None
    if not isinstance(output, dict) or record.get("kind") not in ("pass_through", "zero_branch") \
            or output.get("kind") not in KINDS or type(output.get("length")) is not int \
            or not 1 <= output["length"] <= 64:
        raise UntrustedFile(file, f"{name}: needs kind pass_through|zero_branch and an output of kind "
                                  f"{'|'.join(KINDS)} with a length from 1 to 64")


def _output_structure(file: Path, name: str, output: dict) -> OutputStructure:
    if output["kind"] != "mapping":
        return OutputStructure(output["kind"], output["length"])
    from transformers import modeling_outputs  # a ModelOutput class by name, from transformers only

    cls = getattr(modeling_outputs, str(output.get("class")), None)
    if not isinstance(cls, type) or not isinstance(output.get("key"), str):
        raise UntrustedFile(file, f"{name}: unknown output class {str(output.get('class'))[:60]!r}")
    return OutputStructure("mapping", output["length"], cls, output["key"])


def load_pretrained(path: str | Path, auto_class=None) -> nn.Module:
    """Reload a folder written by :func:`save_pretrained` (either form) exactly; a folder
    without ``practise.json`` is read as a stock folder."""
    path = Path(path)
    refuse_remote_code(path)
    side = read_side_file(path)
    cls = auto_class or model_class(path)
    if side is None or side["form"] == STOCK:
        return _load_stock_form(path, cls)
    return _load_practise_form(path, cls, side)


def check_config_fits_weights(path: Path) -> None:
    """Refuse, before anything is built, a config.json that describes more layers or another
    width than the safetensors weights beside it hold (a million layers would take minutes to
    build, then be filled with random weights)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(file), "pt") as handle:
                shapes |= {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise UntrustedFile(file, f"not a readable safetensors file ({type(exc).__name__})") from None
    if not shapes:
        return  # .bin weights: transformers reads them (weights only) and the loading report is checked
    with open(path / "config.json", encoding="utf-8") as handle:
        config = json.load(handle)
    count_key = next((k for k in ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
                      if type(config.get(k)) is int), None)
    # loose bounds, so that layouts counting layers differently (stages, blocks) never trip them
    stored = _stored_layer_count(shapes)
    if count_key and stored and config[count_key] > 8 * stored:
        raise UntrustedFile(path, f"config.json describes {config[count_key]} layers ({count_key}) but the weights "
                                  f"hold about {stored}")
    largest = max((d for shape in shapes.values() for d in shape), default=0)
    for key in ("hidden_size", "d_model", "n_embd", "intermediate_size"):
        if type(config.get(key)) is int and config[key] > largest:
            raise UntrustedFile(path, f"config.json's {key} {config[key]} is larger than any weight's dimension "
                                      f"({largest})")


def _stored_layer_count(shapes: dict) -> int:
    """The layers the weights hold: the largest N+1 over keys with a numbered list entry."""
    numbers = [int(m.group(1)) for key in shapes for m in [re.search(r"\.(\d+)\.", key)] if m]
    return max(numbers) + 1 if numbers else 0


def _load_stock_form(path: Path, cls) -> nn.Module:
    """``from_pretrained``, refused if any weight is missing, unexpected or of another shape
    (transformers would fill a missing one with random values and go on)."""
    check_config_fits_weights(path)
    with refused_as_untrusted(path, "model"):
        model, info = cls.from_pretrained(path, local_files_only=True, trust_remote_code=False,
                                          output_loading_info=True)
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        if info.get(key):
            names = ", ".join(str(k) for k in list(info[key])[:3])
            raise UntrustedFile(path, f"its weights do not fit its config.json ({key.replace('_', ' ')}: {names})")
    return model.eval()


def _load_practise_form(path: Path, cls, side: dict) -> nn.Module:
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise UntrustedFile(path, f"{SIDE_FILE} says practise form but {WEIGHTS_FILE} is missing")
    with refused_as_untrusted(path, "config.json"):
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=False)
        model = (cls.from_config(config) if hasattr(cls, "from_config") else cls._from_config(config)).eval()
    candidates = droppable_modules(model)
    for name, record in side["dropped"].items():
        if name not in candidates:
            raise UntrustedFile(path / SIDE_FILE, f"{name} is not a droppable module of {type(model).__name__}")
        stand_in = (PassThrough if record["kind"] == "pass_through" else ZeroBranch)(
            _output_structure(path / SIDE_FILE, name, record["output"]))
        copy_plain_attributes_(model.get_submodule(name), stand_in)
        replace_module_(model, name, stand_in)
    try:
        missing, unexpected = load_model(model, str(weights), strict=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UntrustedFile(weights, f"does not fit the pruned {type(model).__name__} ({exc})"[:300]) from None
    if missing or unexpected:
        raise UntrustedFile(weights, f"does not fit the pruned {type(model).__name__}: "
                                     f"{'missing' if missing else 'unexpected'} {(missing or unexpected)[0]}")
    return model.eval()


def droppable_modules(hf_model: nn.Module) -> set[str]:
    """Names of the modules practise could have dropped: the elements of a layer list and
    the modules inside them (never an embedding, a final norm or a head)."""
    names = set()
    for list_name, layers in layer_lists(hf_model):
        for i, layer in enumerate(layers):
            names |= {f"{list_name}.{i}" + (f".{sub}" if sub else "") for sub, _ in layer.named_modules()}
    return names
