"""`practise evaluate`: accuracy of a model (and agreement with a teacher) on a data set."""
from __future__ import annotations

import json

from ..data import HeadSource, open_source
from ..device import resolve_device
from ..evaluation import evaluate_models
from ..model_io import load_model
from .arguments import add_eval_limit_arg, add_model_args, add_normalisation_args
from .common import model_from_args, transforms_for


def add_parser(sub, common) -> None:
    p = sub.add_parser("evaluate", parents=[common], help="accuracy of a model (and agreement with a teacher) on a data set")
    p.add_argument("--teacher", help="architecture name or compressed file to compare predictions with")
    p.add_argument("--teacher-weights")
    add_model_args(p)
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, help="image folder or fashion-mnist:test")
    add_eval_limit_arg(g)
    add_normalisation_args(g)
    p.set_defaults(func=run)


def run(a) -> None:
    model = model_from_args(a)
    transforms = transforms_for(a, model, a.data)
    device = resolve_device(a.device)
    models = {"model": model.to(device)}
    if a.teacher:
        models["teacher"] = load_model(a.teacher, a.teacher_weights).to(device)
    source = open_source(a.data)
    if a.eval_limit:
        source = HeadSource(source, a.eval_limit)
    results = evaluate_models(models, source, transforms, device, reference="teacher" if a.teacher else None)
    print(json.dumps(results, indent=2))
