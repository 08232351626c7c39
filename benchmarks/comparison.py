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
from dataclasses import asdict, dataclass, fields
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch

from common import ROOT, fmnist_teacher, provenance
from practise.blocks import count_flops, count_params
from practise.baselines.channel_pruning import prune_channels, prune_to_latency
from practise.criteria import CRITERIA, RankingInputs, rank_blocks
from practise.data import ImageFolderSource, build_tiny_set, load_fashion_mnist, open_source
from practise.data import fashion_mnist_transforms
from practise.evaluation import iterate_eval_batches
from practise.files import atomic_write_text
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
IN_DOMAIN = "fashion-mnist"
OTHER_SOURCES = ("synthesized", "sklearn-digits", "photo-crops", "gaussian-noise")
SOURCE_LABELS = {IN_DOMAIN: "Fashion-MNIST training images (in-domain)",
                 "synthesized": "synthesized from the teacher (DeepInversion)",
                 "sklearn-digits": "scikit-learn handwritten digits", "photo-crops": "scikit-image photo crops",
                 "gaussian-noise": "Gaussian noise (floor)"}


# ---------------------------------------------------------------- what is compared
@dataclass(frozen=True)
class ChannelVariant:
    """How a channel-pruning baseline prunes. Scope "features" prunes every channel group
    except the feature map's (mimicking needs its shape); "inner" only block-internal channels."""

    name: str
    scope: str
    round_to: int | None = None


CHANNEL_VARIANTS = {v.name: v for v in (ChannelVariant("inner", "inner"), ChannelVariant("features", "features"),
                                        ChannelVariant("features-r8", "features", 8))}


@dataclass(frozen=True)
class Method:
    """One way to make the network faster: blocks chosen by a criterion, or channels
    pruned, then a recovery method."""

    name: str
    label: str
    recovery: str
    criterion: str | None = None              # blocks chosen by this ranking criterion ...
    channels: ChannelVariant | None = None    # ... or channels pruned this way
    secondary: bool = False                   # also run at the targets after the first
    # sources grid: PRACTISE's blocks chosen on the Fashion-MNIST tiny set of the same N and
    # seed, recovered with the source's images (separates choosing from recovering)
    in_domain_selection: bool = False

    @property
    def kind(self) -> str:
        return "channels" if self.channels is not None else "blocks"

    @property
    def short_label(self) -> str:
        return self.label.split(" (")[0]


METHODS = {m.name: m for m in (
    Method("practise", "PRACTISE (recoverability + mimic)", "mimic", criterion="practise", secondary=True),
    Method("random", "random blocks + mimic", "mimic", criterion="random", secondary=True),
    Method("latency", "largest-latency blocks + mimic", "mimic", criterion="latency", secondary=True),
    Method("cosine", "cosine-similarity blocks + mimic", "mimic", criterion="cosine", secondary=True),
    Method("practise_ce", "PRACTISE blocks + CE finetuning (BP)", "ce", criterion="practise", secondary=True),
    Method("practise_kd", "PRACTISE blocks + logit KD", "kd", criterion="practise"),
    Method("channels_mimic", "L1 channel pruning + mimic", "mimic", channels=CHANNEL_VARIANTS["features"],
           secondary=True),
    Method("channels_ce", "L1 channel pruning + CE finetuning", "ce", channels=CHANNEL_VARIANTS["features"]),
    Method("channels_inner_mimic", "L1 channel pruning, block-internal only + mimic", "mimic",
           channels=CHANNEL_VARIANTS["inner"]),
    Method("channels_r8_mimic", "L1 channel pruning, channels rounded to 8 + mimic", "mimic",
           channels=CHANNEL_VARIANTS["features-r8"], secondary=True),
    Method("channels_r8_ce", "L1 channel pruning, channels rounded to 8 + CE finetuning", "ce",
           channels=CHANNEL_VARIANTS["features-r8"]),
    Method("practise_indomain", "PRACTISE's in-domain blocks (same N, seed), recovered on the source (diagnostic)",
           "mimic", criterion="practise", in_domain_selection=True),
)}
SINGLE = Method("single", "one block dropped alone + mimic", "mimic")  # recoverability vs accuracy study
CRITERIA_PLANNED = ("latency", "random", "cosine", "practise")  # in the order the plan stage selects
SOURCE_CRITERIA = ("practise", "cosine")  # the criteria whose choice depends on the tiny set's images


