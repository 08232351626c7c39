"""Can per-block latency savings be trusted? (issue: latency you can trust)

For each case (model, input size, batch): the per-block table r_b is measured twice in a
row with the same settings (practise.latency.block_latency_reductions, the estimator
`practise blocks --latency` and `compress` use), and then several 6- to 8-block
selections are measured against the full model (practise.latency.measure_saving), to see
whether the sum of their r_b predicts the measured reduction.

Reported per case: Spearman of the two runs' r_b (and whether the disagreeing blocks are
reported as ties), the largest change of one block's estimate between runs, the seconds per
table, and per selection the predicted (sum of run 1's r_b) and measured reductions. The CPU
model and its measured fp32 throughput are recorded beside every time. Each case is a JSON
file under --out; a finished case is not measured again (delete it to remeasure).

  python benchmarks/latency_trust.py                       # every case
  python benchmarks/latency_trust.py --cases resnet56-b8   # one
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
from scipy.stats import spearmanr

from common import ROOT, fmnist_teacher, provenance
from practise.files import atomic_write_text
from practise.latency import LatencyConfig, block_latency_reductions, measure_saving
from practise.machine import describe, machine_info
from practise.models import create_model
from practise.pipeline import inspect_model

log = logging.getLogger("latency_trust")
OUT = ROOT / "benchmarks" / "results" / "latency_trust"
# name -> (architecture, input shape, batch); the resnet56 is the shipped Fashion-MNIST teacher
CASES = {"resnet56-b8": ("resnet56", (1, 28, 28), 8), "resnet56-b64": ("resnet56", (1, 28, 28), 64),
         "resnet34-224-b8": ("resnet34", (3, 224, 224), 8)}
SELECTION_SIZES = (6, 7, 8)


def model_for(arch: str) -> torch.nn.Module:
    if arch == "resnet56":
        return fmnist_teacher("resnet56").eval()
    torch.manual_seed(0)
    return create_model(arch).eval()  # latency does not depend on the weights' values


def selections(names: list[str], seed: int, per_size: int) -> list[list[str]]:
    """Seeded random 6-, 7- and 8-block subsets, ``per_size`` of each."""
    rng = random.Random(seed)
    return [sorted(rng.sample(names, k)) for k in SELECTION_SIZES for _ in range(per_size)]


def run_case(name: str, config: LatencyConfig, per_size: int) -> dict:
    arch, shape, batch = CASES[name]
    config = replace(config, batch_size=batch)
    model = model_for(arch)
    names = [b.name for b in inspect_model(model, shape).blocks]
    tables = []
    for run in (1, 2):
        began = time.perf_counter()
        r_b, details, settings = block_latency_reductions(model, shape, names, config)
        tables.append({"seconds": time.perf_counter() - began, "r_b": r_b, "settings": settings.as_dict(),
                       "intervals": {b: [d.low, d.high] for b, d in details.items()},
                       "groups": {b: d.group for b, d in details.items()}, "ties": {b: d.tie for b, d in details.items()}})
        log.info("%s table %d: %.0f s, %d repeats", name, run, tables[-1]["seconds"], settings.repeats)
    first, second = ([t["r_b"][b] for b in names] for t in tables)
    measured = []
    for blocks in selections(names, 0, per_size):
        saving, _ = measure_saving(model, shape, blocks, config)
        predicted = sum(tables[0]["r_b"][b] for b in blocks)
        measured.append({"blocks": blocks, "predicted": predicted, "measured": saving.reduction,
                         "interval": [saving.low, saving.high], "pairs": saving.pairs})
        log.info("%s %d blocks: predicted %.1f%%, measured %.1f%%", name, len(blocks), 100 * predicted,
                 100 * saving.reduction)
    return {"case": name, "arch": arch, "input_shape": list(shape), "batch": batch, "blocks": names,
            "tables": tables, "spearman": spearmanr(first, second).statistic,
            "largest_change": max(abs(a - b) for a, b in zip(first, second)),
            "groups": len(set(tables[0]["groups"].values())), "selections": measured,
            "config": vars(config), **provenance(), "machine_info": machine_info()}


def untied_disagreements(result: dict) -> tuple[int, int]:
    """Pairs of blocks the two runs order differently although neither run reports them as
    tied, and the number of pairs in different tie classes in both runs."""
    first, second = result["tables"]
    names = result["blocks"]
    wrong = pairs = 0
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if first["ties"][a] == first["ties"][b] or second["ties"][a] == second["ties"][b]:
                continue
            pairs += 1
            wrong += (first["r_b"][a] - first["r_b"][b]) * (second["r_b"][a] - second["r_b"][b]) < 0
    return wrong, pairs


def repeated_selection(runs: int, config: LatencyConfig) -> dict:
    """The demo's selection step repeated: the same recoverability scores (the committed demo
    report's), a fresh r_b table and a measured 22% target each time, on resnet56 at batch 8.
    Same seed and machine: how often are the same blocks chosen?"""
    from practise.selection import select_in_order

    report = json.loads((ROOT / "benchmarks" / "results" / "demo" / "report.json").read_text())
    recoverability = {c["name"]: c["recoverability"] for c in report["candidates"]}
    model, shape = model_for("resnet56"), (1, 28, 28)
    names = [b.name for b in inspect_model(model, shape).blocks]
    config = replace(config, batch_size=8)
    chosen = []
    for run in range(runs):
        r_b, _, _ = block_latency_reductions(model, shape, names, config)
        order = sorted(names, key=lambda b: (recoverability[b] / r_b[b], b))
        selection = select_in_order(model, shape, order, r_b, report["selection"]["target"], config)
        chosen.append({"blocks": sorted(selection.blocks), "measured": selection.measured_reduction,
                       "predicted": selection.predicted_reduction})
        log.info("selection run %d: %s", run + 1, ", ".join(sorted(selection.blocks)))
    return {"case": "repeated-selection", "runs": chosen, "config": vars(config), **provenance(),
            "machine_info": machine_info()}


def write_table(results: list[dict], out: Path) -> None:
    cases = [r for r in results if "tables" in r]
    lines = ["# Per-block latency you can trust: two runs, and predictions against measurements", "",
             "Command: `python benchmarks/latency_trust.py` (each case a JSON file here, with the command, commit, "
             "settings and machine).", "",
             "| case | groups of identical blocks | s per table | repeats (run 1 / 2) | Spearman of the two runs' r_b "
             "| tie classes (run 1 / 2) | pairs ordered differently outside ties | largest change of one r_b "
             "| selections within 2 points | largest prediction error |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in cases:
        errors = [abs(s["predicted"] - s["measured"]) for s in r["selections"]]
        repeats = " / ".join(str(t["settings"]["repeats"]) for t in r["tables"])
        ties = " / ".join(str(len(set(t["ties"].values()))) for t in r["tables"])
        wrong, pairs = untied_disagreements(r)
        lines.append(f"| {r['case']} | {r['groups']} | {r['tables'][0]['seconds']:.0f} | {repeats} | "
                     f"{r['spearman']:.2f} | {ties} | {wrong} of {pairs} | {100 * r['largest_change']:.2f} pt | "
                     f"{sum(e <= 0.02 for e in errors)} / {len(errors)} | {100 * max(errors):.2f} pt |")
    lines += ["", "Selections (seeded random subsets of the candidates), predicted = sum of run 1's r_b:", "",
              "| case | blocks | predicted | measured (95% interval) |", "|---|---|---|---|"]
    for r in cases:
        for s in r["selections"]:
            lines.append(f"| {r['case']} | {len(s['blocks'])} | {100 * s['predicted']:.1f}% | "
                         f"{100 * s['measured']:.1f}% ({100 * s['interval'][0]:.1f}-{100 * s['interval'][1]:.1f}%) |")
    repeated = next((r for r in results if r["case"] == "repeated-selection"), None)
    if repeated:
        sets = [tuple(r["blocks"]) for r in repeated["runs"]]
        most = max(set(sets), key=sets.count)
        lines += ["", f"The demo's selection step repeated {len(sets)} times (resnet56, batch 8, the committed demo "
                  f"report's recoverability, a fresh r_b table and measured 22% target each time): the same "
                  f"{len(most)} blocks in **{sets.count(most)} of {len(sets)}** runs ({', '.join(most)}); measured "
                  f"reductions {100 * min(r['measured'] for r in repeated['runs']):.1f}-"
                  f"{100 * max(r['measured'] for r in repeated['runs']):.1f}%."]
    machines = sorted({describe(r["machine_info"]) for r in results})
    lines += ["", "Machine: " + "; ".join(machines) + ".",
              "Latency settings: " + json.dumps({k: v for k, v in cases[0]["config"].items()
                                                 if k not in ("batch_size",)}) + "."]
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--per-size", type=int, default=2, help="random selections of each size (6, 7, 8 blocks)")
    p.add_argument("--selection-runs", type=int, default=10, help="repeats of the demo's selection step (0: none)")
    p.add_argument("--repeats", type=int, default=LatencyConfig().repeats)
    p.add_argument("--max-repeats", type=int, default=None)
    p.add_argument("--resolution", type=float, default=LatencyConfig().resolution)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = LatencyConfig(device="cpu", repeats=args.repeats, max_repeats=args.max_repeats, resolution=args.resolution, budget_s=None)
    results = []
    for name in args.cases:
        path = out / f"{name}.json"
        if not path.is_file():
            atomic_write_text(path, json.dumps(run_case(name, config, args.per_size), indent=1))
        results.append(json.loads(path.read_text()))
    path = out / "repeated-selection.json"
    if args.selection_runs and not path.is_file():
        atomic_write_text(path, json.dumps(repeated_selection(args.selection_runs, config), indent=1))
    if path.is_file():
        results.append(json.loads(path.read_text()))
    write_table(results, out)


if __name__ == "__main__":
    main()
