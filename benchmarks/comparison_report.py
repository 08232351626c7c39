"""Tables and plots for benchmarks/comparison.py (its ``report`` stage)."""
from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from comparison import (IN_DOMAIN, METHODS, SOURCE_LABELS, PlannedCell, Settings, load_scores,  # noqa: E402
                        plan_cells, selection_key, synthesized_dir, target_key, tiny_key, tiny_set_for)
from practise.data import FASHION_MNIST_CLASSES  # noqa: E402
from practise.files import atomic_write, atomic_write_text  # noqa: E402

METHOD_ORDER = list(METHODS)  # table rows and plot lines in this order


def planned(plan: dict) -> list[PlannedCell]:
    """The plan's cells as objects (method, source, N, seed, target), from its own settings."""
    return plan_cells(plan, list(plan["latency"]["r_b"]), Settings.from_dict(plan["settings"]))


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def span(fractions: list[float]) -> str:
    """'22.3%' or '22.3-29.4%' (percent), '' for none."""
    if not fractions:
        return ""
    low, high = 100 * min(fractions), 100 * max(fractions)
    return f"{low:.1f}%" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}%"


def latency_of(plan: dict, spec: dict) -> float:
    if spec["kind"] == "channels":
        return plan["channels"][spec["channels"]]["measured"]
    return plan["selections"][spec["selection"]]["measured"]


def collect(plan: dict, cells: dict) -> dict:
    """(target, method, N) -> rows of per-seed results; other sources under (target, method, N, source)."""
    table = defaultdict(list)
    for planned_cell in planned(plan):
        cell, result = planned_cell.cell, cells.get(planned_cell.cell.name)
        if result is None or cell.method is None or cell.block is not None:
            continue
        key = (cell.target_key, cell.method.name, cell.n)
        table[key if cell.source == IN_DOMAIN else (*key, cell.source)].append({
            "seed": cell.seed, "top1": result["top1"], "blocks": result["spec"].get("blocks"),
            "agreement": result["agreement"],
            "latency_reduction": latency_of(plan, result["spec"]),
            "flops_reduction": 1 - result["flops"] / plan["flops_full"], "iterations": result["iterations"],
            "device": result["device"]})
    return table


def main_table(plan: dict, table: dict, teacher_top1: float | None) -> tuple[list[str], dict]:
    lines, summary = [], {}
    table = {k: v for k, v in table.items() if len(k) == 3}
    for target in sorted({k[0] for k in table}):
        sizes = sorted({k[2] for k in table if k[0] == target})
        lines += [f"### Target {target[1:]}% measured latency reduction", "",
                  "Test top-1 (%) over the 10,000 test images, mean ± std over seeds (number of seeds), and in "
                  "brackets the agreement (%) with the teacher's predictions.", "",
                  "| method | " + " | ".join(f"N={n}" for n in sizes) +
                  " | measured latency reduction | FLOPs reduction |", "|---|" + "---|" * (len(sizes) + 2)]
        for method in METHOD_ORDER:
            rows = {n: table.get((target, method, n), []) for n in sizes}
            if not any(rows.values()):
                continue
            cells, lat, flops = [], [], []
            for n in sizes:
                if rows[n]:
                    m, s = mean_std([100 * r["top1"] for r in rows[n]])
                    agreement = statistics.fmean(100 * r["agreement"] for r in rows[n])
                    cells.append(f"{m:.2f} ± {s:.2f} ({len(rows[n])}) [{agreement:.1f}]")
                    summary[f"{target}/{method}/N{n}"] = {"mean": m, "std": s, "seeds": len(rows[n]),
                                                         "top1": [r["top1"] for r in rows[n]],
                                                         "agreement": [r["agreement"] for r in rows[n]]}
                else:
                    cells.append("")
                lat += [r["latency_reduction"] for r in rows[n]]
                flops += [r["flops_reduction"] for r in rows[n]]
            lines.append(f"| {METHODS[method].label} | " + " | ".join(cells) +
                         f" | {span(lat)} | {100 * statistics.fmean(flops):.1f}% |")
        lines.append("")
    if teacher_top1 is not None:
        lines.append(f"Teacher (resnet56, no blocks dropped): {100 * teacher_top1:.2f}% top-1 on the 10,000 test images.")
    return lines, summary


