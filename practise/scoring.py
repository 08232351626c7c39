"""Recoverability of each candidate block, and the PRACTISE score R_b / r_b.

For block b: copy the teacher, drop b, insert identity-initialised adaptors around it
(see adaptors.py), train only the adaptors to make the student's pre-pooling features
match the teacher's (MSE, both networks in eval mode), then R_b = that MSE over the
tiny set under the evaluation transform.

Two protocols, chosen by ``ScoringConfig.protocol``:

* ``"cached"`` (default): training batches come from the evaluation-transformed tiny
  set, so the teacher's targets and the frozen layers before the first adaptor are
  computed once, and each step runs only the rest of the network. Needs a feature
  chain (see tracing.feature_chain); falls back to full passes otherwise.
* ``"paper"``: the authors' loop: augmented batches, a full teacher and student
  forward pass every step.

Scores are written to ``cache_path`` after each block (``score_cache.py``), so an
interrupted run resumes without recomputing finished blocks.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .adaptors import adaptor_sites, insert_adaptors_
from .tiny_set import TinySetProtocol
from .text.model import is_token_model
from .distributed import ScoringGroup, current_group
from .features import as_format, feature_error, feature_mse, forward_features, run_chain
from .inputs import batches_by_length, token_mask, used_length
from .score_cache import ScoreRecord, fingerprint, load_all_caches, rank_cache_path, write_score_cache
from .modes import eval_mode, flush_denormals, on_device
from .precision import autocast, check_autocast
from .optim import batch_indices, check_sgd_settings, set_lr_, step_lr
from .progress import Progress, silent
from .surgery import copy_plain_attributes_, drop_module_, replace_module_, stand_in
from .call_structure import IDENTITY, removal_for
from .closed_form import GLOBAL_SCALE, TOKEN_SCALE, LinearStandIn, TeacherPass, patch_key, teacher_pass
from .linear_patch import find_fold_sites, fold_
from .prefix_skip import PrefixSkip, entry_unit, reproduces_teacher
from .tracing import ModelTrace
from .errors import UsageError

log = logging.getLogger(__name__)
CLOSED_FORM, AUTO = "closed-form", "auto"
PROTOCOLS = (AUTO, "cached", "paper", CLOSED_FORM)
# closed-form: where the fitted map goes: in the dropped block's place (the adaptor PRACTISE
# trains), or folded into the unit before it (linear_patch.py: the repair compress applies)
IN_PLACE, FOLDED = "in-place", "folded"
LINEAR_MAPS = (AUTO, IN_PLACE, FOLDED)
# closed-form fits (and the linear patch): "global": plain least squares, the ridge relative to
# the mean input energy per channel; "token": each token's error relative to its RMS (what the
# next RMSNorm / LayerNorm divides by) and the ridge relative to each input channel's energy,
# so an LLM's few channels of huge magnitude (massive activations) do not set the fit
FIT_SCALES = (AUTO, GLOBAL_SCALE, TOKEN_SCALE)
# settings added after score caches were first written: left out of the fingerprint while
# they are off, so caches written before them stay valid
CLOSED_FORM_ONLY = ("ridge", "closed_form_before", "linear_map", "fit_scale")
LATER_SETTINGS = {"autocast": (None,), "ridge": (1e-3,), "eval_examples": (None,), "closed_form_before": (False,),
                  "linear_map": (AUTO, IN_PLACE),  # the closed-form map stood in place before it could be folded
                  "fit_scale": (AUTO, GLOBAL_SCALE)}  # (auto is global for image models)


@dataclass
class ScoringConfig:
    iterations: int = 1000      # SGD steps per block; the authors used 1000-2000
    batch_size: int = 64        # paper
    lr: float = 0.02            # paper
    momentum: float = 0.9       # paper
    weight_decay: float = 1e-4  # paper
    lr_drop_at: float = 0.4     # x0.1 step decay after this fraction of iterations (paper)
    protocol: str = AUTO        # see module docstring; auto: resolve_protocol's choice per model kind
    seed: int = 0
    eval_batch_size: int = 256
    # Memory layout only (results equal up to float rounding): about 25-30% faster adaptor
    # training on CPU in benchmarks/scoring_speed.py's setting.
    channels_last: bool = True
    # "bfloat16": adaptor training passes under torch.autocast (weights, targets and the final
    # R_b stay float32); fast on CPUs with AVX512-BF16 / AMX. None: float32 throughout.
    autocast: str | None = None
    # "closed-form" protocol (and the linear-patch repair): ridge strength, relative to the mean
    # input energy per channel; None: chosen per map by cross-validation over the tiny set
    ridge: float | None = None
    # R_b (the final feature MSE) over the first this many examples of the tiny set (None: all);
    # adaptors are still trained / fitted on all of them. Saves passes where they dominate.
    eval_examples: int | None = None
    # "closed-form": also measure the MSE with the block dropped outright (one more pass of the
    # network after it per candidate; otherwise mse_before is not recorded)
    closed_form_before: bool = False
    # "closed-form": a name in LINEAR_MAPS; auto: folded for token models (whose compress repair
    # is the linear patch by default), in place otherwise
    linear_map: str = AUTO
    # "closed-form" and the linear patch: a name in FIT_SCALES; auto: token for token models
    # (benchmarks/results/patch_fit_scale: a 12-layer span's patch 3,766 -> 278 held-out
    # perplexity on SmolLM2), global otherwise (what image-model scores were measured with)
    fit_scale: str = AUTO

    def __post_init__(self) -> None:
        if self.ridge is not None and not self.ridge > 0:
            raise UsageError(f"scoring: ridge must be positive (or None: cross-validated), got {self.ridge}")
        if self.linear_map not in LINEAR_MAPS:
            raise UsageError(f"unknown closed-form linear map {self.linear_map!r}; valid choices: "
                             f"{', '.join(LINEAR_MAPS)}")
        if self.fit_scale not in FIT_SCALES:
            raise UsageError(f"unknown closed-form fit scale {self.fit_scale!r}; valid choices: {', '.join(FIT_SCALES)}")
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"unknown scoring protocol {self.protocol!r}; valid choices: {', '.join(PROTOCOLS)}")
        check_sgd_settings("scoring", self.iterations, 1, self.batch_size, self.lr, self.momentum,
                           self.weight_decay, self.lr_drop_at)
        if self.eval_examples is not None and self.eval_examples < 1:
            raise UsageError(f"scoring: eval_examples must be at least 1 (or None: all), got {self.eval_examples}")
        if self.eval_batch_size < 1:
            raise UsageError(f"scoring: eval_batch_size must be at least 1, got {self.eval_batch_size}")
        check_autocast(self.autocast, "scoring")


@dataclass
class ClosedFormRepair:
    """A dropped block's closed-form stand-in: ``replacement`` in its place, and a linear
    patch ``fold`` = (linear layer, map) folded into the kept unit ``start`` before it (None:
    the map stands in place, or there is nowhere to fold)."""

    replacement: nn.Module
    start: str | None = None
    fold: tuple[str, torch.Tensor] | None = None

    def apply_(self, model: nn.Module, block: str) -> None:
        """Make the repair permanent in ``model``."""
        copy_plain_attributes_(model.get_submodule(block), self.replacement)
        replace_module_(model, block, self.replacement)
        if self.fold is not None:
            fold_(model.get_submodule(self.fold[0]), self.fold[1])


@dataclass
class BlockScore:
    block: str
    recoverability: float       # feature MSE after adaptor training (R_b)
    mse_before: float | None    # feature MSE with the block dropped, adaptors at identity (None: not measured)
    latency_reduction: float    # r_b as a fraction of the full model's latency
    score: float                # R_b / r_b; +inf when the measured saving is not positive
    protocol: str
    iterations: int
    seconds: float
    device: str | None = None   # where it was scored (None: caches written before this was recorded)
    rank: int | None = None     # which torchrun rank scored it


def resolve_protocol(config: ScoringConfig, model: nn.Module) -> ScoringConfig:
    """``config`` with "auto" made concrete for ``model``: closed-form for token models (trained
    adaptors cost hundreds of partial passes per layer, too slow for LLMs on a CPU), cached for
    image models (it agrees best with the authors' protocol: benchmarks/results/scoring_speed)."""
    if config.protocol == AUTO:
        config = dataclasses.replace(config, protocol=CLOSED_FORM if is_token_model(model) else "cached")
    if config.protocol == CLOSED_FORM and config.linear_map == AUTO:
        config = dataclasses.replace(config, linear_map=FOLDED if is_token_model(model) else IN_PLACE)
    if config.fit_scale == AUTO:
        config = dataclasses.replace(config, fit_scale=TOKEN_SCALE if is_token_model(model) else GLOBAL_SCALE)
    return config


def practise_score(recoverability: float, latency_reduction: float) -> float:
    return recoverability / latency_reduction if latency_reduction > 0 else math.inf


@torch.no_grad()
def _batched(fn, x: torch.Tensor, batch: int) -> torch.Tensor:
    # copies, not views: a model whose first layer works in place must not alter the cache
    return torch.cat([fn(x[i:i + batch].clone()) for i in range(0, x.shape[0], batch)])


class _Student:
    """The teacher copy with one block dropped and adaptors inserted, plus how to run it."""

    def __init__(self, teacher: nn.Module, block: str, trace: ModelTrace, chain: list[str] | None,
                 feature_layer: str, memory_format: torch.memory_format = torch.contiguous_format):
        self.model = copy.deepcopy(teacher)
        units = chain if chain is not None and block in chain else trace.call_order
        sites = adaptor_sites(teacher, block, trace, units)
        drop_module_(self.model, block)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.adaptors = insert_adaptors_(self.model, sites)
        self.model.to(memory_format=memory_format)
        self.sites = sites
        self.feature_layer = feature_layer
        self.start = None  # chain index where cached inputs enter
        if chain is not None and block in chain:
            touched = [block] + [s.module for s in sites]
            positions = [i for i, u in enumerate(chain) if any(t == u or t.startswith(u + ".") for t in touched)]
            self.start = min(positions)
            self.suffix = [self.model.get_submodule(u) for u in chain[self.start:]]

    def parameters(self) -> list[nn.Parameter]:
        return [p for a in self.adaptors for p in a.parameters()]

    def features_from_cache(self, cached: torch.Tensor) -> torch.Tensor:
        return run_chain(self.suffix, cached)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return forward_features(self.model, x, self.feature_layer)


class Scorer:
    """Scores blocks of one teacher on one tiny set; holds the caches shared by blocks."""

    def __init__(self, teacher: nn.Module, tiny_set: TinySetProtocol, trace: ModelTrace, chain: list[str] | None,
                 feature_layer: str, config: ScoringConfig, device: torch.device | str = "cpu",
                 targets: torch.Tensor | None = None, dropped: list[str] | tuple[str, ...] = ()):
        """``targets``: the features R_b is measured against (default: ``teacher``'s own);
        ``dropped``: units of ``trace`` already replaced in ``teacher`` (iterative selection
        scores a partly pruned network against the original teacher's features; a linear
        patch then folds into the kept unit before a run of them)."""
        self.teacher = teacher = on_device(teacher, device)  # the caller's teacher stays where it is
        self.device = torch.device(device)
        self.tiny_set, self.trace, self.chain = tiny_set, trace, chain
        self.feature_layer, self.config = feature_layer, resolve_protocol(config, teacher)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.eval_images = as_format(tiny_set.eval_tensor().to(self.device), self.memory_format)
        # the examples R_b is measured on: the first eval_examples (all by default)
        self.eval_count = min(self.config.eval_examples or len(self.eval_images), len(self.eval_images))
        # the features R_b is measured against (default the teacher's; closed-form gathers them itself)
        self._targets: torch.Tensor | None = targets
        self.dropped = list(dropped)
        # real-token weights of each tiny-set example (None for images): padding is not mimicked
        self.masks = token_mask(teacher, self.eval_images)
        self._prefix_cache: tuple[int, torch.Tensor] | None = None
        self._teacher_pass: TeacherPass | None = None  # closed-form protocol: gathered once
        self._bench: nn.Module | None = None  # closed-form: one teacher copy candidates are swapped into
        self._skip_works: bool | None = None  # closed-form without a chain: prefix skipping verified?
        self._patch_sites: dict[str, tuple[str, str]] = {}  # closed-form, folded: block -> (unit, layer)

    @property
    def targets(self) -> torch.Tensor:
        if self._targets is None:
            with eval_mode(self.teacher):
                self._targets = _batched(lambda x: forward_features(self.teacher, x, self.feature_layer),
                                         self.eval_images, self.config.eval_batch_size)
        return self._targets

    def _cached_inputs(self, start: int) -> torch.Tensor:
        """Teacher activations entering chain unit ``start``; one cache kept at a time."""
        if self._prefix_cache is None or self._prefix_cache[0] != start:
            prefix = [self.teacher.get_submodule(u) for u in self.chain[:start]]
            with eval_mode(self.teacher):
                cached = _batched(lambda x: run_chain(prefix, x), self.eval_images, self.config.eval_batch_size)
            self._prefix_cache = (start, as_format(cached, self.memory_format))
        return self._prefix_cache[1]

    def _generator(self, block: str) -> torch.Generator:
        # Seeded per block so scores do not depend on the order blocks are scored in.
        return torch.Generator().manual_seed(self.config.seed * 1_000_003 + zlib.crc32(block.encode()))

    def recoverability(self, block: str, progress: Progress = silent) -> tuple[float, float, str]:
        """(R_b, MSE before training, how it ran) for one block.

        How it ran: "cached" (fixed batches, frozen prefix skipped), "cached-full" (fixed
        batches, full student passes: no feature chain through this block), "paper", or
        "closed-form" (the unit replaced by its least-squares linear map; closed_form.py).
        """
        if self.config.protocol == CLOSED_FORM:
            result = self._closed_form(block)
            progress.advance(self.config.iterations)
            return result
        student = _Student(self.teacher, block, self.trace, self.chain, self.feature_layer, self.memory_format)
        fixed_batches = self.config.protocol == "cached"
        skip_prefix = fixed_batches and student.start is not None
        if fixed_batches and not skip_prefix:
            log.info("%s: no feature chain through this block; running full student passes", block)
        inputs = self._cached_inputs(student.start) if skip_prefix else self.eval_images
        run = student.features_from_cache if skip_prefix else student.features
        with eval_mode(student.model, self.teacher), flush_denormals():
            before = self._final_mse(run, inputs)
            self._train(student, run, inputs, fixed_batches, block, progress)
            after = self._final_mse(run, inputs)
        if not math.isfinite(after):
            log.warning("%s: adaptor training diverged (feature MSE %s); scored as unrecoverable. "
                        "A lower scoring lr may help.", block, after)
            after = math.inf
        return after, before, ("cached" if skip_prefix else "cached-full") if fixed_batches else "paper"

    def _closed_form(self, block: str) -> tuple[float, float | None, str]:
        """R_b with ``block`` replaced by its least-squares linear map (closed_form.py), in
        place of the block or folded into the unit before it (``linear_map``); only the network
        after that point runs for each candidate (a feature chain, or prefix_skip.py)."""
        repair = self.closed_form_repair(block)
        after = self._mse_with(block, repair.replacement, start=repair.start, fold=repair.fold)
        before = self._mse_with(block, stand_in(self.teacher, block)) if self.config.closed_form_before else None
        return (after if math.isfinite(after) else math.inf), before, CLOSED_FORM

    def closed_form_repair(self, block: str) -> "ClosedFormRepair":
        """What stands for ``block`` when it is dropped and repaired in closed form (fitted on
        this scorer's model as it is)."""
        gathered = self._gather_closed_form()
        if block not in gathered.statistics.xtx:
            raise RuntimeError(f"{block}: no input/output of the same shape was recorded for the closed-form fit")
        if self.config.linear_map == FOLDED:
            site = self._patch_sites.get(block)
            if site is None:  # nothing before it to fold into: the block is dropped outright, as the repair will
                return ClosedFormRepair(stand_in(self.teacher, block))
            unit, linear = site
            transform = gathered.statistics.fit(patch_key(block), True, self.config.ridge, self._token_scaled)
            return ClosedFormRepair(stand_in(self.teacher, block), unit, (linear, transform.to(self.device)))
        removal = removal_for(self.teacher, block)
        weight = gathered.statistics.fit(block, removal.how == IDENTITY, self.config.ridge, self._token_scaled)
        return ClosedFormRepair(LinearStandIn(weight.to(self.device), removal.structure))

    def _gather_closed_form(self) -> TeacherPass:
        if self._teacher_pass is None:  # every unit and branch at once: one teacher pass for all blocks
            fitted = sorted(set(self.trace.units) | set(self.trace.branches))
            entries = self.trace.candidates() if self.chain is None else []
            self._patch_sites = self._find_patch_sites() if self.config.linear_map == FOLDED else {}
            with eval_mode(self.teacher), flush_denormals():
                self._teacher_pass = teacher_pass(self.teacher, self.feature_layer, fitted, entries, self.eval_images,
                                                  self.masks, self.config.eval_batch_size, self.eval_count,
                                                  {b: linear for b, (_, linear) in self._patch_sites.items()},
                                                  relative=self._token_scaled)
            self._targets = self._targets if self._targets is not None else self._teacher_pass.targets
            self._bench = copy.deepcopy(self.teacher)
            cached = self._teacher_pass.entry_inputs
            if cached:  # checked once, on the deepest entry (the most layers skipped), against the model's own pass
                deepest = max(cached, key=self.trace.call_order.index)
                with eval_mode(self._bench):
                    self._skip_works = reproduces_teacher(
                        PrefixSkip.for_trace(self._bench, self.trace, deepest, cached[deepest]),
                        lambda x: forward_features(self._bench, x, self.feature_layer), self.eval_images,
                        self._teacher_pass.targets, self.masks)
        return self._teacher_pass

    @property
    def _token_scaled(self) -> bool:
        """Token-scaled fits (FIT_SCALES): relative errors and a per-channel ridge go together."""
        return self.config.fit_scale == TOKEN_SCALE

    def _find_patch_sites(self) -> dict[str, tuple[str, str]]:
        """block -> (the kept layer-level unit before it, past any dropped ones, and the linear
        layer inside that unit a linear patch folds into), where there is one
        (linear_patch.find_fold_sites)."""
        gone = set(self.dropped)
        kept = [u for u in self.trace.candidates() if u not in gone]
        with eval_mode(self.teacher):
            sites = find_fold_sites(self.teacher, kept, self.eval_images[:2].clone())
        return {b: (p, sites[p]) for p, b in zip(kept, kept[1:]) if p in sites}

    def _mse_with(self, block: str, replacement: nn.Module, start: str | None = None,
                  fold: tuple[str, torch.Tensor] | None = None) -> float:
        """R_b over the evaluated examples with ``replacement`` in ``block``'s place (and a
        linear patch ``fold`` = (layer, map) folded into an earlier unit ``start``, from where
        the network is run)."""
        start = start or block
        bench, original = self._bench, replace_module_(self._bench, block, replacement)
        saved = None
        if fold is not None:
            layer = bench.get_submodule(fold[0])
            saved = {k: v.detach().clone() for k, v in layer.named_parameters(recurse=False)}
            fold_(layer, fold[1])
        try:
            with eval_mode(bench), flush_denormals(), autocast(self.device, self.config.autocast):
                if self.chain is not None and start in self.chain:
                    suffix = [bench.get_submodule(u) for u in self.chain[self.chain.index(start):]]
                    return self._final_mse(lambda x: run_chain(suffix, x),
                                           self._cached_inputs(self.chain.index(start)))
                skip = self._prefix_skip(start)
                features = (lambda x: forward_features(bench, x, self.feature_layer))
                if skip is None:
                    return self._final_mse(features, self.eval_images)
                with skip.active():
                    return self._final_mse(features, self.eval_images, skip)
        finally:
            replace_module_(bench, block, original)
            if saved is not None:
                with torch.no_grad():
                    for k, v in bench.get_submodule(fold[0]).named_parameters(recurse=False):
                        v.copy_(saved[k])

    def _prefix_skip(self, block: str) -> PrefixSkip | None:
        """Skipping for ``block`` when it lies in a layer-level unit and skipping was verified."""
        entry = entry_unit(self.trace, block)
        cached = self._teacher_pass.entry_inputs if self._teacher_pass is not None else {}
        if not self._skip_works or entry not in cached:
            return None
        return PrefixSkip.for_trace(self._bench, self.trace, entry, cached[entry])

    def _train(self, student: _Student, run, inputs: torch.Tensor, fixed_batches: bool, block: str,
               progress: Progress) -> None:
        config = self.config
        optimizer = torch.optim.SGD(student.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
        generator = self._generator(block)
        batches = batch_indices(inputs.shape[0], config.batch_size, generator)
        for step in range(config.iterations):
            set_lr_(optimizer, step_lr(step, config.lr, config.lr_drop_at, config.iterations))
            idx = next(batches)
            mask = self.masks[idx] if self.masks is not None else None
            if fixed_batches:
                x, target = inputs[idx], self.targets[idx]
            else:  # the authors' loop: augmented batch, teacher run every step
                x = as_format(self.tiny_set.train_batch(idx.tolist(), generator).to(self.device), self.memory_format)
                with torch.no_grad():
                    target = forward_features(self.teacher, x, self.feature_layer)
            with autocast(self.device, self.config.autocast):
                out = run(x)
            loss = feature_mse(out, target, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            progress.advance(1)

    def feature_error(self) -> float:
        """The masked feature MSE of this scorer's model as it is against the targets (zero
        for the teacher against its own features; a pruned copy's error in iterative selection)."""
        with eval_mode(self.teacher), flush_denormals():
            return self._final_mse(lambda x: forward_features(self.teacher, x, self.feature_layer), self.eval_images)

    def _final_mse(self, run, inputs: torch.Tensor, skip: PrefixSkip | None = None) -> float:
        """Mean squared error over the evaluated examples (evaluation transform), in batches by
        length with the padding cut (inputs.batches_by_length); ``skip`` (prefix skipping) is
        told which examples each batch holds."""
        with torch.no_grad():
            total, count = 0.0, 0
            for rows in batches_by_length(self.masks, self.eval_count, self.config.eval_batch_size):
                x, target = inputs[rows], self.targets[rows]
                mask = self.masks[rows] if self.masks is not None else None
                length = used_length(mask)
                if length is not None:
                    x, target, mask = x[..., :length], target[:, :length], mask[:, :length]
                if skip is not None:
                    skip.rows = rows
                error, values = feature_error(run(x.clone()), target, mask)  # a copy: see _batched
                total += float(error)
                count += values
        return total / count


def _settings(config: ScoringConfig) -> dict:
    settings = {k: v for k, v in asdict(config).items() if not (k in LATER_SETTINGS and v in LATER_SETTINGS[k])}
    if config.protocol != CLOSED_FORM:  # settings the SGD protocols never read
        for key in CLOSED_FORM_ONLY:
            settings.pop(key, None)
    return settings


def scoring_fingerprint(teacher: nn.Module, tiny_set: TinySetProtocol, config: ScoringConfig, feature_layer: str) -> str:
    """Identifies what cached scores depend on (weights, examples, settings); the same on any thread count."""
    return fingerprint(teacher.state_dict(), tiny_set.identifiers, _settings(config), feature_layer)


def recoverabilities(scorer: Scorer, blocks: list[str], cache_path: str | Path | None = None,
                     progress: Progress = silent, group: ScoringGroup | None = None) -> dict[str, ScoreRecord]:
    """R_b (and MSE before, protocol, seconds, device, rank) of every block, resuming from
    ``cache_path``; under torchrun the blocks still to score are sharded over the ranks
    (``practise.distributed``) and every rank returns all of them."""
    group = group or current_group()
    cache_path = Path(cache_path) if cache_path is not None else None
    key = scoring_fingerprint(scorer.teacher, scorer.tiny_set, scorer.config, scorer.feature_layer)
    done = load_all_caches(cache_path, key)
    if group.distributed:  # hosts without shared storage: every rank learns what any rank finished before
        for part in group.gather(done):
            done.update({b: r for b, r in part.items() if b not in done})
    todo = [b for b in blocks if b not in done]
    if len(todo) < len(blocks):
        log.info("resuming: %d of %d blocks already scored in %s", len(blocks) - len(todo), len(blocks), cache_path)
    mine = group.shard(todo)
    own_file = cache_path if cache_path is None or not group.distributed else rank_cache_path(cache_path, group.rank)
    who = f"rank {group.rank}/{group.world_size}: " if group.distributed else ""
    progress.start(f"recoverability [{who}{len(mine)} of {len(todo)} blocks]" if who else "recoverability",
                   len(mine) * scorer.config.iterations)
    for block in mine:
        began = time.perf_counter()
        after, before, protocol = scorer.recoverability(block, progress)
        done[block] = ScoreRecord(after, before, protocol, time.perf_counter() - began, str(scorer.device),
                                  group.rank)
        log.info("%s%s: feature MSE %s -> %.5f (%.1f s)", who, block, "not measured" if before is None else
                 f"{before:.5f}", after, done[block].seconds)
        if own_file is not None:
            write_score_cache(own_file, key, done if not group.distributed else {b: done[b] for b in mine if b in done})
    progress.end()
    if group.distributed:
        for part in group.gather({b: done[b] for b in mine}):
            done.update(part)
        if group.is_main and cache_path is not None:  # every rank has written its file: merge them into one
            write_score_cache(cache_path, key, done)
            for rank_file in cache_path.parent.glob(f"{cache_path.name}.rank*"):
                rank_file.unlink()
    return done


def block_scores(done: dict[str, ScoreRecord], blocks: list[str], latency_reduction: dict[str, float],
                 iterations: int) -> list[BlockScore]:
    """BlockScores from recoverabilities and latency savings, best (lowest score) first."""
    scores = [BlockScore(b, done[b].recoverability, done[b].mse_before, latency_reduction[b],
                         practise_score(done[b].recoverability, latency_reduction[b]), done[b].protocol,
                         iterations, done[b].seconds, done[b].device, done[b].rank)
              for b in blocks]
    return sorted(scores, key=lambda s: (s.score, s.block))


def score_blocks(scorer: Scorer, blocks: list[str], latency_reduction: dict[str, float],
                 cache_path: str | Path | None = None, progress: Progress = silent,
                 group: ScoringGroup | None = None) -> list[BlockScore]:
    """Score every block (resuming from ``cache_path``), sorted best (lowest score) first."""
    done = recoverabilities(scorer, blocks, cache_path, progress, group)
    return block_scores(done, blocks, latency_reduction, scorer.config.iterations)
