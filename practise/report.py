"""Turning a compression report (:class:`~practise.compress_report.CompressReport`) into
Markdown, JSON files and a plot."""
from __future__ import annotations

import json
import math
from pathlib import Path

from .compress_report import CompressReport
from .files import atomic_write, atomic_write_text
from .machine import describe


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "inf" if math.isinf(value) else f"{value:.4g}"


def _stopped(settings: dict) -> str:
    """Why the paired repeats stopped, when it was not the resolution aimed at."""
    if settings.get("stopped_by") in (None, "resolution"):
        return ""
    if settings["stopped_by"] == "decided":
        return "; stopped once the 95% interval lay wholly on one side of the target"
    return (f"; stopped by the {settings['stopped_by'].replace('_', ' ')} with intervals of +-"
            f"{100 * settings['reached']:.2f} points per block (aimed at +-{100 * settings['resolution']:.2f})")


def _mflops(flops: int | None) -> str:
    return "unknown" if flops is None else f"{flops / 1e6:.1f} M"


def _median_iqr(stats: dict) -> str:
    return f"{stats['median_ms']:.2f} ({stats['q75_ms'] - stats['q25_ms']:.2f})"


def summary_rows(report: CompressReport) -> list[tuple[str, str, str]]:
    """(quantity, before, after) rows for the before/after table."""
    rows = [("latency (median ms, IQR)", _median_iqr(report.latency.full_ms), _median_iqr(report.latency.compressed_ms)),
            ("latency reduction (measured)", "", _pct(report.selection.measured_reduction)),
            (f"FLOPs (per {'sequence' if report.tiny_set.kind == 'texts' else 'image'})", _mflops(report.before.flops), _mflops(report.after.flops)),
            ("parameters", f"{report.before.params:,}", f"{report.after.params:,}")]
    evaluation = report.evaluation
    if evaluation:
        if report.has_accuracy:
            rows.append((f"top-1 accuracy ({evaluation['teacher']['images']} images)",
                         _pct(evaluation["teacher"]["top1"]), _pct(evaluation["compressed"]["top1"])))
        compressed = evaluation["compressed"]
        if "agreement_with_teacher" in compressed:
            rows.append(("agreement with teacher", "100.0%", _pct(compressed["agreement_with_teacher"])))
        if "perplexity" in compressed:
            rows.append((f"perplexity ({compressed['tokens']:,} held-out tokens)",
                         f"{evaluation['teacher']['perplexity']:.2f}", f"{compressed['perplexity']:.2f}"))
            rows.append(("next-token agreement with teacher", "100.0%", _pct(compressed["next_token_agreement"])))
        if "embedding_cosine_to_teacher" in compressed:
            rows.append((f"embedding cosine to teacher ({compressed['sequences']} texts)", "1.000",
                         f"{compressed['embedding_cosine_to_teacher']:.3f}"))
    rows.append(("dropped blocks", "", ", ".join(report.selection.blocks)))
    return rows


