"""PRACTISE against the alternatives on Fashion-MNIST (issue: reproduce the paper's comparison).

Every method is held to the same *measured* latency reduction on the planning machine
(one latency setting, recorded), recovered on tiny sets of N images (3 seeds each) and
evaluated on all 10,000 test images. Stages, each resumable (finished work is kept in
files under --workdir and never recomputed):

  plan    (on the machine whose latency counts, alone on it) measure the teacher's block
          latencies; pick blocks by the random / largest-latency / cosine criteria and by
          PRACTISE scores where those exist, adding blocks until the measured reduction
          reaches the target; find the channel-pruning ratio with the same measured
          reduction; write plan.json with every recovery cell to run.
  score   recoverability of every block on every tiny set (PRACTISE's scores).
  run     every planned cell: drop / prune, recover, evaluate on the test set.
  report  tables (Markdown, JSON) and plots.

Methods (cell name prefixes):
  practise            recoverability blocks + feature mimicking (the paper)
  random, latency, cosine
                      blocks chosen by another criterion + feature mimicking
  practise_ce, practise_kd
                      PRACTISE's blocks + cross-entropy finetuning (BP) / logit KD
  channels_mimic, channels_ce
                      L1 filter pruning (Torch-Pruning) of every channel group except the
                      feature map's, at the same measured latency, + feature mimicking /
                      cross-entropy
  channels_inner_mimic
                      L1 pruning of block-internal channels only, + feature mimicking
  channels_r8_mimic, channels_r8_ce
                      as channels_mimic / channels_ce with every pruned group's channel
                      count rounded to a multiple of 8 (Torch-Pruning's round_to), which
                      convolution kernels prefer, so the same latency may need fewer FLOPs removed
  single_<block>      one block dropped alone + mimicking (recoverability vs accuracy)

Tiny-set sources (issue: data-free synthesis and out-of-domain tiny sets). Besides
Fashion-MNIST's training set, the tiny sets of --source-methods (PRACTISE and the strongest
baseline) at the first target come from --sources: "synthesized" (DeepInversion images
from the teacher, the ``synth`` stage, kept under --workdir/synthesized/s<seed>),
"sklearn-digits", "photo-crops" and "gaussian-noise" (practise.data.out_of_domain). Their
cells are named <method>-<source>-N<n>-s<seed>-t<target>; scoring, selection and recovery
use only the source's images, evaluation the Fashion-MNIST test set.

Typical use (synth, score and run may go to a GPU machine; plan must run where latency counts):
  python benchmarks/comparison.py synth
  python benchmarks/comparison.py plan
  python benchmarks/comparison.py score --device cuda --jobs 9
  python benchmarks/comparison.py plan          # adds PRACTISE's selections
  python benchmarks/comparison.py run --device cuda --jobs 8
  python benchmarks/comparison.py report
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch

from common import ROOT, fmnist_teacher, provenance
from practise.blocks import count_flops, count_params
from practise.baselines.channel_pruning import prune_channels, prune_to_latency
from practise.criteria import RankingInputs, rank_blocks
from practise.data import ImageFolderSource, build_tiny_set, load_fashion_mnist, open_source
from practise.data import fashion_mnist_transforms
from practise.evaluation import iterate_eval_batches
from practise.io import atomic_write_text
from practise.latency import LatencyConfig, block_latency_reductions
from practise.pipeline import inspect_model
from practise.recovery import RecoveryConfig, recover_
from practise.scoring import Scorer, ScoringConfig, practise_score, score_blocks
from practise.seeding import seed_everything
from practise.selection import select_in_order
from practise.surgery import drop_blocks
from practise.synthesis import SynthesisConfig, synthesize

log = logging.getLogger("comparison")
SHAPE = (1, 28, 28)
WORKDIR = ROOT / "benchmarks" / "results" / "comparison"
BLOCK_METHODS = {"practise": ("practise", "mimic"), "random": ("random", "mimic"), "latency": ("latency", "mimic"),
                 "cosine": ("cosine", "mimic"), "practise_ce": ("practise", "ce"), "practise_kd": ("practise", "kd")}
# channel variant -> (pruning scope, round_to). Scope "features" prunes every channel group
# except the feature map's (mimicking needs its shape); "inner" only block-internal channels.
CHANNEL_VARIANTS = {"inner": ("inner", None), "features": ("features", None), "features-r8": ("features", 8)}
# name -> (channel variant, recovery)
CHANNEL_METHODS = {"channels_mimic": ("features", "mimic"), "channels_ce": ("features", "ce"),
                   "channels_inner_mimic": ("inner", "mimic"),
                   "channels_r8_mimic": ("features-r8", "mimic"), "channels_r8_ce": ("features-r8", "ce")}
# Sources-grid diagnostic: PRACTISE's blocks chosen on the Fashion-MNIST tiny set of the same
# N and seed, recovered with the source's images; beside PRACTISE on the source (chosen and
# recovered there) it separates what the source's images do to choosing from recovering.
DIAGNOSTIC_METHODS = {"practise_indomain": ("practise", "mimic")}
# at targets after the first (harder ones, where the choice of blocks matters more): the
# criteria comparison, PRACTISE's CE baseline and channel pruning with mimicking
SECONDARY_METHODS = ("practise", "random", "latency", "cosine", "practise_ce", "channels_mimic", "channels_r8_mimic")
IN_DOMAIN = "fashion-mnist"
OTHER_SOURCES = ("synthesized", "sklearn-digits", "photo-crops", "gaussian-noise")


# ---------------------------------------------------------------- shared helpers
def tiny_key(n: int, seed: int, source: str = IN_DOMAIN) -> str:
    return f"N{n}-s{seed}" if source == IN_DOMAIN else f"{source}-N{n}-s{seed}"


def synthesized_dir(workdir: str | Path, seed: int) -> Path:
    return Path(workdir) / "synthesized" / f"s{seed}"


def tiny_set_for(n: int, seed: int, data_root: str | None, source: str = IN_DOMAIN, workdir: str | Path = WORKDIR):
    """The tiny set of ``n`` images drawn with the paper's rule and ``seed`` from ``source``."""
    if source == IN_DOMAIN:
        images = load_fashion_mnist("train", data_root)
    elif source == "synthesized":
        folder = synthesized_dir(workdir, seed)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} missing: run the synth stage first")
        images = ImageFolderSource(folder)
    elif source in OTHER_SOURCES:
        images = open_source(source)
    else:
        raise ValueError(f"unknown tiny-set source {source!r}; choose from {(IN_DOMAIN,) + OTHER_SOURCES}")
    return build_tiny_set(images, n, seed_everything(seed), fashion_mnist_transforms())


