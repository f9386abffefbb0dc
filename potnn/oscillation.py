"""Freezing the weights that oscillate across a power-of-two boundary during QAT.

Why: with straight-through rounding, a latent weight that sits on the boundary between two
levels (say 2 and 4) is pushed back and forth across it by the gradient, so its integer value
flips every few steps however small the learning rate. On the mnist16-fast trained without
freezing, 50 steps at lr 1e-6 (latent weights moved by < 3e-5) flipped 8 of conv1's 84 nonzero
weights and moved test accuracy from 98.92 % to 98.56 %: the exported model is whichever side
each such weight happened to be on at the last step. Following Nagel et al. (2022, "Overcoming oscillations in quantization-aware
training"), each weight's oscillation frequency is tracked as a moving average of its flips that
reverse the previous flip's direction; a weight whose frequency passes a threshold is fixed at
the level its latent value has spent most time nearest to (the rounded moving average), its
latent weight set to exactly that level, and no longer trained.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from .layers import PoTLayer
from .quantizer import quantize_weights


class OscillationFreezer:
    """Tracks the integer weights of a model's PoT layers after every step; freezes the oscillating ones.

    `threshold` is the oscillation frequency (reversing flips per step, moving average over about
    1/`momentum` steps) above which a weight is frozen. Call `step()` after each optimizer step.
    """

    def __init__(self, model: nn.Module, threshold: float, momentum: float = 0.01) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"freeze threshold must be a frequency in (0, 1), got {threshold}")
        self.threshold = threshold
        self.momentum = momentum
        self.layers: dict[str, PoTLayer] = {n: m for n, m in model.named_modules() if isinstance(m, PoTLayer)}
        self._last: dict[str, torch.Tensor] = {}
        self._direction: dict[str, torch.Tensor] = {}
        self._frequency: dict[str, torch.Tensor] = {}
        self._average: dict[str, torch.Tensor] = {}
        self.frozen: dict[str, torch.Tensor] = {}
        self._value: dict[str, torch.Tensor] = {}
        self._steps = 0
        for name, layer in self.layers.items():
            q, scaled = _levels(layer)
            self._last[name] = q
            self._direction[name] = torch.zeros_like(q)
            self._frequency[name] = torch.zeros_like(q)
            self._average[name] = torch.zeros_like(scaled)
            self.frozen[name] = torch.zeros_like(q, dtype=torch.bool)
            self._value[name] = torch.zeros_like(q)

    @torch.no_grad()
    def step(self) -> None:
        """Update the flip statistics, freeze the weights past the threshold, and hold the frozen ones."""
        m = self.momentum
        self._steps += 1
        debias = 1.0 - (1.0 - m) ** self._steps  # the average starts at 0: Adam's correction makes it unbiased
        for name, layer in self.layers.items():
            frozen = self.frozen[name]
            if frozen.any():  # hold the frozen latent weights where they were put
                layer.weight.copy_(torch.where(frozen, self._value[name].to(layer.weight.dtype), layer.weight))
            q, scaled = _levels(layer)
            change = torch.sign(q - self._last[name])
            reversed_ = (change != 0) & (change == -self._direction[name])
            self._direction[name] = torch.where(change != 0, change, self._direction[name])
            self._frequency[name] = m * reversed_.double() + (1 - m) * self._frequency[name]
            self._average[name] = m * scaled + (1 - m) * self._average[name]
            self._last[name] = q
            new = (self._frequency[name] > self.threshold) & ~frozen
            if new.any():
                level = quantize_weights(self._average[name] / debias, layer.encoding or "unroll", exact=True)
                target = layer.latent_weight(level).to(layer.weight.dtype)
                layer.weight.copy_(torch.where(new, target, layer.weight))
                self._value[name] = torch.where(new, target.double(), self._value[name])
                self.frozen[name] = frozen | new

    def counts(self) -> Mapping[str, int]:
        """How many weights of each layer are frozen now."""
        return {n: int(f.sum()) for n, f in self.frozen.items()}


def _levels(layer: PoTLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer levels, folded weights in level units) of `layer`, rounded as its integer model rounds them."""
    w = layer.folded_weight()
    scaled = w / layer.channel_scale().view((-1,) + (1,) * (w.dim() - 1))
    return quantize_weights(scaled, layer.encoding or "unroll", exact=True), scaled
