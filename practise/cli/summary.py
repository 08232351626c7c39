"""The before/after table a compress run prints, and the files it wrote."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..compress_report import CompressReport
from ..report import summary_rows
from .errors import with_flags


def print_summary(report: CompressReport, written: Iterable[Path]) -> None:
    rows = summary_rows(report)
    width = max(len(r[0]) for r in rows) + 2
    print(f"\n{'':<{width}}{'before':>18}{'after':>18}")
    for name, before, after in rows:
        if name == "dropped blocks":
            print(f"{name:<{width}}{after}")
        else:
            print(f"{name:<{width}}{before:>18}{after:>18}")
    if report.latency.warning:
        print(f"\nwarning: {with_flags(report.latency.warning)}")
    if (report.preprocessing or {}).get("note"):
        print(f"\nnote: {with_flags(report.preprocessing['note'])}")
    if report.evaluation_error:
        print(f"\nwarning: no accuracy: {with_flags(report.evaluation_error)}")
    print(f"\nwrote {', '.join(str(p) for p in written)}")
