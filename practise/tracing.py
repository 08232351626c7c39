"""One instrumented forward pass that tells which modules are residual blocks.

A module is a residual block when, inside its own forward (not a child's), an addition
takes the module's *own input tensor object* as an operand: ``out += identity`` with
``identity = x``, or ``x + self.conv(x)``. We observe this at run time with a
TorchFunctionMode rather than by symbolic tracing, so arbitrary Python control flow in
the user's model is fine. Identity-like layers on the skip (nn.Identity, eval-mode
Dropout/DropPath) return the same object and are seen through.

When the rule cannot decide, the module is *not* a candidate and the reason is kept
in ``ModelTrace.undecided``: a module called more than once per forward (shared
weights), one whose input was changed in place before the addition (the skip no
longer carries the input), or one whose input or output is not a single tensor.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from .modes import eval_mode, hooks_removed

ADD_NAMES = {"add", "add_", "__add__", "__iadd__", "__radd__"}


@dataclass
class ModelTrace:
    call_order: list[str] = field(default_factory=list)    # by first call (pre-hook), root excluded
    finish_order: list[str] = field(default_factory=list)  # by return (post-hook)
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    output_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    call_counts: dict[str, int] = field(default_factory=dict)
    adds_own_input: set[str] = field(default_factory=set)
    # modules whose forward added their own input object, whether or not that made them a
    # candidate (an input changed in place first): every such module not chosen is logged
    saw_own_input_add: set[str] = field(default_factory=set)
    undecided: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # kept only when asked

    def is_residual_block(self, name: str) -> bool:
        return (name in self.adds_own_input and name not in self.undecided
                and self.input_shapes.get(name) == self.output_shapes.get(name))


class _AddWatcher(TorchFunctionMode):
    """Sees every torch call; attributes additions to the innermost running module."""

    def __init__(self, stack: list, trace: ModelTrace):
        super().__init__()
        self.stack, self.trace = stack, trace

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.stack and getattr(func, "__name__", "") in ADD_NAMES:
            name, x, version = self.stack[-1]
            if x is not None and any(a is x for a in args):
                self.trace.saw_own_input_add.add(name)
                if x._version != version:
                    self.trace.undecided[name] = "its input was modified in place before the residual addition"
                else:
                    self.trace.adds_own_input.add(name)
        return func(*args, **kwargs)


def _single_tensor(args) -> torch.Tensor | None:
    return args[0] if len(args) == 1 and isinstance(args[0], torch.Tensor) else None


@torch.no_grad()
def trace_model(model: nn.Module, example_input: torch.Tensor, keep_outputs: bool = False) -> ModelTrace:
    """Run ``model`` once in eval mode and record shapes, call order and residual additions."""
    trace = ModelTrace()
    stack: list[tuple[str, torch.Tensor | None, int]] = []
    names = {module: name for name, module in model.named_modules()}

    def pre_hook(module, args):
        name = names[module]
        x = _single_tensor(args)
        trace.call_counts[name] = trace.call_counts.get(name, 0) + 1
        if trace.call_counts[name] == 1 and name:
            trace.call_order.append(name)
        elif name:
            trace.undecided[name] = f"called {trace.call_counts[name]} times in one forward pass (shared module)"
        if x is not None:
            trace.input_shapes.setdefault(name, tuple(x.shape))
        elif name:
            trace.undecided.setdefault(name, "its input is not a single tensor")
        stack.append((name, x, x._version if x is not None else 0))

    def post_hook(module, args, output):
        name, _, _ = stack.pop()
        if not name:
            return
        if name not in trace.finish_order:
            trace.finish_order.append(name)
        if isinstance(output, torch.Tensor):
            trace.output_shapes.setdefault(name, tuple(output.shape))
            if keep_outputs:
                trace.outputs.setdefault(name, output.detach().clone())
        else:
            trace.undecided.setdefault(name, "its output is not a single tensor")

    with eval_mode(model), hooks_removed([]) as handles:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook))
        with _AddWatcher(stack, trace):
            model(example_input)
    return trace


def find_feature_layer(model: nn.Module, trace: ModelTrace) -> str:
    """The module whose output is the feature map before global pooling.

    Built-in architectures declare it (``practise_feature_layer``). Otherwise: the last
    module to finish whose output is a 4-D map with more than one spatial position;
    the pooling that follows turns it into 1x1 or a vector.
    """
    declared = getattr(model, "practise_feature_layer", None)
    if declared:
        return declared
    for name in reversed(trace.finish_order):
        shape = trace.output_shapes.get(name)
        if shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1:
            return name
    raise ValueError("could not find a 4-D feature map before global pooling; pass feature_layer explicitly")


def check_module_name(model: nn.Module, name: str, what: str = "module") -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules or not name:
        sample = [n for n in modules if n][:30]
        raise ValueError(f"unknown {what} {name!r}; valid names include: {', '.join(sample)}"
                         f"{' ...' if len(modules) > 31 else ''}")
    return modules[name]


def _is_plain_sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def feature_chain(model: nn.Module, trace: ModelTrace, feature_layer: str,
                  example_input: torch.Tensor) -> list[str] | None:
    """Modules that, applied one after another, turn the input into the feature map.

    The root's children in call order, plain nn.Sequential containers expanded, up to
    and including ``feature_layer``. Returned only if running the chain reproduces the
    real feature map on ``example_input`` (so functional ops between children, or a
    custom forward, make this None and callers fall back to full forward passes).
    """
    modules = dict(model.named_modules())
    top = [n for n in trace.call_order if "." not in n]

    def expand(name: str) -> list[str]:
        module = modules[name]
        if _is_plain_sequential(module) and len(module) > 0:
            return [u for child, _ in module.named_children() for u in expand(f"{name}.{child}")]
        return [name]

    chain: list[str] = []
    for name in top:
        if trace.call_counts.get(name, 0) != 1:
            return None
        chain += expand(name)
        if name == feature_layer or feature_layer.startswith(name + "."):
            break
    else:
        return None
    if feature_layer not in chain:
        inner = [u for u in chain if u.startswith(feature_layer + ".")]
        if not inner:
            return None
        chain = chain[:chain.index(inner[-1]) + 1]
    else:
        chain = chain[:chain.index(feature_layer) + 1]
    with torch.no_grad(), eval_mode(model):
        reference = trace_model(model, example_input, keep_outputs=True).outputs.get(feature_layer)
        x = example_input
        for name in chain:
            x = modules[name](x)
    if reference is None or x.shape != reference.shape or not torch.allclose(x, reference, rtol=1e-4, atol=1e-5):
        return None
    return chain
