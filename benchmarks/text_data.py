"""Real labelled text this machine has offline: Debian package short descriptions and
their archive sections (``apt-cache dumpavail``), for an embedding classification probe.

Deduplicated by lower-cased description; descriptions of fewer than 3 words dropped. The
split is fixed (seed 0) whatever the run's seed: the ``classes`` most frequent sections
give ``per_class`` probe-training and ``per_class`` probe-test descriptions each; every
other description (any section) forms the unlabelled pool tiny sets are drawn from.
"""
from __future__ import annotations

import hashlib
import random
import subprocess
from collections import Counter
from dataclasses import dataclass


@dataclass
class TextSplits:
    pool: list[str]
    train: list[tuple[str, str]]   # (description, section)
    test: list[tuple[str, str]]
    sections: list[str]
    source: dict                   # how the data was obtained, its size and digest


def debian_descriptions() -> list[tuple[str, str, str]]:
    """(package, section, short description) for every package apt knows."""
    try:
        dump = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError("apt-cache dumpavail failed: this benchmark needs Debian package lists "
                           "(apt-get update)") from exc
    records, current = [], {}
    for line in dump.splitlines() + [""]:
        if not line.strip():
            if {"Package", "Section", "Description"} <= current.keys():
                records.append((current["Package"], current["Section"].split("/")[-1], current["Description"]))
            current = {}
        elif line[:1] not in (" ", "\t") and ":" in line:
            key, value = line.split(":", 1)
            current.setdefault(key, value.strip())
    return records


def text_splits(classes: int = 10, per_class: int = 200) -> TextSplits:
    seen, rows = set(), []
    for package, section, text in sorted(debian_descriptions()):
        key = text.lower()
        if key in seen or len(text.split()) < 3:
            continue
        seen.add(key)
        rows.append((text, section))
    counts = Counter(section for _, section in rows)
    sections = sorted(s for s, _ in counts.most_common(classes))
    rng = random.Random(0)
    rng.shuffle(rows)
    train, test, pool, taken = [], [], [], Counter()
    for text, section in rows:
        if section in sections and taken[section] < 2 * per_class:
            (train if taken[section] % 2 == 0 else test).append((text, section))
            taken[section] += 1
        else:
            pool.append(text)
    digest = hashlib.sha256("\n".join(f"{t}\t{s}" for t, s in sorted(rows)).encode()).hexdigest()[:16]
    source = {"command": "apt-cache dumpavail", "descriptions": len(rows), "sha256_16": digest,
              "classes": classes, "per_class": per_class, "pool": len(pool)}
    return TextSplits(pool, train, test, sections, source)
