"""How the command line reports errors: the library's parameter names become flags.

Library messages name what was wrong by its parameter, in backticks (`image_size`,
`recovery.lr`), so that a Python user reads the argument to change; the command line
prints the flag that sets it instead.
"""
from __future__ import annotations

import logging
import re

from ..files import one_line

# parameter (as library messages name it) -> the flag that sets it
PARAMETER_FLAGS = {
    "model": "--model", "weights": "--weights", "out": "--out", "out_dir": "--out", "overwrite": "--overwrite",
    "image_size": "--image-size", "in_channels": "--in-channels", "mean": "--mean", "std": "--std",
    "include": "--include", "exclude": "--exclude", "max_repeats": "--max-repeats", "device": "--device",
    "dtype": "--dtype", "recovery.lr": "--recovery-lr", "scoring.lr": "--score-lr", "workdir": "--workdir",
    "eval_data": "--eval-data", "budget_s": "--latency-budget", "data": "--data", "seq_len": "--seq-len",
    "latency.metric": "--latency-metric", "eval_examples": "--score-eval-examples",
}
PARAMETER = re.compile(r"`([A-Za-z_][A-Za-z0-9_.]*)`")


def with_flags(text: str) -> str:
    """``text`` with each known `parameter` shown as its flag."""
    return PARAMETER.sub(lambda m: PARAMETER_FLAGS.get(m.group(1), m.group(0)), text)


class FlagFormatter(logging.Formatter):
    """Log lines as the command line shows them: library parameter names as flags."""

    def format(self, record: logging.LogRecord) -> str:
        return with_flags(super().format(record))


def flag_message(exc: BaseException) -> str:
    """``exc``'s message on one line, with each known `parameter` shown as its flag."""
    return with_flags(one_line(exc))