def identifiers_digest(tiny) -> str:
    """Which images a tiny set holds; file paths count from their class folder on, so the
    digest does not depend on where the work folder lies."""
    names = ["/".join(Path(i).parts[-2:]) if "/" in i else i for i in tiny.identifiers]
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1))


def score_path(workdir: Path, key: str) -> Path:
    return workdir / "scores" / f"{key}.json"


def load_scores(workdir: Path, key: str, names: list[str]) -> dict | None:
    """Finished recoverability per block for one tiny set, or None while incomplete."""
    data = read_json(score_path(workdir, key))
    if data is None or not all(b in data["blocks"] for b in names):
        return None
    return {b: data["blocks"][b]["recoverability"] for b in names}


def scoring_config(seed: int, iterations: int) -> ScoringConfig:
    return ScoringConfig(iterations=iterations, protocol="cached", seed=seed)


# ---------------------------------------------------------------- plan
def plan(args) -> None:
    workdir = Path(args.workdir)
    path = workdir / "plan.json"
    data = read_json(path) or {"provenance": provenance(), "settings": vars(args), "selections": {},
                               "channels": {}, "tiny_sets": {}}
    teacher = fmnist_teacher("resnet56").eval()
    info = inspect_model(teacher, SHAPE)
    names = [b.name for b in info.blocks]
    config = LatencyConfig(device="cpu", batch_size=args.latency_batch, repeats=args.latency_repeats, warmup=5)
    if "latency" not in data:
        table_config = LatencyConfig(device="cpu", batch_size=args.latency_batch, repeats=args.table_repeats, warmup=5)
        r_b, stats, settings = block_latency_reductions(teacher, SHAPE, names, table_config)
        data["latency"] = {"r_b": r_b, "median_ms": {k: v.median_ms for k, v in stats.items()},
                           "iqr_ms": {k: v.iqr_ms for k, v in stats.items()}, "settings": settings.as_dict()}
        data["blocks"] = {b.name: b.as_dict() for b in info.blocks}
        data["flops_full"] = count_flops(teacher, torch.zeros(1, *SHAPE))[0]
        write_json(path, data)
    r_b = data["latency"]["r_b"]
    data["settings"] = vars(args)
    for i, target in enumerate(args.targets):
        plan_target(data, path, teacher, names, r_b, target, config, args, info.feature_layer)
    plan_sources(data, path, teacher, names, r_b, args.targets[0], config, args)
    data["cells"] = planned_cells(data, names, args)
    write_json(path, data)
    log.info("plan: %d cells", len(data["cells"]))


