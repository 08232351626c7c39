"""Claim 1, the acceleration ratio: latency saved per FLOP removed, block dropping against
channel pruning, on ImageNet-size networks (weights do not matter for speed).

For each architecture and batch size, variants at matched FLOPs reductions (about 10, 20,
30 and 40%) are built three ways and timed together, interleaved, against the full model:
  * blocks: candidate residual blocks dropped in a seeded random order (no latency
    knowledge used) until the FLOPs reduction reaches the level;
  * channels (all): Torch-Pruning L1 filter pruning of every prunable group (residual
    streams included), uniform ratio found by bisection on FLOPs;
  * channels (inner): only block-internal channels (the scheme PRACTISE's comparison uses);
  * the two channel schemes again with every pruned group's channel count rounded to a
    multiple of --round-to (8; Torch-Pruning's round_to), which convolution kernels prefer.
Results per (arch, batch) are written as they finish, so a rerun resumes.

    python benchmarks/acceleration.py                  # resnet34 resnet50 mobilenet_v2, batch 1 and 8
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from common import ROOT, provenance  # noqa: E402
from practise.blocks import count_flops, find_blocks  # noqa: E402
from practise.baselines.channel_pruning import prune_channels  # noqa: E402
from practise.files import atomic_write, atomic_write_text  # noqa: E402
from practise.latency import LatencyConfig, measure_models, reduction  # noqa: E402
from practise.models import create_model  # noqa: E402
from practise.surgery import drop_blocks  # noqa: E402

log = logging.getLogger("acceleration")
OUT = ROOT / "benchmarks" / "results" / "acceleration"
SHAPE = (3, 224, 224)


def channel_scheme(scope: str, round_to: int | None) -> str:
    return f"channels-{scope}" + (f"-r{round_to}" if round_to else "")


def unrounded(scheme: str) -> str:
    """'channels-all-r8' -> 'channels-all' (the inverse of channel_scheme's suffix)."""
    return scheme.split("-r")[0]


def block_variants(model, example, flops_full: int, levels: list[float], seed: int) -> dict:
    names = [b.name for b in find_blocks(model, example)]
    order = [names[i] for i in torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()]
    variants = {}
    for level in levels:
        for count in range(1, len(order) + 1):
            pruned = drop_blocks(model, order[:count])
            flops = count_flops(pruned, example)[0]
            if 1 - flops / flops_full >= level:
                variants[f"blocks@{level:.2f}"] = (pruned, {"blocks": order[:count], "flops": flops})
                break
    return variants


def channel_variant(model, example, flops_full: int, level: float, scope: str, round_to: int | None, steps: int = 10):
    """Smallest uniform ratio (bisection) whose FLOPs reduction reaches ``level``."""
    low, high, best = 0.0, 0.95, None
    for _ in range(steps):
        mid = (low + high) / 2
        pruned = prune_channels(model, example, mid, importance="l1", scope=scope, round_to=round_to)
        flops = count_flops(pruned, example)[0]
        if 1 - flops / flops_full >= level:
            high, best = mid, (pruned, {"ratio": mid, "flops": flops})
        else:
            low = mid
    return best


def build_variants(arch: str, levels: list[float], seed: int, round_to: int | None):
    """The full model and its pruned variants (built once, timed at every batch size)."""
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=1000).eval()
    example = torch.zeros(1, *SHAPE)
    flops_full = count_flops(model, example)[0]
    variants = block_variants(model, example, flops_full, levels, seed)
    for scope in ("all", "inner"):
        for rounding in dict.fromkeys([None, round_to]):  # unrounded, then rounded (once if round_to is None)
            for level in levels:
                found = channel_variant(model, example, flops_full, level, scope, rounding)
                if found is not None:
                    variants[f"{channel_scheme(scope, rounding)}@{level:.2f}"] = found
    return model, flops_full, variants


def measure(model, flops_full: int, variants: dict, arch: str, batch: int, repeats: int) -> dict:
    models = {"full": model, **{k: v[0] for k, v in variants.items()}}
    config = LatencyConfig(device="cpu", batch_size=batch, warmup=2, repeats=repeats, budget_s=None)
    stats, settings = measure_models(models, SHAPE, config)
    rows = []
    for name, (_, info) in variants.items():
        scheme, level = name.split("@")
        rows.append({"scheme": scheme, "level": float(level), **info,
                     "flops_reduction": 1 - info["flops"] / flops_full,
                     "latency_reduction": reduction(stats["full"], stats[name]),
                     "median_ms": stats[name].median_ms, "iqr_ms": stats[name].iqr_ms})
    return {"arch": arch, "batch": batch, "flops_full": flops_full, "full_median_ms": stats["full"].median_ms,
            "full_iqr_ms": stats["full"].iqr_ms, "settings": settings.as_dict(), "rows": rows}


def schemes_of(results: list[dict]) -> list[str]:
    return sorted({r["scheme"] for res in results for r in res["rows"]}, key=lambda s: (s != "blocks", s))


