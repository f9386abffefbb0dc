"""Network definitions of the zoo models (plain PyTorch modules built from PoT layers)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import PoTConv2d, PoTLinear


class ConvNet(nn.Module):
    """A stack of 3×3 conv stages and a linear classifier, for 16×16 single-channel inputs.

    `stages` lists (out_channels, how the stage halves the resolution): "pool" is conv(pad 1) →
    BatchNorm → ReLU → max-pool 2 (the export computes conv and pool together, so only the pooled
    map takes RAM); "stride" is a stride-2 conv (4× fewer operations than conv + pool); "none"
    keeps the size. BatchNorm is folded into the conv before quantization.
    """

    def __init__(self, stages: tuple[tuple[int, str], ...] = ((8, "pool"), (16, "pool")), size: int = 16,
                 classes: int = 10) -> None:
        super().__init__()
        self.modes = tuple(mode for _, mode in stages)
        convs, norms = [], []
        channels = 1
        for out, mode in stages:
            convs.append(PoTConv2d(channels, out, 3, stride=2 if mode == "stride" else 1, padding=1))
            norms.append(nn.BatchNorm2d(out))
            channels = out
            size = size // 2 if mode in ("pool", "stride") else size
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.fc = PoTLinear(channels * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm, mode in zip(self.convs, self.norms, self.modes):
            x = torch.relu(norm(conv(x)))
            if mode == "pool":
                x = F.max_pool2d(x, 2)
        return self.fc(x.flatten(1))


class TinyNet(nn.Module):
    """The README's quick-start model: two convs, global average pooling, a linear classifier.

    Kept here so the tests and the benchmark measure exactly the model the README shows.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = PoTConv2d(1, 8, kernel_size=3, padding=1)
        self.conv2 = PoTConv2d(8, 16, kernel_size=3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = PoTLinear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.conv2(x))
        x = self.pool(x).view(x.size(0), -1)
        return self.fc(x)
