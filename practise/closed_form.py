"""Recoverability in closed form, at about one pass of the tiny set per candidate.

The dropped unit is replaced by the linear map that best reproduces its output from its
input over every real token (or pixel) of the tiny set: ridge least squares anchored at the
identity for a unit (the identity-initialised adaptor PRACTISE trains, and ReplaceMe's
``T = (X^T X + a I)^-1 X^T Y`` written as a correction to the identity) and at zero for a
dropped branch. R_b is then the masked feature MSE at the mimicked layer with that map in
place, as for the trained protocols. One teacher pass gathers ``X^T X`` and ``X^T Y`` of every
candidate at once (D x D each, accumulated in float64 over chunks), so memory does not grow
with the tiny set; each candidate then costs one pass of the network after it.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dataclasses import dataclass

from .call_structure import primary_input, primary_output
from .features import forward_features
from .inputs import batches_by_length, used_length
from .modes import hooks_removed
from .surgery import _StandIn


class LinearStandIn(_StandIn):
    """A dropped unit or branch replaced by a fitted linear map on its channels (the last
    dimension of a token stream, the second of an image feature map)."""

    what = "linear stand-in"

    def __init__(self, weight: torch.Tensor, structure):
        super().__init__(structure)
        self.register_buffer("weight", weight)

    def replacement(self, hidden: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(hidden.dtype)
        if hidden.dim() == 4:  # (N, C, H, W)
            return torch.einsum("nchw,cd->ndhw", hidden, w)
        return hidden @ w


def _samples(t: torch.Tensor) -> torch.Tensor:
    """(samples, channels) view: every pixel or token is a sample."""
    return t.movedim(1, -1).reshape(-1, t.shape[1]) if t.dim() == 4 else t.reshape(-1, t.shape[-1])


# how least-squares fits weigh errors (see scoring.FIT_SCALES): plain, or relative per token
GLOBAL_SCALE, TOKEN_SCALE = "global", "token"


def token_rms(stream: torch.Tensor) -> torch.Tensor:
    """Each token's (or pixel's) root mean square over channels: what a following RMSNorm or
    LayerNorm divides it by, so an error relative to it is the error the next layer sees."""
    return stream.float().pow(2).mean(dim=1 if stream.dim() == 4 else -1).sqrt()


RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)  # relative to the mean input energy per channel
FALLBACK_RIDGE = 1e-3  # when there is too little data to cross-validate (one example)


class LinearStatistics:
    """X^T X and X^T Y of each watched module's input X and output Y, over real tokens; kept
    in two folds (alternate examples of each batch) so that the ridge strength can be chosen
    by cross-validation from the statistics alone."""

    def __init__(self):
        self.xtx: dict[str, torch.Tensor] = {}
        self.xty: dict[str, torch.Tensor] = {}
        self.count: dict[str, int] = {}
        self.folds: dict[str, list[list[torch.Tensor]]] = {}  # name -> [[xtx, xty], [xtx, xty]]
        self.chosen_ridge: dict[str, float] = {}  # what fit() used, per name

    def add(self, name: str, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None,
            scale: torch.Tensor | None = None) -> None:
        """``scale`` (one value per sample: per token, per pixel): each sample's error counts
        relative to it (weighted least squares with weights 1 / scale^2)."""
        if name not in self.xtx:
            width_in, width_out = x.shape[1 if x.dim() == 4 else -1], y.shape[1 if y.dim() == 4 else -1]
            self.xtx[name] = torch.zeros(width_in, width_in, dtype=torch.float64)
            self.xty[name] = torch.zeros(width_in, width_out, dtype=torch.float64)
            self.folds[name] = [[torch.zeros_like(self.xtx[name]), torch.zeros_like(self.xty[name])] for _ in range(2)]
            self.count[name] = 0
        for fold in range(2):  # examples 0, 2, 4, ... and 1, 3, 5, ... of the batch
            rows = slice(fold, None, 2)
            xs, ys = _samples(x[rows].detach()).float(), _samples(y[rows].detach()).float()
            if scale is not None:  # one value per sample, laid out as x's samples are
                per_sample = scale[rows].detach().unsqueeze(1 if x.dim() == 4 else -1)
                weight = 1 / _samples(per_sample).float().clamp(min=1e-6)
                xs, ys = xs * weight, ys * weight
            if mask is not None and x.dim() == 3 and mask.shape == x.shape[:2]:
                keep = mask[rows].reshape(-1).bool()
                xs, ys = xs[keep], ys[keep]
            # float32 products per chunk (a few thousand rows: exact enough), summed in float64
            xtx, xty = (xs.T @ xs).double(), (xs.T @ ys).double()
            self.folds[name][fold][0] += xtx
            self.folds[name][fold][1] += xty
            self.xtx[name] += xtx
            self.xty[name] += xty
            self.count[name] += xs.shape[0]

    def fit(self, name: str, identity_prior: bool, ridge: float | None, per_channel: bool = False) -> torch.Tensor:
        """W with Y ~ X W, shrunk towards the prior (identity or zero) by ``ridge`` times the
        mean input energy per channel; ``ridge`` None: the value of RIDGE_GRID with the least
        error on one fold when fitted on the other (both ways), so that a small tiny set gets
        a strong pull towards the prior and a large one a weak pull. ``per_channel``: the pull
        relative to each input channel's own energy instead (see _ridge_fits)."""
        if ridge is None:
            ridge = self._cross_validated_ridge(name, identity_prior, per_channel)
        self.chosen_ridge[name] = ridge
        return _ridge_fits(self.xtx[name], self.xty[name], identity_prior, [ridge], per_channel)[0].float()

    def _cross_validated_ridge(self, name: str, identity_prior: bool, per_channel: bool = False) -> float:
        (xtx_a, xty_a), (xtx_b, xty_b) = self.folds[name]
        if not (bool(torch.diagonal(xtx_a).gt(0).any()) and bool(torch.diagonal(xtx_b).gt(0).any())):
            return FALLBACK_RIDGE
        errors = [0.0] * len(RIDGE_GRID)
        for (xtx, xty), (held_xtx, held_xty) in (((xtx_a, xty_a), (xtx_b, xty_b)), ((xtx_b, xty_b), (xtx_a, xty_a))):
            for i, w in enumerate(_ridge_fits(xtx, xty, identity_prior, RIDGE_GRID, per_channel)):
                # held-out squared error up to its constant trace(Y^T Y)
                errors[i] += float(((held_xtx @ w) * w).sum() - 2 * (w * held_xty).sum())
        return RIDGE_GRID[min(range(len(RIDGE_GRID)), key=errors.__getitem__)]