def plan_target(data, path, teacher, names, r_b, target, config, args, feature_layer: str) -> None:
    t = f"t{round(100 * target)}"
    for variant, (scope, round_to) in CHANNEL_VARIANTS.items():
        ckey = f"channels-{variant}-{t}"
        if ckey not in data["channels"]:
            rounding = {"round_to": round_to} if round_to else {}
            try:
                result = prune_to_latency(teacher, SHAPE, target, config, importance="l1", scope=scope,
                                          max_ratio=args.max_channel_ratio, feature_layer=feature_layer, round_to=round_to)
            except ValueError as exc:  # unreachable: recorded, and no cells for this variant
                data["channels"][ckey] = {"unreachable": str(exc), "scope": scope, **rounding}
            else:
                data["channels"][ckey] = {"ratio": result.ratio, "measured": result.measured_reduction,
                                          "flops_reduction": result.flops_reduction, "params": result.params,
                                          "trials": result.trials, "importance": "l1", "scope": scope, **rounding}
            write_json(path, data)
    for n in args.sizes:
        for seed in args.seeds:
            key = tiny_key(n, seed)
            tiny = functools.cache(lambda n=n, seed=seed: tiny_set_for(n, seed, args.data_root))
            for criterion in ("latency", "random", "cosine", "practise"):
                skey = selection_key(criterion, n, seed, t)
                inputs = None if skey in data["selections"] else \
                    ranking_inputs(criterion, names, r_b, seed, args.workdir, key, teacher, tiny)
                if inputs is not None:
                    select_and_record(data, path, skey, criterion, inputs, teacher, r_b, target, config)
            if key not in data["tiny_sets"]:
                record_tiny_set(data, path, key, tiny())


def ranking_inputs(criterion, names, r_b, seed, workdir, key, teacher, tiny) -> RankingInputs | None:
    """What ``criterion`` ranks blocks from; None while PRACTISE's scores are not finished.
    ``tiny`` returns the tiny set (loaded only for the cosine criterion)."""
    inputs = RankingInputs(names, r_b, seed=seed)
    if criterion == "practise":
        scores = load_scores(Path(workdir), key, names)
        if scores is None:
            return None  # run the score stage, then plan again
        inputs.scores = {b: practise_score(scores[b], r_b[b]) for b in names}
    elif criterion == "cosine":
        inputs.model, inputs.images = teacher, tiny().eval_tensor()
    return inputs


def select_and_record(data, path, skey, criterion, inputs, teacher, r_b, target, config) -> None:
    order = rank_blocks(criterion, inputs)
    selection = select_in_order(teacher, SHAPE, order, r_b, target, config)
    data["selections"][skey] = {"criterion": criterion, "order": order, "blocks": selection.blocks,
                                "predicted": selection.predicted_reduction,
                                "measured": selection.measured_reduction, "trials": selection.trials}
    write_json(path, data)


