"""`practise latency`: a model's latency on this device, optionally against it with blocks dropped."""
from __future__ import annotations

import json
from dataclasses import asdict

from ..latency import FULL, measure_variants, noise_warning, reduction
from ..text.decode import timing_model
from ..pipeline import inspect_model
from .arguments import add_latency_args, add_model_args, csv
from .common import latency_config, model_from_args, progress_for, shape_for
from ..errors import UsageError


def add_parser(sub, common) -> None:
    p = sub.add_parser("latency", parents=[common], help="measure latency, optionally against the model with blocks dropped")
    p.add_argument("--drop", help="blocks to drop, comma-separated")
    p.add_argument("--json", action="store_true")
    add_model_args(p), add_latency_args(p)
    p.set_defaults(func=run)


def run(a) -> None:
    model = model_from_args(a)
    shape = shape_for(a, model)
    drop = csv(a.drop) or []
    if drop:  # only droppable blocks: anything else would change shapes mid-network
        trace = inspect_model(model, shape).trace  # whole units and transformer sub-layers alike
        candidates = list(dict.fromkeys(trace.candidates("layer") + trace.candidates("sublayer")))
        for name in drop:
            if name not in candidates:
                raise UsageError(f"unknown block {name!r}; droppable blocks: {', '.join(candidates)}")
    variants = {FULL: []} | ({"dropped": drop} if drop else {})
    config = latency_config(a)
    stats, settings = measure_variants(timing_model(model, config.metric), shape, variants, config, progress_for(a))
    result = {"settings": settings.as_dict(), "latency_ms": {k: asdict(v) for k, v in stats.items()}}
    if drop:
        result["reduction"] = reduction(stats[FULL], stats["dropped"])
        result["warning"] = noise_warning(stats[FULL], stats["dropped"])
    if a.json:
        print(json.dumps(result, indent=2))
        return
    print(f"device {settings.device} ({settings.device_name}), {settings.threads} threads, input {settings.input_shape}, "
          f"{settings.dtype}, {settings.warmup} warm-up + {settings.repeats} repeats, torch {settings.torch_version}, "
          f"backend {settings.backend}")
    for name, s in stats.items():
        print(f"{name:<14} median {s.median_ms:9.3f} ms   IQR {s.iqr_ms:7.3f} ms   min {s.min_ms:9.3f} ms")
    if drop:
        print(f"latency reduction from dropping {', '.join(drop)}: {100 * result['reduction']:.1f}%")
        if result["warning"]:
            print(f"warning: {result['warning']}")
