"""Models for the budget and stack tests: one whose stack, not its buffers, is what limits it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import potnn
from potnn import PoTConv2d, PoTLinear


class PatchNet(nn.Module):
    """Three input channels and a 7×7 kernel: each output copies a 147-byte receptive field onto the
    stack, and the unrolled sums spill beside it, so the stack dwarfs the activation buffers."""

    def __init__(self, channels: int, side: int, kernel: int = 7) -> None:
        super().__init__()
        self.conv = PoTConv2d(channels, 4, kernel, stride=2, padding=kernel // 2)
        self.fc = PoTLinear(4 * ((side + 1) // 2) ** 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


@dataclass
class Prepared:
    model: nn.Module
    config: potnn.Config  # the plain Config it was prepared with
    images: np.ndarray  # uint8 [N, C, side, side]


def patch_net(n_images: int = 10, seed: int = 0, channels: int = 3, side: int = 12) -> Prepared:
    torch.manual_seed(seed)
    model = PatchNet(channels, side).eval()
    config = potnn.Config(input_channels=channels, input_h=side, input_w=side, mean=0.5, std=0.25,
                          layer_encodings={"fc": "fp130"})
    images = np.random.default_rng(seed).integers(0, 256, (n_images, channels, side, side), dtype=np.uint8)
    potnn.calibrate(model, [((torch.from_numpy(images).float() / 255 - 0.5) / 0.25,)], config)
    potnn.prepare_qat(model, config)
    return Prepared(model, config, images)


def for_board(config: potnn.Config, board: str) -> potnn.Config:
    """The same Config, budgeted for `board` with the bench firmware."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
              if f.name not in ("flash", "ram", "board")}
    return potnn.Config.for_board(board, **fields)


def export_for_board(prepared: Prepared, board: str, directory: Path) -> potnn.codegen.ExportReport:
    directory.mkdir(parents=True, exist_ok=True)
    return potnn.export(prepared.model, directory / "model.h", for_board(prepared.config, board))
