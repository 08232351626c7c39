"""The model card written next to a compressed model (``README.md``), as Hugging Face
folders carry one: the base model, what was dropped and why, what it cost (latency and
accuracy or perplexity before and after), how to load it, and the command that made it."""
from __future__ import annotations

from .compress_report import CompressReport
from .report import summary_rows


def model_card(report: CompressReport, base_model: str, load_with: str, command: str | None = None) -> str:
    """Markdown for ``README.md``. ``load_with`` is the Python line that reloads the model."""
    sel = report.selection
    criterion = report.config.get("criterion", "practise")
    total = len(report.candidates)
    lines = ["---", "tags:", "- practise", "- layer-pruning", "---", "",
             f"# {base_model}, compressed with practise", "",
             f"`{base_model}` with {len(sel.blocks)} of its {total} candidate blocks dropped "
             f"(criterion `{criterion}`"
             f"{', the PRACTISE recoverability per unit of measured latency' if criterion == 'practise' else ''}), "
             + (f"repaired with a least-squares linear patch folded into the layer before each dropped run, "
                if report.repair and any(r["linear"] for r in report.repair["runs"]) else "")
             + f"then recovered with `{report.recovery.method}` on a tiny set of {report.tiny_set.size} "
             f"{report.tiny_set.kind or 'images'}.", "",
             "| | before | after |", "|---|---|---|"]
    lines += [f"| {name} | {before} | {after} |" for name, before, after in summary_rows(report)
              if name != "dropped blocks"]
    if report.decode:
        d = report.decode
        lines.append(f"| decode (ms per token, prompt {d['prompt_length']}) | {d['teacher_ms']:.2f} | "
                     f"{d['compressed_ms']:.2f} |")
    lines += ["", "Dropped: " + ", ".join(f"`{b}`" for b in sel.blocks) + ".", "",
              f"Latency was measured on {report.latency.selection_settings.get('device_name', 'this machine')} "
              "(see `report.md` for the settings, every candidate's score and the intervals).", "",
              "## Load", "", "```python", load_with, "```"]
    if command:
        lines += ["", "## How it was made", "", "```", command, "```"]
    lines += ["", f"practise {report.practise_version}, {report.created}."]
    return "\n".join(lines) + "\n"
