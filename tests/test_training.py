"""potnn.train's options: magnitude pruning, distillation, freezing oscillating weights."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn as nn

import potnn
from potnn import PoTConv2d, PoTLinear
from potnn.lower import lower
from potnn.oscillation import OscillationFreezer
from potnn.sparsity import Pruner


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = PoTConv2d(1, 4, 3, padding=1)
        self.fc = PoTLinear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc(x.flatten(1))


CONFIG = potnn.Config(input_h=8, input_w=8, layer_encodings={"fc": "fp130"})


def _loader(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Three separable classes of 8×8 images (bright top, middle or bottom rows), in batches of 32."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.3
    for i, c in enumerate(labels.tolist()):
        x[i, 0, 3 * c:3 * c + 2] += 0.7
    return [(x[i:i + 32], labels[i:i + 32]) for i in range(0, n, 32)]


def test_pruned_layer_has_the_asked_zeros_in_its_integer_weights() -> None:
    torch.manual_seed(0)
    lines: list[str] = []
    model = potnn.train(SmallNet(), _loader(256, 0), _loader(96, 1), CONFIG, float_epochs=2, qat_epochs=4,
                        sparsity={"conv": 0.5}, log=lines.append)
    weights = {op.name: op.weight for op in lower(model).ops if op.weight is not None}
    zeros_per_filter = (weights["conv"].reshape(4, -1) == 0).sum(1)
    assert np.all(zeros_per_filter >= 4), zeros_per_filter     # floor(0.5 * 9) per filter, at least
    assert any("zeros conv 44%" in line for line in lines)   # 4 of 9 per filter


def test_pruning_a_layer_without_zero_level_is_refused() -> None:
    model = SmallNet()
    with pytest.raises(ValueError, match="'fc' is encoded 'fp130', which has no zero"):
        Pruner(model, {"fc": 0.5}, CONFIG)
    with pytest.raises(ValueError, match="not a PoT layer.*conv, fc"):
        Pruner(model, {"conv2": 0.5}, CONFIG)
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\)"):
        Pruner(model, {"conv": 1.0}, CONFIG)


def test_pruner_ramps_and_keeps_each_filter_alive() -> None:
    layer_model = SmallNet()
    pruner = Pruner(layer_model, {"conv": 0.6}, CONFIG)
    pruner.set_progress(0.5)
    assert pruner.sparsity()["conv"] == pytest.approx(2 / 9)   # floor(0.3 * 9) of 9 per filter
    pruner.set_progress(1.0)
    w = layer_model.conv.weight.detach().reshape(4, -1)
    assert torch.all((w == 0).sum(1) == 5) and torch.all((w != 0).sum(1) == 4)


def test_qat_distills_from_its_own_float_model() -> None:
    torch.manual_seed(0)
    lines: list[str] = []
    model = potnn.train(SmallNet(), _loader(256, 0), _loader(96, 1), CONFIG, float_epochs=2, qat_epochs=3,
                        distill=0.5, log=lines.append)
    assert sum("[qat] epoch" in line for line in lines) == 3
    assert potnn.evaluate(model, _loader(96, 2)) > 0.9


class ConstantTeacher(nn.Module):
    """Says "class 0" for every image, with confidence."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([8.0, 0.0, 0.0]).expand(x.shape[0], 3)


def test_an_external_teacher_teaches_both_phases() -> None:
    torch.manual_seed(0)
    model = potnn.train(SmallNet(), _loader(256, 0), _loader(96, 1), CONFIG, float_epochs=3, qat_epochs=2,
                        distill=1.0, teacher=ConstantTeacher(), log=lambda _l: None)
    x = torch.cat([b[0] for b in _loader(96, 2)])
    assert (model(x).argmax(1) == 0).float().mean() > 0.9      # learnt the teacher, not the labels
    with pytest.raises(ValueError, match="teacher needs distill > 0"):
        potnn.train(SmallNet(), _loader(64, 0), _loader(64, 1), CONFIG, teacher=ConstantTeacher())


def _prepared_small_net() -> nn.Module:
    torch.manual_seed(0)
    model = SmallNet()
    potnn.calibrate(model, _loader(64, 0), CONFIG)
    return potnn.prepare_qat(model, CONFIG)


def test_a_weight_flipping_back_and_forth_is_frozen_at_the_level_it_mostly_had() -> None:
    model = _prepared_small_net()
    freezer = OscillationFreezer(model, threshold=0.02)
    w = model.conv.weight
    unit = model.conv.latent_weight(torch.ones_like(w, dtype=torch.float64))
    mostly_two, mostly_one, climbing = (0, 0, 0, 0), (1, 0, 0, 0), (2, 0, 0, 0)
    for t in range(12):
        with torch.no_grad():  # what an oscillating optimizer does around the 1|2 boundary (1.5 units)
            w[mostly_two] = (1.5 + (0.02 if t % 3 else -0.01)) * unit[mostly_two]
            w[mostly_one] = (1.5 - (0.02 if t % 3 else -0.01)) * unit[mostly_one]
            w[climbing] = (1.0 + 0.5 * t) * unit[climbing]   # crosses boundaries, never turns back
        freezer.step()
    frozen = freezer.frozen["conv"]
    assert frozen[mostly_two] and frozen[mostly_one] and not frozen[climbing]
    assert freezer.counts()["conv"] == 2
    with torch.no_grad():
        w[mostly_two] = 1.2 * unit[mostly_two]   # the optimizer moves the frozen weight: it is held
    freezer.step()
    levels = model.conv.integer_params(exact=True).weight
    assert levels[mostly_two] == 2 * torch.sign(unit[mostly_two]) and levels[mostly_one] == torch.sign(unit[mostly_one])
    assert freezer.frozen["conv"][mostly_two]


def test_training_with_freezing_reports_frozen_weights_and_keeps_them() -> None:
    torch.manual_seed(0)
    lines: list[str] = []
    model = potnn.train(SmallNet(), _loader(256, 0), _loader(96, 1), CONFIG, float_epochs=2, qat_epochs=4,
                        qat_lr=1e-2, freeze=0.005, log=lines.append)  # a high rate makes weights oscillate
    counts = [int(n) for line in lines if "frozen" in line for n in re.findall(r"conv (\d+)", line)]
    assert len(counts) == 4 and counts == sorted(counts) and counts[-1] > 0   # per QAT epoch; none unfrozen
    assert potnn.evaluate(model, _loader(96, 2)) > 0.9
    with pytest.raises(ValueError, match=r"freeze threshold must be a frequency in \(0, 1\)"):
        OscillationFreezer(model, threshold=1.5)
