"""Model rewrites done before quantization: BatchNorm folding and global-average-pool replacement.

Both change the user's model in place (as the manual pipeline in the README expects) and keep
its float behaviour: BatchNorm in eval mode is an affine map per channel, which folds exactly
into the preceding layer's weights and bias; PoTGlobalAvgPool computes the same mean in float.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .graph import trace
from .layers import PoTGlobalAvgPool, PoTLayer


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def replace_global_pooling(model: nn.Module) -> nn.Module:
    """Replace every nn.AdaptiveAvgPool1d/2d with output size 1 by PoTGlobalAvgPool (in place)."""
    for path, m in list(model.named_modules()):
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d)):
            size = m.output_size
            sizes = size if isinstance(size, (tuple, list)) else (size,)
            if all(s == 1 for s in sizes):
                _set_submodule(model, path, PoTGlobalAvgPool())
    return model


@torch.no_grad()
def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each BatchNorm that directly follows a PoT layer into that layer (in place); returns the model.

    The BatchNorm module is replaced by nn.Identity, so forward keeps working unchanged. A BatchNorm
    whose input is shared with another consumer cannot be folded and is left for the graph capture to
    report.
    """
    gm = trace(model)
    modules = dict(model.named_modules())
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(str(node.target)), (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        prev = node.args[0]
        if getattr(prev, "op", None) != "call_module" or len(prev.users) != 1:
            continue
        layer = modules.get(str(prev.target))
        if not isinstance(layer, PoTLayer):
            continue
        bn = modules[str(node.target)]
        assert isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d))
        mean = bn.running_mean if bn.running_mean is not None else torch.zeros(bn.num_features)
        var = bn.running_var if bn.running_var is not None else torch.ones(bn.num_features)
        gamma = bn.weight if bn.weight is not None else torch.ones(bn.num_features)
        beta = bn.bias if bn.bias is not None else torch.zeros(bn.num_features)
        factor = gamma / torch.sqrt(var + bn.eps)
        layer.weight.mul_(factor.view((-1,) + (1,) * (layer.weight.dim() - 1)))
        bias = layer.bias if layer.bias is not None else torch.zeros_like(mean)
        new_bias = (bias - mean) * factor + beta
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias.clone())
        else:
            layer.bias.copy_(new_bias)
        _set_submodule(model, str(node.target), nn.Identity())
    return model
