"""The errors practise raises for what the *user* gave (as opposed to bugs).

Every one is a :class:`PractiseError`. The command line prints these (and ``OSError``: a
missing file, a folder that exists) as one line with exit code 2; anything else is an
internal error (exit 1, "please report"). Each kind also derives from ``ValueError`` so
that code catching ``ValueError`` around a library call keeps working.

Messages name the library's parameters (``recovery.lr``, ``model``); the command line
maps those names onto its flags (:func:`practise.cli.errors.flag_message`).
"""
from __future__ import annotations

from pathlib import Path


class PractiseError(ValueError):
    """Something the user gave cannot be used; the message says what and what would work."""


class UsageError(PractiseError):
    """A bad argument, option value or combination of them."""


class UntrustedFile(PractiseError):
    """A file or folder that is damaged, does not follow its schema, or would run code."""

    def __init__(self, path: str | Path, what: str):
        super().__init__(f"damaged or untrusted {path}: {what}")
        self.path = str(path)


class UnreachableTarget(PractiseError):
    """The latency target cannot be met even with every candidate dropped."""


class NonFiniteError(PractiseError, FloatingPointError):
    """NaN or Inf where numbers must be finite (weights, inputs, features)."""


USER_ERRORS = (PractiseError, OSError)
