"""Magnitude pruning during training: zero weights are free in the generated C.

Why it pays on an MCU: an ``unroll`` layer compiles each weight into a shift-and-add, and a zero
weight into nothing, so a filter with half its weights zero costs half the instructions and half
the flash. ``5level`` and ``ternary`` store zeros in their skip/zero codes. Pruning the smallest
weights of each filter, ramped up during float training so the network can adapt (potnn.train),
and kept through QAT, buys that speed (the zoo's mnist16-fast uses it).

Each filter (output channel) keeps its own largest weights, so every filter costs about the same
and no channel is silenced: a plain per-layer threshold would empty the filters whose BatchNorm
scale happened to be small.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn as nn

from .config import Config
from .encoding import get_encoding
from .layers import PoTLayer


class Pruner:
    """Keeps the smallest-magnitude weights of chosen layers at zero (in place, after every step).

    `sparsity` maps a module path to the fraction of each filter's weights that ends at zero.
    The fraction in force grows with `set_progress` (0 → 1) so pruning is gradual.
    """

    def __init__(self, model: nn.Module, sparsity: Mapping[str, float], config: Config) -> None:
        modules = dict(model.named_modules())
        self.layers: dict[str, PoTLayer] = {}
        self.targets: dict[str, float] = {}
        for path, fraction in sparsity.items():
            layer = modules.get(path)
            if not isinstance(layer, PoTLayer):
                known = ", ".join(n for n, m in modules.items() if isinstance(m, PoTLayer))
                raise ValueError(f"sparsity: {path!r} is not a PoT layer of the model (its PoT layers: {known})")
            if not 0.0 <= fraction < 1.0:
                raise ValueError(f"sparsity: {path!r} must be a fraction in [0, 1), got {fraction}")
            encoding = layer.encoding or config.encoding_for(path)
            if not get_encoding(encoding).has_zero:
                raise ValueError(f"sparsity: {path!r} is encoded {encoding!r}, which has no zero weight; "
                                 "use unroll or indexed (or 5level, ternary) for a pruned layer")
            self.layers[path] = layer
            self.targets[path] = float(fraction)
        self.masks: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def set_progress(self, progress: float) -> None:
        """Recompute the masks for `progress` × the target sparsity (by magnitude, per filter)."""
        progress = min(max(progress, 0.0), 1.0)
        for path, layer in self.layers.items():
            w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
            prune = math.floor(self.targets[path] * progress * w.shape[1])
            mask = torch.ones_like(w)
            if prune > 0:
                order = w.abs().argsort(dim=1)
                mask.scatter_(1, order[:, :prune], 0.0)
            self.masks[path] = mask.reshape(layer.weight.shape)
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the pruned weights again (after an optimizer step moved them)."""
        for path, mask in self.masks.items():
            self.layers[path].weight.mul_(mask)

    def sparsity(self) -> dict[str, float]:
        """The fraction of zero weights each pruned layer has now."""
        return {p: float((l.weight == 0).float().mean()) for p, l in self.layers.items()}
