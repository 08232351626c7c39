"""One kind of extension point: a named registry.

Every pluggable kind in practise (block-ranking criteria, latency backends, adaptor
placement rules, recovery methods, named data sources, export formats, architectures)
is a :class:`Registry`, and every kind is added the same way: ``register_<kind>(name,
entry)``, or ``@register_<kind>(name)`` above the entry (:meth:`Registry.add`). Entries
are added by name, a second entry under a taken name is refused (two plug-ins silently
replacing each other is a bug), and a lookup of an unknown name raises a ``ValueError``
that lists the valid choices, so a typo on the command line names what would work.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar
from .errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry, in registration order."""

    def __init__(self, kind: str):
        self.kind = kind  # e.g. "criterion": used in error messages
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """The primitive under ``register_<kind>``: add ``entry`` as it is."""
        if not isinstance(name, str) or not name:
            raise UsageError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._entries:
            raise UsageError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def add(self, name: str, entry: Any = None, make: Callable[[Any], T] | None = None):
        """What every ``register_<kind>(name, entry=None)`` does: with an entry, register
        ``make(entry)`` (``make`` turns what a user writes, e.g. a bare function or a class,
        into the registry's entry type) and return it; without one, return a decorator that
        registers what it decorates and gives it back unchanged."""
        make = make or (lambda e: e)
        if entry is None:
            def decorate(obj):
                self.register(name, make(obj))
                return obj
            return decorate
        return self.register(name, make(entry))

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


def named(entry, name: str):
    """``entry`` (an instance, or a class to instantiate) with its ``name`` attribute set to
    the name it is registered under, so the two cannot disagree."""
    entry = entry() if isinstance(entry, type) else entry
    entry.name = name
    return entry
