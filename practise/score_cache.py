"""The score cache: finished recoverabilities on disk, so an interrupted run resumes.

One JSON file ``{"fingerprint": ..., "blocks": {block: ScoreRecord}}``; under torchrun each
rank writes its own file beside it (``<name>.rank<r>``), merged by rank 0 at the end. The
fingerprint names what the scores depend on (the weights' exact bytes, the examples, the
settings, the feature layer): a cache written for anything else is ignored, with a warning.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .files import atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class ScoreRecord:
    """One finished block."""

    recoverability: float      # R_b: feature MSE with the block dropped and the adaptors trained
    mse_before: float | None   # the same MSE before the adaptors were trained (None: not measured)
    protocol: str              # "cached", "cached-full" or "paper"
    seconds: float             # wall time of this block's scoring
    device: str | None = None  # where it was scored
    rank: int | None = None    # which torchrun rank scored it

    @classmethod
    def from_dict(cls, data: dict) -> "ScoreRecord":
        """A record read from a file, checked field by field (a TypeError/KeyError if malformed)."""
        before = data["mse_before"]
        numbers = [data["recoverability"], data["seconds"]] + ([before] if before is not None else [])
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers) \
                or not isinstance(data["protocol"], str):
            raise TypeError("malformed score record")
        return cls(float(data["recoverability"]), None if before is None else float(before), data["protocol"],
                   float(data["seconds"]), data.get("device"), data.get("rank"))


# Weights are fingerprinted by their exact bytes, never by float sums: a float sum's rounding
# depends on the thread count and the CPU's vector width, and a cache must stay valid when a
# rerun (or a torchrun rank) uses other threads. Tensors up to 64 MiB are hashed whole; larger
# ones (LLM weights) by evenly spread chunks plus an exact integer sum of all their words.
_WHOLE_BYTES, _CHUNKS, _CHUNK_BYTES = 64 << 20, 1024, 4096


def _tensor_digest(digest, value: torch.Tensor) -> None:
    data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
    if data.size <= _WHOLE_BYTES:
        digest.update(data)  # the buffer itself: no copy
        return
    stride = (data.size - _CHUNK_BYTES) // (_CHUNKS - 1)
    for i in range(_CHUNKS):
        digest.update(data[i * stride:i * stride + _CHUNK_BYTES])
    words = data[:data.size // 4 * 4].view(np.uint32)
    digest.update(str(int(words.sum(dtype=np.uint64))).encode())


def fingerprint(state_dict: dict[str, torch.Tensor], identifiers: list[str], settings: dict, feature_layer: str) -> str:
    """What cached scores were computed for; the same on any thread count."""
    digest = hashlib.sha256(b"v2")
    for key, value in state_dict.items():
        digest.update(key.encode())
        _tensor_digest(digest, value)
    digest.update("\n".join(identifiers).encode())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(feature_layer.encode())
    return digest.hexdigest()[:16]


def load_score_cache(path: Path | None, key: str) -> dict[str, ScoreRecord]:
    """The finished blocks in ``path`` if it was written for fingerprint ``key``."""
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        blocks = {name: ScoreRecord.from_dict(record) for name, record in data.get("blocks", {}).items()}
    except (ValueError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
        # our own work file, damaged (e.g. edited): rescore rather than fail or trust it
        log.warning("ignoring %s: it is not a readable score cache; the blocks are scored again", path)
        return {}
    if data.get("fingerprint") != key:
        log.warning("ignoring %s: it was computed for other weights, images or settings", path)
        return {}
    return blocks


def write_score_cache(path: Path, key: str, blocks: dict[str, ScoreRecord]) -> None:
    atomic_write_text(path, json.dumps({"fingerprint": key, "blocks": {b: asdict(r) for b, r in blocks.items()}},
                                       indent=1))


def rank_cache_path(path: Path, rank: int) -> Path:
    """The work file one rank of a torchrun group writes its finished blocks to."""
    return path.with_name(f"{path.name}.rank{rank}")


def load_all_caches(path: Path | None, key: str) -> dict[str, ScoreRecord]:
    """The blocks finished in ``path`` and in every rank's work file beside it."""
    if path is None:
        return {}
    done = load_score_cache(path, key)
    for rank_file in sorted(path.parent.glob(f"{path.name}.rank*")):
        done.update(load_score_cache(rank_file, key))
    return done