def plot_accuracy(table: dict, teacher_top1: float | None, out: Path) -> None:
    table = {k: v for k, v in table.items() if len(k) == 3}
    for target in sorted({k[0] for k in table}):
        fig, ax = plt.subplots(figsize=(10, 4.5))
        for method in METHOD_ORDER:
            sizes = sorted(k[2] for k in table if k[0] == target and k[1] == method)
            if not sizes:
                continue
            stats = [mean_std([100 * r["top1"] for r in table[(target, method, n)]]) for n in sizes]
            ax.errorbar(sizes, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3,
                        label=METHODS[method].label, linewidth=2.5 if method == "practise" else 1.2)
        if teacher_top1 is not None:
            ax.axhline(100 * teacher_top1, color="grey", linestyle="--", label="teacher")
        all_sizes = sorted({k[2] for k in table if k[0] == target})
        ax.set_xscale("log")
        ax.set_xticks(all_sizes, [str(n) for n in all_sizes])
        ax.minorticks_off()
        ax.set_xlabel("tiny-set size N (images)")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(f"resnet56 on Fashion-MNIST, {target[1:]}% measured latency reduction")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        _save(fig, out / f"accuracy_vs_n_{target}.png")


def rows_for(table: dict, target: str, method: str, n: int, source: str) -> list[dict]:
    return table.get((target, method, n) if source == IN_DOMAIN else (target, method, n, source), [])


def paired_difference(table: dict, target: str, source: str, method: str, other: str, n: int) -> str:
    """'+0.21 (2/3)': mean top-1 difference over the seeds both methods ran, and in how many
    of those seeds ``method`` was better."""
    def by_seed(m):
        return {r["seed"]: 100 * r["top1"] for r in rows_for(table, target, m, n, source)}
    mine, theirs = by_seed(method), by_seed(other)
    diffs = [mine[s] - theirs[s] for s in sorted(set(mine) & set(theirs))]
    if not diffs:
        return ""
    return f"{statistics.fmean(diffs):+.2f} ({sum(d > 0 for d in diffs)}/{len(diffs)})"


