"""Tables, verdicts and the plot of benchmarks/llm_comparison.py's cells.json."""
from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

CORPORA = ("docstrings", "debian")


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:,.1f}"
    return f"{statistics.mean(values):,.1f} ± {statistics.stdev(values):,.1f}"


def gather(cells: dict) -> dict:
    """(size, target, criterion, repair) -> {seed: cell}."""
    table: dict = defaultdict(dict)
    for key, cell in cells.items():
        parts = key.split("/")
        if len(parts) != 5 or parts[0] == "ranking":
            continue
        size, seed, criterion, target, repair = parts
        table[(int(size), target, criterion, repair)][int(seed)] = cell
    return table


def rankings_seconds(cells: dict) -> dict:
    """(size, criterion) -> wall seconds of each ranking (per seed, per span length)."""
    out: dict = defaultdict(list)
    for key, cell in cells.items():
        parts = key.split("/")
        if parts[0] == "ranking":
            out[(int(parts[1]), parts[3])].append(cell["seconds"])
    return out


def _perplexities(seeds: dict, corpus: str) -> dict[int, float]:
    return {seed: cell[corpus]["perplexity"] for seed, cell in seeds.items()}


def ranking_seconds(cells: dict, size: int, seed: int, criterion: str, layers: int) -> float:
    """Wall seconds of the ranking a cell used (angular's depends on the span length)."""
    key = f"ranking/{size}/{seed}/{criterion}"
    return cells.get(key, cells.get(f"{key}/{layers}", {"seconds": math.nan}))["seconds"]


# the PRACTISE variants judged, each against the other criteria (not against each other)
OURS = ("practise-folded", "practise-iterative")


def verdicts(table: dict) -> list[str]:
    """Per (size, target, corpus): with each repair, the criterion of lowest mean perplexity and
    whether each PRACTISE variant (OURS) was lowest in every seed; then each criterion at its
    best repair."""
    lines = []
    groups = defaultdict(dict)
    for (size, target, criterion, repair), seeds in table.items():
        groups[(size, target)][(criterion, repair)] = seeds
    for (size, target), methods in sorted(groups.items()):
        for corpus in CORPORA:
            repairs = sorted({r for _, r in methods})
            for repair in repairs + ["best"]:
                if repair == "best":  # each criterion with the repair that gave it its lowest mean
                    chosen = {}
                    for (criterion, r), seeds in methods.items():
                        ppl = _perplexities(seeds, corpus)  # (the best repair judged on its own seeds)
                        if criterion not in chosen or statistics.mean(ppl.values()) < chosen[criterion][1]:
                            chosen[criterion] = (ppl, statistics.mean(ppl.values()), r)
                    by_criterion = {c: v[0] for c, v in chosen.items()}
                    label = "each criterion at its best repair (" + ", ".join(
                        f"{c}: {v[2]}" for c, v in sorted(chosen.items())) + ")"
                else:
                    by_criterion = {c: _perplexities(seeds, corpus) for (c, r), seeds in methods.items() if r == repair}
                    label = f"repair {repair}"
                for ours in [o for o in OURS if o in by_criterion]:
                    others = {c: p for c, p in by_criterion.items() if c == ours or not c.startswith("practise")}
                    lines.append(_verdict(size, target, corpus, label, others, ours))
    return lines


def _verdict(size: int, target: str, corpus: str, label: str, by_criterion: dict[str, dict[int, float]],
             ours_name: str = "practise-folded") -> str:
    # compared on the seeds ours ran (else the most any criterion ran); criteria run on fewer
    # seeds are named, not compared
    reference = by_criterion.get(ours_name) or max(by_criterion.values(), key=len)
    seeds = sorted(reference)
    fewer = sorted(c for c, p in by_criterion.items() if not set(seeds) <= set(p))
    by_criterion = {c: p for c, p in by_criterion.items() if c not in fewer}
    if not seeds or len(by_criterion) < 2:
        return f"- {size} sequences, {100 * float(target):.0f}% target, {corpus}, {label}: nothing to compare"
    means = {c: statistics.mean(p[seed] for seed in seeds) for c, p in by_criterion.items()}
    best = min(means, key=means.get)
    ours = means.get(ours_name)
    won = [seed for seed in seeds if min(by_criterion, key=lambda c: by_criterion[c][seed]) == ours_name]
    if ours is None:
        gap = ""
    elif best == ours_name:
        runner = min((c for c in means if c != best), key=means.get, default=None)
        gap = f" ({100 * (ours / means[runner] - 1):+.1f}% vs `{runner}`)" if runner else ""
    else:
        gap = f"; {ours_name} {ours:,.1f} ({100 * (ours / means[best] - 1):+.1f}%)"
    return (f"- {size} sequences, {100 * float(target):.0f}% target, {corpus}, {label}: lowest mean perplexity "
            f"`{best}` {means[best]:,.1f}{gap}; {ours_name} lowest in {len(won)} of {len(seeds)} seeds "
            f"(seeds compared: {', '.join(map(str, seeds))}; criteria compared: {len(by_criterion)}"
            + (f"; run on fewer seeds, not compared: {', '.join(fewer)}" if fewer else "") + ")")


