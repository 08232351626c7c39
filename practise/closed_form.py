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

from .call_structure import primary_input, primary_output
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


class LinearStatistics:
    """X^T X and X^T Y of each watched module's input X and output Y, over real tokens."""

    def __init__(self):
        self.xtx: dict[str, torch.Tensor] = {}
        self.xty: dict[str, torch.Tensor] = {}
        self.count: dict[str, int] = {}

    def add(self, name: str, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> None:
        xs, ys = _samples(x.detach()).double(), _samples(y.detach()).double()
        if mask is not None and x.dim() == 3 and mask.shape == x.shape[:2]:
            keep = mask.reshape(-1).bool()
            xs, ys = xs[keep], ys[keep]
        if name not in self.xtx:
            self.xtx[name] = torch.zeros(xs.shape[1], xs.shape[1], dtype=torch.float64)
            self.xty[name] = torch.zeros(xs.shape[1], ys.shape[1], dtype=torch.float64)
            self.count[name] = 0
        self.xtx[name] += xs.T @ xs
        self.xty[name] += xs.T @ ys
        self.count[name] += xs.shape[0]

    def fit(self, name: str, identity_prior: bool, ridge: float) -> torch.Tensor:
        """W with Y ~ X W, shrunk towards the prior (identity or zero) by ``ridge`` times the
        mean input energy per channel."""
        xtx, xty = self.xtx[name], self.xty[name]
        channels = xtx.shape[0]
        prior = torch.eye(channels, dtype=torch.float64) if identity_prior else torch.zeros_like(xty)
        strength = ridge * float(torch.diagonal(xtx).mean()) + 1e-12
        correction = torch.linalg.solve(xtx + strength * torch.eye(channels, dtype=torch.float64), xty - xtx @ prior)
        return (prior + correction).float()


@torch.no_grad()
def gather_statistics(teacher: nn.Module, names: list[str], inputs: torch.Tensor, masks: torch.Tensor | None,
                      batch: int) -> LinearStatistics:
    """One pass of ``teacher`` over ``inputs`` (in chunks of ``batch``), recording the input
    and output of every module in ``names`` that keeps its input's shape."""
    stats = LinearStatistics()
    modules = dict(teacher.named_modules())
    current: dict[str, torch.Tensor | None] = {"mask": None}

    def hook(name):
        def record(module, args, kwargs, output):
            x, (y, _) = primary_input(args, kwargs), primary_output(output)
            if x is not None and y is not None and x.shape == y.shape and x.dim() in (3, 4):
                stats.add(name, x, y, current["mask"])
        return record

    handles = [modules[n].register_forward_hook(hook(n), with_kwargs=True) for n in names if n in modules]
    with hooks_removed(handles):
        for i in range(0, inputs.shape[0], batch):
            current["mask"] = masks[i:i + batch] if masks is not None else None
            teacher(inputs[i:i + batch].clone())
    return stats