def sources_table(plan: dict, table: dict, workdir: Path) -> tuple[list[str], dict]:
    """PRACTISE and the baseline(s) with tiny sets from each source, beside the in-domain cells."""
    keys = [k for k in table if len(k) == 4]
    if not keys:
        return [], {}
    target = keys[0][0]
    methods = [m for m in METHOD_ORDER if any(k[1] == m for k in keys)]
    sizes = sorted({k[2] for k in keys})
    sources = [IN_DOMAIN] + [s for s in SOURCE_LABELS if s != IN_DOMAIN and any(k[3] == s for k in keys)]
    lines = [f"### Tiny sets from other sources (target {target[1:]}% measured latency reduction)", "",
             "Scoring, block selection and recovery see only the named images; evaluation uses the 10,000 "
             "Fashion-MNIST test images. Top-1 (%), mean ± std over seeds (number of seeds), [agreement with the "
             "teacher, %]. PRACTISE selects blocks from each source's own recoverability scores (the cosine "
             "criterion from its images); the other baselines' choices do not depend on the images (the same as in "
             "the in-domain table).", "",
             "| source | " + " | ".join(f"{METHODS[m].short_label}, N={n}" for m in methods for n in sizes) +
             " | " + " | ".join(f"measured latency reduction, {METHODS[m].short_label}" for m in methods) +
             "".join(f" | PRACTISE - {METHODS[m].short_label}, N={n}: mean, wins/pairs" for m in methods[1:] for n in sizes) +
             " |", "|---|" + "---|" * (len(methods) * (len(sizes) + 1) + (len(methods) - 1) * len(sizes))]
    summary = {}
    for source in sources:
        row, lat = [], {m: [] for m in methods}
        for method in methods:
            for n in sizes:
                rows = rows_for(table, target, method, n, source)
                if not rows:
                    row.append("")
                    continue
                m, sd = mean_std([100 * r["top1"] for r in rows])
                row.append(f"{m:.2f} ± {sd:.2f} ({len(rows)}) [{statistics.fmean(100 * r['agreement'] for r in rows):.1f}]")
                summary[f"{source}/{method}/N{n}"] = {"mean": m, "std": sd, "top1": [r["top1"] for r in rows]}
                lat[method] += [r["latency_reduction"] for r in rows]
        paired = [paired_difference(table, target, source, "practise", m, n) for m in methods[1:] for n in sizes]
        lines.append(f"| {SOURCE_LABELS[source]} | " + " | ".join(row + [span(lat[m]) for m in methods] + paired) + " |")
    synth = sorted((workdir / "synthesized").glob("s*.json"))
    if synth:
        runs = [json.loads(p.read_text()) for p in synth]
        config = runs[0]["config"]
        lines += ["", f"Synthesized images: {runs[0]['images']} per seed ({len(runs)} seeds), DeepInversion with "
                  f"{config['steps']} Adam steps per batch of {config['batch_size']} (lr {config['lr']}, BN weight "
                  f"{config['bn_weight']}, first BN x{config['first_bn_multiplier']}, TV {config['tv_weight']}, L2 "
                  f"{config['l2_weight']}); {statistics.fmean(r['seconds'] for r in runs) / 60:.1f} min per seed on "
                  f"{runs[0]['device']}; the teacher classifies "
                  f"{100 * statistics.fmean(r['teacher_agrees_with_target'] for r in runs):.1f}% of them (read back "
                  "from the PNGs) as their target class. Samples: [synthesized_samples.png](synthesized_samples.png), "
                  "every source: [source_samples.png](source_samples.png)."]
    return lines, summary


def source_ranking_transfer(plan: dict, workdir: Path) -> tuple[list[str], dict]:
    """How far each source's recoverability ranking and PRACTISE selection agree with the
    in-domain ones for the same N and seed: does scoring on other images pick the same blocks?"""
    names = list(plan["latency"]["r_b"])
    settings = Settings.from_dict(plan["settings"])
    t = target_key(settings.targets[0])

    def recoverability(key: str) -> list[float] | None:
        scores = load_scores(workdir, key, names)
        return None if scores is None else [scores[b] for b in names]

    # PRACTISE's selection on each other source's tiny set, in the order the plan made them
    tiny_sets = {selection_key("practise", n, seed, t, source): (source, n, seed)
                 for source, n, seed in settings.source_tiny_sets()}
    rows = defaultdict(list)
    for key, selection in plan["selections"].items():
        if key not in tiny_sets:
            continue
        source, n, seed = tiny_sets[key]
        own, reference = recoverability(tiny_key(n, seed, source)), recoverability(tiny_key(n, seed))
        in_domain = plan["selections"].get(selection_key("practise", n, seed, t))
        if own is None or reference is None or in_domain is None:
            continue
        chosen, wanted = set(selection["blocks"]), set(in_domain["blocks"])
        rows[(source, n)].append((spearmanr(own, reference).statistic, len(chosen & wanted), len(chosen), len(wanted)))
    if not rows:
        return [], {}
    lines = ["Do other images rank blocks like the training images? Spearman correlation of each source's "
             "recoverability R_b with the in-domain R_b over all candidate blocks (same N and seed), and how many "
             "of the blocks PRACTISE drops with the source's scores it also drops with in-domain scores (mean over "
             "seeds).", "", "| source | N | seeds | Spearman(R_b, in-domain R_b) | blocks shared / dropped (in-domain drops) |",
             "|---|---|---|---|---|"]
    summary = {}
    for (source, n), values in sorted(rows.items(), key=lambda kv: (list(SOURCE_LABELS).index(kv[0][0]), kv[0][1])):
        rho = statistics.fmean(v[0] for v in values)
        shared, dropped, wanted = (statistics.fmean(v[i] for v in values) for i in (1, 2, 3))
        lines.append(f"| {SOURCE_LABELS[source]} | {n} | {len(values)} | {rho:.2f} | {shared:.1f} / {dropped:.1f} ({wanted:.1f}) |")
        summary[f"{source}/N{n}"] = {"spearman": [v[0] for v in values], "shared": [v[1] for v in values],
                                     "dropped": [v[2] for v in values], "in_domain_dropped": [v[3] for v in values]}
    return lines, summary