def record_tiny_set(data, path, key: str, tiny) -> None:
    labels = None if tiny.labels is None else [tiny.labels.count(c) for c in range(10)]
    data["tiny_sets"][key] = {"size": len(tiny), "digest": identifiers_digest(tiny), "labels_per_class": labels}
    write_json(path, data)


def source_tiny_sets(args):
    """(source, n, seed) of every tiny set from a source other than Fashion-MNIST's training set."""
    return [(source, n, seed) for source in args.sources for n in args.source_sizes for seed in args.seeds]


def plan_sources(data, path, teacher, names, r_b, target, config, args) -> None:
    """Record the other sources' tiny sets, and the selections that depend on their images:
    PRACTISE's (from their scores) and the cosine criterion's (on their images)."""
    t = f"t{round(100 * target)}"
    for source, n, seed in source_tiny_sets(args):
        key = tiny_key(n, seed, source)
        if source == "synthesized" and not synthesized_dir(args.workdir, seed).is_dir():
            continue  # run the synth stage, then plan again
        tiny = functools.cache(lambda n=n, seed=seed, source=source:
                               tiny_set_for(n, seed, args.data_root, source, args.workdir))
        if key not in data["tiny_sets"]:
            record_tiny_set(data, path, key, tiny())
        for criterion in [c for c in ("practise", "cosine") if c in args.source_methods]:
            skey = f"{criterion}-{key}-{t}"
            inputs = None if skey in data["selections"] else \
                ranking_inputs(criterion, names, r_b, seed, args.workdir, key, teacher, tiny)
            if inputs is None:
                continue
            select_and_record(data, path, skey, criterion, inputs, teacher, r_b, target, config)


def selection_key(criterion: str, n: int, seed: int, t: str) -> str:
    if criterion == "latency":
        return f"latency-{t}"              # the same for every tiny set
    if criterion == "random":
        return f"random-s{seed}-{t}"        # depends on the seed only
    return f"{criterion}-{tiny_key(n, seed)}-{t}"


def planned_cells(data, names, args) -> dict:
    cells = {}
    for i, target in enumerate(args.targets):
        t = f"t{round(100 * target)}"
        for n in args.sizes:
            for seed in args.seeds:
                key = tiny_key(n, seed)
                for method, (criterion, recovery) in BLOCK_METHODS.items():
                    if i > 0 and method not in SECONDARY_METHODS:
                        continue
                    skey = selection_key(criterion, n, seed, t)
                    if skey in data["selections"]:
                        cells[f"{method}-{key}-{t}"] = {"kind": "blocks", "blocks": data["selections"][skey]["blocks"],
                                                        "selection": skey, "recovery": recovery, "n": n, "seed": seed}
                for method in CHANNEL_METHODS:
                    spec = channel_cell(data, method, t)
                    if spec is not None and (i == 0 or method in SECONDARY_METHODS):
                        cells[f"{method}-{key}-{t}"] = {**spec, "n": n, "seed": seed}
    cells.update(source_cells(data, args))
    n, seed = args.single_size, args.seeds[0]
    for block in names:
        cells[f"single_{block}-{tiny_key(n, seed)}"] = {"kind": "blocks", "blocks": [block], "recovery": "mimic",
                                                       "n": n, "seed": seed, "iterations": args.single_iterations}
    cells["teacher"] = {"kind": "teacher"}
    return cells


def channel_cell(data, method: str, t: str) -> dict | None:
    """The recovery cell of a channel-pruning method at target ``t`` (None if unreachable or unplanned)."""
    variant, recovery = CHANNEL_METHODS[method]
    ckey = f"channels-{variant}-{t}"
    planned = data["channels"].get(ckey, {})
    if "ratio" not in planned:
        return None
    scope, round_to = CHANNEL_VARIANTS[variant]
    return {"kind": "channels", "channels": ckey, "scope": scope, "ratio": planned["ratio"], "recovery": recovery,
            **({"round_to": round_to} if round_to else {})}