@dataclass(frozen=True)
class Cell:
    """One recovery run: a method on one tiny set (source, N, seed) at one latency target.
    ``method`` None is the teacher itself; ``block`` is set for the single-block study."""

    method: Method | None
    n: int = 0
    seed: int = 0
    target: float | None = None
    source: str = IN_DOMAIN
    block: str | None = None

    @property
    def tiny_key(self) -> str:
        return tiny_key(self.n, self.seed, self.source)

    @property
    def target_key(self) -> str:
        return target_key(self.target)

    @property
    def name(self) -> str:
        if self.method is None:
            return "teacher"
        if self.block is not None:
            return f"single_{self.block}-{self.tiny_key}"
        return f"{self.method.name}-{self.tiny_key}-{self.target_key}"


@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    spec: dict  # what the run stage needs (stored in plan.json under the cell's name)


@dataclass(frozen=True)
class Settings:
    """The grid and budgets of a comparison (the command line's, recorded in plan.json)."""

    workdir: str = str(WORKDIR)
    data_root: str | None = None
    sizes: tuple[int, ...] = (50, 100, 500)
    seeds: tuple[int, ...] = (0, 1, 2)
    targets: tuple[float, ...] = (0.22, 0.40)
    single_size: int = 500
    latency_batch: int = 64
    max_channel_ratio: float = 0.97
    latency_repeats: int = 30
    table_repeats: int = 100
    scoring_iterations: int = 300
    iterations: int = 300
    single_iterations: int = 100
    sources: tuple[str, ...] = OTHER_SOURCES
    source_sizes: tuple[int, ...] = (100, 500)
    source_methods: tuple[str, ...] = ("practise", "cosine", "practise_indomain")
    synthesis_steps: int = 500
    synthesis_batch: int = 100
    device: str = "cpu"
    jobs: int = 1
    only: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, values: dict) -> "Settings":
        """From parsed flags or plan.json's record (lists become tuples; other keys are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known})

    def source_tiny_sets(self) -> list[tuple[str, int, int]]:
        """(source, n, seed) of every tiny set from a source other than Fashion-MNIST's training set."""
        return [(source, n, seed) for source in self.sources for n in self.source_sizes for seed in self.seeds]


def target_key(target: float) -> str:
    return f"t{round(100 * target)}"


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
def plan(settings: Settings) -> None:
    workdir = Path(settings.workdir)
    path = workdir / "plan.json"
    data = read_json(path) or {"provenance": provenance(), "settings": asdict(settings), "selections": {},
                               "channels": {}, "tiny_sets": {}}
    teacher = fmnist_teacher("resnet56").eval()
    info = inspect_model(teacher, SHAPE)
    names = [b.name for b in info.blocks]
    config = LatencyConfig(device="cpu", batch_size=settings.latency_batch, repeats=settings.latency_repeats, warmup=5, budget_s=None)
    if "latency" not in data:
        table_config = LatencyConfig(device="cpu", batch_size=settings.latency_batch, repeats=settings.table_repeats,
                                     warmup=5, budget_s=None)
        r_b, details, latency_settings = block_latency_reductions(teacher, SHAPE, names, table_config)
        data["latency"] = {"r_b": r_b, "interval": {k: [v.low, v.high] for k, v in details.items()},
                           "group": {k: v.group for k, v in details.items()}, "settings": latency_settings.as_dict()}
        data["blocks"] = {b.name: b.as_dict() for b in info.blocks}
        data["flops_full"] = count_flops(teacher, torch.zeros(1, *SHAPE))[0]
        write_json(path, data)
    data["settings"] = asdict(settings)
    planner = Planner(data, path, teacher, names, data["latency"]["r_b"], config, settings, info.feature_layer)
    for target in settings.targets:
        planner.plan_target(target)
    planner.plan_sources(settings.targets[0])
    data["cells"] = {p.cell.name: p.spec for p in plan_cells(data, names, settings)}
    write_json(path, data)
    log.info("plan: %d cells", len(data["cells"]))


