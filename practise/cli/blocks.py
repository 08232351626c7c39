"""`practise blocks`: the droppable residual blocks of a model (and their latency shares)."""
from __future__ import annotations

import json

from ..blocks import count_flops
from ..inputs import example_input
from ..latency import block_latency_reductions
from ..models import list_models
from ..pipeline import inspect_model
from .arguments import add_candidate_args, add_latency_args, add_model_args, csv
from .common import latency_config, model_from_args, progress_for, shape_for
from ..errors import UsageError

def add_parser(sub, common) -> None:
    p = sub.add_parser("blocks", parents=[common], help="list the droppable residual blocks of a model")
    p.add_argument("--list", action="store_true", help="list the built-in architectures and exit")
    p.add_argument("--latency", action="store_true", help="also measure each block's latency share")
    p.add_argument("--json", action="store_true")
    add_model_args(p), add_candidate_args(p), add_latency_args(p)
    p.set_defaults(func=run)
    for action in p._actions:  # --model is not needed with --list
        if action.dest == "model":
            action.required = False

def run(a) -> None:
    if a.list:
        print("\n".join(list_models()))
        return
    if not a.model:
        raise UsageError("--model is required (or --list)")
    model = model_from_args(a)
    shape = shape_for(a, model)
    info = inspect_model(model, shape, csv(a.include), csv(a.exclude), a.feature_layer, a.granularity)
    total, _ = count_flops(model, example_input(model, shape))
    r_b, details = {}, {}
    if a.latency:
        r_b, details, settings = block_latency_reductions(model, shape, [b.name for b in info.blocks],
                                                          latency_config(a), progress_for(a))
    rows = [{**b.as_dict(), "flops_share": b.flops / total if total and b.flops is not None else None, **(latency_row(details[b.name]) if details else {})}
            for b in info.blocks]
    if a.json:
        extra = {"latency_settings": settings.as_dict()} if details else {}
        print(json.dumps({"feature_layer": info.feature_layer, "blocks": rows, **extra}, indent=2))
        return
    print(f"{len(rows)} droppable blocks; feature layer: {info.feature_layer}")
    width = max([16] + [len(r["name"]) + 2 for r in rows])
    kind_width = max([20] + [len(r["kind"]) + 2 for r in rows])
    print(f"{'block':<{width}}{'kind':<{kind_width}}{'params':>12}{'FLOPs share':>13}"
          + (f"{'latency share':>15}{'95% interval':>16}  group (tie)" if details else ""))
    for r in rows:
        line = f"{r['name']:<{width}}{r['kind']:<{kind_width}}{r['params']:>12,}{share(r['flops_share'])}"
        if details:
            low, high = r["latency_interval"]
            line += (f"{100 * r['latency_reduction']:>14.2f}%{100 * low:>8.2f}-{100 * high:.2f}%"
                     f"  {r['latency_group']} ({r['latency_tie']})")
        print(line)
    if details:
        print(f"latency: {settings.repeats} paired repeats at batch {settings.batch_size} on {settings.device} "
              f"({settings.device_name}), {settings.threads} threads, backend {settings.backend}; blocks of one "
              f"group are structurally identical and share one estimate, equal tie numbers cannot be ordered")

def latency_row(latency) -> dict:
    return {"latency_reduction": latency.reduction, "latency_interval": [latency.low, latency.high],
            "latency_group": latency.group, "latency_group_size": latency.group_size, "latency_tie": latency.tie}


def share(fraction: float | None) -> str:
    """A FLOPs share in a 13-character column ("n/a" where torch's counter could not run)."""
    return f"{'n/a':>13}" if fraction is None else f"{100 * fraction:>12.1f}%"
