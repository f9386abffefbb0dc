"""Accuracy of a model on a loader, in the model's current mode (float, QAT or exact integer).

Its own module because both the training pipeline (`potnn.train`) and the tools that compare variants
of a trained model (`potnn.auto_fit`, `potnn.sensitivity`) need it, and the pipeline uses those tools.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy (0..1) of `model` on `loader` in the model's current mode."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in loader:
        out = model(x.to(device))
        correct += int((out.argmax(1).cpu() == y).sum())
        total += len(y)
    model.train(was_training)
    return correct / max(total, 1)
