"""Network definitions of the zoo models (plain PyTorch modules built from PoT layers)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import PoTConv1d, PoTConv2d, PoTLinear


class ConvNet(nn.Module):
    """A stack of 3×3 conv stages and a linear classifier, for square single-channel images (16×16 by default).

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


class SignalNet(nn.Module):
    """1-d conv stages, global average pooling and a linear classifier, for [N, C, L] signal windows.

    `stages` lists (out_channels, kernel, pool): conv → BatchNorm → ReLU → max-pool by `pool` (1:
    none). Global average pooling makes the classifier independent of the window length and keeps
    it small, which is what a 2 KB RAM / 16 KB flash target needs. The first conv is unpadded: it
    takes the raw bytes, where a padded zero is not the normalised zero the float model trained
    with (far from it when a channel's std is small); the others pad by kernel // 2.
    """

    def __init__(self, channels: int, stages: tuple[tuple[int, int, int], ...], classes: int) -> None:
        super().__init__()
        self.pools = tuple(pool for _, _, pool in stages)
        convs, norms = [], []
        for i, (out, kernel, _) in enumerate(stages):
            convs.append(PoTConv1d(channels, out, kernel, padding=kernel // 2 if i else 0))
            norms.append(nn.BatchNorm1d(out))
            channels = out
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(norms)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = PoTLinear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm, pool in zip(self.convs, self.norms, self.pools):
            x = torch.relu(norm(conv(x)))
            if pool > 1:
                x = F.max_pool1d(x, pool)
        return self.fc(self.gap(x).flatten(1))


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
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = self.pool(x).view(x.size(0), -1)
        return self.fc(x)
