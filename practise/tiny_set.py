"""What every tiny set offers the pipeline, whatever it holds (images or token sequences).

Scoring, recovery, criteria and the report read a tiny set only through this protocol,
so an image set (:class:`practise.data.TinySet`) and a text set
(:class:`practise.text.TextTinySet`) are interchangeable in ``compress(model, tiny_set,
config)``. ``sample_shape`` is one input without the batch dimension: (C, H, W) for
images, (2, tokens) for token ids and mask; latency and tracing use it.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from .compress_report import TinySetInfo


@runtime_checkable
class TinySetProtocol(Protocol):
    labels: list[int] | None
    identifiers: list[str]   # where each example came from (file names, file:line)
    kind: str                # "images" or "texts": what the report calls the examples

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One input without the batch dimension."""
        ...

    def __len__(self) -> int: ...

    def eval_tensor(self) -> torch.Tensor:
        """Every example as the model takes it at evaluation (no augmentation), batched."""
        ...

    def train_batch(self, indices: list[int], generator: torch.Generator) -> torch.Tensor:
        """The examples at ``indices`` as the model takes them in training (augmented where that applies)."""
        ...

    def label_tensor(self) -> torch.Tensor:
        """The labels as a tensor; a UsageError naming what to give when the set has none."""
        ...

    def preprocessing_record(self) -> dict:
        """How the examples were turned into tensors (recorded in the report and model file)."""
        ...

    def info(self) -> TinySetInfo:
        """What the report says about the set: size, labels, what was skipped and why."""
        ...
