"""`potnn.prune_channels`: remove whole output channels, and the inputs that read them, across layers.

Weight pruning (`potnn.sparsity`) zeroes weights inside filters; this removes filters. A removed
output channel shrinks every tensor it flows into and every weight that reads it, so the exported
model needs less flash, less RAM and fewer instructions. Which channels go is decided by importance =
the L2 norm of the channel's filter (its float weights; with BatchNorm not yet folded, before the
BatchNorm's scale), lowest first — the usual criterion of structured pruning (Li et al., "Pruning
Filters for Efficient ConvNets", 2017).

Consumers are found in the model's traced graph (`potnn.graph.trace`, with shapes from the Config):
a convolution or linear layer loses the matching input channels (a linear layer after a flatten loses
the matching blocks of columns), a depthwise convolution loses the channels themselves and passes the
removal on, as do BatchNorm, ReLU, max-pool, average pool, dropout and reshapes. A channel that
reaches an addition, or the model's output, is refused: pruning one operand of an add alone would
misalign the sum.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp

from .config import Config
from .graph import trace
from .layers import PoTAdd, PoTConv1d, PoTConv2d, PoTGlobalAvgPool, PoTLayer, QuantModule
from .qat import ensure_captured

_PASS_MODULES = (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                 PoTGlobalAvgPool, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
_PASS_FUNCTIONS = {"relu", "max_pool1d", "max_pool2d", "dropout", "contiguous", "adaptive_avg_pool2d",
                   "adaptive_avg_pool1d"}
_RESHAPES = {"flatten", "view", "reshape"}


@dataclass
class _Cut:
    """Channels kept in a tensor: `keep` of its channels, each a block of `block` values once flattened."""

    keep: torch.Tensor
    channels: int
    block: int = 1


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, (PoTConv2d, PoTConv1d)) and m.groups > 1 and m.groups == m.in_channels


def _importance(m: PoTLayer) -> torch.Tensor:
    """L2 norm of each output channel's filter."""
    return m.weight.detach().double().reshape(m.weight.shape[0], -1).norm(dim=1)


def _blocks(keep: torch.Tensor, size: int) -> torch.Tensor:
    """The indices of blocks `keep` of `size` consecutive entries (a channel's columns, a depthwise group)."""
    return (keep.view(-1, 1) * size + torch.arange(size).view(1, -1)).flatten()


def _target(fx_node: fx.Node) -> str:
    return getattr(fx_node.target, "__name__", str(fx_node.target))


