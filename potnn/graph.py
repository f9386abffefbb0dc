"""Capture a user's model as potnn's graph: what runs, in which order, on which shapes.

`torch.fx` traces the model's `forward` (so `torch.relu`, `F.max_pool2d` and `.view` calls are
seen, not only modules), `ShapeProp` gives every tensor's shape from an example input of the
Config's shape ([N, C, H, W], or [N, C, L] for a 1-d input: 1-d pooling becomes a 1×k window, so
the integer model treats a signal as an image of height 1), and the trace is mapped onto a small
set of operations the integer model knows:

    input, layer (PoT conv/linear), add, gap, maxpool, relu, reshape

Anything else is an error that names the module path (or the function) and its type. The graph
then decides what the modules' integer behaviour is — which ReLU is fused into the preceding
requantization, which layer is final (int32 logits), which layer sees the raw input and folds the
normalisation — and writes that wiring into the modules (`QuantModule.set_sources` & co.).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from .config import Config
from .encoding import ENCODINGS
from .layers import (
    SIGNED_RANGE,
    UNSIGNED_RANGE,
    InputFold,
    PoTAdd,
    PoTConv1d,
    PoTConv2d,
    PoTGlobalAvgPool,
    PoTLayer,
    PoTLinear,
    QuantModule,
)


class GraphError(ValueError):
    """The model uses something potnn cannot run on the MCU; the message names where and what."""


@dataclass
class Node:
    """One operation of the captured graph. `shape` is one sample's output shape (no batch dim)."""

    name: str
    op: str
    inputs: list[str]
    shape: tuple[int, ...]
    module: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    relu: bool = False
    final: bool = False
    range: tuple[int, int] | None = None  # integer output range; None for int32 logits


@dataclass
class Graph:
    """The captured model: nodes in execution order and the name of the output node."""

    nodes: list[Node]
    output: str
    input_shape: tuple[int, ...]  # (C, H, W), or (C, L) for a 1-d input

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def users(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]


