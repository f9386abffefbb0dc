"""potnn's library behaviour: graph capture errors, budgets, non-mutation, state_dict, folding."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import potnn
from potnn import PoTConv2d, PoTLinear
from potnn.zoo.architectures import TinyNet
from potnn.codegen import RV32EC_GCC
from potnn.hostrun import run_header

CONFIG = potnn.Config(flash=16384, ram=2048, mean=0.1307, std=0.3081, input_h=16, input_w=16, input_channels=1)


def _images(n: int = 32, shape: tuple[int, ...] = (1, 16, 16), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _prepared(model: nn.Module, config: potnn.Config = CONFIG) -> nn.Module:
    u8 = _images(64, config.input_shape)
    x = (torch.from_numpy(u8).float() / 255 - 0.1307) / 0.3081
    potnn.calibrate(model, [(x,)], config, dry_run=False)  # export's own refusals are tested here
    return potnn.prepare_qat(model, config)


def test_tinynet_fits_2k_ram_and_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _prepared(TinyNet())
    report = potnn.export(model, tmp_path / "model.h", CONFIG)
    assert report.ram_bytes <= 2048  # conv1's 8x16x16 output is never stored: it is pooled on the fly
    images = _images()
    ref = potnn.simulate(model, images)
    _, logits = run_header(tmp_path / "model.h", images, 10)
    assert np.array_equal(logits, ref)
    text = (tmp_path / "model.h").read_text()
    for macro in ("POTNN_INPUT_SIZE 256", "POTNN_NUM_CLASSES 10", f"POTNN_RAM_BYTES {report.ram_bytes}",
                  "POTNN_WEIGHT_BYTES", "int potnn_predict(const uint8_t *input, int32_t *logits);"):
        assert macro in text
    assert "#include" in text and text.count("#include") == 1 and "<stdint.h>" in text
    assert "malloc" not in text and "float" not in text and "double" not in text


def test_export_refuses_ram_over_budget_with_numbers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = potnn.Config(flash=16384, ram=512, mean=0.1307, std=0.3081)
    model = _prepared(TinyNet(), config)
    with pytest.raises(potnn.ExportError, match=r"needs 772 bytes of RAM .* Config.ram is 512"):
        potnn.export(model, tmp_path / "model.h", config)
    assert not (tmp_path / "model.h").exists()


def test_export_refuses_flash_over_budget(tmp_path: Path) -> None:
    class Wide(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = PoTLinear(256, 64)
            self.fc2 = PoTLinear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    config = potnn.Config(flash=16384, ram=2048, mean=0.1307, std=0.3081)  # unrolled 16k weights: far over 16 KB
    model = _prepared(Wide(), config)
    with pytest.raises(potnn.ExportError, match=r"about \d+ bytes of flash .* Config.flash is 16384"):
        potnn.export(model, tmp_path / "model.h", config)


def test_export_mutates_neither_model_nor_config(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _prepared(TinyNet())
    before = copy.deepcopy(model.state_dict())
    modes = [m.potnn_mode for m in model.modules() if hasattr(m, "potnn_mode")]
    encodings = dict(CONFIG.layer_encodings)
    potnn.export(model, tmp_path / "a.h", CONFIG)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert modes == [m.potnn_mode for m in model.modules() if hasattr(m, "potnn_mode")]
    assert CONFIG.layer_encodings == encodings
    potnn.export(model, tmp_path / "b.h", CONFIG)
    assert (tmp_path / "a.h").read_text() == (tmp_path / "b.h").read_text()


def test_unsupported_module_is_named() -> None:
    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3))
            self.fc = PoTLinear(4 * 14 * 14, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.features(x).flatten(1))

    with pytest.raises(potnn.GraphError, match=r"features\.0 \(Conv2d\): unsupported module"):
        potnn.prepare_qat(Plain(), CONFIG)


def test_tensor_addition_needs_potadd() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = PoTConv2d(1, 4, 3, padding=1)
            self.b = PoTConv2d(4, 4, 3, padding=1)
            self.fc = PoTLinear(4 * 256, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.a(x))
            return self.fc((y + self.b(y)).flatten(1))

    with pytest.raises(potnn.GraphError, match="PoTAdd"):
        potnn.prepare_qat(Residual(), CONFIG)


def test_unknown_encoding_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="unroll, fp130, 5level, 2bit, ternary|'unroll'"):
        potnn.Config(default_encoding="4bit")
    with pytest.raises(potnn.GraphError, match="conv3"):
        potnn.prepare_qat(TinyNet(), potnn.Config(layer_encodings={"conv3": "fp130"}))


def test_state_dict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _prepared(TinyNet())
    state = model.state_dict()
    fresh = TinyNet()
    with pytest.warns(UserWarning, match="uncalibrated"):
        potnn.prepare_qat(fresh, CONFIG)
    fresh.load_state_dict(state)
    images = _images()
    assert np.array_equal(potnn.simulate(fresh, images), potnn.simulate(model, images))


def test_fuse_batchnorm_keeps_float_outputs() -> None:
    torch.manual_seed(0)

    class WithBN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = PoTConv2d(1, 6, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(6)
            self.fc = PoTLinear(6 * 256, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))

    model = WithBN().eval()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(4, 1, 16, 16)
    expected = model(x)
    potnn.fuse_batchnorm(model)
    assert isinstance(model.bn, nn.Identity)
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_global_average_pool_of_odd_size_is_replaced_and_exact(tmp_path: Path) -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = PoTConv2d(1, 5, 3)  # 9x9 -> 7x7: 49 is not a power of two
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.fc = PoTLinear(5, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.gap(torch.relu(self.conv(x))).flatten(1))

    config = potnn.Config(mean=0.5, std=0.25, input_h=9, input_w=9)
    model = _prepared(Odd(), config)
    assert isinstance(model.gap, potnn.PoTGlobalAvgPool)
    images = _images(16, (1, 9, 9))
    potnn.export(model, tmp_path / "m.h", config)
    assert np.array_equal(run_header(tmp_path / "m.h", images, 3)[1], potnn.simulate(model, images))


def test_accumulator_overflow_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _prepared(TinyNet())
    with torch.no_grad():
        model.conv2.act_shift.fill_(-30)  # a left shift by ~30 cannot stay inside int32
    with pytest.raises(potnn.ExportError, match="does not fit int32"):
        potnn.export(model, tmp_path / "m.h", CONFIG)


def test_simulate_takes_uint8_only() -> None:
    model = _prepared(TinyNet())
    with pytest.raises(TypeError, match="uint8"):
        potnn.simulate(model, _images().astype(np.float32))


def test_export_needs_the_training_config(tmp_path: Path) -> None:
    model = _prepared(TinyNet())
    with pytest.raises(potnn.ExportError, match="Config.mean"):
        potnn.export(model, tmp_path / "m.h", potnn.Config(mean=0.5, std=0.3081))


def test_nested_module_paths_are_wired(tmp_path: Path) -> None:
    """Layers inside ModuleLists (fx names them convs_0, their paths are convs.0) are found and exact."""
    from potnn.zoo.architectures import ConvNet

    torch.manual_seed(0)
    config = potnn.Config(mean=0.1307, std=0.3081, layer_encodings={"convs.1": "5level", "fc": "fp130"})
    model = _prepared(ConvNet(((4, "pool"), (6, "stride"))), config)
    assert model.convs[1].encoding == "5level"
    images = _images()
    potnn.export(model, tmp_path / "m.h", config)
    assert np.array_equal(run_header(tmp_path / "m.h", images, 10)[1], potnn.simulate(model, images))


class _KernelCase(nn.Module):
    """conv -> [max-pool] -> [second conv on signed input] -> linear: small nets that steer potnn.export
    into each of its conv kernel variants (see test_every_kernel_variant_is_exact)."""

    def __init__(self, conv: nn.Module, pool: tuple[int, int, int] | None, second: nn.Module | None,
                 features: int) -> None:
        super().__init__()
        self.conv, self.pool, self.second = conv, pool, second
        self.fc = PoTLinear(features, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.second is not None:
            x = torch.relu(self.second(x))  # no ReLU before it: int8 inputs
        else:
            x = torch.relu(x)
        if self.pool is not None:
            x = nn.functional.max_pool2d(x, *self.pool)
        return self.fc(x.flatten(1))


# (name, channels, size, conv factory, pool, second-conv factory or None, encodings)
_VARIANTS = [
    ("in place, pool", 1, 10, lambda: PoTConv2d(1, 4, 3, padding=1), (2, 2, 0), None, {}),
    ("in place, pool with padding", 1, 9, lambda: PoTConv2d(1, 4, 3, padding=1), (3, 2, 1), None, {}),
    ("in place, pool, window loop (too many weights to repeat per window)", 4, 8,
     lambda: PoTConv2d(4, 16, 3, padding=1), (2, 2, 0), None, {}),
    ("compact, pool with padding", 4, 9, lambda: PoTConv2d(4, 6, 3, padding=1), (3, 2, 1), None, {}),
    ("compact, stride 2, groups", 8, 8, lambda: PoTConv2d(8, 6, 3, stride=2, padding=1, groups=2), None, None, {}),
    ("compact (window wider than the image)", 1, 2, lambda: PoTConv2d(1, 4, 3, padding=1), None, None, {}),
    ("compact, looped border copy", 33, 8, lambda: PoTConv2d(33, 11, 3, padding=1, groups=11), None, None, {}),
    ("receptive field over the copy limit", 8, 7, lambda: PoTConv2d(8, 4, 5, padding=2), None, None, {}),
    ("depthwise, looped border copy", 4, 10, lambda: potnn.PoTDepthwiseConv2d(4, 5, padding=2, depth_multiplier=2),
     (2, 2, 0), None, {}),
    *((f"packed {e}, signed input", 2, 7, lambda: PoTConv2d(2, 4, 3, padding=1), None,
       lambda: PoTConv2d(4, 5, 3, padding=1), {"second": e, "fc": e}) for e in ("unroll", "fp130", "5level", "2bit", "ternary")),
    *((f"packed {e}, pool", 3, 8, lambda: PoTConv2d(3, 5, 3, padding=1), (2, 2, 0), None, {"conv": e})
      for e in ("fp130", "5level", "2bit", "ternary")),
    ("packed fp130 over the copy limit", 12, 6, lambda: PoTConv2d(12, 4, 5, padding=2), None, None, {"conv": "fp130"}),
    ("packed 2bit depthwise, looped border copy", 4, 10,
     lambda: potnn.PoTDepthwiseConv2d(4, 5, padding=2, depth_multiplier=2), None, None, {"conv": "2bit"}),
]


@pytest.mark.parametrize("variant", _VARIANTS, ids=[v[0] for v in _VARIANTS])
def test_every_kernel_variant_is_exact(variant, tmp_path: Path) -> None:
    """Each code path of the conv emitters (receptive field read in place or copied, unrolled or looped
    border copies, static or clipped pool windows, the fallbacks over the copy limits, signed inputs, every packed encoding)
    on the host with ASan/UBSan: the stress test reaches most of them only by chance."""
    _, c, size, conv, pool, second, encodings = variant
    torch.manual_seed(1)
    first, nxt = conv(), (second() if second else None)
    with torch.no_grad():
        probe = first(torch.zeros(1, c, size, size))
        probe = nxt(probe) if nxt is not None else probe
        if pool is not None:
            probe = nn.functional.max_pool2d(probe, *pool)
    model = _KernelCase(first, pool, nxt, probe.numel())
    config = potnn.Config(flash=10**6, ram=10**6, mean=[0.4] * c, std=[0.3] * c, input_h=size, input_w=size,
                          input_channels=c, layer_encodings=encodings)
    images = _images(48, (c, size, size), seed=2)
    images[0], images[1] = 0, 255
    x = (torch.from_numpy(images).float() / 255 - 0.4) / 0.3
    potnn.calibrate(model, [(x,)], config)
    potnn.prepare_qat(model, config)
    potnn.export(model, tmp_path / "m.h", config)
    assert np.array_equal(run_header(tmp_path / "m.h", images, 3)[1], potnn.simulate(model, images))


def test_pool_windows_are_looped_when_repeating_them_would_not_fit_flash(tmp_path: Path) -> None:
    """A pooled unrolled conv repeats its code per pool window only while the model still fits Config.flash:
    a budget that only the looped form meets gets the looped form (still exact), not a refusal."""
    torch.manual_seed(3)
    model = _prepared(TinyNet())
    repeated = potnn.export(model, tmp_path / "repeated.h", CONFIG)
    never_repeat = dataclasses.replace(RV32EC_GCC, unrolled_window_taps=0)
    looped = potnn.export(model, tmp_path / "looped.h", CONFIG, target=never_repeat)
    assert looped.flash_estimate < repeated.flash_estimate and looped.flash_bytes < repeated.flash_bytes
    tight = dataclasses.replace(CONFIG, flash=looped.flash_bytes)     # as the compilers build the looped form
    report = potnn.export(model, tmp_path / "tight.h", tight)
    assert report.flash_estimate == looped.flash_estimate
    assert (tmp_path / "tight.h").read_text() == (tmp_path / "looped.h").read_text()
    images = _images()
    assert np.array_equal(run_header(tmp_path / "tight.h", images, 10)[1], potnn.simulate(model, images))
    assert np.array_equal(run_header(tmp_path / "repeated.h", images, 10)[1], potnn.simulate(model, images))


class _WideLinear(nn.Module):
    """A 2x2 conv (15x15 = 225 unsigned outputs: one-byte indices), a dense 225 -> 24 linear layer, 24 -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = PoTConv2d(1, 1, 2)
        self.fc1 = PoTLinear(225, 24)
        self.fc2 = PoTLinear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(torch.relu(self.conv(x)).flatten(1))))


