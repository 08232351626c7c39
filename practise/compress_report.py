"""The compression report as typed data: what ``compress`` returns and ``report.json`` holds.

Every consumer (Markdown, plot, the CLI's summary, benchmarks) reads attributes of these
dataclasses instead of string keys of a dict. :meth:`CompressReport.to_dict` gives the
JSON layout of ``report.json`` (the same keys in the same order as reports written before
the dataclass existed), and :meth:`CompressReport.from_dict` reads one back, so a
committed report re-renders unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class ModelInfo:
    arch: dict | None
    feature_layer: str
    input_shape: list[int]
    feature_chain: bool


@dataclass
class TinySetInfo:
    size: int
    labelled: bool
    skipped_unreadable: list[str] = field(default_factory=list)
    skipped_non_images: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)   # identifiers of the examples (file names, file:line)
    kind: str | None = None                            # "images" or "texts" (None: images, older reports)


@dataclass
class Candidate:
    """One candidate block: what it is, what dropping it saves, how well it recovers."""

    name: str
    kind: str
    params: int
    flops: int | None                  # None: torch's FLOP counter could not run on the model
    shape: list[int]
    rank: int                          # in the criterion's order, 1 = dropped first
    chosen: bool
    flops_reduction: float | None
    latency_ms_without: float
    latency_reduction: float
    recoverability: float | None       # None: the criterion needed no scoring
    mse_before: float | None
    score: float | None
    scoring_protocol: str | None
    scoring_seconds: float | None
    latency_interval: list[float] | None = None   # 95% interval of latency_reduction (paired repeats)
    latency_group: str | None = None              # first block of its structurally identical group
    latency_tie: int | None = None                # equal numbers: not ordered by the measurement
    removal: str | None = None                    # "identity" (a unit) or "zero" (a sub-layer branch)
    scoring_device: str | None = None             # where its recoverability was computed
    scoring_rank: int | None = None               # by which torchrun rank (0 without torchrun)


@dataclass
class SelectionInfo:
    mode: str                          # "count" or "latency target"
    target: float | None
    num_blocks: int | None
    blocks: list[str]
    predicted_reduction: float
    measured_reduction: float | None
    trials: list[dict] = field(default_factory=list)
    measured_interval: list[float] | None = None  # 95%, from paired repeats


@dataclass
class LatencyInfo:
    settings: dict                     # of the per-block table (LatencySettings.as_dict)
    full_ms: dict                      # LatencyStats as a dict, full model, final measurement
    compressed_ms: dict
    selection_settings: dict
    warning: str | None = None


@dataclass
class SizeBefore:
    params: int
    flops: int | None


@dataclass
class SizeAfter:
    params: int
    flops: int | None
    params_removed: int


@dataclass
class RecoveryInfo:
    method: str
    iterations: int
    lr: float
    loss_first: float | None
    loss_last: float | None
    trained: list[str] | None = None   # the modules whose weights trained (None: all)


@dataclass
class CompressReport:
    practise_version: str
    created: str
    model: ModelInfo
    config: dict                       # CompressConfig as a dict
    tiny_set: TinySetInfo
    candidates: list[Candidate]
    selection: SelectionInfo
    latency: LatencyInfo
    before: SizeBefore
    after: SizeAfter
    recovery: RecoveryInfo
    evaluation: dict | None = None     # evaluation.evaluate_models' result (per model, keyed by name)
    preprocessing: dict | None = None  # Preprocessing.as_dict(), or the transform settings
    timings: dict = field(default_factory=dict)
    evaluation_error: str | None = None
    machine: dict | None = None        # machine.machine_info(): CPU model and measured throughput
    decode: dict | None = None         # causal LMs: per-token decode latency, teacher and compressed (text/decode.py)
    world_size: int | None = None      # processes that scored the candidates (torchrun; 1 without)
    saved: dict | None = None          # token models: the folder's form (stock / practise), why, its reload check
    repair: dict | None = None         # the training-free repair before recovery: method, what each run got
    # criteria that re-score after each drop (iterative.py): per step, the blocks dropped so far,
    # the scores of the blocks re-scored, and the seconds it took
    ranking_steps: list | None = None

    @property
    def has_accuracy(self) -> bool:
        return bool(self.evaluation and "top1" in self.evaluation["teacher"])

    def to_dict(self) -> dict:
        out = asdict(self)
        for path in self._missing:  # optional fields a report read from an older version lacked
            holders = [out] if len(path) == 1 else out[path[0]] if path[0] == "candidates" else [out[path[0]]]
            for holder in holders:
                if holder.get(path[-1]) is None:
                    holder.pop(path[-1], None)
        return out

    # (key,) or (key, subkey) of optional fields absent from the dict this report was read
    # from; a class attribute, not a field (reports made by compress have every field)
    _missing = frozenset()

    @classmethod
    def from_dict(cls, data: dict) -> "CompressReport":
        nested = {"model": ModelInfo, "tiny_set": TinySetInfo, "selection": SelectionInfo, "latency": LatencyInfo,
                  "before": SizeBefore, "after": SizeAfter, "recovery": RecoveryInfo}
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        missing = {(f.name,) for f in fields(cls) if f.name not in data}
        for key, kind in nested.items():
            values[key] = _build(kind, data[key])
            missing |= {(key, f.name) for f in fields(kind) if f.name not in data[key]}
        values["candidates"] = [_build(Candidate, c) for c in data["candidates"]]
        missing |= {("candidates", f.name) for f in fields(Candidate)
                    if any(f.name not in c for c in data["candidates"])}
        report = cls(**values)
        report._missing = frozenset(missing)
        return report


def _build(kind, data: dict):
    """A dataclass from a dict, ignoring keys it does not know (reports of newer versions)."""
    known = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in data.items() if k in known})
