"""potnn.convert: plain torch.nn layers become PoT layers with the same weights and options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import potnn
from potnn.hostrun import run_header
from quadrant_data import quadrant_loader




CONFIG = potnn.Config(mean=0.5, std=0.25)


def _plain_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 4))


def test_convert_keeps_weights_options_and_the_float_function() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 6, 3, stride=2, padding=1), nn.Conv2d(6, 6, 3, padding=(1, 2), groups=6),
                          nn.Conv2d(6, 4, 1, groups=2, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 10, 3))
    x = torch.randn(5, 2, 16, 16)
    before = model(x)
    weights = [m.weight.clone() for m in model if hasattr(m, "weight")]
    assert potnn.convert(model) is model
    assert [type(m).__name__ for m in model] == ["PoTConv2d", "PoTDepthwiseConv2d", "PoTConv2d", "Flatten",
                                                "PoTLinear"]
    assert model[0].stride == (2, 2) and model[1].padding == (1, 2) and model[2].groups == 2
    assert model[2].bias is None
    assert all(torch.equal(w, m.weight) for w, m in zip(weights, [m for m in model if hasattr(m, "weight")]))
    assert torch.equal(model(x), before)


def test_convert_handles_conv1d_and_nested_modules() -> None:
    model = nn.Sequential(nn.Sequential(nn.Conv1d(3, 4, 5, padding=2)), nn.Flatten(), nn.Linear(4 * 20, 2))
    potnn.convert(model)
    assert isinstance(model[0][0], potnn.PoTConv1d) and isinstance(model[2], potnn.PoTLinear)


@pytest.mark.parametrize("layer, what", [(nn.Conv2d(1, 2, 3, dilation=2), "dilation"),
                                         (nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), "reflect")])
def test_convert_refuses_what_potnn_cannot_run_naming_the_module(layer: nn.Module, what: str) -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Sequential(layer))
    with pytest.raises(ValueError, match=rf"1\.0 \(Conv2d\).*{what}"):
        potnn.convert(model)
    assert type(model[0]) is nn.Conv2d  # refused before anything was replaced


def test_plain_sequential_goes_convert_train_export_bit_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = potnn.convert(_plain_cnn())
    potnn.train(model, quadrant_loader(512, 0), quadrant_loader(128, 1), CONFIG, float_epochs=3, qat_epochs=2, log=lambda s: None)
    assert potnn.evaluate(model, quadrant_loader(128, 1)) > 0.9
    potnn.export(model, tmp_path / "model.h", CONFIG)
    images = np.random.default_rng(0).integers(0, 256, (32, 1, 16, 16), dtype=np.uint8)
    _, logits = run_header(tmp_path / "model.h", images, 4)
    assert np.array_equal(logits, potnn.simulate(model, images))