class _SignedWideLinear(nn.Module):
    """A conv without ReLU (signed int8 outputs), then a dense 512 -> 10 linear layer (two-byte indices)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = PoTConv2d(1, 2, 3, padding=1)
        self.fc = PoTLinear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


@pytest.mark.parametrize("build", [_WideLinear, _SignedWideLinear])
def test_linear_weight_groups_come_from_index_tables_when_their_code_would_not_fit_flash(
        build: type[nn.Module], tmp_path: Path) -> None:
    """An unrolled linear layer of thousands of dense weights is ~6 bytes of code per weight, over 16 KB;
    export then sums its larger weight groups from index tables (potnn_gather_*), the fastest form that
    fits Config.flash, and stays exact. With flash to spare it is all code, as before."""
    torch.manual_seed(0)
    model = _prepared(build())
    roomy = potnn.export(model, tmp_path / "code.h", dataclasses.replace(CONFIG, flash=1 << 20))
    assert roomy.flash_estimate > CONFIG.flash and "potnn_gather_" not in (tmp_path / "code.h").read_text()
    report = potnn.export(model, tmp_path / "m.h", CONFIG)
    text = (tmp_path / "m.h").read_text()
    kernel = "potnn_gather_u8_u8" if build is _WideLinear else "potnn_gather_s8_u16"
    assert report.flash_estimate <= CONFIG.flash and f"{kernel}(p, " in text
    images = _images()
    ref = potnn.simulate(model, images)
    for header in ("m.h", "code.h"):
        assert np.array_equal(run_header(tmp_path / header, images, 10)[1], ref)


@pytest.mark.parametrize("build_model", [_WideLinear, _SignedWideLinear])
def test_gathered_linear_layers_build_within_the_estimate_and_without_multiply(build_model: type[nn.Module],
                                                                             tmp_path: Path) -> None:
    """The export chose the index tables by its flash estimate, so that estimate must cover the real build
    (here with 16 KB less the bench firmware's 1.5 KB as the model's budget), and the gather kernel, like
    all inference code, must not multiply on RV32EC."""
    from bench.board import load_board
    from bench.build import build
    from bench.disasm import muldiv_report
    from bench.toolchain import ToolchainError, find_toolchain

    try:
        find_toolchain(load_board("ch32v003"), "gnu")
    except ToolchainError as exc:
        pytest.skip(str(exc))
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIG, flash=14_800)
    report = potnn.export(_prepared(build_model()), tmp_path / "m.h", config)
    assert "potnn_gather_" in (tmp_path / "m.h").read_text()
    result = build("ch32v003", tmp_path / "m.h", tmp_path / "build", toolchain="gnu")
    assert result.model_flash_bytes <= report.flash_estimate <= 1.25 * result.model_flash_bytes + 300, \
        (result.model_flash_bytes, report.flash_estimate)
    assert muldiv_report(result.elf) == {}


@pytest.mark.parametrize("seed", [0, 1, 3, 4, 6, 9])
def test_flash_estimate_covers_the_rv32ec_build(seed: int, tmp_path: Path) -> None:
    """potnn.export refuses models by its flash estimate, so it must not be below the real -Os RV32EC code
    and tables (the build's potnn_* symbols), nor far above it (it would refuse models that fit)."""
    from bench.board import load_board
    from bench.build import BudgetError, build
    from bench.toolchain import ToolchainError, find_toolchain
    from random_models import make_case

    try:
        find_toolchain(load_board("ch32v003"), "gnu")
    except ToolchainError as exc:
        pytest.skip(str(exc))
    case = make_case(seed, n_images=8)
    report = potnn.export(case.model, tmp_path / "m.h", case.config)
    try:
        actual = build("ch32v003", tmp_path / "m.h", tmp_path / "build", toolchain="gnu").model_flash_bytes
    except BudgetError as exc:  # over 16 KB: the measuring link still has the sizes
        actual = exc.size.model_flash_bytes
    assert actual <= report.flash_estimate <= 1.25 * actual + 300, (case.description, actual, report.flash_estimate)
