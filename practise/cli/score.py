"""`practise score`: every candidate block's recoverability, latency saving and PRACTISE score."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..artifacts import check_writable_file
from ..device import resolve_device
from ..files import atomic_write_text
from ..latency import block_latency_reductions
from ..text.decode import timing_model
from ..pipeline import inspect_model
from ..distributed import current_group, machine_threads
from ..scoring import Scorer, block_scores, recoverabilities
from .arguments import add_candidate_args, add_data_args, add_latency_args, add_model_args, add_scoring_args, csv
from ..text import load_hf
from .text import check_text_data, is_hf_spec, text_tiny_set, token_shape
from .common import (check_workdir, latency_config, model_from_args, progress_for, scoring_config,
                     tiny_set_from_args, transforms_for)


def add_parser(sub, common) -> None:
    p = sub.add_parser("score", parents=[common], help="score every candidate block: recoverability / latency reduction")
    p.add_argument("--out", help="write the scores as JSON here")
    p.add_argument("--overwrite", action="store_true")
    add_model_args(p), add_data_args(p), add_candidate_args(p), add_latency_args(p), add_scoring_args(p)
    p.set_defaults(func=run)


def run(a) -> None:
    if a.out:
        check_writable_file(a.out, a.overwrite)
    check_workdir(a.workdir)
    device = resolve_device(a.device)
    if is_hf_spec(a.model):  # a token model: the tiny set from a text file, its tokenizer
        check_text_data(a.data)
        bundle = load_hf(a.model)
        model, tiny = bundle.model, text_tiny_set(a, bundle.tokenizer)
        shape = token_shape(a, tiny.sample_shape[-1])
    else:
        model = model_from_args(a)
        transforms = transforms_for(a, model, a.data)
        tiny = tiny_set_from_args(a, transforms)
        shape = transforms.config.sample_shape
    model = model.to(device)
    info = inspect_model(model, shape, csv(a.include), csv(a.exclude), a.feature_layer, a.granularity)
    names = [b.name for b in info.blocks]
    progress = progress_for(a)
    group = current_group()  # under torchrun the blocks are shared out; rank 0 times and prints
    scorer = Scorer(model, tiny, info.trace, info.chain, info.feature_layer, scoring_config(a), group.device(device))
    done = recoverabilities(scorer, names, Path(a.workdir) / "scores.json" if a.workdir else None, progress, group)
    if not group.is_main:
        return
    machine_threads()
    latency = latency_config(a)
    r_b, _, _ = block_latency_reductions(timing_model(model, latency.metric), shape, names, latency, progress)
    scores = block_scores(done, names, r_b, scorer.config.iterations)
    if a.out:
        rows = [asdict(s) for s in scores]
        atomic_write_text(a.out, json.dumps({"scores": rows, "tiny_set": tiny.identifiers}, indent=2), overwrite=a.overwrite)
    width = max([16] + [len(s.block) + 2 for s in scores])
    print(f"{'rank':<6}{'block':<{width}}{'recoverability':>16}{'latency red.':>14}{'score':>12}")
    for i, s in enumerate(scores, 1):
        print(f"{i:<6}{s.block:<{width}}{s.recoverability:>16.5f}{100 * s.latency_reduction:>13.1f}%{s.score:>12.4f}")