def write_report(out: Path) -> None:
    cells = json.loads((out / "cells.json").read_text())
    table = gather(cells)
    latency = cells["latency"]
    prov = cells["provenance"]
    lines = ["# PRACTISE against LLM layer-dropping criteria on SmolLM2-135M", "",
             f"- command: `{prov['command']}` (then `--report`); commit `{prov['commit']}`",
             f"- machine: {prov['machine']['cpu']}, {prov['machine']['cores']} cores, torch {prov['machine']['torch']}",
             f"- per-layer measured prefill saving {100 * latency['per_layer']:.2f}% (all 30 layers one structural "
             f"group); batch 1 x {latency['settings']['input_shape'][-1]} tokens"]
    scales = sorted({c["fit_scale"] for c in cells.values() if isinstance(c, dict) and "fit_scale" in c})
    if scales:
        lines.append(f"- least-squares fits of the linear patch (and of PRACTISE's folded scoring): "
                     f"`--fit-scale {', '.join(scales)}`")
    if "reused_from_global_fit_run" in cells:
        lines.append(f"- reused: {cells['reused_from_global_fit_run']['note']} (commit "
                     f"`{cells['reused_from_global_fit_run']['provenance']['commit']}`)")
    lines.append("")
    lines += ["| target | layers dropped | measured prefill reduction | measured decode reduction |", "|---|---|---|---|"]
    for target, t in latency["targets"].items():
        lines.append(f"| {100 * float(target):.0f}% | {t['layers']} | {100 * t['prefill_reduction']:.1f}% "
                     f"({100 * t['prefill_interval'][0]:.1f}-{100 * t['prefill_interval'][1]:.1f}) | "
                     f"{100 * t['decode_reduction']:.1f}% |")
    teacher = next(iter(table.values()), {})
    if teacher:
        cell = next(iter(teacher.values()))
        lines += ["", "Teacher perplexity: " + ", ".join(f"{c} {cell[c]['teacher_perplexity']:.1f}" for c in CORPORA)
                  + "."]
    lines += ["", "## Held-out perplexity (mean ± sd over seeds) and next-token agreement", "",
              "| tiny set | target | criterion | repair | seeds | docstrings ppl | debian ppl | agreement (docstrings) "
              "| method wall time (s): ranking + repair |",
              "|---|---|---|---|---|---|---|---|---|"]
    for (size, target, criterion, repair), seeds in sorted(table.items()):
        values = list(seeds.values())
        seconds = [ranking_seconds(cells, size, seed, criterion, latency["targets"][target]["layers"])
                   + cell["repair_seconds"] for seed, cell in seeds.items()]
        lines.append(f"| {size} | {100 * float(target):.0f}% | {criterion} | {repair} | {len(values)} | "
                     f"{_mean_sd([v['docstrings']['perplexity'] for v in values])} | "
                     f"{_mean_sd([v['debian']['perplexity'] for v in values])} | "
                     f"{_mean_sd([100 * v['docstrings']['agreement'] for v in values])}% | "
                     f"{statistics.mean(seconds):.0f} |")
    seeds_run = sorted({seed for v in table.values() for seed in v})
    lines += ["", "## Per seed (docstrings / Debian perplexity)", "",
              "| tiny set | target | criterion | repair | " + " | ".join(f"seed {s}" for s in seeds_run) + " |",
              "|---|---|---|---|" + "---|" * len(seeds_run)]
    for (size, target, criterion, repair), seeds in sorted(table.items()):
        cells_text = [f"{seeds[s]['docstrings']['perplexity']:,.1f} / {seeds[s]['debian']['perplexity']:,.0f}"
                      if s in seeds else "-" for s in seeds_run]
        lines.append(f"| {size} | {100 * float(target):.0f}% | {criterion} | {repair} | " + " | ".join(cells_text) + " |")
    lines += ["", "## Wall time of each ranking (s, this machine)", "", "| tiny set | criterion | seconds (mean) |",
              "|---|---|---|"]
    for (size, criterion), seconds in sorted(rankings_seconds(cells).items()):
        lines.append(f"| {size} | {criterion} | {statistics.mean(seconds):.0f} |")
    lines += ["", "## Verdicts (computed from the table)", "", *verdicts(table), ""]
    (out / "results.md").write_text("\n".join(lines))
    plot(table, latency, out / "perplexity_vs_latency.png")


def plot(table: dict, latency: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({k[0] for k in table})
    fig, axes = plt.subplots(len(sizes), 2, figsize=(11, 4 * len(sizes)), squeeze=False)
    for row, size in enumerate(sizes):
        for col, corpus in enumerate(CORPORA):
            ax = axes[row][col]
            series = defaultdict(list)
            for (s, target, criterion, repair), seeds in table.items():
                if s != size:
                    continue
                x = 100 * latency["targets"][target]["prefill_reduction"]
                y = statistics.mean(v[corpus]["perplexity"] for v in seeds.values())
                series[(criterion, repair)].append((x, y))
            for (criterion, repair), points in sorted(series.items()):
                points.sort()
                ax.plot(*zip(*points), marker="o", linestyle="-" if repair != "none" else ":",
                        label=f"{criterion} / {repair}")
            ax.set_yscale("log")
            ax.set_xlabel("measured prefill latency reduction (%)")
            ax.set_ylabel(f"held-out perplexity ({corpus})")
            ax.set_title(f"{size} calibration sequences, {corpus}")
    axes[0][1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
