"""The closed-form linear patch: a dropped run of blocks repaired inside the weights of the block before it.

ReplaceMe (NeurIPS 2025) replaces a span of transformer layers by one linear map fitted by
least squares on calibration activations and folds it into the previous layer's MLP
output projection, so the pruned model keeps the stock architecture. The general rule used
here: a kept unit ``p`` whose output is its residual stream plus the output ``M`` of one
linear layer inside it (a pre-norm transformer layer and its MLP down-projection; checked
numerically, never assumed from names) can absorb a map ``T`` on ``M``: ``p`` then returns
``R + M T``. Fitting ``M T ~ Y - R`` (``Y``: what the teacher's dropped run returns, ``R``:
the rest of ``p``'s output) by ridge least squares towards the identity, over real tokens,
and setting the linear layer's weight to ``T^T W`` (bias ``b T``) repairs the run with no
new module. Runs are patched in network order, each fitted on the student as already
patched, against the teacher's activations. A run with no such unit before it is left
unpatched (said in the log and the report).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn as nn

from .call_structure import primary_input, primary_output
from .closed_form import GLOBAL_SCALE, TOKEN_SCALE, LinearStatistics, token_rms
from .inputs import batches_by_length, token_mask, used_length
from .modes import eval_mode, hooks_removed

log = logging.getLogger(__name__)


def linear_weight_layout(module: nn.Module) -> str | None:
    """"out-in" for nn.Linear (y = x W^T + b), "in-out" for transformers' Conv1D (y = x W + b), else None."""
    if isinstance(module, nn.Linear):
        return "out-in"
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None \
            and module.weight.dim() == 2:
        return "in-out"
    return None


@torch.no_grad()
def find_fold_sites(model: nn.Module, units: list[str], example: torch.Tensor) -> dict[str, str]:
    """unit -> the linear layer inside it whose output the unit adds to its residual stream, for
    every unit where re-running it with that layer's output zeroed removes exactly that output."""
    modules = dict(model.named_modules())
    linears = {n: m for n, m in modules.items() if linear_weight_layout(m) is not None}
    last: dict[str, tuple[str, torch.Tensor]] = {}
    state = {"checking": False}
    sites: dict[str, str] = {}

    def record(name):
        def hook(module, args, output):
            if not state["checking"]:
                for unit in units:
                    if name.startswith(unit + "."):
                        last[unit] = (name, output)
        return hook

    def check(unit):
        def hook(module, args, kwargs, output):
            hidden, _ = primary_output(output)
            if state["checking"] or unit not in last or hidden is None:
                return
            name, made = last[unit]
            if made.shape != hidden.shape:
                return
            state["checking"] = True
            zeroing = linears[name].register_forward_hook(lambda m, a, o: torch.zeros_like(o))
            try:
                without, _ = primary_output(module(*args, **kwargs))
            finally:
                zeroing.remove()
                state["checking"] = False
            if without is not None and torch.allclose(hidden - made, without, rtol=1e-4, atol=1e-5):
                sites[unit] = name
        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in linears.items()]
    handles += [modules[u].register_forward_hook(check(u), with_kwargs=True) for u in units]
    with hooks_removed(handles), eval_mode(model):
        model(example)
    return sites


def fold_(linear: nn.Module, transform: torch.Tensor) -> None:
    """Make ``linear`` return its old output times ``transform`` (D x D), in place."""
    t = transform.to(torch.float64)
    weight = linear.weight.data.to(torch.float64)
    new = t.T @ weight if linear_weight_layout(linear) == "out-in" else weight @ t
    linear.weight.data.copy_(new.to(linear.weight.dtype))
    if getattr(linear, "bias", None) is not None:
        linear.bias.data.copy_((linear.bias.data.to(torch.float64) @ t).to(linear.bias.dtype))


def runs_of(candidates: list[str], dropped: list[str]) -> list[list[str]]:
    """Maximal runs of consecutive dropped candidates, in network order."""
    gone, runs, current = set(dropped), [], []
    for name in candidates:
        if name in gone:
            current.append(name)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


@dataclass
class PatchRecord:
    run: list[str]
    unit: str | None        # the kept unit before the run (None: the run starts the network)
    linear: str | None      # the layer the map was folded into (None: not patched)
    reason: str | None = None  # why not patched
    ridge: float | None = None  # the ridge strength used (cross-validated unless given)
    fit_scale: str | None = None  # how the fit weighed errors (scoring.FIT_SCALES)


