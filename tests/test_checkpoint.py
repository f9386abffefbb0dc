"""potnn.save / potnn.load, and restoring through a plain state_dict."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

import potnn


class Net(nn.Module):
    """A user's plain model: torch.nn layers, BatchNorm to fold, an adaptive average pool to replace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc(torch.flatten(self.gap(torch.relu(self.conv2(x))), 1))


CONFIG = potnn.Config(mean=0.5, std=0.25, layer_encodings={"fc": "fp130"})


def _loader(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    pixels = torch.randint(0, 80, (n, 1, 16, 16), generator=g)
    for i, c in enumerate(labels.tolist()):
        pixels[i, 0, 4 * c:4 * c + 4] += 170
    return [((pixels[i:i + 32].float() / 255 - 0.5) / 0.25, labels[i:i + 32]) for i in range(0, n, 32)]


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    torch.manual_seed(0)
    return potnn.train(potnn.convert(Net()), _loader(256, 0), _loader(64, 1), CONFIG, float_epochs=2, qat_epochs=1,
                       log=lambda s: None)


def test_reexport_of_a_loaded_model_is_byte_identical(trained: nn.Module, tmp_path: Path) -> None:
    potnn.export(trained, tmp_path / "a.h", CONFIG)
    potnn.save(trained, tmp_path / "model.pt")
    loaded = potnn.load(tmp_path / "model.pt", model=Net())
    assert isinstance(loaded.bn, nn.Identity) and isinstance(loaded.gap, potnn.PoTGlobalAvgPool)
    potnn.export(loaded, tmp_path / "b.h", CONFIG)
    assert (tmp_path / "a.h").read_bytes() == (tmp_path / "b.h").read_bytes()
    x = _loader(64, 1)[0][0]
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))  # integer mode restored too


def test_a_float_model_round_trips_and_stays_float(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = potnn.convert(Net())
    potnn.save(model, tmp_path / "float.pt")
    loaded = potnn.load(tmp_path / "float.pt", model=Net())
    assert getattr(loaded, "_potnn_graph", None) is None and isinstance(loaded.bn, nn.BatchNorm2d)
    x = _loader(32, 2)[0][0]
    model.eval(), loaded.eval()
    assert torch.equal(loaded(x), model(x))


def test_qat_mode_is_restored(trained: nn.Module, tmp_path: Path) -> None:
    potnn.set_mode(trained, "qat")
    try:
        potnn.save(trained, tmp_path / "qat.pt")
    finally:
        potnn.enable_integer_sim(trained)
    loaded = potnn.load(tmp_path / "qat.pt", model=Net())
    assert {m.potnn_mode for m in loaded.modules() if isinstance(m, potnn.layers.QuantModule)} == {"qat"}


def test_load_needs_the_module_and_a_checkpoint(tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(TypeError, match=r"potnn.load\(path, model=MyNet\(\)\)"):
        potnn.load(tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a potnn checkpoint"):
        potnn.load(tmp_path / "plain.pt", model=Net())


def test_state_dict_restores_after_prepare_qat_and_says_so_otherwise(trained: nn.Module, tmp_path: Path) -> None:
    state = trained.state_dict()
    fresh = potnn.convert(Net())
    fresh.load_state_dict(state, strict=False)
    with pytest.raises(potnn.ExportError, match=r"prepare_qat\(model, config\) before model.load_state_dict"):
        potnn.export(fresh, tmp_path / "x.h", CONFIG)
    with pytest.warns(UserWarning, match="or load a trained state_dict"):  # which is what comes next
        fresh = potnn.prepare_qat(potnn.convert(Net()), CONFIG)
    fresh.load_state_dict(state)
    potnn.enable_integer_sim(fresh)
    potnn.export(trained, tmp_path / "a.h", CONFIG)
    potnn.export(fresh, tmp_path / "b.h", CONFIG)
    assert (tmp_path / "a.h").read_bytes() == (tmp_path / "b.h").read_bytes()


def test_calibrating_a_loaded_model_warns_with_the_fix(trained: nn.Module, tmp_path: Path) -> None:
    potnn.save(trained, tmp_path / "model.pt")
    loaded = potnn.load(tmp_path / "model.pt", model=Net())
    with pytest.warns(UserWarning, match="skip calibrate for a trained model"):
        potnn.calibrate(loaded, _loader(64, 3), CONFIG)


def test_every_config_field_round_trips(tmp_path: Path) -> None:
    config = potnn.Config(flash=9000, ram=1500, mean=[0.1, 0.2], std=[0.3, 0.4], input_channels=2, input_length=50,
                          layer_encodings={"0": "5level"}, per_channel=True, class_names=("a", "b"),
                          dataset="basicmotions")
    model = nn.Sequential(potnn.PoTConv1d(2, 4, 5), nn.ReLU(), nn.Flatten(), potnn.PoTLinear(4 * 46, 2))
    black = -torch.tensor([0.1, 0.2]).view(1, 2, 1) / torch.tensor([0.3, 0.4]).view(1, 2, 1)  # raw pixels 0
    potnn.calibrate(model, [(black.expand(4, 2, 50),)], config)
    potnn.save(model, tmp_path / "m.pt")
    loaded = potnn.load(tmp_path / "m.pt", model=nn.Sequential(potnn.PoTConv1d(2, 4, 5), nn.ReLU(), nn.Flatten(),
                                                                potnn.PoTLinear(4 * 46, 2)))
    assert loaded._potnn_config == config
