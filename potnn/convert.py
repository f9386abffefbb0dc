"""`potnn.convert`: a plain torch.nn model → the same model with PoT layers, weights kept.

A model trained in float with torch.nn's own layers then goes straight to `potnn.calibrate` and QAT,
as torch.ao's prepare swaps modules in place. Each nn.Conv1d, nn.Conv2d and nn.Linear is replaced by
its PoT layer with the same options and a copy of its weight and bias; a Conv2d whose groups equal its
in and out channels becomes a PoTDepthwiseConv2d. Everything else is left as it is: a module potnn
cannot run is named (path and type) when the graph is captured, by `potnn.train`/`calibrate`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import PoTConv1d, PoTConv2d, PoTDepthwiseConv2d, PoTLayer, PoTLinear

_CONVERTIBLE = (nn.Conv1d, nn.Conv2d, nn.Linear)


def _check_conv(path: str, m: nn.Conv1d | nn.Conv2d) -> None:
    """The options the integer model does not have, refused before anything is replaced."""
    where = f"{path} ({type(m).__name__})"
    if any(d != 1 for d in m.dilation):
        raise ValueError(f"potnn.convert: {where} has dilation {tuple(m.dilation)}; potnn supports dilation 1 only")
    if m.padding_mode != "zeros":
        raise ValueError(f"potnn.convert: {where} pads with {m.padding_mode!r}; potnn supports zero padding only")
    if isinstance(m.padding, str):
        raise ValueError(f"potnn.convert: {where} has padding={m.padding!r}; give the padding as numbers")


def _pot_layer(m: nn.Module) -> PoTLayer:
    """The PoT layer with `m`'s options (its weights are copied by the caller)."""
    bias = m.bias is not None
    if isinstance(m, nn.Linear):
        return PoTLinear(m.in_features, m.out_features, bias=bias)
    if isinstance(m, nn.Conv1d):
        return PoTConv1d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                         groups=m.groups, bias=bias)
    assert isinstance(m, nn.Conv2d)
    if m.groups == m.in_channels == m.out_channels and m.groups > 1:
        return PoTDepthwiseConv2d(m.in_channels, m.kernel_size, stride=m.stride, padding=m.padding, bias=bias)
    return PoTConv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                     groups=m.groups, bias=bias)


@torch.no_grad()
def convert(model: nn.Module) -> nn.Module:
    """Replace every nn.Conv1d, nn.Conv2d and nn.Linear of `model` by its PoT layer, in place; returns it.

    Weights, biases, stride, padding and groups are kept exactly, on the weight's device and dtype,
    so the float model computes what it computed before. Dilation other than 1 and padding modes other
    than zeros are refused (ValueError naming the module) before any module is replaced. A model that
    is itself one such layer is returned as a new PoT layer (there is no parent to replace it in).
    """
    targets = [(path, m) for path, m in model.named_modules()
               if isinstance(m, _CONVERTIBLE) and not isinstance(m, PoTLayer)]
    for path, m in targets:
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            _check_conv(path or type(m).__name__, m)
    result = model
    for path, m in targets:
        new = _pot_layer(m).to(device=m.weight.device, dtype=m.weight.dtype)
        new.weight.copy_(m.weight)
        if m.bias is not None:
            new.bias.copy_(m.bias)
        new.train(m.training)
        if not path:
            result = new
            continue
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, name, new)
    return result