def selection_key(criterion: str, n: int, seed: int, t: str, source: str = IN_DOMAIN) -> str:
    """Where a criterion's selection is kept: once per target for the largest latency, once
    per seed for random, per tiny set (and its source) for the others."""
    if criterion == "latency":
        return f"latency-{t}"
    if criterion == "random":
        return f"random-s{seed}-{t}"
    return f"{criterion}-{tiny_key(n, seed, source)}-{t}"


@dataclass
class Planner:
    """The plan stage's measurements: channel-pruning ratios and every criterion's blocks
    at each measured latency target, each written to plan.json as soon as it is known."""

    data: dict
    path: Path
    teacher: torch.nn.Module
    names: list[str]
    r_b: dict[str, float]
    config: LatencyConfig
    settings: Settings
    feature_layer: str

    def plan_target(self, target: float) -> None:
        t = target_key(target)
        for variant in CHANNEL_VARIANTS.values():
            ckey = f"channels-{variant.name}-{t}"
            if ckey not in self.data["channels"]:
                self.data["channels"][ckey] = self.prune_to(target, variant)
                write_json(self.path, self.data)
        for n in self.settings.sizes:
            for seed in self.settings.seeds:
                tiny = functools.cache(lambda n=n, seed=seed: tiny_set_for(n, seed, self.settings.data_root))
                for criterion in CRITERIA_PLANNED:
                    self.select(selection_key(criterion, n, seed, t), criterion, n, seed, IN_DOMAIN, tiny, target)
                if tiny_key(n, seed) not in self.data["tiny_sets"]:
                    self.record_tiny_set(tiny_key(n, seed), tiny())

    def prune_to(self, target: float, variant: ChannelVariant) -> dict:
        rounding = {"round_to": variant.round_to} if variant.round_to else {}
        try:
            result = prune_to_latency(self.teacher, SHAPE, target, self.config, importance="l1", scope=variant.scope,
                                      max_ratio=self.settings.max_channel_ratio, feature_layer=self.feature_layer,
                                      round_to=variant.round_to)
        except ValueError as exc:  # unreachable: recorded, and no cells for this variant
            return {"unreachable": str(exc), "scope": variant.scope, **rounding}
        return {"ratio": result.ratio, "measured": result.measured_reduction, "flops_reduction": result.flops_reduction,
                "params": result.params, "trials": result.trials, "importance": "l1", "scope": variant.scope,
                **rounding}

    def plan_sources(self, target: float) -> None:
        """Record the other sources' tiny sets, and the selections that depend on their images:
        PRACTISE's (from their scores) and the cosine criterion's (on their images)."""
        t = target_key(target)
        for source, n, seed in self.settings.source_tiny_sets():
            key = tiny_key(n, seed, source)
            if source == "synthesized" and not synthesized_dir(self.settings.workdir, seed).is_dir():
                continue  # run the synth stage, then plan again
            tiny = functools.cache(lambda n=n, seed=seed, source=source:
                                   tiny_set_for(n, seed, self.settings.data_root, source, self.settings.workdir))
            if key not in self.data["tiny_sets"]:
                self.record_tiny_set(key, tiny())
            for criterion in [c for c in SOURCE_CRITERIA if c in self.settings.source_methods]:
                self.select(selection_key(criterion, n, seed, t, source), criterion, n, seed, source, tiny, target)

    def select(self, skey: str, criterion: str, n: int, seed: int, source: str, tiny, target: float) -> None:
        """Blocks in ``criterion``'s order until the measured reduction reaches ``target``
        (kept under ``skey``); nothing while PRACTISE's scores for the tiny set are unfinished."""
        if skey in self.data["selections"]:
            return
        inputs = ranking_inputs(criterion, self.names, self.r_b, seed, self.settings.workdir,
                                tiny_key(n, seed, source), self.teacher, tiny)
        if inputs is None:
            return  # run the score stage, then plan again
        order = rank_blocks(criterion, inputs)
        selection = select_in_order(self.teacher, SHAPE, order, self.r_b, target, self.config)
        self.data["selections"][skey] = {"criterion": criterion, "order": order, "blocks": selection.blocks,
                                         "predicted": selection.predicted_reduction,
                                         "measured": selection.measured_reduction, "trials": selection.trials}
        write_json(self.path, self.data)

    def record_tiny_set(self, key: str, tiny) -> None:
        labels = None if tiny.labels is None else [tiny.labels.count(c) for c in range(10)]
        self.data["tiny_sets"][key] = {"size": len(tiny), "digest": identifiers_digest(tiny), "labels_per_class": labels}
        write_json(self.path, self.data)


