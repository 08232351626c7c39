"""Named data sets: a spec such as ``fashion-mnist:test`` or ``sklearn-digits`` -> a source.

A spec is ``name[:argument]``; the name is looked up in :data:`SOURCES`, and anything
that is not a registered name is an image folder. Each named source also says which
input size and normalisation its images imply (Fashion-MNIST's), so callers ask the
catalog instead of testing name prefixes. The catalog sits above the providers: they
know nothing of it, and a new data source is one provider file plus one
``register_source`` line below (or in a plug-in).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..registry import Registry
from . import fashion_mnist, out_of_domain
from .sources import ImageFolderSource, ImageSource
from ..errors import UsageError


@dataclass(frozen=True)
class NamedSource:
    open: Callable[[str], ImageSource]      # the spec's argument (after "name:") -> the source
    preprocessing: dict | None = None       # image_size / mean / std its images imply, if any
    usage: str = ""                         # for help texts and error messages


SOURCES: Registry[NamedSource] = Registry("data source")


def register_source(name: str, source: NamedSource | Callable[[str], ImageSource] | None = None):
    """Add a named data set: a :class:`NamedSource`, or a bare ``argument -> ImageSource``
    function (then it implies no preprocessing). ``--data name[:argument]`` opens it.
    Without ``source``, a decorator."""
    return SOURCES.add(name, source, lambda s: s if isinstance(s, NamedSource) else NamedSource(s))


def _no_argument(name: str, make: Callable[[], ImageSource]) -> Callable[[str], ImageSource]:
    def open_without(argument: str) -> ImageSource:
        if argument:
            raise UsageError(f"data source {name} takes no argument, got {name}:{argument}")
        return make()
    return open_without


def _split(spec: str) -> tuple[str, str]:
    """``fashion-mnist:test@/x`` -> ("fashion-mnist", "test@/x"); ``fashion-mnist@/x`` -> ("fashion-mnist", "@/x")."""
    cut = min((i for i in (spec.find(":"), spec.find("@")) if i >= 0), default=len(spec))
    name, rest = spec[:cut], spec[cut:]
    return name, rest[1:] if rest.startswith(":") else rest


def named_source(spec: str | Path) -> tuple[NamedSource, str] | None:
    name, argument = _split(str(spec))
    return (SOURCES.get(name), argument) if name in SOURCES else None


def open_source(spec: str | Path) -> ImageSource:
    """A registered data set (see ``practise.data.SOURCES.names()``) or a folder of images
    (class subfolders: labelled; flat: unlabelled)."""
    found = named_source(spec)
    if found is None:
        return ImageFolderSource(spec)
    source, argument = found
    return source.open(argument)


def source_preprocessing(spec: str | Path) -> dict | None:
    """The input size and normalisation a named data set implies, or None (image folders,
    sources whose images imply none)."""
    found = named_source(spec)
    return dict(found[0].preprocessing) if found and found[0].preprocessing else None


register_source("fashion-mnist", NamedSource(fashion_mnist.open_fashion_mnist, fashion_mnist.PREPROCESSING,
                                             "fashion-mnist:train | fashion-mnist:test [@/folder/with/idx]"))
register_source("demo", NamedSource(fashion_mnist.demo_source, fashion_mnist.PREPROCESSING,
                                    "demo:train | demo:test (the Fashion-MNIST subset shipped with the package)"))
register_source("sklearn-digits", NamedSource(_no_argument("sklearn-digits", out_of_domain.sklearn_digits), None,
                                              "sklearn-digits (unlabelled, out of domain)"))
register_source("photo-crops", NamedSource(_no_argument("photo-crops", out_of_domain.photo_crops), None,
                                           "photo-crops (unlabelled, out of domain)"))
register_source("gaussian-noise", NamedSource(_no_argument("gaussian-noise", out_of_domain.gaussian_noise), None,
                                              "gaussian-noise (unlabelled, out of domain)"))
