"""potnn.prune_channels: whole channels removed across dependent layers; the result stays bit-exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import potnn
from potnn.hostrun import run_header

CONFIG = potnn.Config(mean=0.5, std=0.25)


class Net(nn.Module):
    def __init__(self, bn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8) if bn else nn.Identity()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.conv2 = nn.Conv2d(8, 6, 3, stride=2, padding=1)
        self.fc1 = nn.Linear(6 * 4 * 4, 12)
        self.fc = nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        x = torch.relu(self.conv2(torch.relu(self.dw(x))))
        return self.fc(torch.relu(self.fc1(x.flatten(1))))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = potnn.PoTConv2d(1, 4, 3, padding=1)
        self.b = potnn.PoTConv2d(4, 4, 3, padding=1)
        self.add = potnn.PoTAdd()
        self.fc = potnn.PoTLinear(4 * 16 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a(x))
        return self.fc(torch.relu(self.add(y, self.b(y))).flatten(1))


def _images(n: int, seed: int) -> torch.Tensor:
    pixels = torch.randint(0, 256, (n, 1, 16, 16), generator=torch.Generator().manual_seed(seed))
    return (pixels.float() / 255 - 0.5) / 0.25


@torch.no_grad()
def test_removes_the_weakest_channels_and_their_consumers_inputs() -> None:
    torch.manual_seed(0)
    model = potnn.convert(Net()).eval()
    pruned = potnn.prune_channels(model, {"conv": 0.5, "conv2": 0.5}, CONFIG)
    assert model.conv.out_channels == 8  # the given model is not changed
    keep = torch.sort(model.conv.weight.flatten(1).norm(dim=1).argsort(descending=True)[:4]).values
    keep2 = torch.sort(model.conv2.weight.flatten(1).norm(dim=1).argsort(descending=True)[:3]).values
    assert torch.equal(pruned.conv.weight, model.conv.weight[keep])
    assert (pruned.dw.in_channels, pruned.dw.out_channels, pruned.dw.groups) == (4, 4, 4)
    assert torch.equal(pruned.conv2.weight, model.conv2.weight[keep2][:, keep])
    assert pruned.fc1.in_features == 3 * 16
    # The pruned float model computes what the original computes with those channels silenced.
    silenced = potnn.prune_channels(model, {}, CONFIG)
    dropped = [c for c in range(8) if c not in keep]
    dropped2 = [c for c in range(6) if c not in keep2]
    for layer, channels in ((silenced.conv, dropped), (silenced.dw, dropped), (silenced.conv2, dropped2)):
        layer.weight[channels] = 0
        layer.bias[channels] = 0
    x = _images(16, 0)
    assert torch.allclose(pruned(x), silenced(x), atol=1e-5)


@torch.no_grad()
def test_batchnorm_loses_the_same_channels() -> None:
    model = potnn.convert(Net(bn=True))
    model.bn.running_mean.copy_(torch.arange(8.0))
    pruned = potnn.prune_channels(model, {"conv": 0.25}, CONFIG)
    assert pruned.bn.num_features == 6 and len(pruned.bn.weight) == 6
    kept = torch.sort(model.conv.weight.flatten(1).norm(dim=1).argsort(descending=True)[:6]).values
    assert torch.equal(pruned.bn.running_mean, kept.float())


def test_a_prepared_model_exports_smaller_and_bit_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = potnn.convert(Net())
    potnn.calibrate(model, [(_images(64, 1), torch.zeros(64))], CONFIG)
    potnn.enable_integer_sim(model)
    pruned = potnn.prune_channels(model, {"conv": 0.5, "conv2": 0.5, "fc1": 0.5})
    full = potnn.export(model, tmp_path / "full.h", CONFIG)
    small = potnn.export(pruned, tmp_path / "small.h", CONFIG)
    assert small.flash_estimate < full.flash_estimate and small.ram_bytes < full.ram_bytes
    images = np.random.default_rng(0).integers(0, 256, (48, 1, 16, 16), dtype=np.uint8)
    _, logits = run_header(tmp_path / "small.h", images, 4)
    assert np.array_equal(logits, potnn.simulate(pruned, images))


@pytest.mark.parametrize("model, fractions, message", [
    (Net(), {"fc": 0.5}, "reach the model's output"),
    (Net(), {"dw": 0.5}, "depthwise"),
    (Net(), {"nope": 0.5}, "not a PoT layer"),
    (Net(), {"conv": 1.0}, r"in \[0, 1\)"),
    (Residual(), {"a": 0.5}, "an add"),
])
def test_refusals_name_the_layer(model: nn.Module, fractions: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        potnn.prune_channels(potnn.convert(model), fractions, CONFIG)
