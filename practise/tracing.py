"""One instrumented forward pass that tells which modules are residual units.

A module M is a *residual unit* when its output lies on M's **skip path**: starting from
M's input, the tensors reachable only through additions, normalisations, elementwise
activations, dropout and reshapes. ``relu(x + f(x))``, ``LN(x + attn(x))`` (a post-LN
BERT layer, whose adds happen in child modules) and ``x + mlp(norm(x + attn(norm(x))))``
(a pre-norm transformer layer) all qualify. Besides, M must have a real branch: at least
one addition joins the skip path with a tensor from off it, and M runs a linear map
(linear layer, convolution, matmul, attention) inside. So an activation that computes
``x + 0.044715 * x**3`` or a normalisation that adds its input back is not a unit.

We observe this at run time with a TorchFunctionMode rather than by symbolic tracing, so
arbitrary Python control flow is fine, and modules may take extra positional or keyword
arguments and return tuples or ModelOutputs (``call_structure.py`` says which item is the
hidden state). Identity-like layers on the skip (nn.Identity, eval-mode Dropout/DropPath)
return the same object and are seen through.

After the pass (:meth:`ModelTrace.candidates`): a unit containing two or more disjoint
units is a *stack* (a ResNet stage, a transformer encoder), not a unit; a unit whose only
parameters are those of its one inner unit is a container of it (the inner one is kept).
At ``"layer"`` granularity the outermost units are candidates. At ``"sublayer"``, a layer
is replaced by its parts where it has them: inner residual units (a post-LN attention
block) and *branches*, the children whose output the layer adds to its skip path (a
pre-norm layer's attention and MLP), which are dropped by returning zeros.

When the rule cannot decide, the module is *not* a candidate and the reason is kept
in ``ModelTrace.undecided``: a module called more than once per forward (shared
weights), one whose input was changed in place before the addition (the skip no
longer carries the input), or one whose input or output holds no tensor.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from .call_structure import IDENTITY, ZERO, OutputStructure, primary_input, primary_output, record_removal
from .modes import eval_mode, hooks_removed
from .errors import UsageError

ADD_NAMES = {"add", "add_", "__add__", "__iadd__", "__radd__"}
# ops whose result carries the same stream as their input: normalisations, elementwise
# activations (post-activation ResNets), dropout, casts and reshapes
SKIP_PRESERVING = {"layer_norm", "group_norm", "rms_norm", "batch_norm", "instance_norm", "relu", "relu_", "gelu",
                   "silu", "silu_", "hardswish", "hardswish_", "leaky_relu", "leaky_relu_", "elu", "elu_", "relu6",
                   "hardtanh", "hardtanh_", "mish", "dropout", "dropout_", "view", "reshape", "contiguous", "clone",
                   "to", "float", "type_as", "permute", "transpose", "flatten", "unflatten", "squeeze", "unsqueeze"}
# a module that runs one of these has a real (parameterised) branch
LINEAR_MAPS = {"linear", "bilinear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
               "conv_transpose3d", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "addmm", "baddbmm", "mv",
               "einsum", "scaled_dot_product_attention", "multi_head_attention_forward",
               "_native_multi_head_attention"}
# ops through which a branch's output reaches the addition (layer scale, dropout, casts)
PASS_ON = {"mul", "__mul__", "__rmul__", "mul_", "div", "__truediv__", "dropout", "to", "contiguous", "view",
           "reshape", "type_as", "float"}
LAYER, SUBLAYER = "layer", "sublayer"
GRANULARITIES = (LAYER, SUBLAYER)


def check_granularity(granularity: str) -> str:
    if granularity not in GRANULARITIES:
        raise UsageError(f"unknown granularity {granularity!r}; valid choices: {', '.join(GRANULARITIES)}")
    return granularity


def _nested(inner: str, outer: str) -> bool:
    return inner.startswith(outer + ".")


def _outermost(names: list[str]) -> list[str]:
    return [n for n in names if not any(_nested(n, m) for m in names)]


def _from_several_list_entries(parent: str, branches: list[str]) -> bool:
    """Do ``branches`` lie in different numbered entries of one list under ``parent``?"""
    prefix = parent + "." if parent else ""
    entries = set()
    for b in branches:
        parts = b[len(prefix):].split(".")
        index = next((i for i, part in enumerate(parts) if part.isdigit()), None)
        if index is not None:
            entries.add((".".join(parts[:index]), parts[index]))
    return len({path for path, _ in entries}) < len(entries)


@dataclass
class ModelTrace:
    call_order: list[str] = field(default_factory=list)    # by first call (pre-hook), root excluded
    finish_order: list[str] = field(default_factory=list)  # by return (post-hook)
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)   # primary input
    output_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # primary output
    structures: dict[str, OutputStructure] = field(default_factory=dict)
    call_counts: dict[str, int] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    linear_maps: dict[str, int] = field(default_factory=dict)
    units: set[str] = field(default_factory=set)             # passed the residual-unit test
    branches: dict[str, str] = field(default_factory=dict)   # branch child -> the module adding it
    # modules that joined a branch into their skip path, whether or not they became units:
    # every such module not chosen is logged with its reason
    looked_residual: set[str] = field(default_factory=set)
    undecided: dict[str, str] = field(default_factory=dict)  # might be a unit, cannot tell (warned)
    rejected: dict[str, str] = field(default_factory=dict)   # looked residual, is not one (info)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)  # kept only when asked
    classes: dict[str, str] = field(default_factory=dict)    # module class names
    list_entries: set[str] = field(default_factory=set)      # modules that are entries of an nn.ModuleList
    _candidates: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def is_residual_block(self, name: str, granularity: str = LAYER) -> bool:
        return name in self.candidates(granularity)

    def candidates(self, granularity: str = LAYER) -> list[str]:
        """Droppable units in call order (see the module docstring for the rule)."""
        check_granularity(granularity)
        if granularity not in self._candidates:
            self._candidates[granularity] = self._choose(granularity)
        return self._candidates[granularity]

    def _layer_of_sublayers(self, name: str, inner: list[str]) -> bool:
        """A layer-list entry made of residual sub-modules of different kinds, each run once
        (T5's self-attention + feed-forward block): one layer, not a stack of layers."""
        kinds = [self.classes.get(v) for v in inner]
        return (name in self.list_entries and len(set(kinds)) == len(kinds)
                and all(self.call_counts[v] == 1 for v in inner))

    def _choose(self, granularity: str) -> list[str]:
        seen = [n for n in self.call_order if n in self.units]  # a shared unit counts once per call
        stacks: set[str] = set()
        for u in sorted(seen, key=lambda n: -n.count(".")):  # inner stacks are known before outer ones
            inner = _outermost([v for v in seen if _nested(v, u) and v not in stacks])
            if sum(self.call_counts[v] for v in inner) >= 2 and not self._layer_of_sublayers(u, inner):
                stacks.add(u)
                self.rejected[u] = f"a stack of residual units ({', '.join(inner[:3])}{', ...' if len(inner) > 3 else ''})"
        for u in seen:  # a module adding list elements one after another to its stream iterates layers
            if u not in stacks and _from_several_list_entries(u, [b for b, p in self.branches.items() if p == u]):
                stacks.add(u)
                self.rejected[u] = "a stack: it adds the branches of several layer-list entries to its stream"
        units = [n for n in seen if n not in self.undecided]
        kept = []
        for u in units:
            inner = _outermost([v for v in units if _nested(v, u) and v not in stacks])
            if u in stacks:
                continue
            if len(inner) == 1 and self.params.get(u) == self.params.get(inner[0]):
                self.rejected[u] = f"only a container of the unit {inner[0]}"
                continue
            kept.append(u)
        # branches added by a stack (an einops-style transformer: x = attn(x) + x in a loop) are
        # the only droppable parts it has, at either granularity
        loose = [b for b, p in self.branches.items() if p in stacks and b not in self.undecided]
        layers = _outermost(kept + loose)
        if granularity == LAYER:
            return [n for n in self.call_order if n in layers]
        chosen = []
        for layer in layers:
            inner = _outermost([u for u in kept if _nested(u, layer)])
            branches = [b for b, parent in self.branches.items() if parent == layer]
            # one branch alone is the layer itself (a CNN block's conv stack): keep the layer
            parts = inner + branches if inner or len(branches) >= 2 else []
            chosen += [n for n in self.call_order if n in parts] if parts else [layer]
        return chosen


@dataclass
class _Frame:
    """One running module: its input and the tensors on its skip path so far."""

    name: str
    x: torch.Tensor | None
    version: int
    skip: dict[int, torch.Tensor] = field(default_factory=dict)  # id -> tensor (held, so ids stay unique)
    joins: int = 0        # additions of an off-path tensor to the skip path
    linear_maps: int = 0

    def on_skip(self, t) -> bool:
        return isinstance(t, torch.Tensor) and self.skip.get(id(t)) is t

    def add_to_skip(self, t) -> None:
        if isinstance(t, torch.Tensor):
            self.skip[id(t)] = t


def _tensors(args, kwargs) -> list[torch.Tensor]:
    found = [a for a in args if isinstance(a, torch.Tensor)]
    found += [t for a in args if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]
    return found + [v for v in kwargs.values() if isinstance(v, torch.Tensor)]


class _Recorder:
    """Hooks and a TorchFunctionMode sharing one stack of running modules."""

    def __init__(self, model: nn.Module, trace: ModelTrace, keep_outputs: bool):
        self.trace, self.keep_outputs = trace, keep_outputs
        self.names = {module: name for name, module in model.named_modules()}
        self.stack: list[_Frame] = []
        self.producers: dict[int, tuple[torch.Tensor, list[str]]] = {}  # output tensor -> modules returning it
        self.inputs: dict[str, torch.Tensor] = {}
        self.derived: dict[int, tuple] = {}  # result -> (result, *sources) of PASS_ON ops and sums
        self.side_outputs: dict[int, tuple[torch.Tensor, list[str]]] = {}  # made by modules, returned beside the hidden

    def pre_hook(self, module, args, kwargs):
        trace, name = self.trace, self.names[module]
        x = primary_input(args, kwargs)
        trace.call_counts[name] = trace.call_counts.get(name, 0) + 1
        if trace.call_counts[name] == 1 and name:
            trace.call_order.append(name)
            trace.params[name] = sum(p.numel() for p in module.parameters())
            trace.classes[name] = type(module).__name__
        elif name:
            trace.undecided[name] = f"called {trace.call_counts[name]} times in one forward pass (shared module)"
        self._note_side_output_readers(name, args, kwargs)
        if x is not None:
            trace.input_shapes.setdefault(name, tuple(x.shape))
            self.inputs.setdefault(name, x)
        elif name:
            trace.undecided.setdefault(name, "its input is not a tensor (first positional argument or hidden_states)")
        frame = _Frame(name, x, x._version if x is not None else 0)
        frame.add_to_skip(x)
        self.stack.append(frame)

    def _note_side_output_readers(self, name: str, args, kwargs) -> None:
        """A module that returned a tensor it made besides its hidden state (a position bias),
        read by a later module, cannot be dropped: the later one would miss it."""
        for t in _tensors(args, kwargs) if name else []:
            made = self.side_outputs.get(id(t))
            for maker in made[1] if made is not None and made[0] is t else []:
                if not _nested(name, maker):
                    self.trace.undecided.setdefault(maker, f"{name} reads a tensor it returns besides its hidden "
                                                           "state (e.g. a position bias shared with later layers)")

    def post_hook(self, module, args, kwargs, output):
        frame = self.stack.pop()
        name, trace = frame.name, self.trace
        for outer in self.stack:  # the caller sees the child's work
            outer.linear_maps += frame.linear_maps
        if not name:
            return
        trace.linear_maps[name] = trace.linear_maps.get(name, 0) + frame.linear_maps
        if name not in trace.finish_order:
            trace.finish_order.append(name)
        hidden, structure = primary_output(output)
        if hidden is None:
            if frame.joins:
                trace.undecided.setdefault(name, "its output is not a tensor, nor a tuple/ModelOutput starting with one")
            return
        trace.output_shapes.setdefault(name, tuple(hidden.shape))
        trace.structures.setdefault(name, structure)
        given = {id(t) for t in _tensors(args, kwargs)}
        for extra in _tensors(tuple(output[1:]) if isinstance(output, (tuple, list)) else (), {}):
            if id(extra) not in given:  # made here (or by a child), not passed through
                entry = self.side_outputs.get(id(extra))
                if entry is None or entry[0] is not extra:
                    entry = self.side_outputs[id(extra)] = (extra, [])
                entry[1].append(name)
        entry = self.producers.setdefault(id(hidden), (hidden, []))
        if entry[0] is hidden:
            entry[1].append(name)
        else:
            self.producers[id(hidden)] = (hidden, [name])
        if self.keep_outputs:
            trace.outputs.setdefault(name, hidden.detach().clone())
        if _is_normalisation(module):  # hand-written norms (RMSNorm) keep the stream on the skip path
            for outer in self.stack:
                if frame.x is not None and outer.on_skip(frame.x):
                    outer.add_to_skip(hidden)
        self._judge(frame, hidden)

    def _judge(self, frame: _Frame, hidden: torch.Tensor) -> None:
        trace, name = self.trace, frame.name
        if frame.joins:
            trace.looked_residual.add(name)
        if not frame.joins or name in trace.undecided or frame.x is None:
            return
        if not frame.on_skip(hidden):
            trace.rejected[name] = "its output is not on its input's skip path (the sum is transformed further)"
        elif tuple(hidden.shape) != tuple(frame.x.shape):
            return  # a downsampling unit: not droppable, not surprising
        elif frame.linear_maps == 0:
            trace.rejected[name] = ("no linear map (linear layer, convolution, attention) on its branch: "
                                    "an activation or normalisation, not a block")
        else:
            trace.units.add(name)

    def on_function(self, func, args, kwargs, result) -> None:
        fname = getattr(func, "__name__", "")
        if fname in LINEAR_MAPS and self.stack:
            self.stack[-1].linear_maps += 1
        if fname in PASS_ON and isinstance(result, torch.Tensor):
            source = next((t for t in _tensors(args, kwargs) if not isinstance(t, nn.Parameter)), None)
            if source is not None:
                self.derived[id(result)] = (result, source)
        if fname in ADD_NAMES:
            if isinstance(result, torch.Tensor) and len(_tensors(args, kwargs)) >= 2:
                self.derived[id(result)] = (result, *_tensors(args, kwargs)[:2])
            self._on_add(args, kwargs, result)
        elif fname in SKIP_PRESERVING:
            first = args[0] if args else None
            for frame in self.stack:
                if frame.on_skip(first):
                    frame.add_to_skip(result)

    def _on_add(self, args, kwargs, result) -> None:
        operands = [a for a in list(args[:2]) + [kwargs.get("other")] if isinstance(a, torch.Tensor)]
        for depth, frame in enumerate(self.stack):
            on = [a for a in operands if frame.on_skip(a)]
            if not on:
                continue
            if any(a is frame.x for a in on) and frame.x._version != frame.version:
                self.trace.undecided[frame.name] = "its input was modified in place before the residual addition"
            off = [a for a in operands if not frame.on_skip(a)]  # before an in-place result joins the path
            frame.add_to_skip(result)
            if off:
                frame.joins += 1
                if depth == len(self.stack) - 1:  # the running module adds a child's output: a branch?
                    for branch in self._branches_of(frame, off[0]):
                        self.trace.branches.setdefault(branch, frame.name)

    def _branches_of(self, frame: _Frame, t: torch.Tensor, depth: int = 0) -> list[str]:
        """The outermost modules inside ``frame`` with a linear map whose outputs reach ``t``:
        through layer scales, dropout and casts, and both sides of a sum (parallel attention +
        MLP). Usually direct children; elements of a layer list when ``frame`` iterates one."""
        if depth > 32:
            return []
        entry = self.producers.get(id(t))
        inside = [n for n in entry[1] if _nested(n, frame.name) or not frame.name] if entry and entry[0] is t else []
        children = _outermost(inside)
        computing = [c for c in children if self.trace.linear_maps.get(c, 0) > 0]
        if computing:
            child = computing[0]
            same_shape = self.trace.input_shapes.get(child) == self.trace.output_shapes.get(child)
            return [child] if same_shape and self.trace.call_counts.get(child) == 1 else []
        sources = [self.inputs.get(c) for c in children]  # layer scale, drop path: what it was given
        sources = [x for x in sources if x is not None and x is not t]
        derived = self.derived.get(id(t))
        if not sources and derived and derived[0] is t:
            sources = [x for x in derived[1:] if x is not t]
        return [b for x in sources for b in self._branches_of(frame, x, depth + 1)]


def _mark_hookless_calls(model: nn.Module, trace: ModelTrace) -> None:
    """A module with a forward of its own whose parts ran although its own hooks never did was
    called through ``.forward()`` (SqueezeBERT's encoder calls its layers so): the units
    around it cannot be judged from what the hooks saw, so they are undecided."""
    called = set(trace.call_counts)
    for name, module in model.named_modules():
        if not name or name in called or type(module).forward is nn.Module.forward:
            continue  # containers without a forward (ModuleList, ModuleDict, holders) are never called
        # its parts ran through their hooks, its own never did (a parent reading a child's
        # weights, as nn.MultiheadAttention does with out_proj, runs no part of the child)
        if any(_nested(c, name) for c in called):
            for unit in [u for u in trace.units if _nested(name, u)]:
                trace.undecided.setdefault(unit, f"runs {name} without its hooks (called through .forward()), "
                                                 "so its layers cannot be seen")


def _is_normalisation(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower() and not list(module.children())


class _FunctionWatcher(TorchFunctionMode):
    def __init__(self, recorder: _Recorder):
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        self.recorder.on_function(func, args, kwargs, result)
        return result


@torch.no_grad()
def trace_model(model: nn.Module, example_input: torch.Tensor, keep_outputs: bool = False) -> ModelTrace:
    """Run ``model`` once in eval mode and record shapes, call order and residual units."""
    trace = ModelTrace()
    recorder = _Recorder(model, trace, keep_outputs)
    with eval_mode(model), hooks_removed([]) as handles:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(recorder.pre_hook, with_kwargs=True))
            handles.append(module.register_forward_hook(recorder.post_hook, with_kwargs=True))
        with _FunctionWatcher(recorder):
            model(example_input)
    trace.list_entries = {f"{n}.{i}" if n else str(i) for n, m in model.named_modules() if isinstance(m, nn.ModuleList)
                          for i in range(len(m))}
    _mark_hookless_calls(model, trace)
    for name in trace.units:
        record_removal(model, name, IDENTITY, trace.structures[name])
    for name in trace.branches:
        record_removal(model, name, ZERO, trace.structures[name])
    return trace


def find_feature_layer(model: nn.Module, trace: ModelTrace) -> str:
    """The module whose output is the feature map (or final hidden state) before pooling.

    Built-in architectures declare it (``practise_feature_layer``). Otherwise, for a
    model whose units carry token sequences (batch, tokens, width): the last module to
    finish whose output has that stream's shape (a final norm, or the encoder returning
    it), so a head that maps to classes or a vocabulary is never chosen. For image
    models: the last module to finish whose output is a 4-D map with more than one
    spatial position; the pooling that follows turns it into 1x1 or a vector.
    """
    declared = getattr(model, "practise_feature_layer", None)
    if declared:
        return declared
    units = trace.candidates()
    stream = trace.output_shapes[units[-1]] if units else None
    if stream is not None and len(stream) == 3:
        chosen = units[-1]
        for name in trace.finish_order[trace.finish_order.index(chosen) + 1:]:
            if trace.output_shapes.get(name) != stream:
                break  # pooling or a head: the hidden state ends here
            chosen = name
        return chosen
    for name in reversed(trace.finish_order):
        shape = trace.output_shapes.get(name)
        if shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1:
            return name
    raise UsageError("could not find a 4-D feature map before global pooling, nor a final hidden state after the "
                     "last residual unit; pass feature_layer explicitly")


def check_module_name(model: nn.Module, name: str, what: str = "module") -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules or not name:
        sample = [n for n in modules if n][:30]
        raise UsageError(f"unknown {what} {name!r}; valid names include: {', '.join(sample)}"
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
        try:
            for name in chain:
                x = modules[name](x)
        except (RuntimeError, TypeError, ValueError, IndexError):  # functional ops between children matter
            return None
    if reference is None or x.shape != reference.shape or not torch.allclose(x, reference, rtol=1e-4, atol=1e-5):
        return None
    return chain