def plot(results: list[dict], out: Path) -> None:
    archs = sorted({r["arch"] for r in results})
    batches = sorted({r["batch"] for r in results})
    fig, axes = plt.subplots(len(batches), len(archs), figsize=(4 * len(archs), 3.6 * len(batches)), squeeze=False)
    styles = {"blocks": ("tab:red", "o"), "channels-all": ("tab:blue", "s"), "channels-inner": ("tab:cyan", "^")}
    for result in results:
        ax = axes[batches.index(result["batch"])][archs.index(result["arch"])]
        for scheme in schemes_of([result]):
            rows = sorted((r for r in result["rows"] if r["scheme"] == scheme), key=lambda r: r["flops_reduction"])
            base = unrounded(scheme)  # rounded variants: the unrounded scheme's colour, dashed
            color, marker = styles[base]
            ax.plot([100 * r["flops_reduction"] for r in rows], [100 * r["latency_reduction"] for r in rows],
                    marker=marker, color=color, label=scheme, linestyle="--" if scheme != base else "-")
        ax.plot([0, 50], [0, 50], color="grey", linestyle=":", label="latency = FLOPs")
        ax.set_title(f"{result['arch']}, batch {result['batch']}")
        ax.set_xlabel("FLOPs reduction (%)")
        ax.set_ylabel("measured latency reduction (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(out / "acceleration.png", lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def ratio_of(row: dict) -> float:
    return row["latency_reduction"] / row["flops_reduction"] if row["flops_reduction"] > 0 else float("nan")


def archs_of(results: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["arch"] for r in results))


def mean_ratio(results: list[dict], scheme: str, arch: str | None) -> float | None:
    ratios = [ratio_of(r) for res in results if arch in (None, res["arch"]) for r in res["rows"]
              if r["scheme"] == scheme and r["flops_reduction"] > 0]
    return sum(ratios) / len(ratios) if ratios else None


def rounding_summary(results: list[dict]) -> list[str]:
    """How often rounding channel counts raises the acceleration ratio (same arch, batch, level,
    scope), and at how many points block dropping has the best ratio of all schemes."""
    pairs = better = blocks_best = points = 0
    for res in results:
        by = {(r["scheme"], r["level"]): r for r in res["rows"]}
        for (scheme, level), row in by.items():
            base = unrounded(scheme)
            if scheme != base and (base, level) in by:
                pairs += 1
                better += ratio_of(row) > ratio_of(by[(base, level)])
            if scheme == "blocks":
                others = [ratio_of(r) for (s, lv), r in by.items() if lv == level and s != "blocks"]
                points += 1
                blocks_best += all(ratio_of(row) > o for o in others)
    if not pairs and not points:
        return []
    return ["", f"Rounded channel counts give the higher acceleration ratio in {better} of {pairs} "
            f"(arch, batch, level, scope) pairs; block dropping has the best ratio of all schemes at "
            f"{blocks_best} of {points} (arch, batch, level) points."]


def write_table(results: list[dict], out: Path, prov: dict) -> None:
    lines = ["# Acceleration ratio: block dropping against channel pruning (224x224, CPU)", "",
             f"Command: `{prov['command']}` at commit `{prov['commit']}`; machine: {prov['machine']['cpu']}, "
             f"{prov['machine']['cores']} cores, torch {prov['machine']['torch']}. Random weights (speed does not "
             "depend on them); every variant of one architecture and batch timed interleaved with the full model "
             "(medians). Acceleration ratio = latency reduction / FLOPs reduction.", "",
             "| arch | batch | full (ms) | scheme | FLOPs reduction | latency reduction | acceleration ratio |",
             "|---|---|---|---|---|---|---|"]
    for result in results:
        for r in sorted(result["rows"], key=lambda r: (r["scheme"], r["level"])):
            ratio = ratio_of(r)
            lines.append(f"| {result['arch']} | {result['batch']} | {result['full_median_ms']:.1f} | {r['scheme']} | "
                         f"{100 * r['flops_reduction']:.1f}% | {100 * r['latency_reduction']:.1f}% | {ratio:.2f} |")
    lines += ["", "Mean acceleration ratio per scheme (levels and batches pooled):", "",
              "| scheme | " + " | ".join(archs_of(results)) + " | all |", "|---|" + "---|" * (len(archs_of(results)) + 1)]
    for scheme in schemes_of(results):
        means = [mean_ratio(results, scheme, arch) for arch in [*archs_of(results), None]]
        lines.append(f"| {scheme} | " + " | ".join("-" if m is None else f"{m:.2f}" for m in means) + " |")
    lines += rounding_summary(results)
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", nargs="+", default=["resnet34", "resnet50", "mobilenet_v2"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--levels", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--round-to", type=int, default=8,
                   help="also time the channel schemes with channel counts rounded to this multiple (0: skip)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for arch in args.archs:
        built = None
        for batch in args.batches:
            path = out / f"{arch}-b{batch}.json"
            if not path.is_file():
                built = built or build_variants(arch, args.levels, args.seed, args.round_to or None)
                result = measure(*built, arch, batch, args.repeats)
                result["provenance"] = provenance()
                atomic_write_text(path, json.dumps(result, indent=1))
            results.append(json.loads(path.read_text()))
    plot(results, out)
    write_table(results, out, results[0]["provenance"])


if __name__ == "__main__":
    main()
