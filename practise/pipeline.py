"""The whole PRACTISE job: candidates -> latency -> recoverability -> selection ->
surgery -> recovery -> evaluation. Returns the compressed model and a typed report.

The ranking criterion is a setting (``CompressConfig.criterion``, a name in
``practise.criteria.CRITERIA``): PRACTISE's score by default; a criterion that needs no
recoverability scores skips the scoring step."""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from .version import __version__
from .blocks import Block, count_flops, count_params, find_blocks
from .compress_report import (Candidate, CompressReport, LatencyInfo, ModelInfo, RecoveryInfo, SelectionInfo,
                              SizeAfter, SizeBefore)
from .criteria import CRITERIA, RankingInputs, rank_blocks
from .data.sources import ImageSource
from .tiny_set import TinySetProtocol
from .data.transforms import Transforms
from .evaluation import evaluate_models
from .features import forward_features
from .model_io import check_finite
from .modes import eval_mode
from .model_output import logits
from .device import resolve_device
from .inputs import example_input
from .latency import LatencyConfig, block_latency_reductions
from .machine import machine_info
from .progress import Progress, silent
from .recovery import RECOVERY_METHODS, RecoveryConfig, neighbours, recover_
from .distributed import current_group, machine_threads
from .scoring import CLOSED_FORM, BlockScore, Scorer, ScoringConfig, block_scores, recoverabilities, resolve_protocol
from .iterative import Rescorer
from .selection import Selection, measure_selection, select_in_order
from .surgery import drop_blocks
from .text.decode import decode_record, is_causal_lm, timing_model
from .text.evaluation import evaluate_text
from .text.model import as_sequence_model, is_token_model, unwrap
from .linear_patch import patch_runs_
from .tracing import check_granularity, check_module_name, feature_chain, find_feature_layer, trace_model
from .errors import PractiseError, UsageError

log = logging.getLogger(__name__)
LINEAR_PATCH = "linear-patch"
REPAIRS = ("auto", "none", LINEAR_PATCH)


@dataclass
class CompressConfig:
    target_latency: float | None = None   # fraction, e.g. 0.22; or give num_blocks
    num_blocks: int | None = None         # the paper's "drop the k best blocks"
    include: list[str] | None = None      # candidate names or glob patterns to consider
    exclude: list[str] | None = None      # ... and to leave alone
    feature_layer: str | None = None      # module whose output is mimicked; None: found automatically
    granularity: str = "layer"            # "layer", or "sublayer": attention / MLP parts of transformer layers
    criterion: str = "practise"           # block ranking: a name in practise.criteria.CRITERIA
    # training-free repair before recovery: "linear-patch" (linear_patch.py: each run of dropped
    # layers replaced by a least-squares map folded into the layer before it), "none", or "auto":
    # the linear patch for token models, none for image models
    repair: str = "auto"
    # criteria that re-score after each drop (practise-iterative): None (default) re-scores every
    # candidate at every step; a number re-scores only that many of lowest added error and the
    # neighbours of the dropped ones (iterative.py). SmolLM2, 64 sequences, seed 0, 12 of 30
    # layers: every candidate 17.6 min, perplexity 130.7 with the patch; shortlist 8 7.9 min, a
    # different set, 164.4 (benchmarks/results/llm_comparison)
    rescore_shortlist: int | None = None
    device: str = "auto"                  # where scoring and recovery run
    seed: int = 0
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)

    def __post_init__(self) -> None:
        if (self.target_latency is None) == (self.num_blocks is None):
            raise UsageError("give exactly one of target_latency (e.g. 0.22) and num_blocks")
        if self.num_blocks is not None and self.num_blocks < 1:
            raise UsageError(f"number of blocks to drop must be at least 1, got {self.num_blocks}")
        criterion = CRITERIA.get(self.criterion)  # an unknown name lists the valid ones
        if criterion.needs_rescoring and self.scoring.protocol not in ("auto", CLOSED_FORM):
            raise UsageError(f"criterion {self.criterion!r} re-scores with closed-form repairs: use scoring protocol "
                             f"'auto' or {CLOSED_FORM!r}, not {self.scoring.protocol!r}")
        check_granularity(self.granularity)
        if self.repair not in REPAIRS:
            raise UsageError(f"unknown repair {self.repair!r}; valid choices: {', '.join(REPAIRS)}")
        if self.rescore_shortlist is not None and self.rescore_shortlist < 1:
            raise UsageError(f"rescore shortlist must be at least 1 (or None: every candidate), "
                             f"got {self.rescore_shortlist}")
        if self.target_latency is not None and not 0 < self.target_latency < 1:
            raise UsageError(f"target latency reduction must be between 0% and 100% (exclusive), "
                             f"got {100 * self.target_latency:g}%")


