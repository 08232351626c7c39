"""Eager PyTorch against onnxruntime: do the latency savings, and the acceleration-ratio
verdict (block dropping against rounded channel pruning), hold in the runtime users deploy with?

Two studies, each timed under both backends of practise.latency in one invocation (eager
first, then onnxruntime; within a backend every variant is interleaved with the full model):
  * the demo's selection: the shipped resnet56 Fashion-MNIST teacher without the 7 blocks
    the committed demo run dropped (benchmarks/results/demo), paired repeats (measure_saving);
  * the acceleration study's resnet34 / resnet50 points (224 px, random weights, built as in
    benchmarks/acceleration.py: seeded random blocks, L1 channel pruning of every group, and
    the same with channel counts rounded to 8) at about 20% and 40% fewer FLOPs.
Each study's result is a JSON file under --out (a finished one is kept); the README table
is rewritten from them.

    python benchmarks/runtimes.py
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from acceleration import build_variants
from common import ROOT, fmnist_teacher, provenance
from practise.files import atomic_write_text
from practise.latency import LatencyConfig, measure_models, measure_saving, reduction
from practise.machine import describe, machine_info

log = logging.getLogger("runtimes")
OUT = ROOT / "benchmarks" / "results" / "runtimes"
BACKENDS = ("eager", "onnxruntime")
DEMO = ROOT / "benchmarks" / "results" / "demo" / "report.json"
SCHEMES = ("blocks", "channels-all", "channels-all-r8")


def demo_selection(batch: int, repeats: int) -> dict:
    blocks = json.loads(DEMO.read_text())["selection"]["blocks"]
    teacher = fmnist_teacher("resnet56").eval()
    rows = {}
    for backend in BACKENDS:
        config = LatencyConfig(device="cpu", batch_size=batch, repeats=repeats, backend=backend, budget_s=None)
        saving, settings = measure_saving(teacher, (1, 28, 28), blocks, config)
        rows[backend] = {"reduction": saving.reduction, "interval": [saving.low, saving.high],
                         "full_ms": saving.full.median_ms, "pruned_ms": saving.pruned.median_ms,
                         "settings": settings.as_dict()}
        log.info("demo selection, %s: %.1f%%", backend, 100 * saving.reduction)
    return {"study": "demo", "blocks": blocks, "batch": batch, "rows": rows}


def acceleration_points(arch: str, batch: int, levels: list[float], repeats: int) -> dict:
    model, flops_full, variants = build_variants(arch, levels, seed=0, round_to=8)
    variants = {k: v for k, v in variants.items() if k.split("@")[0] in SCHEMES}
    models = {"full": model, **{k: v[0] for k, v in variants.items()}}
    rows = {name: {"scheme": name.split("@")[0], "level": float(name.split("@")[1]),
                   "flops_reduction": 1 - info["flops"] / flops_full} for name, (_, info) in variants.items()}
    settings = {}
    for backend in BACKENDS:
        config = LatencyConfig(device="cpu", batch_size=batch, warmup=2, repeats=repeats, backend=backend, budget_s=None)
        stats, used = measure_models(models, (3, 224, 224), config)
        settings[backend] = used.as_dict()
        for name in variants:
            rows[name][backend] = {"latency_reduction": reduction(stats["full"], stats[name]),
                                   "median_ms": stats[name].median_ms, "full_ms": stats["full"].median_ms}
        log.info("%s batch %d, %s: full %.1f ms", arch, batch, backend, stats["full"].median_ms)
    return {"study": "acceleration", "arch": arch, "batch": batch, "rows": list(rows.values()), "settings": settings}


def write_table(results: list[dict], out: Path) -> None:
    lines = ["# Eager PyTorch against onnxruntime", "",
             "Command: `python benchmarks/runtimes.py` (each study a JSON file here, with the command, commit, "
             "settings and machine). onnxruntime: CPU execution provider, intra-op threads = torch's "
             f"({results[0]['machine_info']['torch_threads']}), one inter-op thread, the model exported to ONNX "
             "(opset 18) per variant.", ""]
    demo = next((r for r in results if r["study"] == "demo"), None)
    if demo:
        lines += [f"## The demo's selection ({len(demo['blocks'])} blocks of resnet56, batch {demo['batch']})", "",
                  "| runtime | full (ms) | compressed (ms) | measured latency reduction (95% interval) |",
                  "|---|---|---|---|"]
        for backend, row in demo["rows"].items():
            lines.append(f"| {backend} | {row['full_ms']:.2f} | {row['pruned_ms']:.2f} | {100 * row['reduction']:.1f}% "
                         f"({100 * row['interval'][0]:.1f}-{100 * row['interval'][1]:.1f}%) |")
        lines.append("")
    lines += ["## Acceleration ratio (latency reduction / FLOPs reduction), 224 px", "",
              "| arch | batch | scheme | FLOPs reduction | eager: latency reduction | eager: ratio | onnxruntime: latency "
              "reduction | onnxruntime: ratio |", "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for r in (r for r in results if r["study"] == "acceleration"):
        for row in r["rows"]:
            e, o = row["eager"]["latency_reduction"], row["onnxruntime"]["latency_reduction"]
            f = row["flops_reduction"]
            lines.append(f"| {r['arch']} | {r['batch']} | {row['scheme']} | {100 * f:.1f}% | {100 * e:.1f}% | "
                         f"{e / f:.2f} | {100 * o:.1f}% | {o / f:.2f} |")
        for backend in BACKENDS:
            for level in sorted({row["level"] for row in r["rows"]}):
                ratio = {row["scheme"]: row[backend]["latency_reduction"] / row["flops_reduction"]
                         for row in r["rows"] if row["level"] == level}
                if "blocks" in ratio and "channels-all-r8" in ratio:
                    verdicts.append((r["arch"], r["batch"], level, backend,
                                     ratio["blocks"] > ratio["channels-all-r8"]))
    if verdicts:
        lines += ["", "Blocks have the higher acceleration ratio than rounded channel pruning in "
                  + ", ".join(f"{b}: {sum(v[4] for v in verdicts if v[3] == b)} of "
                              f"{sum(1 for v in verdicts if v[3] == b)}" for b in BACKENDS) + " (arch, batch, level) points."]
    lines += ["", "Machine: " + describe(results[0]["machine_info"]) + "."]
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="*", default=["resnet34", "resnet50"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--levels", type=float, nargs="+", default=[0.2, 0.4])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    studies = {"demo": lambda: demo_selection(8, args.repeats)}
    studies |= {f"{arch}-b{args.batch}": (lambda arch=arch: acceleration_points(arch, args.batch, args.levels,
                                                                                  args.repeats))
                for arch in args.archs}
    results = []
    for name, run in studies.items():
        path = out / f"{name}.json"
        if not path.is_file():
            atomic_write_text(path, json.dumps({**run(), **provenance(), "machine_info": machine_info()}, indent=1))
        results.append(json.loads(path.read_text()))
    write_table(results, out)


if __name__ == "__main__":
    main()
