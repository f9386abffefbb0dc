"""potnn.train(encodings="auto"): each layer's encoding (and pruning) chosen to fit the budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import potnn
from potnn.hostrun import run_header
from quadrant_data import MEAN, STD, quadrant_loader

TRAIN = quadrant_loader(256, 0, batch=64)
TEST = quadrant_loader(128, 1, batch=64)
FAST = ["unroll", "fp130", "2bit"]  # fewer candidates keep the probe short


def _net() -> nn.Module:
    torch.manual_seed(0)
    return potnn.convert(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                       nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                                       nn.Flatten(), nn.Linear(8 * 2 * 2, 4)))


def _train(flash: int, logs: list[str] | None = None, **kwargs: object) -> nn.Module:
    config = potnn.Config(mean=MEAN, std=STD, flash=flash, ram=2048)
    kwargs.setdefault("encodings", FAST)
    return potnn.train(_net(), TRAIN, TEST, config, float_epochs=1, qat_epochs=1, calibration_batches=2,
                       log=(logs.append if logs is not None else lambda s: None), **kwargs)  # type: ignore[arg-type]


def _export_equals_simulate(model: nn.Module, tmp_path: Path) -> potnn.codegen.ExportReport:
    report = potnn.export(model, tmp_path / "model.h", model.potnn_fit.config)
    images = np.random.default_rng(0).integers(0, 256, (32, 1, 16, 16), dtype=np.uint8)
    _, logits = run_header(tmp_path / "model.h", images, 4)
    assert np.array_equal(logits, potnn.simulate(model, images))
    return report


@pytest.fixture(scope="module")
def unrolled() -> nn.Module:
    """The model trained where everything fits: the fastest choice is the reference of the other tests."""
    return _train(16384)


def test_keeps_all_unroll_when_it_fits(unrolled: nn.Module, tmp_path: Path) -> None:
    model = unrolled
    fit = model.potnn_fit
    assert fit.encodings == {"0": "unroll", "3": "unroll", "7": "unroll"} and fit.sparsity == {}
    assert all(reason.startswith("fastest") for reason in fit.reasons.values())
    assert fit.table.chosen.sum() == 3 and set(fit.table.encoding) == set(FAST)
    assert _export_equals_simulate(model, tmp_path).flash_estimate <= fit.flash_estimate <= 16384


def test_packs_layers_to_fit_a_tight_flash_budget(unrolled: nn.Module, tmp_path: Path) -> None:
    budget = unrolled.potnn_fit.flash_estimate * 2 // 3
    model = _train(budget)
    fit = model.potnn_fit
    assert set(fit.encodings.values()) != {"unroll"} and fit.flash_estimate <= budget
    assert fit.flash_compiled is not None and fit.flash_compiled <= budget      # the figure export checks
    assert fit.config.layer_encodings == fit.encodings  # the Config to export with names every choice
    report = _export_equals_simulate(model, tmp_path)
    assert report.flash_estimate <= fit.flash_estimate  # the dense figure bounds the trained model
    assert "would be faster but needs" in str(fit)


def test_prunes_to_meet_an_instruction_budget(unrolled: nn.Module, tmp_path: Path) -> None:
    budget = unrolled.potnn_fit.instructions * 3 // 4
    model = _train(16384, sparsity="auto", max_instructions=budget)
    fit = model.potnn_fit
    assert fit.sparsity and fit.instructions <= budget
    for layer, fraction in fit.sparsity.items():
        filters = dict(model.named_modules())[layer].weight.detach().flatten(1)
        assert ((filters == 0).sum(1) >= int(fraction * filters.shape[1])).all()  # the masks held through QAT
    _export_equals_simulate(model, tmp_path)


def test_refuses_before_training_when_nothing_fits() -> None:
    logs: list[str] = []
    with pytest.raises(potnn.ExportError, match=r"auto fit: no choice of encodings fits Config.flash 600; the "
                                                r"smallest needs about \d+ bytes .*allow pruning"):
        _train(600, logs)
    with pytest.raises(potnn.ExportError, match=r"within 1,000 instructions \(the fastest needs ~[\d,]+\)"):
        _train(16384, logs, max_instructions=1000)
    assert logs == []  # refused before the first epoch


def test_refuses_a_model_over_ram_with_the_dry_run_message() -> None:
    config = potnn.Config(mean=MEAN, std=STD, flash=16384, ram=100)
    with pytest.raises(potnn.ExportError, match="bytes of RAM .* but Config.ram is 100"):
        potnn.train(_net(), TRAIN, TEST, config, encodings="auto", log=lambda s: None)


@pytest.mark.parametrize("kwargs, message", [
    ({"encodings": "fast"}, "encodings must be 'auto' or a list"),
    ({"encodings": ["unroll", "int4"]}, r"unknown or no candidates \['int4'\]"),
    ({"max_instructions": 10_000}, "max_instructions needs encodings='auto'"),
    ({"encodings": "auto", "max_instructions": 0}, "positive count"),
    ({"sparsity": "all"}, "sparsity must be a mapping .* or 'auto'"),
])
def test_bad_arguments_are_refused_before_training(kwargs: dict, message: str) -> None:
    config = potnn.Config(mean=MEAN, std=STD)
    with pytest.raises(ValueError, match=message):
        potnn.train(_net(), TRAIN, TEST, config, log=pytest.fail, **kwargs)


def test_prunes_indexed_layers_where_fp130_is_too_slow(tmp_path: Path) -> None:
    """indexed skips zero weights, so pruned it is faster than fp130: an instruction budget below the packed
    fp130 model's is met by indexed layers with zeros (auto fit's cost counts only their non-zero weights)."""
    packed = _train(16384, encodings=["fp130"]).potnn_fit
    budget = packed.instructions * 3 // 4
    model = _train(16384, encodings=["fp130", "indexed"], sparsity="auto", max_instructions=budget)
    fit = model.potnn_fit
    assert fit.instructions <= budget and "indexed" in fit.encodings.values()
    assert all(fit.encodings[layer] == "indexed" for layer in fit.sparsity)
    _export_equals_simulate(model, tmp_path)