def ranking_inputs(criterion, names, r_b, seed, workdir, key, teacher, tiny) -> RankingInputs | None:
    """What ``criterion`` ranks blocks from; None while PRACTISE's scores are not finished.
    ``tiny`` returns the tiny set (loaded only for a criterion that needs the images)."""
    inputs = RankingInputs(names, r_b, seed=seed)
    if CRITERIA.get(criterion).needs_scores:
        scores = load_scores(Path(workdir), key, names)
        if scores is None:
            return None
        inputs.scores = {b: practise_score(scores[b], r_b[b]) for b in names}
    if CRITERIA.get(criterion).needs_images:
        inputs.model, inputs.images = teacher, tiny().eval_tensor()
    return inputs


# ---------------------------------------------------------------- cells
def plan_cells(data: dict, names: list[str], settings: Settings) -> list[PlannedCell]:
    """Every recovery cell the plan's selections and channel ratios allow, in run order:
    the in-domain grid (every method at the first target, the secondary ones after it),
    the other sources' grid, the single-block study, the teacher."""
    cells = []
    for i, target in enumerate(settings.targets):
        for n in settings.sizes:
            for seed in settings.seeds:
                for method in METHODS.values():
                    if method.in_domain_selection or (i > 0 and not method.secondary):
                        continue
                    cell = Cell(method, n, seed, target)
                    spec = cell_spec(data, cell, selection_key(method.criterion, n, seed, cell.target_key)
                                     if method.criterion else None)
                    if spec is not None:
                        cells.append(PlannedCell(cell, {**spec, "n": n, "seed": seed}))
    cells += source_cells(data, settings)
    n, seed = settings.single_size, settings.seeds[0]
    for block in names:
        cells.append(PlannedCell(Cell(SINGLE, n, seed, block=block),
                                 {"kind": "blocks", "blocks": [block], "recovery": SINGLE.recovery, "n": n,
                                  "seed": seed, "iterations": settings.single_iterations}))
    cells.append(PlannedCell(Cell(None), {"kind": "teacher"}))
    return cells


def cell_spec(data: dict, cell: Cell, skey: str | None) -> dict | None:
    """What the run stage needs for ``cell`` (without n / seed / source), or None when its
    selection is not planned yet or its channel ratio is unreachable."""
    method = cell.method
    if method.kind == "blocks":
        if skey not in data["selections"]:
            return None
        return {"kind": "blocks", "blocks": data["selections"][skey]["blocks"], "selection": skey,
                "recovery": method.recovery}
    ckey = f"channels-{method.channels.name}-{cell.target_key}"
    planned = data["channels"].get(ckey, {})
    if "ratio" not in planned:
        return None
    return {"kind": "channels", "channels": ckey, "scope": method.channels.scope, "ratio": planned["ratio"],
            "recovery": method.recovery, **({"round_to": method.channels.round_to} if method.channels.round_to else {})}


