"""1-d input as users write it: forward takes [N, C, L]; train, simulate and the exported C agree exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import potnn
from potnn import PoTConv1d, PoTLinear
from potnn.data import ArrayDataset, array_loaders
from potnn.hostrun import run_header
from potnn.lower import lower

CHANNELS, LENGTH, CLASSES = 3, 32, 4


class SignalModel(nn.Module):
    """Every 1-d operation the issue names: Conv1d, max_pool1d (module and function), global pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = PoTConv1d(CHANNELS, 8, 5)
        self.norm1 = nn.BatchNorm1d(8)
        self.pool = nn.MaxPool1d(2)
        self.conv2 = PoTConv1d(8, 12, 3, padding=1, groups=4)
        self.conv3 = PoTConv1d(12, 16, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = PoTLinear(16, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.norm1(self.conv1(x))))
        x = F.max_pool1d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.conv3(x))
        return self.fc(self.gap(x).flatten(1))


def _signals(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four classes of noisy uint8 windows: a sine of a class-specific frequency on a class-specific channel."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    t = np.arange(LENGTH)
    x = rng.normal(100, 12, (n, CHANNELS, LENGTH))
    for i, c in enumerate(labels):
        x[i, c % CHANNELS] += 60 * np.sin(t * 0.25 * (c + 1))
    return np.clip(x, 0, 255).astype(np.uint8), labels.astype(np.int64)


MEAN, STD = (0.39, 0.40, 0.39), (0.08, 0.09, 0.06)
CONFIG = potnn.Config(input_channels=CHANNELS, input_length=LENGTH, mean=MEAN, std=STD, per_channel=True)


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    train_x, train_y = _signals(512, 0)
    test_x, test_y = _signals(200, 1)
    generator = torch.Generator().manual_seed(0)
    loaders = array_loaders(ArrayDataset(train_x, train_y, MEAN, STD, 0, generator),
                            ArrayDataset(test_x, test_y, MEAN, STD), 64, generator)
    model = potnn.train(SignalModel(), *loaders, CONFIG, float_epochs=4, qat_epochs=6, lr=1e-2, qat_lr=2e-3,
                        device="cpu", log=lambda line: None)
    return model, test_x, test_y


def test_config_takes_a_length_instead_of_height_and_width() -> None:
    assert CONFIG.input_shape == (CHANNELS, LENGTH) and CONFIG.input_h is None
    assert potnn.Config().input_shape == (1, 16, 16)
    with pytest.raises(ValueError, match="input_length .* or input_h/input_w"):
        potnn.Config(input_length=64, input_h=1)
    with pytest.raises(ValueError, match="positive"):
        potnn.Config(input_length=0)


def test_a_signal_model_learns_and_its_integer_model_is_the_simulation(trained) -> None:
    model, x, y = trained
    logits = potnn.simulate(model, x)
    assert logits.shape == (len(x), CLASSES) and logits.dtype == np.int32
    assert (logits.argmax(1) == y).mean() > 0.7  # chance is 0.25
    program = lower(model)
    assert program.input_shape == (CHANNELS, LENGTH) and program.input_chw == (CHANNELS, 1, LENGTH)
    assert {op.kind for op in program.ops} >= {"conv", "gap", "linear"}
    # PyTorch's exact integer mode computes the same integers, in logit units
    with torch.no_grad():
        x_float = ArrayDataset(x, y, MEAN, STD)[list(range(len(x)))][0]
        out = model(x_float).double().numpy()
    scale = float(model.fc.output_scale().detach())
    assert np.array_equal(np.round(out / scale).astype(np.int64), logits.astype(np.int64))


def test_the_exported_c_takes_c_times_l_bytes_and_gives_the_simulation(trained, tmp_path: Path) -> None:
    model, x, _ = trained
    header = tmp_path / "model.h"
    potnn.export(model, header, CONFIG)
    text = header.read_text()
    assert f"#define POTNN_INPUT_SIZE {CHANNELS * LENGTH}" in text and "#define POTNN_INPUT_H 1" in text
    classes, logits = run_header(header, x, CLASSES)
    assert np.array_equal(logits, potnn.simulate(model, x))
    assert np.array_equal(classes, logits.argmax(1))
    with pytest.raises(ValueError, match=r"images have shape \(3, 1, 32\), the model takes \(3, 32\)"):
        potnn.simulate(model, x[:, :, None, :])


def test_a_1d_model_under_an_image_config_is_a_graph_error_naming_the_shape() -> None:
    model = SignalModel()
    with pytest.raises(potnn.GraphError, match=r"example input of shape \[2, 1, 16, 16\].*input_length"):
        potnn.calibrate(model, [(torch.zeros(2, CHANNELS, LENGTH), torch.zeros(2))], potnn.Config())