class _Tracer(fx.Tracer):
    """Keeps PoT modules (and torch.nn's leaf modules) opaque, so the graph shows them as calls."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, QuantModule):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """fx-trace `model` with PoT modules as leaves; a model fx cannot trace gets a readable error."""
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types; the user needs to know it was tracing that failed
        raise GraphError(f"cannot trace {type(model).__name__}.forward with torch.fx: {exc}") from exc
    return fx.GraphModule(model, graph)


_RELU_FUNCS = {torch.relu, F.relu}
_MAXPOOL_FUNCS = {F.max_pool2d, torch.max_pool2d, F.max_pool1d, torch.max_pool1d}
_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
_SUPPORTED = ("PoTConv2d, PoTConv1d, PoTDepthwiseConv2d, PoTLinear, PoTAdd, nn.AdaptiveAvgPool1d/2d(1), "
              "nn.MaxPool1d/2d, nn.ReLU, nn.Flatten, nn.Identity, nn.Dropout, BatchNorm after a PoT layer")


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _maxpool_params(kernel: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool, dims: int,
                    where: str) -> dict[str, Any]:
    if ceil_mode or _pair(dilation) != (1, 1):
        raise GraphError(f"{where}: max pooling with ceil_mode or dilation is not supported")
    stride = kernel if stride is None or stride == [] or stride == () else stride
    if dims == 1:
        k, s, p = (1, int(_pair(kernel)[0])), (1, int(_pair(stride)[0])), (0, int(_pair(padding)[0]))
    else:
        k, s, p = _pair(kernel), _pair(stride), _pair(padding)
    return {"kernel": k, "stride": s, "padding": p}


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(int(d) for d in meta.shape)


def _check_layer(path: str, m: PoTLayer) -> None:
    if isinstance(m, (PoTConv2d, PoTConv1d)):
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise GraphError(f"{path} ({type(m).__name__}): only numeric zero padding is supported")
        if any(d != 1 for d in m.dilation):
            raise GraphError(f"{path} ({type(m).__name__}): dilation is not supported")


def _convert(gm: fx.GraphModule, input_shape: tuple[int, ...]) -> Graph:
    """Map the traced fx graph onto potnn's operations; reshapes and no-ops become aliases."""
    example = torch.zeros((2,) + input_shape)
    try:
        ShapeProp(gm).propagate(example)
    except Exception as exc:  # whatever forward raises, the likely cause is the input shape Config gave
        raise GraphError(f"forward fails on an example input of shape {list(example.shape)} (the Config's input "
                         "shape: input_channels with input_h/input_w for images, or input_length for 1-d "
                         f"signals): {exc}") from exc
    nodes: list[Node] = []
    alias: dict[str, str] = {}
    output = ""
    placeholders = 0

    def src(arg: Any, where: str) -> str:
        if not isinstance(arg, fx.Node) or _shape(arg) is None:
            raise GraphError(f"{where}: expected a tensor input")
        return alias.get(arg.name, arg.name)

    for n in gm.graph.nodes:
        shape = _shape(n)
        per_sample = shape[1:] if shape is not None else ()
        if shape is not None and n.op != "output" and shape[0] != 2:
            raise GraphError(f"{n.name}: the batch dimension must be kept (a reshape to a fixed batch size?)")
        if n.op == "placeholder":
            placeholders += 1
            if placeholders > 1:
                raise GraphError("the model must take a single input tensor")
            nodes.append(Node(n.name, "input", [], per_sample, range=UNSIGNED_RANGE))
        elif n.op == "output":
            out = n.args[0]
            if not isinstance(out, fx.Node):
                raise GraphError("forward must return a single tensor of logits")
            output = src(out, "output")
        elif n.op == "get_attr":
            raise GraphError(f"{n.target}: parameters used directly in forward are not supported")
        elif shape is None:
            continue  # shape arithmetic (x.size(0), ...) used only by reshapes
        elif n.op == "call_module":
            path = str(n.target)
            m = gm.get_submodule(path)
            where = f"{path} ({type(m).__name__})"
            if isinstance(m, PoTLayer):
                _check_layer(path, m)
                nodes.append(Node(n.name, "layer", [src(n.args[0], where)], per_sample, module=path))
            elif isinstance(m, PoTAdd):
                nodes.append(Node(n.name, "add", [src(n.args[0], where), src(n.args[1], where)], per_sample,
                                  module=path))
            elif isinstance(m, PoTGlobalAvgPool):
                nodes.append(Node(n.name, "gap", [src(n.args[0], where)], per_sample, module=path))
            elif isinstance(m, nn.ReLU):
                nodes.append(Node(n.name, "relu", [src(n.args[0], where)], per_sample))
            elif isinstance(m, (nn.MaxPool2d, nn.MaxPool1d)):
                dims = 1 if isinstance(m, nn.MaxPool1d) else 2
                if m.return_indices:
                    raise GraphError(f"{where}: return_indices is not supported")
                params = _maxpool_params(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, dims, where)
                nodes.append(Node(n.name, "maxpool", [src(n.args[0], where)], per_sample, params=params))
            elif isinstance(m, nn.Flatten):
                nodes.append(Node(n.name, "reshape", [src(n.args[0], where)], per_sample))
            elif isinstance(m, _IDENTITY_MODULES):
                alias[n.name] = src(n.args[0], where)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                raise GraphError(f"{where}: BatchNorm must directly follow a PoT layer to be fused into it")
            elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                raise GraphError(f"{where}: unsupported module (a torch.nn layer, not a PoT layer); call "
                                 "potnn.convert(model) first: it swaps such layers for PoT layers, keeping "
                                 "their weights")
            else:
                raise GraphError(f"{where}: unsupported module; potnn supports {_SUPPORTED}")
        elif n.op == "call_function":
            fn = n.target
            name = getattr(fn, "__name__", str(fn))
            where = f"{n.name} (function {name})"
            if fn in _RELU_FUNCS:
                nodes.append(Node(n.name, "relu", [src(n.args[0], where)], per_sample))
            elif fn in _MAXPOOL_FUNCS:
                a = list(n.args) + [None] * 6
                kw = n.kwargs
                dims = 1 if fn in (F.max_pool1d, torch.max_pool1d) else 2
                params = _maxpool_params(kw.get("kernel_size", a[1]), kw.get("stride", a[2]),
                                         kw.get("padding", a[3] if a[3] is not None else 0),
                                         kw.get("dilation", a[4] if a[4] is not None else 1),
                                         bool(kw.get("ceil_mode", a[5] or False)), dims, where)
                nodes.append(Node(n.name, "maxpool", [src(n.args[0], where)], per_sample, params=params))
            elif fn is torch.flatten:
                nodes.append(Node(n.name, "reshape", [src(n.args[0], where)], per_sample))
            elif fn in (F.dropout,):
                alias[n.name] = src(n.args[0], where)
            elif fn in (operator.add, torch.add):
                raise GraphError(f"{where}: adding tensors needs a potnn.PoTAdd module (it aligns the scales)")
            else:
                raise GraphError(f"{where}: unsupported function; use PoT layers, relu, max pooling and reshapes")
        elif n.op == "call_method":
            where = f"{n.name} (Tensor.{n.target})"
            if n.target == "relu":
                nodes.append(Node(n.name, "relu", [src(n.args[0], where)], per_sample))
            elif n.target in ("view", "reshape", "flatten"):
                nodes.append(Node(n.name, "reshape", [src(n.args[0], where)], per_sample))
            elif n.target == "contiguous":
                alias[n.name] = src(n.args[0], where)
            else:
                raise GraphError(f"{where}: unsupported tensor method")
    return Graph(nodes, output, input_shape)


