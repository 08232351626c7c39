"""Run in processes spawned by tests/test_distributed.py: one rank of a loopback gloo group
(or a single process) scoring a seeded tiny model's blocks."""
from __future__ import annotations

import json
from dataclasses import asdict
import os
from pathlib import Path

import torch

from helpers import tiny_resnet, tiny_set
from practise.distributed import finish, init_from_environment
from practise.progress import Progress, silent
from practise.scoring import Scorer, ScoringConfig, recoverabilities
from practise.tracing import feature_chain, find_feature_layer, trace_model

ITERATIONS = 6


class DieAfterFirstBlock(Progress):
    """Ends the process abruptly when the second block starts (the first one is in its file)."""

    def __init__(self):
        self.steps = 0

    def advance(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > ITERATIONS:
            os._exit(3)


def score(rank: int, world: int, port: int, workdir: str, out: str, die: bool = False) -> None:
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                          LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    else:
        os.environ["WORLD_SIZE"] = "1"
    torch.set_num_threads(world)  # split to one thread per rank: the same arithmetic in every run
    group = init_from_environment(timeout_s=60)
    model = tiny_resnet()
    x = torch.zeros(1, 1, 16, 16)
    trace = trace_model(model, x)
    layer = find_feature_layer(model, trace)
    scorer = Scorer(model, tiny_set(32), trace, feature_chain(model, trace, layer, x), layer,
                    ScoringConfig(iterations=ITERATIONS, batch_size=16))
    names = trace.candidates()
    progress = DieAfterFirstBlock() if die and rank == 1 else silent
    done = recoverabilities(scorer, names, Path(workdir) / "scores.json", progress, group)
    if group.is_main:
        Path(out).write_text(json.dumps({"threads": torch.get_num_threads(), "blocks": {b: asdict(r) for b, r in done.items()}}))
    finish()


def run_cli(rank: int, world: int, port: int, argvs: list[list[str]], out: str) -> None:
    """One rank of a torchrun-like job running the command line with its own arguments."""
    import contextlib
    import io

    from practise.cli import main

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argvs[rank])
    Path(f"{out}.rank{rank}").write_text(json.dumps({"code": code, "stderr": err.getvalue()}))
