"""Network definitions of the zoo models (plain PyTorch modules built from PoT layers)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import PoTConv2d, PoTLinear


class TwoConvNet(nn.Module):
    """conv3×3 → ReLU → pool2 → conv3×3 → ReLU → pool2 → linear, for 16×16 inputs.

    Each conv is fused with its max-pool in the export, so only the pooled maps take RAM
    (c1·8·8 + c2·4·4 bytes).
    """

    def __init__(self, c1: int = 8, c2: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = PoTConv2d(1, c1, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = PoTConv2d(c1, c2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c2)
        self.fc = PoTLinear(c2 * 16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.flatten(1))