def source_cells(data: dict, settings: Settings) -> list[PlannedCell]:
    """--source-methods on every other source's tiny sets, at the first target.

    PRACTISE selects on the source's own scores and the cosine criterion on its images;
    random and largest-latency blocks do not depend on the images, so they are the
    Fashion-MNIST plan's; channel pruning (weight magnitudes) likewise.
    """
    target = settings.targets[0]
    cells = []
    for source, n, seed in settings.source_tiny_sets():
        key = tiny_key(n, seed, source)
        if key not in data["tiny_sets"]:
            continue
        for name in settings.source_methods:
            method = METHODS[name]
            if method.recovery == "ce" and method.kind == "blocks" and data["tiny_sets"][key]["labels_per_class"] is None:
                continue  # cross-entropy needs labels; these images have none
            cell = Cell(method, n, seed, target, source)
            skey = None
            if method.criterion:
                chosen_on = IN_DOMAIN if method.in_domain_selection else source
                skey = selection_key(method.criterion, n, seed, cell.target_key, chosen_on)
            spec = cell_spec(data, cell, skey)
            if spec is not None:
                cells.append(PlannedCell(cell, {**spec, "n": n, "seed": seed, "source": source}))
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
def synth(settings: Settings) -> None:
    """DeepInversion images from the teacher, max(--source-sizes) per seed (smaller tiny
    sets are drawn from them with the paper's rule); a summary JSON marks a finished seed."""
    if "synthesized" not in settings.sources:
        return
    tasks = [(settings.workdir, seed, max(settings.source_sizes), settings.synthesis_steps, settings.synthesis_batch, settings.device)
             for seed in settings.seeds if not (synthesized_dir(settings.workdir, seed).parent / f"s{seed}.json").is_file()]
    run_parallel(synth_one, tasks, settings.jobs)


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
def score(settings: Settings) -> None:
    workdir = Path(settings.workdir)
    data = read_json(workdir / "plan.json")
    if data is None:
        raise SystemExit("run the plan stage first (it measures the latency table)")
    wanted = [(IN_DOMAIN, n, seed) for n in settings.sizes for seed in settings.seeds] + settings.source_tiny_sets()
    tasks = [(str(workdir), n, seed, source, settings.scoring_iterations, settings.device, settings.data_root,
              data["latency"]["r_b"], data["tiny_sets"][tiny_key(n, seed, source)]["digest"])
             for source, n, seed in wanted
             if tiny_key(n, seed, source) in data["tiny_sets"]  # planned (synthesized: after synth)
             and load_scores(workdir, tiny_key(n, seed, source), list(data["latency"]["r_b"])) is None]
    run_parallel(score_one, tasks, settings.jobs)


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
def run(settings: Settings) -> None:
    workdir = Path(settings.workdir)
    data = read_json(workdir / "plan.json")
    if data is None:
        raise SystemExit("run the plan stage first")
    wanted = [c for c in data["cells"] if not (workdir / "cells" / f"{c}.json").is_file()]
    if settings.only:
        wanted = [c for c in wanted if any(c.startswith(p) for p in settings.only)]
    log.info("%d cells to run", len(wanted))
    tasks = [(str(workdir), c, data["cells"][c], settings.iterations, settings.device, settings.data_root,
              data["tiny_sets"].get(cell_tiny_key(data["cells"][c]), {}).get("digest")) for c in wanted]
    run_parallel(run_cell, tasks, settings.jobs)


def cell_tiny_key(spec: dict) -> str:
    return tiny_key(spec.get("n", 0), spec.get("seed", 0), spec.get("source", IN_DOMAIN))


def build_student(teacher, spec: dict, feature_layer: str):
    """The cell's pruned network; channel pruning keeps ``feature_layer``'s channels (mimicking needs them)."""
    if spec["kind"] == "blocks":
        return drop_blocks(teacher, spec["blocks"])
    return prune_channels(teacher, torch.zeros(1, *SHAPE, device=next(teacher.parameters()).device),
                          spec["ratio"], importance="l1", scope=spec["scope"], feature_layer=feature_layer,
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
        feature_layer = inspect_model(teacher, SHAPE).feature_layer
        model = build_student(teacher, spec, feature_layer)
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
                   help="measured latency reductions; after the first, only the secondary methods run")
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
                   choices=list(METHODS),
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
    settings = Settings.from_dict(vars(args))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.stage != "report":  # every invocation's command, commit and machine, for the results' provenance
        log_path = Path(settings.workdir) / "invocations.json"
        write_json(log_path, (read_json(log_path) or []) + [{"stage": args.stage, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                           **provenance()}])
    if args.stage == "report":
        from comparison_report import report
        report(Path(settings.workdir))
    else:
        {"synth": synth, "plan": plan, "score": score, "run": run}[args.stage](settings)


if __name__ == "__main__":
    main()