def _ridge_fits(xtx: torch.Tensor, xty: torch.Tensor, identity_prior: bool, ridges,
                per_channel: bool = False) -> list[torch.Tensor]:
    """Ridge solutions towards the prior for each relative strength, from one eigendecomposition.
    The pull is relative to the mean input energy per channel, or (``per_channel``) to each
    input channel's own energy: the fit of standardised inputs, so that a few channels of huge
    magnitude (an LLM's massive activations) do not set the pull on all the others."""
    channels = xtx.shape[0]
    prior = torch.eye(channels, xty.shape[1], dtype=torch.float64) if identity_prior else torch.zeros_like(xty)
    residual = xty - xtx @ prior
    if per_channel:
        inv_sd = torch.diagonal(xtx).clamp(min=1e-12).rsqrt()
        xtx, residual = inv_sd[:, None] * xtx * inv_sd[None, :], inv_sd[:, None] * residual
    values, vectors = torch.linalg.eigh(xtx)
    projected = vectors.T @ residual
    energy = float(torch.diagonal(xtx).mean())
    fits = [vectors @ (projected / (values.clamp(min=0) + r * energy + 1e-12).unsqueeze(1)) for r in ridges]
    return [prior + (inv_sd[:, None] * v if per_channel else v) for v in fits]