def synthesized_grid(workdir: Path, seed: int = 0, per_class: int = 10) -> None:
    """The first ``per_class`` synthesized images of every class, one row per class."""
    from PIL import Image

    folders = sorted((workdir / "synthesized" / f"s{seed}").glob("class_*"))
    if not folders:
        return
    fig, axes = plt.subplots(len(folders), per_class, figsize=(per_class * 0.8, len(folders) * 0.85))
    for row, folder in zip(axes, folders):
        files = sorted(folder.glob("*.png"))[:per_class]
        for ax, f in zip(row, files):
            ax.imshow(Image.open(f), cmap="gray", vmin=0, vmax=255)
        for ax in row:
            ax.axis("off")
        label = FASHION_MNIST_CLASSES[int(folder.name.split("_")[1])]
        row[0].text(-4, 14, label, ha="right", va="center", fontsize=8)
    fig.suptitle(f"DeepInversion images from the resnet56 teacher (seed {seed}), one row per target class", fontsize=9)
    fig.subplots_adjust(left=0.15, wspace=0.05, hspace=0.05)
    _save(fig, workdir / "synthesized_samples.png")


def source_samples(plan: dict, workdir: Path, seed: int = 0, count: int = 12) -> None:
    """The first images of each source's smallest tiny set of ``seed``, one row per source."""
    settings = Settings.from_dict(plan["settings"])
    n = min(n for source, n, s in settings.source_tiny_sets() if tiny_key(n, s, source) in plan["tiny_sets"])
    sources = [s for s in SOURCE_LABELS if tiny_key(n, seed, s) in plan["tiny_sets"]]
    if "synthesized" in sources and not synthesized_dir(workdir, seed).is_dir():
        # the synthesized images are not kept in git (`comparison.py synth` makes them again):
        # the committed sheet stays as it is
        return
    fig, axes = plt.subplots(len(sources), count, figsize=(count * 0.8, len(sources) * 0.9), squeeze=False)
    for row, source in zip(axes, sources):
        tiny = tiny_set_for(n, seed, None, source, workdir)
        for ax, image in zip(row, tiny.images[:count]):
            ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=255)
        for ax in row:
            ax.axis("off")
        row[0].text(-4, 14, SOURCE_LABELS[source].split(" (")[0], ha="right", va="center", fontsize=7)
    fig.suptitle(f"Tiny-set images by source (N={n}, seed {seed})", fontsize=9)
    fig.subplots_adjust(left=0.25, wspace=0.05, hspace=0.05)
    _save(fig, workdir / "source_samples.png")


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def single_block_table(plan: dict, cells: dict, workdir: Path) -> tuple[list[str], dict]:
    rows = [(p.cell.block, p.cell.tiny_key, cells[p.cell.name]) for p in planned(plan)
            if p.cell.block is not None and p.cell.name in cells]
    if not rows:
        return [], {}
    key = rows[0][1]
    scores = json.loads((workdir / "scores" / f"{key}.json").read_text())["blocks"] \
        if (workdir / "scores" / f"{key}.json").is_file() else {}
    rows = [r for r in rows if r[0] in scores]
    lines = [f"### Recoverability against accuracy with that block alone dropped ({key})", "",
             "| block | r_b | recoverability R_b | top-1 after dropping it and recovering | agreement with the teacher |",
             "|---|---|---|---|---|"]
    for block, _, result in sorted(rows, key=lambda r: scores[r[0]]["recoverability"]):
        lines.append(f"| {block} | {100 * plan['latency']['r_b'][block]:.1f}% | "
                     f"{scores[block]['recoverability']:.5f} | {100 * result['top1']:.2f}% | "
                     f"{100 * result['agreement']:.2f}% |")
    summary = {}
    if len(rows) >= 3:
        recoverability = [scores[b]["recoverability"] for b, _, _ in rows]
        rho = spearmanr(recoverability, [r["top1"] for _, _, r in rows]).statistic
        rho_agree = spearmanr(recoverability, [r["agreement"] for _, _, r in rows]).statistic
        summary = {"spearman_recoverability_vs_top1": float(rho),
                   "spearman_recoverability_vs_agreement": float(rho_agree), "blocks": len(rows)}
        lines += ["", f"Spearman correlation of R_b with top-1 after the single-block drop: **{rho:.3f}**, with "
                  f"agreement: **{rho_agree:.3f}**, over {len(rows)} blocks (negative: harder-to-recover blocks "
                  "lose more)."]
    return lines, summary