def to_markdown(report: CompressReport) -> str:
    sel, settings = report.selection, report.latency.selection_settings
    arch = report.model.arch
    lines = ["# PRACTISE compression report", "",
             f"Model: `{arch['name'] if arch and 'name' in arch else arch}`; feature layer `{report.model.feature_layer}`; "
             f"tiny set of {report.tiny_set.size} {report.tiny_set.kind or 'images'}"
             f"{' (labelled)' if report.tiny_set.labelled else ' (unlabelled)'}; seed {report.config['seed']}.", "",
             "| | before | after |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in summary_rows(report)]
    target = f"target {_pct(sel.target)}" if sel.target is not None else f"{sel.num_blocks} blocks"
    criterion = report.config.get("criterion", "practise")
    lines += ["", f"Selection ({sel.mode}, {target}{'' if criterion == 'practise' else f', criterion {criterion}'}): "
              f"predicted reduction {_pct(sel.predicted_reduction)}, measured {_pct(sel.measured_reduction)}"
              f"{_interval(sel.measured_interval, '95% interval ')}.", "",
              f"Latency measured on {settings['device']} ({settings['device_name']}), {settings['threads']} threads, "
              f"input {settings['input_shape']}"
              f"{' (decode: one token, KV cache at that length)' if settings.get('metric') == 'decode' else ''}, "
              f"{settings['dtype']}, {settings['warmup']} warm-up + "
              f"{settings['repeats']} {'paired' if settings.get('paired') else 'interleaved'} repeats, torch {settings['torch_version']}"
              f"{_backend(settings)}{_stopped(settings)}.", "",
              *([f"**Warning:** {report.latency.warning}.", ""] if report.latency.warning else []),
              "## Candidate blocks (best score first)", "",
              _recoverability_note(report.config.get("scoring", {})), "",
              *_latency_note(report),
              "| rank | block | chosen | latency reduction | FLOPs reduction | params | recoverability | score |",
              "|---|---|---|---|---|---|---|---|"]
    for c in report.candidates:
        lines.append(f"| {c.rank} | `{c.name}` | {'yes' if c.chosen else ''} | {_pct(c.latency_reduction)}"
                     f"{_interval(c.latency_interval)}{_tie(c, report)} | "
                     f"{_pct(c.flops_reduction)} | {c.params:,} | {_num(c.recoverability)} | {_num(c.score)} |")
    if report.decode:
        d = report.decode
        lines += ["", f"Decode latency (greedy, KV cache, prompt {d['prompt_length']} tokens, {d['new_tokens']} new "
                  f"tokens, batch {d['batch']}): {d['teacher_ms']:.2f} -> {d['compressed_ms']:.2f} ms per token."]
    if report.ranking_steps:
        lines += ["", _ranking_steps_line(report.ranking_steps)]
    if report.repair:
        lines += ["", f"Repair: `{report.repair['method']}`: " + "; ".join(_patch_line(r) for r in report.repair["runs"])
                  + "."]
    rec = report.recovery
    loss = "no training" if rec.loss_first is None else f"loss {rec.loss_first:.4g} -> {rec.loss_last:.4g}"
    lines += ["", f"Recovery: `{rec.method}`, {rec.iterations} iterations, lr {rec.lr}; {loss}.",
              "", "Timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in report.timings.items())
              + (f", on {describe(report.machine)}" if report.machine else ""), ""]
    return "\n".join(lines + preprocessing_lines(report) + skipped_lines(report))


def _ranking_steps_line(steps: list) -> str:
    """Iterative selection: the table's scores are the first step's; what each later step chose."""
    after = [f"`{s['removed'][-1]}` ({s['candidates']} blocks, {s['seconds']:.0f} s)" for s in steps]
    return ("Ranked iteratively (the table's scores are the first step's, on the unpruned teacher; the rank column "
            "is the greedy order): the blocks left were re-scored on the pruned, repaired copy after dropping, in "
            "turn, " + ", ".join(after) + ".")


def _recoverability_note(scoring: dict) -> str:
    """What R_b means under the protocol the report's scores were made with."""
    lead = "Score = recoverability / latency reduction (lower is better): recoverability is the feature MSE left "
    if scoring.get("protocol") != "closed-form":
        return lead + "after training identity-initialised adaptors around the dropped block."
    if scoring.get("linear_map") == "folded":
        return (lead + "with the block dropped and a least-squares linear map folded into the layer before it (the "
                "linear-patch repair), fitted in closed form on the tiny set.")
    return lead + "with the block replaced by its least-squares linear map, fitted in closed form on the tiny set."


def _patch_line(run: dict) -> str:
    blocks = ", ".join(f"`{b}`" for b in run["run"])
    if not run["linear"]:
        return f"{blocks} not patched ({run['reason']})"
    how = ([f"ridge {run['ridge']:g}"] if run.get("ridge") is not None else []) + \
        ([f"{run['fit_scale']}-scaled fit"] if run.get("fit_scale") else [])
    return f"{blocks} folded into `{run['linear']}`" + (f" ({', '.join(how)})" if how else "")


def _interval(interval: list[float] | None, prefix: str = "") -> str:
    return "" if not interval else f" ({prefix}{100 * interval[0]:.1f}-{100 * interval[1]:.1f}%)"


def _tie(candidate, report: CompressReport) -> str:
    """A tie mark when the candidate shares its latency estimate with another group."""
    if candidate.latency_tie is None:
        return ""
    groups = {c.latency_group for c in report.candidates if c.latency_tie == candidate.latency_tie}
    return f" tie {candidate.latency_tie}" if len(groups) > 1 else ""


def _backend(settings: dict) -> str:
    """The latency backend, named when it is not the default eager PyTorch."""
    backend = settings.get("backend", "eager")
    return "" if backend == "eager" else f", backend {backend}"


def _latency_note(report: CompressReport) -> list[str]:
    if not any(c.latency_interval for c in report.candidates):
        return []
    return ["Latency reduction per block: paired repeats against the full model, structurally identical blocks timed "
            "together and sharing one estimate; in brackets the 95% interval; blocks marked with the same tie "
            "number cannot be ordered by the measurement (their intervals overlap).", ""]


def preprocessing_lines(report: CompressReport) -> list[str]:
    pre = report.preprocessing
    if not pre:
        return []
    if pre.get("kind") == "text":
        return ["## Preprocessing", "", f"Tokenizer `{pre['tokenizer']}`, {pre['sequence_length']} tokens per example "
                f"(padded; at most {pre['max_length']}); padding is left out of the feature loss.", ""]
    lines = ["## Preprocessing", "", f"Input {pre['channels']} x {pre['image_size']} x {pre['image_size']}, "
             f"mean {pre['mean']}, std {pre['std']}."]
    if pre.get("note"):
        lines += ["", f"**Note:** {pre['note']}."]
    return lines + [""]


def skipped_lines(report: CompressReport) -> list[str]:
    """Every file left out: unreadable tiny-set and evaluation images, non-image files."""
    groups = [("tiny set: unreadable images", report.tiny_set.skipped_unreadable or []),
              ("tiny set: files that are not images (by suffix)", report.tiny_set.skipped_non_images or []),
              ("evaluation: unreadable images", (report.evaluation or {}).get("skipped_unreadable") or [])]
    lines = []
    for title, items in groups:
        if items:
            lines += [f"- {title} ({len(items)}):"] + [f"  - `{item}`" for item in items[:200]]
            if len(items) > 200:
                lines.append(f"  - ... and {len(items) - 200} more (report.json lists all)")
    if report.evaluation_error:
        lines.append(f"- evaluation failed: {report.evaluation_error}")
    return (["## Skipped files", ""] + lines + [""]) if lines else []


def plot(report: CompressReport, path: str | Path) -> Path:
    """Recoverability against latency saving per block (chosen ones marked), and accuracy before/after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluation = report.evaluation
    has_acc = report.has_accuracy
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(11 if has_acc else 6.5, 4.5), squeeze=False)
    ax = axes[0][0]
    for chosen, colour, label in ((False, "tab:blue", "kept"), (True, "tab:red", "dropped")):
        pts = [c for c in report.candidates if c.chosen == chosen and c.recoverability is not None
               and math.isfinite(c.recoverability)]
        ax.scatter([100 * c.latency_reduction for c in pts], [c.recoverability for c in pts],
                   c=colour, label=label, s=30)
        for c in pts:
            ax.annotate(c.name, (100 * c.latency_reduction, c.recoverability), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("latency reduction when dropped alone (%)")
    ax.set_ylabel("recoverability (feature MSE after adaptors; lower is better)")
    ax.set_title("Candidate blocks")
    ax.legend()
    if has_acc:
        bx = axes[0][1]
        values = [100 * evaluation["teacher"]["top1"], 100 * evaluation["compressed"]["top1"]]
        bars = bx.bar(["teacher", "compressed"], values, color=["tab:gray", "tab:red"])
        bx.bar_label(bars, fmt="%.2f%%")
        bx.set_ylim(max(0, min(values) - 10), 100)
        bx.set_ylabel("top-1 accuracy (%)")
        bx.set_title(f"Accuracy, {_pct(report.selection.measured_reduction)} lower latency")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return Path(path)


REPORT_FILES = ("report.json", "report.md", "blocks.png")


def write_report_files(report: CompressReport, out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {"report.json": atomic_write_text(out_dir / "report.json", json.dumps(report.to_dict(), indent=2, default=str)),
             "report.md": atomic_write_text(out_dir / "report.md", to_markdown(report)),
             "blocks.png": plot(report, out_dir / "blocks.png")}
    return paths