@dataclass
class CompressResult:
    model: nn.Module
    candidates: list[Block]        # every block that could be dropped (selection.blocks: the dropped ones)
    scores: list[BlockScore]       # empty when the criterion needs no recoverability scores
    selection: Selection
    feature_layer: str
    report: CompressReport


@dataclass
class Inspection:
    """What one traced forward pass tells about a model."""

    blocks: list[Block]
    feature_layer: str
    chain: list[str] | None
    trace: object
    flops: int | None  # of the whole model, one input (None: torch's counter could not run)


def inspect_model(model: nn.Module, sample_shape: tuple[int, ...], include: list[str] | None = None,
                  exclude: list[str] | None = None, feature_layer: str | None = None,
                  granularity: str = "layer") -> Inspection:
    example = example_input(model, sample_shape)
    try:
        trace = trace_model(model, example)
    except RuntimeError as exc:  # shape errors inside the forward: the input does not fit the model
        raise UsageError(f"the model does not run on an input of shape {tuple(sample_shape)} "
                         f"({' '.join(str(exc).split())[:200]}); check `image_size` and `in_channels`") from None
    if feature_layer is not None:
        check_module_name(model, feature_layer, "feature layer")
    layer = feature_layer or find_feature_layer(model, trace)
    with torch.no_grad(), eval_mode(model):  # a forward that returns no logits is refused now, not after scoring
        logits(model, example)
    flops, module_flops = count_flops(model, example)
    blocks = find_blocks(model, example, include, exclude, trace=trace, module_flops=module_flops,
                         granularity=granularity)
    if not blocks and (include or exclude):
        every = trace.candidates(granularity)
        raise UsageError(f"`include`/`exclude` leave no candidate block; the candidates are: "
                         f"{', '.join(every[:30])}{' ...' if len(every) > 30 else ''}")
    if not blocks:
        raise UsageError("no droppable residual blocks found: no module of the model returns its input plus a "
                         "branch output of the same shape (rerun with -v to see the modules considered)")
    return Inspection(blocks, layer, feature_chain(model, trace, layer, example), trace, flops)


def check_against_model(model: nn.Module, sample_shape: tuple[int, ...], config: CompressConfig) -> Inspection:
    """Inspect ``model`` and check what the config asks of it (patterns, feature layer, block count)."""
    info = inspect_model(model, sample_shape, config.include, config.exclude, config.feature_layer,
                         config.granularity)
    names = [b.name for b in info.blocks]
    if config.num_blocks is not None and config.num_blocks > len(names):
        raise UsageError(f"cannot drop {config.num_blocks} blocks: the model has {len(names)} candidates "
                         f"({', '.join(names[:8])}{' ...' if len(names) > 8 else ''})")
    return info


def check_inputs_finite(teacher: nn.Module, tiny_set: TinySetProtocol, feature_layer: str, device: torch.device) -> None:
    """NaN/Inf in the tiny set or in the teacher's features on it, found before any long step."""
    images = tiny_set.eval_tensor()
    bad = (~torch.isfinite(images.flatten(1))).any(1)
    if bool(bad.any()):
        first = int(bad.nonzero()[0])
        raise UsageError(f"tiny-set image {tiny_set.identifiers[first]} is NaN/Inf after normalisation "
                         f"({int(bad.sum())} such images); check the images and `mean`/`std`")
    with torch.no_grad(), eval_mode(teacher):
        features = forward_features(teacher, images[:8].to(device), feature_layer)
    if not bool(torch.isfinite(features).all()):
        raise UsageError(f"the teacher's features ({feature_layer}) are NaN/Inf on the tiny set although its "
                         f"weights are finite: the weights overflow on these inputs (check the normalisation)")