@dataclass
class TeacherPass:
    """What one pass of the teacher over the tiny set leaves for closed-form scoring."""

    statistics: LinearStatistics
    targets: torch.Tensor                 # feature-layer outputs of the first ``rows`` examples
    entry_inputs: dict[str, torch.Tensor]  # primary inputs of the watched entry units, same rows


@torch.no_grad()
def teacher_pass(teacher: nn.Module, feature_layer: str, fitted: list[str], entries: list[str],
                 inputs: torch.Tensor, masks: torch.Tensor | None, batch: int, rows: int,
                 patches: dict[str, str] | None = None, relative: bool = False) -> TeacherPass:
    """One pass of ``teacher`` over ``inputs`` (in batches of ``batch`` by length, padding cut;
    stopping at ``feature_layer``): X^T X and X^T Y of every module in ``fitted`` that keeps its
    input's shape, over all examples; the features and the inputs of ``entries`` of the first
    ``rows`` examples (token positions past a batch's cut stay zero: they are padding).

    ``patches`` (block -> the linear layer of the unit before it that a linear patch would be
    folded into, linear_patch.py) adds, under ``patch_key(block)``, the fit of that layer's
    output M to what the block adds plus M: ``Y = out - in + M``. ``relative``: each token's
    error counts relative to the RMS of the block's output (LinearStatistics.add's scale)."""
    stats = LinearStatistics()
    patches = patches or {}
    latest: dict[str, torch.Tensor] = {}  # the patch layers' outputs in the current batch
    modules = dict(teacher.named_modules())
    current: dict = {"mask": None, "keep": None, "at": None}
    kept: dict[str, torch.Tensor] = {}
    full_length = inputs.shape[-1] if masks is not None else None

    def store(name: str, value: torch.Tensor) -> None:
        """Rows of this batch that are among the first ``rows``, into ``kept[name]``."""
        if not bool(current["keep"].any()):
            return
        if name not in kept:
            shape = (rows, full_length, *value.shape[2:]) if full_length is not None else (rows, *value.shape[1:])
            kept[name] = torch.zeros(shape, dtype=value.dtype, device=value.device)
        target = kept[name]
        chosen = value[current["keep"]].detach()
        if full_length is not None:
            target[current["at"], :chosen.shape[1]] = chosen
        else:
            target[current["at"]] = chosen

    def fit_hook(name):
        def record(module, args, kwargs, output):
            x, (y, _) = primary_input(args, kwargs), primary_output(output)
            if x is not None and y is not None and x.shape == y.shape and x.dim() in (3, 4):
                scale = token_rms(y) if relative else None
                stats.add(name, x, y, current["mask"], scale)
                made = latest.get(patches.get(name, ""))
                if made is not None and made.shape == y.shape:
                    stats.add(patch_key(name), made, y - x + made, current["mask"], scale)
        return record

    def keep_latest(name):
        def record(module, args, output):
            latest[name] = output
        return record

    def entry_hook(name):
        def record(module, args, kwargs):
            store(name, primary_input(args, kwargs))
        return record

    handles = [modules[n].register_forward_hook(fit_hook(n), with_kwargs=True) for n in fitted if n in modules]
    handles += [modules[n].register_forward_pre_hook(entry_hook(n), with_kwargs=True) for n in entries]
    handles += [modules[n].register_forward_hook(keep_latest(n)) for n in set(patches.values())]
    with hooks_removed(handles):
        for index in batches_by_length(masks, inputs.shape[0], batch):
            x, mask = inputs[index], masks[index] if masks is not None else None
            length = used_length(mask)
            if length is not None:
                x, mask = x[..., :length], mask[:, :length]
            current.update(mask=mask, keep=index < rows, at=index[index < rows])
            store(TARGETS, forward_features(teacher, x.clone(), feature_layer))
    targets = kept.pop(TARGETS)
    return TeacherPass(stats, targets, kept)


def patch_key(block: str) -> str:
    return f"<patch>{block}"


TARGETS = "<features>"  # key of the feature-layer outputs among the kept tensors; no module is named so
