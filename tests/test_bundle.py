"""The model bundle: export writes it beside the header, it holds the integer program exactly, and
`potnn.simulate` runs from it bit for bit like the model, in a Python where torch cannot be imported."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import potnn
from potnn import PoTConv1d, PoTConv2d, PoTLinear
from potnn.contract import EXPORT_VERSION, model_hash
from potnn.program import IntProgram
from potnn.zoo.architectures import TinyNet
from random_models import make_case

ROOT = Path(__file__).resolve().parents[1]
CONTRACT_KEYS = {"format", "export_version", "header", "header_sha256", "model_hash", "input_shape", "input_layout",
                 "input_size", "num_classes", "class_names", "mean", "std", "encodings", "ram_bytes", "flash_bytes",
                 "stack_bytes", "dataset", "potnn_version"}


class ColourNet(nn.Module):
    """3-channel 16×16 input, 10 classes: per-channel normalisation reaches the first layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = PoTConv2d(3, 8, 3, padding=1)
        self.conv2 = PoTConv2d(8, 12, 3, padding=1)
        self.fc = PoTLinear(12 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


class FiveClassNet(nn.Module):
    """1×8×8 input, 5 classes, with class names."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = PoTConv2d(1, 6, 3, padding=1)
        self.fc = PoTLinear(6 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1))


class SignalNet(nn.Module):
    """1-d input [N, 3, 32] as users write it: Conv1d, max_pool1d, global average pooling, 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = PoTConv1d(3, 8, 5, padding=2)
        self.conv2 = PoTConv1d(8, 12, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = PoTLinear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool1d(torch.relu(self.conv1(x)), 2)
        x = torch.relu(self.conv2(x))
        return self.fc(self.gap(x).flatten(1))


CASES = {
    "gray-16x16": (TinyNet, potnn.Config(mean=0.1307, std=0.3081)),
    "colour-3x16x16": (ColourNet, potnn.Config(input_channels=3, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3),
                                               class_names=tuple(f"c{i}" for i in range(10)))),
    "five-classes": (FiveClassNet, potnn.Config(input_h=8, input_w=8, mean=0.3, std=0.4, dataset="digits8",
                                                class_names=("north", "east", "south", "west", "none"))),
    "signal-3x32": (SignalNet, potnn.Config(input_channels=3, input_length=32, mean=(0.4, 0.4, 0.4),
                                            std=(0.1, 0.1, 0.1), per_channel=True)),
}


def _inputs(shape: tuple[int, ...], n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _prepared(build: type[nn.Module], config: potnn.Config) -> nn.Module:
    torch.manual_seed(0)
    model = build()
    u8 = _inputs(config.input_shape, 128, seed=1)
    shape = (1, -1) + (1,) * (len(config.input_shape) - 1)
    mean, std = torch.tensor(config.channel_mean()).view(shape), torch.tensor(config.channel_std()).view(shape)
    potnn.calibrate(model, [((torch.from_numpy(u8).float() / 255 - mean) / std,)], config)
    return potnn.prepare_qat(model, config)


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    build, config = CASES[request.param]
    model = _prepared(build, config)
    header = tmp_path_factory.mktemp(request.param) / "model.h"
    report = potnn.export(model, header, config)
    return model, config, header, report


def assert_same_program(a: IntProgram, b: IntProgram) -> None:
    """Field by field, arrays by value and dtype: what simulate and the C generator read."""
    assert (a.input, a.output, a.meta) == (b.input, b.output, b.meta)
    assert a.tensors == b.tensors
    assert len(a.ops) == len(b.ops)
    for x, y in zip(a.ops, b.ops):
        for f in dataclasses.fields(x):
            u, v = getattr(x, f.name), getattr(y, f.name)
            if isinstance(u, np.ndarray):
                assert isinstance(v, np.ndarray) and u.dtype == v.dtype and np.array_equal(u, v), (x.name, f.name)
            else:
                assert u == v and type(u) is type(v), (x.name, f.name, u, v)


def test_export_writes_the_bundle_with_the_contract_manifest(exported) -> None:
    model, config, header, report = exported
    bundle_file = header.with_suffix(".potnn")
    assert report.bundle == bundle_file and bundle_file.is_file()
    with np.load(bundle_file, allow_pickle=False) as npz:  # a plain zip of arrays: no pickle needed
        assert "manifest.json" in npz.files
    bundle = potnn.load_bundle(bundle_file)
    m = bundle.manifest
    assert isinstance(bundle, potnn.Bundle) and bundle.path == bundle_file
    assert set(m) == CONTRACT_KEYS | {"kernels"}   # and the kernels by work, for the bench's SRAM placement
    assert all(f" {k['name']}(" in header.read_text() and k["macs"] > 0 for k in m["kernels"])
    data = header.read_bytes()
    shape = list(config.input_shape)
    program = potnn.lower(model)
    assert m["format"] == "potnn-bundle" and m["export_version"] == EXPORT_VERSION
    assert m["header"] == "model.h" and m["header_sha256"] == hashlib.sha256(data).hexdigest()
    assert m["model_hash"] == model_hash(header)
    assert m["input_shape"] == shape and m["input_size"] == int(np.prod(shape))
    assert m["input_layout"] == ("CHW" if len(shape) == 3 else "CL")
    assert m["num_classes"] == program.num_classes
    assert m["class_names"] == (None if config.class_names is None else list(config.class_names))
    assert m["mean"] == list(config.channel_mean()) and m["std"] == list(config.channel_std())
    assert m["encodings"] == {op.name: op.encoding for op in program.ops if op.kind in ("conv", "linear")}
    assert m["ram_bytes"] == report.ram_bytes and m["flash_bytes"] == report.flash_bytes
    assert m["stack_bytes"] is None and m["dataset"] == config.dataset
    assert f"#define POTNN_RAM_BYTES {m['ram_bytes']}" in data.decode()
    assert_same_program(bundle.program, program)


def test_simulate_from_the_bundle_equals_the_model_bit_for_bit(exported) -> None:
    model, config, header, _ = exported
    x = _inputs(config.input_shape, 200, seed=3)
    x[0], x[1] = 0, 255
    want = potnn.simulate(model, x)
    bundle_file = header.with_suffix(".potnn")
    for source in (bundle_file, str(bundle_file), potnn.load_bundle(bundle_file)):
        got = potnn.simulate(source, x)
        assert got.dtype == np.int32 and np.array_equal(got, want)
    assert np.array_equal(potnn.simulate(bundle_file, x.astype(np.int64)), want)  # integer values 0..255 are taken


def test_the_bundle_holds_every_op_field_of_random_architectures(tmp_path: Path) -> None:
    """Residual adds, depthwise and grouped convs, fused pools, Conv1d on rows, every encoding: all survive."""
    for seed in range(8):
        case = make_case(seed, n_images=64)
        report = potnn.export(case.model, tmp_path / f"m{seed}.h", case.config)
        assert report.bundle is not None
        program = potnn.load_bundle(report.bundle).program
        assert_same_program(program, potnn.lower(case.model))
        again = potnn.export(program, tmp_path / f"again{seed}.h", case.config)  # the bundle holds all the C needs
        assert again.path.read_bytes() == report.path.read_bytes()
        assert np.array_equal(potnn.simulate(report.bundle, case.images), potnn.simulate(case.model, case.images)), \
            case.description


def test_simulate_from_a_bundle_runs_where_torch_cannot_be_imported(exported) -> None:
    model, config, header, _ = exported
    x = _inputs(config.input_shape, 16, seed=5)
    np.save(header.parent / "x.npy", x)
    script = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` now raises ImportError
        "import json, numpy as np, potnn\n"
        f"b = potnn.load_bundle({str(header.with_suffix('.potnn'))!r})\n"
        f"out = potnn.simulate(b.path, np.load({str(header.parent / 'x.npy')!r}))\n"
        "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
        "print(json.dumps(out.tolist()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == potnn.simulate(model, x).tolist()


def test_wrong_input_shape_or_type_is_one_line_naming_both_shapes(exported) -> None:
    _, config, header, _ = exported
    shape = config.input_shape
    bad = np.zeros((4, *shape[:-1], shape[-1] + 1), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"images have shape .*, the model takes .*") as info:
        potnn.simulate(header.with_suffix(".potnn"), bad)
    assert str(tuple(bad.shape[1:])) in str(info.value) and str(tuple(shape)) in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"pass an array \[N, "):
        potnn.simulate(header.with_suffix(".potnn"), np.zeros(shape, dtype=np.uint8))  # no batch dimension
    with pytest.raises(TypeError, match="float32, the model takes uint8"):
        potnn.simulate(header.with_suffix(".potnn"), np.zeros((2, *shape), dtype=np.float32))
    with pytest.raises(ValueError, match=r"values -1\.\.300, the model takes uint8 values 0\.\.255"):
        potnn.simulate(header.with_suffix(".potnn"), np.array([-1, 300]).repeat(np.prod(shape)).reshape(2, *shape))


def _bundle_error(path: Path) -> str:
    with pytest.raises(potnn.BundleError) as info:
        potnn.load_bundle(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_bad_bundles_give_one_clear_line(exported, tmp_path: Path) -> None:
    _, _, header, _ = exported
    good = header.with_suffix(".potnn").read_bytes()
    assert "no such bundle" in _bundle_error(tmp_path / "absent.potnn")
    (tmp_path / "truncated.potnn").write_bytes(good[: len(good) // 2])
    assert "damaged" in _bundle_error(tmp_path / "truncated.potnn")
    (tmp_path / "header.potnn").write_bytes(header.read_bytes())
    assert "not a potnn bundle" in _bundle_error(tmp_path / "header.potnn")
    np.save(tmp_path / "array.npy", np.zeros(3))
    assert "not a potnn bundle" in _bundle_error(tmp_path / "array.npy")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    assert "not a potnn bundle" in _bundle_error(tmp_path / "other.npz")
    # a bundle whose entries are intact but whose manifest says another format or export version
    with zipfile.ZipFile(header.with_suffix(".potnn")) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    manifest = json.loads(np.load(header.with_suffix(".potnn"))["manifest.json"].tobytes())
    for key, value, expected in (("export_version", EXPORT_VERSION + 1, "export version"),
                                 ("format", "something-else", "not a potnn bundle")):
        changed = dict(manifest, **{key: value})
        path = tmp_path / f"{key}.potnn"
        with zipfile.ZipFile(path, "w") as z:
            for name, data in entries.items():
                if name != "manifest.json.npy":
                    z.writestr(name, data)
            with z.open("manifest.json.npy", "w") as f:
                np.save(f, np.frombuffer(json.dumps(changed).encode(), dtype=np.uint8))
        assert expected in _bundle_error(path)
        with pytest.raises(potnn.BundleError):
            potnn.simulate(path, _inputs(manifest["input_shape"], 1))


def test_damaged_bytes_anywhere_give_a_bundle_error_never_another_exception(tmp_path: Path) -> None:
    """Whatever a byte flip or a cut does to the zip, its entries or a .npy header, the reader says so in one line."""
    config = CASES["gray-16x16"][1]
    report = potnn.export(_prepared(TinyNet, config), tmp_path / "model.h", config)
    assert report.bundle is not None
    good = report.bundle.read_bytes()
    rng = np.random.default_rng(0)
    damaged = tmp_path / "damaged.potnn"
    refused = 0
    for trial in range(300):
        data = bytearray(good)
        for at in rng.integers(0, len(data), rng.integers(1, 4)):
            data[at] = int(rng.integers(0, 256))
        damaged.write_bytes(bytes(data[: int(rng.integers(0, len(data)))] if trial % 3 == 0 else data))
        try:
            potnn.simulate(damaged, _inputs(config.input_shape, 2))
        except potnn.BundleError as e:
            assert "\n" not in str(e)
            refused += 1
    assert refused > 200  # most bytes are covered by a CRC or parsed; a flip in a timestamp harms nothing


def test_a_failed_export_leaves_no_bundle_of_another_header(tmp_path: Path) -> None:
    """Class names that do not match the outputs, or a path that is not a header's, are refused before any write."""
    model = _prepared(FiveClassNet, CASES["five-classes"][1])
    config = dataclasses.replace(CASES["five-classes"][1], class_names=("a", "b"))
    with pytest.raises(potnn.ExportError, match="class_names has 2 names but the model has 5 outputs"):
        potnn.export(model, tmp_path / "model.h", config)
    with pytest.raises(potnn.ExportError, match=r"give the header's path \(such as model.h\)"):
        potnn.export(model, tmp_path / "model.potnn", CASES["five-classes"][1])
    with pytest.raises(potnn.ExportError, match="does not exist; create it first"):
        potnn.export(model, tmp_path / "absent" / "model.h", CASES["five-classes"][1])
    assert list(tmp_path.iterdir()) == []


def test_exporting_again_replaces_both_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    config = CASES["gray-16x16"][1]
    first, second = _prepared(TinyNet, config), _prepared(TinyNet, dataclasses.replace(config, per_channel=True))
    potnn.export(first, tmp_path / "model.h", config)
    potnn.export(second, tmp_path / "model.h", dataclasses.replace(config, per_channel=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h", "model.potnn"]
    manifest = potnn.load_bundle(tmp_path / "model.potnn").manifest
    assert manifest["header_sha256"] == hashlib.sha256((tmp_path / "model.h").read_bytes()).hexdigest()