def compress(teacher: nn.Module, tiny_set: TinySetProtocol, config: CompressConfig, *,
             sample_shape: tuple[int, ...] | None = None, eval_source: ImageSource | TinySetProtocol | None = None,
             eval_transforms: Transforms | None = None, workdir: str | Path | None = None,
             progress: Progress = silent) -> CompressResult | None:
    """Run PRACTISE on ``teacher`` (left untouched) with ``tiny_set`` (images, or token
    sequences for a token model: an HF model taking ``input_ids`` is wrapped as a
    ``practise.text.SequenceModel``, and the result's model is that wrapper).

    ``sample_shape`` (one input without the batch dimension) defaults to the tiny set's;
    give it to time and trace at another size (e.g. a longer sequence).
    ``eval_source`` is held-out data of the tiny set's kind, evaluated after recovery: images
    (top-1 and agreement for classifiers), or a text set (``practise.text.build_text_tiny_set``:
    perplexity and next-token agreement for causal LMs, embedding cosine for encoders).
    ``workdir`` keeps the per-block scores so an interrupted run resumes. Under torchrun the
    scoring is spread over the ranks (``practise.distributed``) and only rank 0 returns a
    result (None elsewhere).
    """
    began = time.perf_counter()
    sample_shape = tuple(sample_shape or tiny_set.sample_shape)
    held_out_kind = getattr(eval_source, "kind", "images")
    if eval_source is not None and held_out_kind != tiny_set.kind:
        raise UsageError(f"`eval_source` holds {held_out_kind}, but the tiny set holds {tiny_set.kind}: evaluate "
                         f"on held-out {tiny_set.kind}")
    device = resolve_device(config.device)
    if RECOVERY_METHODS[config.recovery.method].needs_labels:
        tiny_set.label_tensor()  # fail before the long steps if labels are missing
    check_finite(teacher.state_dict(), "the teacher's weights")
    # an HF token model (BertModel, LlamaForCausalLM, ...) is taken as is: ids and mask packed in one tensor
    teacher = as_sequence_model(copy.deepcopy(teacher)).to(device).eval()
    config = resolve_auto_settings(config, teacher)
    timed = timing_model(teacher, config.latency.metric)  # what latency is measured on: prefill, or a decode step
    info = check_against_model(teacher, sample_shape, config)
    names = [b.name for b in info.blocks]
    check_inputs_finite(teacher, tiny_set, info.feature_layer, device)
    log.info("%d candidate blocks; feature layer %s; %s", len(names), info.feature_layer,
             "feature chain found" if info.chain else "no feature chain (full passes while scoring)")
    timings = {}
    group = current_group()  # one process, or every rank of a torchrun group
    done, scorer = None, None
    if CRITERIA.get(config.criterion).needs_scores:
        t = time.perf_counter()
        scorer = Scorer(teacher, tiny_set, info.trace, info.chain, info.feature_layer, config.scoring,
                        group.device(device))
        cache = Path(workdir) / "scores.json" if workdir is not None else None
        done = recoverabilities(scorer, names, cache, progress, group)
        timings["scoring_s"] = time.perf_counter() - t
    if not group.is_main:
        return None  # rank 0 measures latency (the other ranks idle), selects, recovers and reports
    machine_threads()
    t = time.perf_counter()
    r_b, block_latency, latency_settings = block_latency_reductions(timed, sample_shape, names, config.latency,
                                                                    progress)
    timings["block_latency_s"] = time.perf_counter() - t
    scores = block_scores(done, names, r_b, config.scoring.iterations) if done is not None else []
    t = time.perf_counter()
    inputs = ranking_inputs(config.criterion, names, r_b, scores, teacher, tiny_set, config, scorer, progress)
    order = rank_blocks(config.criterion, inputs)
    timings["ranking_s"] = time.perf_counter() - t
    t = time.perf_counter()
    selection = select(timed, sample_shape, order, r_b, config, progress)
    timings["selection_s"] = time.perf_counter() - t
    if selection.timing_warning:
        log.warning(selection.timing_warning)
    student = drop_blocks(teacher, selection.blocks)
    patches = None
    if config.repair == LINEAR_PATCH:
        t = time.perf_counter()
        patches = patch_runs_(student, teacher, info.trace.candidates(), selection.blocks,
                              tiny_set.eval_tensor().to(device), config.scoring.ridge, config.scoring.eval_batch_size,
                              fit_scale=config.scoring.fit_scale)
        timings["repair_s"] = time.perf_counter() - t
    t = time.perf_counter()
    trainable = neighbours(names, selection.blocks) if config.recovery.scope == "neighbours" else None
    if trainable is not None:
        log.info("recovery trains only the blocks next to the dropped ones: %s", ", ".join(trainable))
    losses = recover_(student, teacher, tiny_set, info.feature_layer, config.recovery, device, progress, trainable)
    timings["recovery_s"] = time.perf_counter() - t
    student.eval()
    evaluation, evaluation_error = None, None
    if eval_source is not None:
        t = time.perf_counter()
        try:
            evaluation = evaluate_held_out(teacher, student, tiny_set, eval_source, eval_transforms, device)
        except PractiseError as exc:  # e.g. no readable image: keep the finished work, say why accuracy is missing
            log.warning("evaluation failed, the result is reported without accuracy: %s", exc)
            evaluation_error = str(exc)
        timings["evaluation_s"] = time.perf_counter() - t
    decode = None
    if is_causal_lm(unwrap(teacher)):  # what a chat user waits for per token, beside the prefill selected by
        t = time.perf_counter()
        decode = decode_record(unwrap(teacher), unwrap(student), sample_shape[-1])
        timings["decode_latency_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - began
    report = build_report(teacher, student, sample_shape, info, order, r_b, scores, selection, config, tiny_set,
                          losses, evaluation, block_latency, latency_settings, timings)
    report.evaluation_error, report.decode = evaluation_error, decode
    report.repair = {"method": config.repair, "runs": [asdict(p) for p in patches]} if patches is not None else None
    report.ranking_steps = inputs.rescore.steps if isinstance(inputs.rescore, Rescorer) else None
    return CompressResult(student, info.blocks, scores, selection, info.feature_layer, report)


def resolve_auto_settings(config: CompressConfig, teacher: nn.Module) -> CompressConfig:
    """``config`` with its "auto" choices made for ``teacher``: the repair (the linear patch for
    token models), the scoring protocol, and the closed-form map scored the way the repair works."""
    repair = config.repair if config.repair != "auto" else LINEAR_PATCH if is_token_model(teacher) else "none"
    scoring = config.scoring
    if CRITERIA.get(config.criterion).needs_rescoring and scoring.protocol == "auto":
        scoring = dataclasses.replace(scoring, protocol=CLOSED_FORM)  # its repairs are closed-form fits
    if scoring.linear_map == "auto":
        scoring = dataclasses.replace(scoring, linear_map="folded" if repair == LINEAR_PATCH else "in-place")
    return dataclasses.replace(config, repair=repair, scoring=resolve_protocol(scoring, teacher))


def evaluate_held_out(teacher: nn.Module, student: nn.Module, tiny_set: TinySetProtocol, eval_source,
                      eval_transforms: Transforms | None, device: torch.device) -> dict:
    """Top-1 and agreement on held-out images; perplexity / embedding similarity on held-out text."""
    if tiny_set.kind == "texts":
        return evaluate_text(teacher, student, eval_source.eval_tensor(), device=device)
    return evaluate_models({"teacher": teacher, "compressed": student}, eval_source,
                           eval_transforms or tiny_set.transforms, device,  # type: ignore[attr-defined]
                           reference="teacher")


def ranking_inputs(criterion: str, names: list[str], r_b: dict[str, float], scores: list[BlockScore], teacher: nn.Module,
                   tiny_set: TinySetProtocol, config: CompressConfig, scorer: Scorer | None = None,
                   progress: Progress = silent) -> RankingInputs:
    """Everything ``criterion`` ranks from (the tiny set's images only if it asks for them; a
    re-scorer built on ``scorer`` if it re-scores after each drop)."""
    wanted = CRITERIA.get(criterion)
    device = next(teacher.parameters()).device
    by_block = {s.block: s.score for s in scores} if scores else None
    rescore = Rescorer(scorer, r_b, progress, config.rescore_shortlist, by_block) \
        if wanted.needs_rescoring and scorer is not None else None
    return RankingInputs(names, r_b, seed=config.seed, scores=by_block,
                         model=teacher, images=tiny_set.eval_tensor().to(device) if wanted.needs_images else None,
                         batch_size=config.scoring.eval_batch_size, target_latency=config.target_latency,
                         num_blocks=config.num_blocks, rescore=rescore)


def select(teacher: nn.Module, sample_shape: tuple[int, ...], order: list[str], r_b: dict[str, float],
           config: CompressConfig, progress: Progress) -> Selection:
    """The first ``num_blocks`` of ``order``, or the shortest prefix reaching the latency target."""
    if config.num_blocks is not None:
        chosen = order[:config.num_blocks]
        return measure_selection(teacher, sample_shape, Selection(chosen, sum(r_b[b] for b in chosen)),
                                 config.latency, progress)
    return select_in_order(teacher, sample_shape, order, r_b, config.target_latency, config.latency, progress)


def build_report(teacher, student, sample_shape, info: Inspection, order: list[str], r_b: dict[str, float],
                 scores: list[BlockScore], selection: Selection, config: CompressConfig, tiny_set: TinySetProtocol, losses,
                 evaluation, block_latency, latency_settings, timings) -> CompressReport:
    example = example_input(teacher, sample_shape)
    flops_before = info.flops
    flops_after, _ = count_flops(student, example)
    chosen = set(selection.blocks)
    by_name = {s.block: s for s in scores}
    blocks = {b.name: b for b in info.blocks}
    candidates = []
    for rank, name in enumerate(order, 1):
        block, s, lat = blocks[name], by_name.get(name), block_latency[name]
        candidates.append(Candidate(
            **block.as_dict(), rank=rank, chosen=name in chosen,
            flops_reduction=block.flops / flops_before if flops_before and block.flops is not None else None,
            latency_ms_without=lat.ms_without, latency_reduction=r_b[name],
            recoverability=s.recoverability if s else None, mse_before=s.mse_before if s else None,
            score=s.score if s else None, scoring_protocol=s.protocol if s else None,
            scoring_seconds=s.seconds if s else None, scoring_device=s.device if s else None,
            scoring_rank=s.rank if s else None, latency_interval=[lat.low, lat.high],
            latency_group=lat.group, latency_tie=lat.tie))
    return CompressReport(
        practise_version=__version__, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        model=ModelInfo(getattr(teacher, "practise_arch", None), info.feature_layer, list(sample_shape),
                        info.chain is not None),
        config=asdict(config),
        tiny_set=tiny_set.info(),
        candidates=candidates,
        selection=SelectionInfo("count" if config.num_blocks is not None else "latency target", config.target_latency,
                                config.num_blocks, selection.blocks, selection.predicted_reduction,
                                selection.measured_reduction, selection.trials,
                                list(selection.measured_interval) if selection.measured_interval else None),
        latency=LatencyInfo(latency_settings.as_dict(), asdict(selection.full_latency),
                            asdict(selection.pruned_latency), selection.latency_settings.as_dict(),
                            selection.timing_warning),
        before=SizeBefore(count_params(teacher), flops_before),
        after=SizeAfter(count_params(student), flops_after, sum(b.params for b in info.blocks if b.name in chosen)),
        recovery=RecoveryInfo(config.recovery.method, config.recovery.iterations, config.recovery.resolved_lr,
                              losses[0] if losses else None, losses[-1] if losses else None,
                              neighbours([b.name for b in info.blocks], selection.blocks)
                              if config.recovery.scope == "neighbours" else None),
        evaluation=evaluation,
        preprocessing=tiny_set.preprocessing_record(),
        timings=timings, machine=machine_info(), world_size=current_group().world_size)