def source_cells(data, args) -> dict:
    """--source-methods on every other source's tiny sets, at the first target.

    PRACTISE selects on the source's own scores and the cosine criterion on its images;
    random and largest-latency blocks do not depend on the images, so they are the
    Fashion-MNIST plan's; channel pruning (weight magnitudes) likewise.
    """
    t = f"t{round(100 * args.targets[0])}"
    cells = {}
    for source, n, seed in source_tiny_sets(args):
        key = tiny_key(n, seed, source)
        if key not in data["tiny_sets"]:
            continue
        base = {"n": n, "seed": seed, "source": source}
        for method in args.source_methods:
            if method in DIAGNOSTIC_METHODS:
                criterion, recovery = DIAGNOSTIC_METHODS[method]
                skey = selection_key(criterion, n, seed, t)
                if skey in data["selections"]:
                    cells[f"{method}-{key}-{t}"] = {"kind": "blocks", "blocks": data["selections"][skey]["blocks"],
                                                    "selection": skey, "recovery": recovery, **base}
                continue
            if method in CHANNEL_METHODS:
                spec = channel_cell(data, method, t)
                if spec is not None:
                    cells[f"{method}-{key}-{t}"] = {**spec, **base}
                continue
            criterion, recovery = BLOCK_METHODS[method]
            if recovery == "ce" and data["tiny_sets"][key]["labels_per_class"] is None:
                continue  # cross-entropy needs labels; these images have none
            skey = f"{criterion}-{key}-{t}" if criterion in ("practise", "cosine") else selection_key(criterion, n, seed, t)
            if skey in data["selections"]:
                cells[f"{method}-{key}-{t}"] = {"kind": "blocks", "blocks": data["selections"][skey]["blocks"],
                                                "selection": skey, "recovery": recovery, **base}
    return cells


