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

Units are recognised by structure, not class name: a ResNet-style block has ``conv1``
and ``conv2`` (``conv3`` for a bottleneck) and an optional ``downsample`` whose first
layer is a conv; an inverted residual has a ``conv`` Sequential. The generic placement
for any other unit that contains a convolution: one adaptor on the unit's output
(earlier units) or input (later units), i.e. on the residual stream itself. Units
without convolutions (pooling, activations) get none.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .surgery import replace_module_
from .tracing import ModelTrace


class Adaptor(nn.Conv2d):
    """Bias-free CxC 1x1 convolution starting as the identity."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, kernel_size=1, bias=False)
        with torch.no_grad():
            self.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))


@dataclass(frozen=True)
class AdaptorSite:
    module: str   # dotted path of the conv (or unit) to wrap
    where: str    # "after" (on its output) or "before" (on its input)
    channels: int


def _conv_sites(unit_name: str, unit: nn.Module, role: str) -> list[tuple[str, nn.Conv2d]] | None:
    """The writer or reader convs of a recognised unit; None if the unit is not recognised."""
    conv1, conv2 = getattr(unit, "conv1", None), getattr(unit, "conv2", None)
    if isinstance(conv1, nn.Conv2d) and isinstance(conv2, nn.Conv2d):
        downsample = getattr(unit, "downsample", None)
        down = [] if not (isinstance(downsample, nn.Sequential) and isinstance(downsample[0], nn.Conv2d)) \
            else [(f"{unit_name}.downsample.0", downsample[0])]
        if role == "writer":
            last = "conv3" if isinstance(getattr(unit, "conv3", None), nn.Conv2d) else "conv2"
            return [(f"{unit_name}.{last}", getattr(unit, last))] + down
        return [(f"{unit_name}.conv1", conv1)] + down
    body = getattr(unit, "conv", None)
    if isinstance(body, nn.Sequential):
        convs = [(f"{unit_name}.conv.{n}", m) for n, m in body.named_modules() if isinstance(m, nn.Conv2d)]
        if convs:
            return [convs[-1]] if role == "writer" else [convs[0]]
    return None


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def unit_sites(unit_name: str, unit: nn.Module, role: str, trace: ModelTrace) -> list[AdaptorSite]:
    where = "after" if role == "writer" else "before"
    convs = _conv_sites(unit_name, unit, role)
    if convs is not None:
        return [AdaptorSite(n, where, c.out_channels if role == "writer" else c.in_channels) for n, c in convs]
    if not _has_conv(unit):
        return []
    shape = trace.output_shapes[unit_name] if role == "writer" else trace.input_shapes[unit_name]
    return [AdaptorSite(unit_name, where, shape[1])] if len(shape) == 4 else []


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
    modules = dict(model.named_modules())
    group, nxt = block_group(block, trace, units)
    position = group.index(block)
    sites: list[AdaptorSite] = []
    for unit in group[:position]:
        sites += unit_sites(unit, modules[unit], "writer", trace)
    for unit in group[position + 1:] + ([nxt] if nxt else []):
        sites += unit_sites(unit, modules[unit], "reader", trace)
    return sites


def insert_adaptors_(model: nn.Module, sites: list[AdaptorSite]) -> list[Adaptor]:
    """Wrap each site's module with an adaptor (in place); returns the new adaptors."""
    adaptors = []
    for site in sites:
        adaptor = Adaptor(site.channels)
        original = model.get_submodule(site.module)
        device = next((p.device for p in original.parameters()), torch.device("cpu"))
        adaptor.to(device)
        wrapped = nn.Sequential(original, adaptor) if site.where == "after" else nn.Sequential(adaptor, original)
        replace_module_(model, site.module, wrapped)
        adaptors.append(adaptor)
    return adaptors
