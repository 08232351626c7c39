"""One kind of extension point: a named registry.

Every pluggable kind in practise (block-ranking criteria, latency backends, adaptor
placement rules, recovery methods, named data sources) is a :class:`Registry`: entries
are added by name, a second entry under a taken name is refused (two plug-ins silently
replacing each other is a bug), and a lookup of an unknown name raises a ``ValueError``
that lists the valid choices, so a typo on the command line names what would work.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar
from .errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry, in registration order."""

    def __init__(self, kind: str):
        self.kind = kind  # e.g. "criterion": used in error messages
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if not isinstance(name, str) or not name:
            raise UsageError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._entries:
            raise UsageError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@REGISTRY.decorator("name")`` above a function or class registers it."""
        return lambda entry: self.register(name, entry)

    def unregister(self, name: str) -> T:
        """Remove an entry (tests and plug-ins that replace one on purpose)."""
        return self._entries.pop(self._check(name))

    def get(self, name: str) -> T:
        return self._entries[self._check(name)]

    def _check(self, name: str) -> str:
        if name not in self._entries:
            raise UsageError(f"unknown {self.kind} {name!r}; valid choices: {', '.join(self._entries)}")
        return name

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)
