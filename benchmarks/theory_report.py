"""Tables and plots for benchmarks/theory.py (its ``report`` stage)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from practise.files import atomic_write, atomic_write_text  # noqa: E402

CURVES = ("train_mimic", "train_ce", "test_ce", "test_error")


def load_dir(path: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted(path.glob("*.json"))} if path.is_dir() else {}


def variance_lines(variance: dict) -> list[str]:
    lines = ["## 1. Variance across tiny sets (block dropping, same optimiser, lr and iterations)", "",
             "| method | N | runs | parameter variance (mean per element) | test-logit variance | "
             "test top-1 mean ± std |", "|---|---|---|---|---|---|"]
    for key in sorted(variance, key=lambda k: (variance[k]["n"], variance[k]["method"])):
        v = variance[key]
        top1 = [100 * t for t in v["top1"]]
        lines.append(f"| {v['method']} | {v['n']} | {len(v['runs'])} | {v['parameter_variance']:.3e} | "
                     f"{v['output_variance']:.4f} | {statistics.fmean(top1):.2f} ± {statistics.stdev(top1):.2f} |")
    return lines


def per_layer_plot(variance: dict, out: Path) -> None:
    sizes = sorted({v["n"] for v in variance.values()})
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 3.8), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        for method, color in (("mimic", "tab:red"), ("ce", "tab:blue")):
            v = next((v for v in variance.values() if v["n"] == n and v["method"] == method), None)
            if v is None:
                continue
            weights = [(k, x) for k, x in v["parameter_variance_per_tensor"].items() if k.endswith("conv1.weight")
                       or k.endswith("conv2.weight") or k == "conv1.weight"]
            ax.semilogy(range(len(weights)), [x for _, x in weights], marker=".", color=color, label=method)
        ax.set_title(f"per-layer parameter variance across tiny sets, N={n}")
        ax.set_xlabel("conv layer (forward order)")
        ax.set_ylabel("mean variance per weight")
        ax.legend()
    fig.tight_layout()
    atomic_write(out / "variance_per_layer.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def path_lines(paths: dict) -> list[str]:
    points = sorted({p["points"] for p in paths.values()})
    lines = [f"## 2. Loss along straight lines in weight space ({'/'.join(map(str, points))} points, BatchNorm "
             "statistics re-estimated on the tiny set at every point)", "",
             "Convexity gap: the curve's largest rise above the chord joining its ends (0: on or below the chord, as "
             "a convex function would be). Barrier: the largest rise above the higher end point. Test losses on the "
             f"first {'/'.join(sorted({str(p.get('test_images', 10000)) for p in paths.values()}))} test images.", "",
             "| scheme | recovery | N | path | train objective at t=0 → t=1 | gap (train objective) | "
             "gap (test CE) | barrier (test CE) | test error at t=0 / 0.5 / 1 |", "|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(paths):
        p = paths[key]
        objective = "train_mimic" if p["method"] == "mimic" else "train_ce"
        curve, err = p["curves"][objective], p["curves"]["test_error"]
        mid = len(err) // 2
        lines.append(f"| {p['scheme']} | {p['method']} | {p['n']} | {p['kind']} | {curve[0]:.4f} → {curve[-1]:.4f} | "
                     f"{p['convexity_gap'][objective]:.4f} | {p['convexity_gap']['test_ce']:.4f} | "
                     f"{p['barrier']['test_ce']:.4f} | {100 * err[0]:.1f}% / {100 * err[mid]:.1f}% / {100 * err[-1]:.1f}% |")
    return lines


def path_plot(paths: dict, out: Path) -> None:
    kinds = ("start", "between")
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for row, kind in enumerate(kinds):
        for col, curve in enumerate(("train objective", "test_ce")):
            ax = axes[row][col]
            for p in paths.values():
                if p["kind"] != kind:
                    continue
                name = ("train_mimic" if p["method"] == "mimic" else "train_ce") if curve == "train objective" else curve
                values = p["curves"][name]
                ts = [i / (len(values) - 1) for i in range(len(values))]
                ax.plot(ts, values, marker=".", linestyle="--" if p["scheme"].startswith("channels") else "-",
                        label=f"{p['scheme']} {p['method']} N={p['n']}")
            ax.set_yscale("log")
            ax.set_title(f"{'pruned start → solution' if kind == 'start' else 'solution A → solution B'}: {curve}")
            ax.set_xlabel("t along the line")
            ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_write(out / "loss_paths.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def report(workdir: Path) -> None:
    plan = json.loads((workdir / "plan.json").read_text())
    variance, paths, runs = load_dir(workdir / "variance"), load_dir(workdir / "paths"), load_dir(workdir / "runs")
    if variance:
        per_layer_plot(variance, workdir)
    if paths:
        path_plot(paths, workdir)
    prov = plan["provenance"]
    devices = sorted({r["device"] for r in runs.values()})
    lines = ["# The paper's theory on resnet56 / Fashion-MNIST", "",
             f"Command: `{prov['command']}` at commit `{prov['commit']}`; recoveries ran on {', '.join(devices)}. "
             "Starting points: " + "; ".join(
                 f"{name}: " + (f"blocks {', '.join(spec['blocks'])}" if spec["kind"] == "blocks" else
                                f"L1 channel pruning ratio {spec['ratio']:.3f}") +
                 f" ({spec['from']}, {100 * spec['measured']:.1f}% measured latency reduction)"
                 for name, spec in plan["schemes"].items()) + ". "
             f"Recovery: {plan['iterations']} iterations, batch 64, lr {plan['lr']} for both methods, "
             f"{plan['optimiser']}; tiny-set seeds {plan['seeds'][0]}-{plan['seeds'][-1]}.", "",
             *variance_lines(variance), "", "![per-layer variance](variance_per_layer.png)", "",
             *path_lines(paths), "", "![loss along paths](loss_paths.png)", ""]
    atomic_write_text(workdir / "README.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