# ---------------------------------------------------------------- parallel workers
def run_parallel(worker, tasks: list[tuple], jobs: int) -> None:
    """Run ``worker(*task)`` for every task in ``jobs`` spawned processes (1: in this one)."""
    if jobs <= 1:
        for task in tasks:
            worker(*task)
        return
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(max(1, (os.cpu_count() or 1) // jobs),)) as pool:
        futures = {pool.submit(worker, *task): task for task in tasks}
        for future in as_completed(futures):
            future.result()  # re-raise a worker's failure here


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")


# ---------------------------------------------------------------- synth
def synth(args) -> None:
    """DeepInversion images from the teacher, max(--source-sizes) per seed (smaller tiny
    sets are drawn from them with the paper's rule); a summary JSON marks a finished seed."""
    if "synthesized" not in args.sources:
        return
    tasks = [(args.workdir, seed, max(args.source_sizes), args.synthesis_steps, args.synthesis_batch, args.device)
             for seed in args.seeds if not (synthesized_dir(args.workdir, seed).parent / f"s{seed}.json").is_file()]
    run_parallel(synth_one, tasks, args.jobs)


def synth_one(workdir: str, seed: int, count: int, steps: int, batch: int, device: str) -> None:
    began = time.perf_counter()
    teacher = fmnist_teacher("resnet56").to(device).eval()
    config = SynthesisConfig(steps=steps, batch_size=batch, seed=seed)
    transforms = fashion_mnist_transforms().config
    out = synthesized_dir(workdir, seed)
    if out.exists():  # an interrupted earlier attempt: start afresh so no stale image remains
        shutil.rmtree(out)
    summary = synthesize(teacher, count, SHAPE, out, transforms.mean, transforms.std, config, device, overwrite=True)
    tiny = tiny_set_for(count, seed, None, "synthesized", workdir)  # the PNGs as every cell will read them
    with torch.no_grad():
        predicted = teacher(tiny.eval_tensor().to(device)).argmax(1).cpu()
    write_json(out.parent / f"s{seed}.json", {
        "images": summary["images"], "config": vars(config), "seconds": time.perf_counter() - began,
        "device": str(device), "threads": torch.get_num_threads(), "final_terms_per_batch": summary["batches"],
        "teacher_agrees_with_target": float((predicted == tiny.label_tensor()).float().mean()), **provenance()})
    log.info("synthesized %d images for seed %d in %.0f s", count, seed, time.perf_counter() - began)


# ---------------------------------------------------------------- score
def score(args) -> None:
    workdir = Path(args.workdir)
    data = read_json(workdir / "plan.json")
    if data is None:
        raise SystemExit("run the plan stage first (it measures the latency table)")
    wanted = [(IN_DOMAIN, n, seed) for n in args.sizes for seed in args.seeds] + source_tiny_sets(args)
    tasks = [(str(workdir), n, seed, source, args.scoring_iterations, args.device, args.data_root,
              data["latency"]["r_b"], data["tiny_sets"][tiny_key(n, seed, source)]["digest"])
             for source, n, seed in wanted
             if tiny_key(n, seed, source) in data["tiny_sets"]  # planned (synthesized: after synth)
             and load_scores(workdir, tiny_key(n, seed, source), list(data["latency"]["r_b"])) is None]
    run_parallel(score_one, tasks, args.jobs)


def score_one(workdir: str, n: int, seed: int, source: str, iterations: int, device: str, data_root, r_b: dict,
              digest: str) -> None:
    teacher = fmnist_teacher("resnet56").to(device).eval()
    tiny = tiny_set_for(n, seed, data_root, source, workdir)
    key = tiny_key(n, seed, source)
    if identifiers_digest(tiny) != digest:
        raise RuntimeError(f"tiny set {key} differs from the planned one")
    info = inspect_model(teacher, SHAPE)
    scorer = Scorer(teacher, tiny, info.trace, info.chain, info.feature_layer, scoring_config(seed, iterations), device)
    score_blocks(scorer, list(r_b), r_b, score_path(Path(workdir), key))


# ---------------------------------------------------------------- run
def run(args) -> None:
    workdir = Path(args.workdir)
    data = read_json(workdir / "plan.json")
    if data is None:
        raise SystemExit("run the plan stage first")
    wanted = [c for c in data["cells"] if not (workdir / "cells" / f"{c}.json").is_file()]
    if args.only:
        wanted = [c for c in wanted if any(c.startswith(p) for p in args.only)]
    log.info("%d cells to run", len(wanted))
    tasks = [(str(workdir), c, data["cells"][c], args.iterations, args.device, args.data_root,
              data["tiny_sets"].get(cell_tiny_key(data["cells"][c]), {}).get("digest")) for c in wanted]
    run_parallel(run_cell, tasks, args.jobs)


def cell_tiny_key(spec: dict) -> str:
    return tiny_key(spec.get("n", 0), spec.get("seed", 0), spec.get("source", IN_DOMAIN))


def build_student(teacher, spec: dict):
    if spec["kind"] == "blocks":
        return drop_blocks(teacher, spec["blocks"])
    return prune_channels(teacher, torch.zeros(1, *SHAPE, device=next(teacher.parameters()).device),
                          spec["ratio"], importance="l1", scope=spec["scope"], feature_layer="layer3",
                          round_to=spec.get("round_to"))


@torch.no_grad()
def predictions(model, source, device) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x.to(device)).argmax(1).cpu()
                      for x, _ in iterate_eval_batches(source, fashion_mnist_transforms(), 500)])


def teacher_predictions(workdir: Path, teacher, test, device) -> torch.Tensor:
    """The teacher's test-set predictions, computed once and kept beside the cells."""
    path = workdir / "teacher_predictions.json"
    if not path.is_file():
        write_json(path, predictions(teacher, test, device).tolist())
    return torch.tensor(read_json(path))