def _fuse_relus(g: Graph) -> None:
    """Fold each ReLU into the requantization that precedes it, directly or through a max-pool.

    A fused ReLU costs nothing (the clamp's lower bound becomes 0) and doubles the resolution of the
    activation (0..255 instead of -128..127). max-pool commutes with ReLU, so conv→pool→relu is
    treated as conv→relu→pool. The ReLU stays in the user's forward, where it is then a no-op.
    """
    requant = {"layer", "add", "gap"}
    for r in [n for n in g.nodes if n.op == "relu"]:
        p = g.node(r.inputs[0])
        target = None
        if p.op in requant and [u.name for u in g.users(p.name)] == [r.name]:
            target = p
        elif p.op == "maxpool" and [u.name for u in g.users(p.name)] == [r.name]:
            pp = g.node(p.inputs[0])
            if pp.op in requant and [u.name for u in g.users(pp.name)] == [p.name]:
                target = pp
        if target is None:
            continue
        target.relu = True
        for u in g.users(r.name):
            u.inputs = [r.inputs[0] if i == r.name else i for i in u.inputs]
        if g.output == r.name:
            g.output = r.inputs[0]
        g.nodes.remove(r)


def _assign_ranges(g: Graph) -> None:
    """Integer range of each tensor; a layer that produces the output directly is final (int32 logits)."""
    out = g.output
    while g.node(out).op == "reshape":
        out = g.node(out).inputs[0]
    for n in g.nodes:
        ins = [g.node(i).range for i in n.inputs]
        nonneg = all(r is not None and r[0] >= 0 for r in ins)
        if n.op == "input":
            continue
        if n.op == "layer" and n.name == out:
            n.final, n.range = True, None
        elif n.op in ("layer", "add", "gap"):
            if any(r is None for r in ins):
                raise GraphError(f"{n.module}: takes the final layer's int32 logits as input")
            n.range = UNSIGNED_RANGE if n.relu or (n.op != "layer" and nonneg) else SIGNED_RANGE
        elif n.op == "relu":
            n.range = (0, ins[0][1]) if ins[0] is not None else None
        else:
            n.range = ins[0]


def _scale_source(g: Graph, name: str) -> str:
    """The node whose scale a tensor has: walk back through max-pool, ReLU and reshape."""
    n = g.node(name)
    while n.op in ("maxpool", "relu", "reshape"):
        n = g.node(n.inputs[0])
    return n.name


def _maxpool_map(t: torch.Tensor, step: Node) -> torch.Tensor:
    """Apply a max-pool node to a per-element map (1-d maps are pooled as height-1 images)."""
    image = t.reshape(t.shape[0], 1, t.shape[1]) if t.dim() == 2 else t
    pooled = F.max_pool2d(image.unsqueeze(0), step.params["kernel"], step.params["stride"], step.params["padding"])
    return pooled.reshape(step.shape)


