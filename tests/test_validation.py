"""Checks done before any work: graph and budgets before training, input normalisation at calibration."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

import potnn
from potnn import PoTConv2d, PoTLinear
from potnn.validation import check_fits


class _Untouchable:
    """A train loader that fails the moment training would start iterating it."""

    def __len__(self) -> int:
        return 10

    def __iter__(self):
        raise AssertionError("training started before the model was validated")


class Wide(nn.Module):
    """Needs 32×16×16 bytes of activations: over 2 KB of RAM, and (dense) over 1 KB of flash."""

    def __init__(self, extra: nn.Module | None = None) -> None:
        super().__init__()
        self.conv = PoTConv2d(1, 32, 3, padding=1)
        self.extra = extra if extra is not None else nn.Identity()
        self.fc = PoTLinear(32 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.extra(self.conv(x))), 2)
        return self.fc(x.flatten(1))


def _uint8_batches(n: int, mean: float, std: float, side: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (n, 1, side, side), generator=g)
    return [((pixels.float() / 255 - mean) / std, torch.zeros(n, dtype=torch.long))]


def test_a_model_over_every_budget_fails_before_training_listing_each() -> None:
    config = potnn.Config(ram=2048, flash=1024)
    with pytest.raises(potnn.ExportError) as info:
        potnn.train(Wide(), _Untouchable(), [], config, float_epochs=1, qat_epochs=1, log=lambda s: None)
    message = str(info.value)
    assert "RAM" in message and "flash" in message and "\n" not in message


def test_dense_flash_over_budget_only_warns_when_pruning_is_configured() -> None:
    config = potnn.Config(ram=1 << 20, flash=1024)
    with pytest.warns(UserWarning, match="dense model needs about .* bytes of flash"):
        with pytest.raises(AssertionError, match="before the model was validated"):
            potnn.train(Wide(), _Untouchable(), [], config, sparsity={"fc": 0.9}, log=lambda s: None)


def test_an_unconverted_layer_is_named_before_training() -> None:
    with pytest.raises(potnn.GraphError, match=r"extra \(Conv2d\).*potnn\.convert"):
        potnn.train(Wide(nn.Conv2d(32, 32, 1)), _Untouchable(), [], potnn.Config(ram=1 << 20),
                    log=lambda s: None)


def test_ram_figure_is_exports_and_flash_is_the_dense_upper_figure() -> None:
    config = potnn.Config(ram=1 << 20, flash=1 << 20)
    model = Wide()
    potnn.calibrate(model, _uint8_batches(8, 0.0, 1.0), config)
    report = check_fits(model, config)
    exported = potnn.codegen.render(potnn.lower(model), config)[1]
    assert report.ram_bytes == exported.ram_bytes
    assert report.flash_estimate >= exported.flash_estimate


def test_calibrate_refuses_a_model_over_ram_before_running_it() -> None:
    with pytest.raises(potnn.ExportError, match="RAM"):
        potnn.calibrate(Wide(), _Untouchable(), potnn.Config(ram=1024))


def test_calibrate_names_the_statistics_the_data_seems_to_use() -> None:
    config = potnn.Config(mean=0.1307, std=0.3081, ram=1 << 20, flash=1 << 20)
    with pytest.warns(UserWarning, match=r"mean=\[0\.1307\].*std=\[0\.3081\].*data look normalised with "
                                         r"mean=\[0\.5\] std=\[0\.25\]"):
        potnn.calibrate(Wide(), _uint8_batches(8, 0.5, 0.25), config)


def test_calibrate_is_silent_when_the_data_match_config() -> None:
    config = potnn.Config(mean=0.1307, std=0.3081, ram=1 << 20, flash=1 << 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        potnn.calibrate(Wide(), _uint8_batches(8, 0.1307, 0.3081), config)


def test_calibrating_a_trained_model_again_warns() -> None:
    config = potnn.Config(ram=1 << 20, flash=1 << 20)
    model = potnn.calibrate(Wide(), _uint8_batches(8, 0.0, 1.0), config)
    with pytest.warns(UserWarning, match="already has weight scales"):
        potnn.calibrate(model, _uint8_batches(8, 0.0, 1.0), config)