class _Pruner:
    """Walks the graph from each pruned layer and shrinks every module its channels reach (on one model)."""

    def __init__(self, model: nn.Module, config: Config) -> None:
        self.model = model
        self.gm = trace(model)
        training = {m: m.training for m in model.modules()}
        self.gm.eval()  # shapes only: BatchNorm must not update its running statistics
        with torch.no_grad():
            ShapeProp(self.gm).propagate(torch.zeros((2,) + config.input_shape))
        for m, flag in training.items():
            m.training = flag

    def node_of(self, path: str) -> fx.Node:
        for n in self.gm.graph.nodes:
            if n.op == "call_module" and n.target == path:
                return n
        raise ValueError(f"prune_channels: {path!r} is not called in the model's forward")

    def plan(self, path: str, fraction: float) -> list[tuple[str, str, _Cut]]:
        """The edits (module path, kind: out, in, depthwise or bn; cut) that pruning `fraction` of `path`'s
        output channels needs."""
        m = self.model.get_submodule(path)
        channels = m.out_channels_count()
        keep_n = max(1, channels - int(math.floor(fraction * channels + 1e-9)))
        keep = torch.sort(torch.argsort(_importance(m), descending=True)[:keep_n]).values
        cut = _Cut(keep, channels)
        edits = [(path, "out", cut)]
        self._follow(self.node_of(path), cut, edits, path)
        return edits

    def _follow(self, node: fx.Node, cut: _Cut, edits: list[tuple[str, str, _Cut]], origin: str) -> None:
        for user in node.users:
            reached = user.target if user.op == "call_module" else user.name
            where = f"prune_channels: {origin}'s channels reach {reached}"
            if user.op == "call_module":
                m = self.model.get_submodule(str(user.target))
                if isinstance(m, PoTAdd):
                    raise ValueError(f"{where}, an add: both operands would have to lose the same channels; "
                                     "prune layers outside residual additions")
                if isinstance(m, PoTLayer) and _is_depthwise(m):
                    if cut.block != 1:
                        raise ValueError(f"{where} after a reshape; prune a layer whose channels are not reshaped")
                    edits.append((str(user.target), "depthwise", cut))
                    self._follow(user, _Cut(_blocks(cut.keep, m.out_channels // m.in_channels), m.out_channels),
                                 edits, origin)
                elif isinstance(m, PoTLayer):
                    if isinstance(m, (PoTConv2d, PoTConv1d)) and (m.groups != 1 or cut.block != 1):
                        raise ValueError(f"{where}, a grouped convolution or one after a reshape; not supported")
                    if not isinstance(m, (PoTConv2d, PoTConv1d)) and len(user.args[0].meta["tensor_meta"].shape) != 2:
                        raise ValueError(f"{where}, a linear layer on a tensor with more than 2 dimensions")
                    edits.append((str(user.target), "in", cut))
                elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    edits.append((str(user.target), "bn", cut))
                    self._follow(user, cut, edits, origin)
                elif isinstance(m, _PASS_MODULES):
                    self._follow(user, cut, edits, origin)
                elif isinstance(m, nn.Flatten):
                    self._follow(user, self._reshaped(user, cut, where), edits, origin)
                else:
                    raise ValueError(f"{where} ({type(m).__name__}), which channel pruning does not know")
            elif user.op in ("call_function", "call_method") and _target(user) in _PASS_FUNCTIONS:
                self._follow(user, cut, edits, origin)
            elif user.op in ("call_function", "call_method") and _target(user) in _RESHAPES:
                self._follow(user, self._reshaped(user, cut, where), edits, origin)
            elif user.op == "output":
                raise ValueError(f"prune_channels: {origin}'s channels reach the model's output; prune a layer "
                                 "before the last one")
            else:
                raise ValueError(f"{where} ({_target(user)}), which channel pruning does not know")

    @staticmethod
    def _reshaped(user: fx.Node, cut: _Cut, where: str) -> _Cut:
        """A flatten of [N, C, ...] to [N, C*block]: the channel becomes a block of columns."""
        src = user.args[0].meta["tensor_meta"].shape
        out = user.meta["tensor_meta"].shape
        if cut.block != 1 or len(out) != 2 or int(src[1]) != cut.channels:
            raise ValueError(f"{where}, a reshape other than flattening [N, C, ...] to [N, C*...]; not supported")
        block = int(math.prod(src[1:])) // cut.channels
        return _Cut(cut.keep, cut.channels, block)


@torch.no_grad()
def _apply(model: nn.Module, path: str, kind: str, cut: _Cut) -> None:
    m = model.get_submodule(path)
    if kind == "bn":
        for name in ("weight", "bias"):
            if getattr(m, name) is not None:
                setattr(m, name, nn.Parameter(getattr(m, name)[cut.keep].clone()))
        for name in ("running_mean", "running_var"):
            if getattr(m, name) is not None:
                setattr(m, name, getattr(m, name)[cut.keep].clone())
        m.num_features = len(cut.keep)
        return
    assert isinstance(m, PoTLayer)
    if kind == "in":
        columns = _blocks(cut.keep, cut.block)
        m.weight = nn.Parameter(m.weight[:, columns].clone())
        if isinstance(m, nn.Linear):
            m.in_features = len(columns)
        else:
            m.in_channels = len(columns)
        return
    keep = cut.keep
    if kind == "depthwise":
        keep = _blocks(cut.keep, m.out_channels // m.in_channels)
        m.in_channels = m.groups = len(cut.keep)
    m.weight = nn.Parameter(m.weight[keep].clone())
    if m.bias is not None:
        m.bias = nn.Parameter(m.bias[keep].clone())
    m.channel_shift = m.channel_shift[keep].clone()
    if isinstance(m, nn.Linear):
        m.out_features = len(keep)
    else:
        m.out_channels = len(keep)


def prune_channels(model: nn.Module, fractions: Mapping[str, float], config: Config | None = None) -> nn.Module:
    """A copy of `model` without the least important `fraction` of each named layer's output channels.

    `fractions` maps a PoT layer's module path to the fraction of its output channels to remove
    (importance: L2 norm of the filter, see the module doc; at least one channel stays). The returned
    model is a new module — `model` is not changed, so several settings can be tried from one model.
    Every consumer of a removed channel loses its input too. A prepared model (calibrated, in QAT or
    integer mode) keeps its scales, shifts and mode and is captured again, so it exports at once
    (smaller, and bit-exact like any model); fine-tune it to win back accuracy. `config` gives the input
    shape for tracing; a prepared model's own Config is used when it is omitted.
    """
    prepared = getattr(model, "_potnn_graph", None) is not None
    config = config if config is not None else getattr(model, "_potnn_config", None)
    if config is None:
        raise ValueError("prune_channels: give config= (its input shape is needed to trace the model), or "
                         "prepare the model first")
    layers = {p: m for p, m in model.named_modules() if isinstance(m, PoTLayer)}
    for path, fraction in fractions.items():
        if path not in layers:
            raise ValueError(f"prune_channels: {path!r} is not a PoT layer of the model (its PoT layers: "
                             f"{', '.join(layers)})")
        if _is_depthwise(layers[path]):
            raise ValueError(f"prune_channels: {path!r} is depthwise (one filter per input channel); prune the "
                             "layer that feeds it, and it loses the same channels")
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"prune_channels: the fraction for {path!r} must be in [0, 1), got {fraction}")
    pruned = copy.deepcopy(model).cpu()
    modes = {p: m.potnn_mode for p, m in pruned.named_modules() if isinstance(m, QuantModule)}
    for m in pruned.modules():
        if isinstance(m, QuantModule):
            m.potnn_mode = "float"
    pruner = _Pruner(pruned, config)
    edits = [e for path, fraction in fractions.items() for e in pruner.plan(path, fraction)]
    for path, kind, cut in edits:
        _apply(pruned, path, kind, cut)
    if prepared:
        pruned._potnn_graph = None
        ensure_captured(pruned, config)
    for path, mode in modes.items():
        pruned.get_submodule(path).potnn_mode = mode
    return pruned