def report(workdir: Path) -> None:
    plan = json.loads((workdir / "plan.json").read_text())
    cells = {p.stem: json.loads(p.read_text()) for p in sorted((workdir / "cells").glob("*.json"))}
    teacher_top1 = cells["teacher"]["top1"] if "teacher" in cells else None
    table = collect(plan, cells)
    main_lines, summary = main_table(plan, table, teacher_top1)
    single_lines, single = single_block_table(plan, cells, workdir)
    source_lines, sources = sources_table(plan, table, workdir)
    transfer_lines, transfer = source_ranking_transfer(plan, workdir)
    plot_accuracy(table, teacher_top1, workdir)
    synthesized_grid(workdir)
    if source_lines:
        source_samples(plan, workdir)
    prov = plan["provenance"]
    lat = plan["latency"]["settings"]
    devices = sorted({c["device"] for c in cells.values()})
    iterations = sorted({c["iterations"] for c in cells.values() if "iterations" in c})
    lines = ["# PRACTISE against the alternatives: resnet56 on Fashion-MNIST", "",
             f"Plan (latency, selections) by `{prov['command']}` at commit `{prov['commit']}` on "
             f"{prov['machine']['cpu']} ({prov['machine']['cores']} cores, torch {prov['machine']['torch']}). "
             f"Latency setting for every method: {lat['device']}, batch {lat['batch_size']}, {lat['threads']} threads, "
             f"{lat['dtype']}, medians of interleaved repeats after {lat['warmup']} warm-up passes: {lat['repeats']} "
             f"repeats for the per-block table (r_b), {plan['settings']['latency_repeats']} for each pruned network "
             "against the full one (the measured reductions below).",
             f"Recovery cells ran on: {', '.join(devices)}; recovery iterations: {', '.join(map(str, iterations))} "
             f"(batch 64; paper: 2000). Each cell's device, settings and losses are in `cells/*.json`; the commands of "
             "every stage, with commit and machine, in `invocations.json` (where present) and in this folder's NOTES.md.", "",
             *main_lines, "", *single_lines, "", *source_lines, "", *transfer_lines, ""]
    atomic_write_text(workdir / "README.md", "\n".join(lines) + "\n")
    atomic_write_text(workdir / "summary.json", json.dumps({"teacher_top1": teacher_top1, "table": summary,
                                                           "single_block": single, "sources": sources,
                                                           "source_ranking_transfer": transfer}, indent=1))
    print("\n".join(lines))