class _Capture(Exception):
    pass


@torch.no_grad()
def _activations(model: nn.Module, x: torch.Tensor, wanted: dict[str, str]) -> dict[str, torch.Tensor]:
    """{key: tensor} for ``wanted`` = {key: "in:<module>" | "out:<module>"}, stopping the pass
    once all are seen."""
    found: dict[str, torch.Tensor] = {}
    handles = []

    def done():
        if len(found) == len(wanted):
            raise _Capture

    for key, spec in wanted.items():
        where, name = spec.split(":", 1)
        module = model.get_submodule(name)
        if where == "in":
            def pre(m, args, kwargs, key=key):
                found[key] = primary_input(args, kwargs)
                done()
            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        else:
            def post(m, args, output, key=key):
                found[key] = primary_output(output)[0]
                done()
            handles.append(module.register_forward_hook(post))
    with hooks_removed(handles):
        try:
            model(x)
        except _Capture:
            pass
    return found


def patch_runs_(student: nn.Module, teacher: nn.Module, units: list[str], dropped: list[str],
                inputs: torch.Tensor, ridge: float | None = None, batch: int = 32,
                fit_scale: str = GLOBAL_SCALE) -> list[PatchRecord]:
    """Fold a least-squares linear patch for every run of ``dropped`` units into the kept unit
    before it (see the module docstring), in place on ``student``. ``units``: the network's
    layer-level units in call order (dropped sub-layers are left alone); ``inputs``: the tiny set
    (evaluation transform); ``fit_scale``: how the fit weighs errors (scoring.FIT_SCALES, made
    concrete). Returns what was done per run."""
    records = [PatchRecord([d], None, None, "a sub-layer: the linear patch repairs whole layers")
               for d in dropped if d not in units]
    candidates = units
    masks = token_mask(teacher, inputs)
    example = inputs[:2]
    batches = _batches(inputs, masks, batch)
    runs = runs_of(candidates, dropped)
    with eval_mode(student, teacher):
        sites = find_fold_sites(student, [c for c in candidates if c not in set(dropped)], example)
        # what the teacher's runs return, for every run in one pass per batch
        targets = [_activations(teacher, x.clone(), {str(i): f"out:{run[-1]}" for i, run in enumerate(runs)})
                   for x, _ in batches]
        for index, run in enumerate(runs):
            position = candidates.index(run[0])
            unit = candidates[position - 1] if position > 0 else None
            if unit is None or unit not in sites:
                reason = "no kept block before it" if unit is None else \
                    f"{unit} does not add one linear layer's output to its stream"
                log.info("linear patch: %s left unpatched (%s)", ", ".join(run), reason)
                records.append(PatchRecord(run, unit, None, reason))
                continue
            transform, used = _fit(student, unit, sites[unit], batches, [t[str(index)] for t in targets], ridge,
                                   fit_scale == TOKEN_SCALE)
            fold_(student.get_submodule(sites[unit]), transform)
            records.append(PatchRecord(run, unit, sites[unit], ridge=used, fit_scale=fit_scale))
            log.info("linear patch: %s folded into %s (ridge %g, %s-scaled fit)", ", ".join(run), sites[unit], used,
                     fit_scale)
    return records


def _batches(inputs: torch.Tensor, masks: torch.Tensor | None, batch: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(inputs, mask) per batch by length, the padding after each batch's last real token cut."""
    out = []
    for rows in batches_by_length(masks, inputs.shape[0], batch):
        x, mask = inputs[rows], masks[rows] if masks is not None else None
        length = used_length(mask)
        out.append((x[..., :length], mask[:, :length]) if length is not None else (x, mask))
    return out


def _fit(student, unit: str, linear: str, batches, targets: list[torch.Tensor], ridge: float | None,
         token_scaled: bool = False) -> tuple[torch.Tensor, float]:
    """T with student's M T ~ teacher's run output - student's (unit output - M), over real
    tokens (``token_scaled``: each token's error relative to its target's RMS, the ridge per
    input channel), and the ridge strength used."""
    stats = LinearStatistics()
    for (x, mask), target in zip(batches, targets):
        mine = _activations(student, x.clone(), {"m": f"out:{linear}", "out": f"out:{unit}"})
        scale = token_rms(target) if token_scaled else None
        stats.add("patch", mine["m"], target - (mine["out"] - mine["m"]), mask, scale)
    return stats.fit("patch", identity_prior=True, ridge=ridge, per_channel=token_scaled), stats.chosen_ridge["patch"]