def _input_fold(g: Graph, layer: Node, m: PoTLayer, config: Config) -> InputFold:
    """Per-element mean/std seen by a layer that reads the raw input (through pools and reshapes)."""
    per_channel = (-1,) + (1,) * (len(g.input_shape) - 1)
    mean = torch.tensor(config.channel_mean(), dtype=torch.float64).view(per_channel).expand(g.input_shape)
    std = torch.tensor(config.channel_std(), dtype=torch.float64).view(per_channel).expand(g.input_shape)
    path: list[Node] = []
    n = g.node(layer.inputs[0])
    while n.op != "input":
        if n.op == "relu":
            raise GraphError(f"{layer.module}: a ReLU on the normalised input cannot be folded; remove it")
        path.append(n)
        n = g.node(n.inputs[0])
    for step in reversed(path):  # a constant-per-channel map goes through a max-pool unchanged, but take it through
        if step.op == "maxpool":
            mean, std = (_maxpool_map(t, step) for t in (mean, std))
        else:
            mean, std = mean.reshape(step.shape), std.reshape(step.shape)
    in_shape = g.node(layer.inputs[0]).shape
    mean, std = mean.reshape(in_shape), std.reshape(in_shape)
    if isinstance(m, PoTLinear):
        return InputFold(mean.clone(), std.clone(), mean.view(1, -1).clone(), std.view(1, -1).clone())
    flat_mean, flat_std = mean.reshape(in_shape[0], -1), std.reshape(in_shape[0], -1)
    if not (torch.all(flat_mean == flat_mean[:, :1]) and torch.all(flat_std == flat_std[:, :1])):
        raise GraphError(f"{layer.module}: the input normalisation is not constant along this layer's spatial axes")
    cm, cs = flat_mean[:, 0], flat_std[:, 0]
    icpg = m.weight.shape[1]
    ocpg = m.out_channels // m.groups
    channel = (torch.arange(m.out_channels) // ocpg).view(-1, 1) * icpg + torch.arange(icpg).view(1, -1)
    wview = tuple(channel.shape) + (1,) * (m.weight.dim() - 2)
    bview = (-1,) + (1,) * (len(in_shape) - 1)
    return InputFold(cm.view(bview).clone(), cs.view(bview).clone(), cm[channel].view(wview), cs[channel].view(wview))


def capture(model: nn.Module, config: Config) -> Graph:
    """Trace `model` and return its graph (the model is not changed; see `wire` for that)."""
    gm = trace(model)
    g = _convert(gm, config.input_shape)
    _fuse_relus(g)
    _assign_ranges(g)
    for n in g.nodes:
        if n.op == "input" and g.users(n.name) and any(u.op in ("add", "gap") for u in g.users(n.name)):
            raise GraphError("the raw input must go through a PoT layer before an add or average pool")
    return g


def wire(model: nn.Module, g: Graph, config: Config) -> None:
    """Write the graph's decisions into the model's PoT modules (sources, ranges, folds, encodings)."""
    modules = dict(model.named_modules())
    layer_paths = [n.module for n in g.nodes if n.op == "layer"]
    unknown = sorted(set(config.layer_encodings) - set(layer_paths))
    if unknown:
        raise GraphError(f"Config.layer_encodings names {unknown}, which are not PoT layers; layers are {layer_paths}")
    for n in g.nodes:
        if n.module is None:
            continue
        m = modules[n.module]
        assert isinstance(m, QuantModule)
        sources = [g.node(_scale_source(g, i)) for i in n.inputs]
        m.set_sources([modules[s.module] if s.module is not None else None for s in sources])  # type: ignore[misc]
        m._potnn_range = n.range if n.range is not None else SIGNED_RANGE
        if isinstance(m, PoTLayer):
            m._potnn_final = n.final
            if n.module in config.layer_encodings or m.encoding is None:
                m.encoding = config.encoding_for(n.module)
            if m.encoding not in ENCODINGS:
                raise GraphError(f"{n.module}: unknown encoding {m.encoding!r}; valid: {', '.join(ENCODINGS)}")
            m._potnn_fold = _input_fold(g, n, m, config) if _scale_source(g, n.inputs[0]) == g.nodes[0].name else None
        if isinstance(m, PoTGlobalAvgPool):
            in_shape = g.node(n.inputs[0]).shape
            area = 1
            for d in in_shape[1:]:
                area *= d
            m._potnn_area = area
