"""Identity-initialised 1x1 adaptors placed around a dropped block (for scoring only).

Placement follows the paper. The dropped block's *group* is the run of its sibling
blocks (same parent module) that share its output shape: a ResNet stage, or a
MobileNetV2 run of equal width. Adaptors go

* after the convolutions that *write* into the residual stream in every earlier unit
  of the group (ResNet: the block's last conv, and the stage's downsample conv;
  MobileNetV2: the projection conv), and
* before the convolutions that *read* from it in every later unit of the group and in
  the first unit after the group (ResNet: conv1 and downsample; MobileNetV2: the
  expansion conv).

Which convolutions those are is decided per unit by the placement rules (``base.py``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..surgery import replace_module_
from ..tracing import ModelTrace
from ..call_structure import primary_output
from .base import ADAPTOR_KINDS, READER, WRITER, AdaptorSite, ordered_rules


def unit_sites(unit_name: str, unit: nn.Module, role: str, trace: ModelTrace) -> list[AdaptorSite]:
    """The sites the first rule that recognises ``unit`` gives (none if no rule does)."""
    for rule in ordered_rules():
        sites = rule.sites(unit_name, unit, role, trace)
        if sites is not None:
            return sites
    return []


def block_group(block: str, trace: ModelTrace, units: list[str]) -> tuple[list[str], str | None]:
    """The block's group (its same-shape sibling run, in order) and the unit after the group.

    ``units`` is the sequence of units in forward order: the feature chain when there is
    one, otherwise every traced module in call order.
    """
    parent = block.rpartition(".")[0]
    shape = trace.output_shapes[block]

    def sibling(name: str) -> bool:
        return name.rpartition(".")[0] == parent and trace.output_shapes.get(name) == shape

    siblings = [u for u in units if u.rpartition(".")[0] == parent]
    i = siblings.index(block)
    start = i
    while start > 0 and sibling(siblings[start - 1]):
        start -= 1
    end = i
    while end + 1 < len(siblings) and sibling(siblings[end + 1]):
        end += 1
    group = siblings[start:end + 1]
    last = group[-1]
    after = units[units.index(last) + 1:]
    nxt = next((u for u in after if not u.startswith(last + ".")), None)
    return group, nxt


def adaptor_sites(model: nn.Module, block: str, trace: ModelTrace, units: list[str]) -> list[AdaptorSite]:
    """Writers before ``block`` in its group, readers after it and after the group.

    A dropped branch (a layer's attention or MLP) counts as a part of its layer: the
    layer's group is used, and the layer's other branches are writers or readers by order."""
    modules = dict(model.named_modules())
    layer = trace.branches.get(block) if block not in trace.units else None
    group, nxt = block_group(layer or block, trace, units)
    position = group.index(layer or block)
    writers, readers = group[:position], group[position + 1:] + ([nxt] if nxt else [])
    if layer is not None:
        parts = [b for b in trace.call_order if trace.branches.get(b) == layer]
        i = parts.index(block)
        writers, readers = writers + parts[:i], parts[i + 1:] + readers
    sites: list[AdaptorSite] = []
    for unit in writers:
        sites += unit_sites(unit, modules[unit], WRITER, trace)
    for unit in readers:
        sites += unit_sites(unit, modules[unit], READER, trace)
    return sites


class Adapted(nn.Module):
    """A module with an adaptor on its (primary) input or output; the caller's other
    arguments (masks, caches) pass through, and its output keeps its structure."""

    def __init__(self, module: nn.Module, adaptor: nn.Module, where: str):
        super().__init__()
        self.module, self.adaptor, self.where = module, adaptor, where

    def forward(self, *args, **kwargs):
        if self.where == "before":
            if args:
                args = (self.adaptor(args[0]),) + args[1:]
            else:
                # the same argument call_structure.primary_input takes as the hidden state
                key = "hidden_states" if "hidden_states" in kwargs else next(
                    k for k, v in kwargs.items() if isinstance(v, torch.Tensor))
                kwargs = {**kwargs, key: self.adaptor(kwargs[key])}
            return self.module(*args, **kwargs)
        output = self.module(*args, **kwargs)
        hidden, structure = primary_output(output)
        if structure is None or structure.kind == "tensor":
            return self.adaptor(output)
        rest = list(output.values())[1:] if structure.kind == "mapping" else list(output)[1:]
        if structure.kind == "mapping":
            return structure.cls(**dict(zip(output.keys(), [self.adaptor(hidden)] + rest)))
        return type(output)([self.adaptor(hidden)] + rest)


def insert_adaptors_(model: nn.Module, sites: list[AdaptorSite]) -> list[nn.Module]:
    """Wrap each site's module with an adaptor (in place); returns the new adaptors."""
    adaptors = []
    for site in sites:
        adaptor = ADAPTOR_KINDS[site.kind](site.channels)
        original = model.get_submodule(site.module)
        device = next((p.device for p in original.parameters()), torch.device("cpu"))
        adaptor.to(device)
        if isinstance(original, nn.Conv2d):  # a plain conv: a Sequential keeps the graph simplest
            wrapped = nn.Sequential(original, adaptor) if site.where == "after" else nn.Sequential(adaptor, original)
        else:
            wrapped = Adapted(original, adaptor, site.where)
        replace_module_(model, site.module, wrapped)
        adaptors.append(adaptor)
    return adaptors