def run_cell(workdir: str, cell: str, spec: dict, iterations: int, device: str, data_root, digest) -> None:
    began = time.perf_counter()
    teacher = fmnist_teacher("resnet56").to(device).eval()
    test = load_fashion_mnist("test", data_root)
    labels = torch.tensor(test.labels)
    reference = teacher_predictions(Path(workdir), teacher, test, device)
    result = {"cell": cell, "spec": spec, "device": str(device), "torch": torch.__version__,
              "threads": torch.get_num_threads()}
    if spec["kind"] == "teacher":
        model = teacher
    else:
        tiny = tiny_set_for(spec["n"], spec["seed"], data_root, spec.get("source", IN_DOMAIN), workdir)
        if identifiers_digest(tiny) != digest:
            raise RuntimeError(f"{cell}: tiny set differs from the planned one")
        model = build_student(teacher, spec)
        feature_layer = inspect_model(teacher, SHAPE).feature_layer
        config = RecoveryConfig(method=spec["recovery"], iterations=spec.get("iterations", iterations), seed=spec["seed"])
        losses = recover_(model, teacher, tiny, feature_layer, config, device)
        example = torch.zeros(1, *SHAPE, device=device)
        result.update({"iterations": config.iterations, "lr": config.resolved_lr, "recovery_s": time.perf_counter() - began,
                       "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                       "params": count_params(model), "flops": count_flops(model, example)[0]})
    predicted = predictions(model, test, device)
    result["top1"] = float((predicted == labels).float().mean())
    result["agreement"] = float((predicted == reference).float().mean())
    result["test_images"] = len(labels)
    result["seconds"] = time.perf_counter() - began
    write_json(Path(workdir) / "cells" / f"{cell}.json", result)
    log.info("%s: top-1 %.2f%% (%.0f s)", cell, 100 * result["top1"], result["seconds"])


# ---------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["synth", "plan", "score", "run", "report"])
    p.add_argument("--workdir", default=str(WORKDIR))
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files (default: Debian's)")
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 500])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--targets", type=float, nargs="+", default=[0.22, 0.40],
                   help="measured latency reductions; after the first, only SECONDARY_METHODS run")
    p.add_argument("--single-size", type=int, default=500, help="tiny-set size of the single-block study")
    p.add_argument("--latency-batch", type=int, default=64)
    p.add_argument("--max-channel-ratio", type=float, default=0.97, help="upper end of the channel-ratio search")
    p.add_argument("--latency-repeats", type=int, default=30, help="repeats when timing a pruned network")
    p.add_argument("--table-repeats", type=int, default=100,
                   help="repeats of the per-block latency table (26 variants interleaved; this machine is noisy)")
    p.add_argument("--scoring-iterations", type=int, default=300,
                   help="paper: 1000-2000; 300 cached iterations rank blocks like the paper's 1000 "
                        "(benchmarks/results/scoring_speed), and N500-s0's scores are that benchmark's")
    p.add_argument("--iterations", type=int, default=300, help="recovery iterations (paper: 2000; CPU budget here)")
    p.add_argument("--single-iterations", type=int, default=100, help="recovery iterations of the single-block study")
    p.add_argument("--sources", nargs="*", default=list(OTHER_SOURCES), choices=OTHER_SOURCES,
                   help="tiny-set sources besides Fashion-MNIST's training set (none: only the in-domain comparison)")
    p.add_argument("--source-sizes", type=int, nargs="+", default=[100, 500], help="tiny-set sizes of --sources")
    p.add_argument("--source-methods", nargs="+", default=["practise", "cosine", "practise_indomain"],
                   choices=[*BLOCK_METHODS, *CHANNEL_METHODS, *DIAGNOSTIC_METHODS],
                   help="methods run on --sources' tiny sets: PRACTISE and the strongest baseline of the "
                        "in-domain comparison at the first target (cosine: highest mean top-1 over N=50/100/500 "
                        "and 3 seeds among the issue's baselines at 22%%), and practise_indomain: PRACTISE's "
                        "in-domain blocks recovered with the source's images")
    p.add_argument("--synthesis-steps", type=int, default=500,
                   help="DeepInversion steps per batch (DeepInversion: 2000; CPU budget here)")
    p.add_argument("--synthesis-batch", type=int, default=100, help="images optimised together")
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--only", nargs="*", help="run only cells whose name starts with one of these")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.stage != "report":  # every invocation's command, commit and machine, for the results' provenance
        log_path = Path(args.workdir) / "invocations.json"
        write_json(log_path, (read_json(log_path) or []) + [{"stage": args.stage, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                           **provenance()}])
    if args.stage == "report":
        from comparison_report import report
        report(Path(args.workdir))
    else:
        {"synth": synth, "plan": plan, "score": score, "run": run}[args.stage](args)


if __name__ == "__main__":
    main()
