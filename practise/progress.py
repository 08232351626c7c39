"""Progress reporting without printing: the library calls these hooks, the CLI draws bars."""
from __future__ import annotations


class Progress:
    """No-op base. ``start`` a task with a total, ``advance`` it, ``end`` it."""

    def start(self, task: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def end(self) -> None:
        pass


silent = Progress()
