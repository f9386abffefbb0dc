"""potnn.sensitivity: the accuracy change per layer for each encoding and pruning level tried."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

import potnn
from quadrant_data import quadrant_loader

CONFIG = potnn.Config(mean=0.5, std=0.25)




@pytest.fixture(scope="module")
def trained() -> nn.Module:
    torch.manual_seed(0)
    model = potnn.convert(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                                        nn.Flatten(), nn.Linear(8 * 2 * 2, 4)))
    return potnn.train(model, quadrant_loader(512, 0), quadrant_loader(128, 1), CONFIG, float_epochs=3, qat_epochs=2,
                       log=lambda s: None)


def test_one_row_per_layer_and_change_against_the_unmodified_model(trained: nn.Module, tmp_path: Path) -> None:
    potnn.export(trained, tmp_path / "before.h", CONFIG)
    test = quadrant_loader(128, 1)
    base = potnn.evaluate(trained, test)
    table = potnn.sensitivity(trained, test, CONFIG, encodings=["unroll", "ternary"], fractions=(0.5, 0.75))
    assert list(table.columns) == ["layer", "change", "setting", "accuracy", "delta"]
    encodings = table[table.change == "encoding"]
    assert sorted(encodings.layer.unique()) == ["0", "3", "7"] and len(encodings) == 6
    unchanged = encodings[encodings.setting == "unroll"]
    assert (unchanged.delta == 0).all() and (unchanged.accuracy == base).all()
    pruned = table[table.change == "prune"]
    assert sorted(pruned.layer.unique()) == ["0", "3"]  # "7" produces the logits: not prunable
    assert ((table.accuracy - base - table.delta).abs() < 1e-12).all()
    assert pruned[pruned.layer == "3"].delta.min() < 0  # removing 6 of 8 filters costs something
    potnn.export(trained, tmp_path / "after.h", CONFIG)
    assert (tmp_path / "before.h").read_bytes() == (tmp_path / "after.h").read_bytes()


def test_refuses_an_unprepared_model_and_unknown_encodings(trained: nn.Module) -> None:
    with pytest.raises(ValueError, match="not been prepared"):
        potnn.sensitivity(nn.Sequential(potnn.PoTLinear(4, 2)), [], CONFIG)
    with pytest.raises(ValueError, match="unknown encodings"):
        potnn.sensitivity(trained, [], CONFIG, encodings=["int4"])
