"""Scoring speed and fidelity (issue: the practise package, "Speed it must reach").

Scores every candidate of the resnet56 Fashion-MNIST teacher with 500 tiny-set images
 * fast: the default cached protocol (eval-transformed batches, teacher targets and
   the frozen prefix computed once), at one or more iteration counts, timed;
 * slow: the authors' protocol (augmented batches, full teacher + student passes every
   step, 1000 SGD iterations per block),
and reports the wall time of the fast run and the Spearman correlation of its block
ranking with the slow one. Per-block scores are cached under --workdir, so rerunning
the same command resumes (the caches live beside the committed results, so a later
session resumes too); --slow-budget-min bounds how long one invocation spends on the
slow run. The slow run visits blocks spread across the stages (layer1.0, layer2.1,
layer3.1, layer1.1, ...) so a partial run compares blocks of every stage; it is
reported as partial.

    python benchmarks/scoring_speed.py --fast-iterations 1000,300 --slow-budget-min 60
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from scipy.stats import spearmanr

from common import ROOT, fmnist_teacher, provenance
from practise.data import build_tiny_set, load_fashion_mnist
from practise.data import fashion_mnist_transforms
from practise.files import atomic_write_text
from practise.machine import describe, machine_info
from practise.latency import LatencyConfig, block_latency_reductions
from practise.pipeline import inspect_model
from practise.score_cache import load_score_cache
from practise.scoring import Scorer, ScoringConfig, score_blocks, scoring_fingerprint
from practise.seeding import seed_everything

log = logging.getLogger("scoring_speed")
SHAPE = (1, 28, 28)


def latency_table(teacher, names, workdir: Path, config: LatencyConfig) -> dict:
    path = workdir / "latency.json"
    if path.is_file():
        return json.loads(path.read_text())
    r_b, details, settings = block_latency_reductions(teacher, SHAPE, names, config)
    data = {"r_b": r_b, "settings": settings.as_dict(), "interval": {k: [v.low, v.high] for k, v in details.items()}}
    atomic_write_text(path, json.dumps(data, indent=1))
    return data


def spread_order(names: list[str]) -> list[str]:
    """Blocks ordered by their index within the stage, so any prefix spans every stage."""
    return sorted(names, key=lambda n: (int(n.rpartition(".")[2]), n))


def run_scoring(teacher, tiny, info, config: ScoringConfig, r_b: dict, cache: Path, budget_s: float | None,
                order: list[str]):
    """Score blocks in ``order`` (resuming from cache) until done or the time budget is spent."""
    began = time.perf_counter()
    scorer = Scorer(teacher, tiny, info.trace, info.chain, info.feature_layer, config)
    setup_s = time.perf_counter() - began
    names = order
    key = scoring_fingerprint(teacher, tiny, config, info.feature_layer)
    done = load_score_cache(cache, key)
    for name in names:
        if name in done:
            continue
        if budget_s is not None and time.perf_counter() - began > budget_s:
            log.info("time budget spent; rerun to continue")
            break
        score_blocks(scorer, [name], r_b, cache)  # the cache file keeps every finished block
        done = load_score_cache(cache, key)
    return done, setup_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-images", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast-iterations", default="1000")
    p.add_argument("--autocast", nargs="+", default=[None], type=lambda t: None if t == "none" else t,
                   help="fast-run autocast settings to measure: none, bfloat16 (several: each)")
    p.add_argument("--lr", type=float, default=ScoringConfig.lr, help="fast runs' adaptor SGD lr (default: the paper's)")
    p.add_argument("--protocol", default="cached", choices=["cached", "closed-form"],
                   help="the fast runs' protocol (closed-form: least-squares linear stand-in, no SGD; its "
                        "--fast-iterations value only labels the run)")
    p.add_argument("--slow-iterations", type=int, default=1000)
    p.add_argument("--slow-budget-min", type=float, default=None, help="stop the slow run after this long")
    p.add_argument("--skip-slow", action="store_true")
    p.add_argument("--tag", help="appended to the fast runs' labels (and cache files): a machine, a variant")
    p.add_argument("--workdir", default=str(ROOT / "benchmarks" / "results" / "scoring_speed" / "cache"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scoring_speed"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    workdir, out = Path(args.workdir), Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    teacher = fmnist_teacher("resnet56")
    tiny = build_tiny_set(load_fashion_mnist("train"), args.num_images, seed_everything(args.seed),
                          fashion_mnist_transforms())
    info = inspect_model(teacher, SHAPE)
    names = [b.name for b in info.blocks]
    lat = latency_table(teacher, names, workdir, LatencyConfig(device="cpu", batch_size=64, repeats=30, warmup=5, budget_s=None))
    r_b = lat["r_b"]
    results = {"provenance": provenance(), "num_images": len(tiny), "seed": args.seed, "blocks": names,
               "latency": lat, "fast": {}, "slow": None}
    earlier = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    for entry in earlier.get("fast", {}).values():  # earlier variants stay listed, with the machine they ran on
        entry.setdefault("measured_on", earlier["provenance"]["machine"])
    results["fast"] = dict(earlier.get("fast", {}))
    results["slow_measured_on"] = earlier.get("slow_measured_on") or (earlier.get("provenance") or {}).get("machine")
    for iters in [int(i) for i in args.fast_iterations.split(",")]:
        for autocast in args.autocast:
            config = ScoringConfig(iterations=iters, protocol=args.protocol, seed=args.seed, autocast=autocast,
                                   lr=args.lr)
            label = (("closed-form" if args.protocol == "closed-form" else f"{iters}") + (f"-{autocast}" if autocast else "") + (f"-lr{args.lr:g}" if args.lr != ScoringConfig.lr else "")
                     + (f"@{args.tag}" if args.tag else ""))
            cache = workdir / f"fast-{label}.json"
            fresh = not cache.is_file()
            done, setup_s = run_scoring(teacher, tiny, info, config, r_b, cache, None, names)
            entry = {"recoverability": {b: done[b].recoverability for b in names},
                     "protocol": sorted({done[b].protocol for b in names}), "autocast": autocast}
            if fresh or "scoring_s" not in results["fast"].get(label, {}):  # a rerun from cache keeps the time
                entry |= {"setup_s": setup_s, "scoring_s": setup_s + sum(done[b].seconds for b in names)}
            if fresh:
                entry |= {"machine_info": machine_info(), "measured_on": provenance()["machine"]}
            results["fast"][label] = {**results["fast"].get(label, {}), **entry}
    if not args.skip_slow:
        config = ScoringConfig(iterations=args.slow_iterations, protocol="paper", seed=args.seed)
        budget = args.slow_budget_min * 60 if args.slow_budget_min is not None else None
        done, setup_s = run_scoring(teacher, tiny, info, config, r_b, workdir / "slow.json", budget,
                                    spread_order(names))
        finished = [b for b in names if b in done]
        before = earlier.get("slow") or {}
        unchanged = before.get("finished_blocks") == finished and "scoring_s" in before
        results["slow"] = {"iterations": args.slow_iterations, "finished_blocks": finished,
                           "recoverability": {b: done[b].recoverability for b in finished},
                           # nothing scored in this invocation: the time recorded when it was
                           "scoring_s": before["scoring_s"] if unchanged else
                           setup_s + sum(done[b].seconds for b in finished)}
        for fast in results["fast"].values():
            if len(finished) >= 3:
                rec_f = [fast["recoverability"][b] for b in finished]
                rec_s = [done[b].recoverability for b in finished]
                fast["spearman_recoverability"] = float(spearmanr(rec_f, rec_s).statistic)
                fast["spearman_score"] = float(spearmanr([f / r_b[b] for f, b in zip(rec_f, finished)],
                                                         [s / r_b[b] for s, b in zip(rec_s, finished)]).statistic)
                fast["compared_blocks"] = len(finished)
    write_results(results, out)


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    prov, slow = results["provenance"], results["slow"]
    lines = ["# Scoring speed and fidelity: resnet56, Fashion-MNIST, 500 images", "",
             f"Command: `{prov['command']}` at commit `{prov['commit']}`"
             f"{' (with uncommitted changes)' if prov['uncommitted_changes'] else ''}; machine: "
             f"{prov['machine']['cpu']}, {prov['machine']['cores']} cores, torch {prov['machine']['torch']} "
             f"({prov['machine']['torch_threads']} threads).", "",
             "| fast iterations | scoring time (all blocks) | machine of that time | Spearman vs slow (recoverability) | Spearman vs slow (score) | blocks compared |",
             "|---|---|---|---|---|---|"]
    for iters, fast in results["fast"].items():
        on = fast.get("measured_on") or prov["machine"]
        where = describe(fast["machine_info"]) if fast.get("machine_info") else \
            f"{on['cpu']}, {on['cores']} cores (throughput not recorded)"
        lines.append(f"| {iters} | {fast['scoring_s'] / 60:.1f} min | {where} | {fast.get('spearman_recoverability', float('nan')):.3f} | "
                     f"{fast.get('spearman_score', float('nan')):.3f} | {fast.get('compared_blocks', 0)} |")
    if slow:
        state = "complete" if len(slow["finished_blocks"]) == len(results["blocks"]) else \
            f"PARTIAL: {len(slow['finished_blocks'])} of {len(results['blocks'])} blocks so far"
        on = results.get("slow_measured_on") or prov["machine"]
        lines += ["", f"Slow reference (authors' protocol, {slow['iterations']} iterations per block): {state}, "
                  f"{slow['scoring_s'] / 60:.1f} min on {on['cpu']}, {on['cores']} cores."]
    lines += ["", "| block | r_b | " + " | ".join(f"R fast-{i}" for i in results["fast"]) + " | R slow |",
              "|---|---|" + "---|" * (len(results["fast"]) + 1)]
    for b in results["blocks"]:
        row = [f"{100 * results['latency']['r_b'][b]:.1f}%"] + [f"{f['recoverability'][b]:.5f}" for f in results["fast"].values()]
        row.append(f"{slow['recoverability'][b]:.5f}" if slow and b in slow["recoverability"] else "")
        lines.append(f"| {b} | " + " | ".join(row) + " |")
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
    print("\n".join(lines[:12]))


if __name__ == "__main__":
    main()
