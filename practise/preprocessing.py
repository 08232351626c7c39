"""Which input size and normalisation a model is run with, and where each value came from.

Order of precedence: what the caller gives (flags), what the weights or compressed model
file recorded, the data set's own (Fashion-MNIST's 28 px and statistics), the
architecture's usual input size and ImageNet's statistics. Whatever was not given or
recorded is a guess, and a guess is never silent: :attr:`Preprocessing.note` says which
values were defaulted, for the log, the printed summary and the report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch.nn as nn

from .data.catalog import source_preprocessing
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, MAX_IMAGE_SIZE, TransformConfig, Transforms
from .errors import UsageError

GIVEN, RECORDED = "given", "recorded with the weights"


@dataclass(frozen=True)
class Preprocessing:
    transforms: Transforms
    origins: dict[str, str] = field(default_factory=dict)  # image_size / mean / std -> where it came from

    @property
    def defaulted(self) -> list[str]:
        return [k for k, origin in self.origins.items() if origin not in (GIVEN, RECORDED)]

    @property
    def note(self) -> str | None:
        """One sentence naming the defaulted values, or None when nothing was guessed."""
        if not self.defaulted:
            return None
        c = self.transforms.config
        values = {"image_size": f"image size {c.image_size} px", "mean": f"mean {_fmt(c.mean)}", "std": f"std {_fmt(c.std)}"}
        used = "; ".join(f"{values[k]} ({self.origins[k]})" for k in self.defaulted)
        flags = ", ".join("--" + k.replace("_", "-") for k in self.defaulted)
        return (f"no preprocessing is recorded with the model for {', '.join(k.replace('_', ' ') for k in self.defaulted)} "
                f"and none was given, so defaults were used: {used}; pass {flags} if the model was trained otherwise")

    def as_dict(self) -> dict:
        c = self.transforms.config
        return {"image_size": c.image_size, "channels": c.channels, "mean": list(c.mean), "std": list(c.std),
                "origins": dict(self.origins), "defaulted": self.defaulted, "note": self.note}


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def valid_image_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_IMAGE_SIZE


def valid_numbers(value, positive: bool) -> bool:
    """A list of 1 to 64 finite numbers (all above 0 if ``positive``): a recorded mean or std."""
    return (isinstance(value, list) and 1 <= len(value) <= 64
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    and (v > 0 or not positive) for v in value))


def checked_recording(value, source: str) -> dict:
    """A recorded preprocessing (from a file someone else wrote) as checked values."""
    if not isinstance(value, dict):
        raise UsageError(f"{source} records preprocessing that is not an object")
    out = {}
    if value.get("image_size") is not None:
        if not valid_image_size(value["image_size"]):
            raise UsageError(f"{source} records an invalid image size {str(value['image_size'])[:40]!r}")
        out["image_size"] = value["image_size"]
    for key in ("mean", "std"):
        if value.get(key) is None:
            continue
        if not valid_numbers(value[key], positive=key == "std"):
            raise UsageError(f"{source} records an invalid {key} {str(value[key])[:60]!r}")
        out[key] = [float(v) for v in value[key]]
    return out


def resolve_preprocessing(model: nn.Module, channels: int, data: str | None = None, image_size: int | None = None,
                          mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> Preprocessing:
    """Transforms for ``model`` (see the module docstring for the order of precedence).

    ``data`` is the data-set spec (its own preprocessing, if it has one, comes before the
    generic defaults); ``image_size``/``mean``/``std`` are what the caller gave."""
    recorded = getattr(model, "practise_extra", None) or {}
    from_data = source_preprocessing(data) if data else None
    arch_size = getattr(model, "practise_image_size", None)
    chosen, origins = {}, {}
    for key, given, generic in (("image_size", image_size, (arch_size, f"{type(model).__name__}'s usual input")),
                                ("mean", mean, (IMAGENET_MEAN, "ImageNet's")), ("std", std, (IMAGENET_STD, "ImageNet's"))):
        options = [(given, GIVEN), (recorded.get(key), RECORDED),
                   ((from_data or {}).get(key), f"the default for {data}"), generic]
        value, origin = next(((v, o) for v, o in options if v is not None), (None, None))
        if value is None:
            raise UsageError("no input size is recorded for this model and none was given; pass `image_size`")
        chosen[key], origins[key] = value, origin
    config = TransformConfig(image_size=int(chosen["image_size"]), channels=channels,
                             mean=tuple(chosen["mean"]), std=tuple(chosen["std"]))
    return Preprocessing(Transforms(config), origins)
