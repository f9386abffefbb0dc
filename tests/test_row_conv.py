"""The row kernel (potnn.codegen.row_conv): packed convs 3 taps wide at stride 1, four outputs of a row at
a time. Each case is exported, checked to use (or, where the row kernel cannot, not to use) the row
kernel, compiled for the host with ASan/UBSan and compared with potnn.simulate on random images including
all-0 and all-255 ones; the row kernel's headers also compile with every toolchain for both cores
without a multiply. One model runs in the bench firmware on both emulated boards.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import potnn
from potnn import PoTConv1d, PoTConv2d, PoTLinear
from potnn.boards import load_board_facts
from potnn.codegen.budget import firmware_buffers
from potnn.codegen.compiled import measure
from potnn.hostrun import run_header
from potnn.lower import lower
from potnn.memory import plan_memory

from bench.build import build
from bench.emulator import launch
from bench.protocol import BenchClient


@dataclass(frozen=True)
class Shape:
    """conv0 (unroll, 3x3 pad 1) c_in -> c_mid, optional ReLU; conv1 (the packed conv under test) c_mid ->
    c_out with kernel 3, padding `pad`, then max-pool `pool` (1: none); a linear head."""

    name: str
    c_in: int = 1
    size: int = 8
    c_mid: int = 4
    c_out: int = 6
    pad: int = 1
    pool: int = 1
    relu: bool = True  # False: conv1 reads signed values
    per_channel: bool = False
    encoding: str = "fp130"
    row_kernel: bool = True  # whether the export must use it


SHAPES = [
    Shape("pool 2, padded, per-channel shifts", pool=2, per_channel=True),
    Shape("no pool, padded", size=8),
    Shape("no pool, unpadded (10 -> 8 columns)", size=10, pad=0),
    Shape("pool 4", pool=4, c_mid=6),
    Shape("signed input", relu=False, pool=2),
    Shape("12 columns, 3 blocks a row", size=12, c_mid=2, pool=2),
    Shape("odd weight rows: one-output kernel", c_mid=3, row_kernel=False),
    Shape("6 columns: one-output kernel", size=6, row_kernel=False),
    Shape("2bit (no row kernel)", encoding="2bit", row_kernel=False),
    Shape("indexed, pool 2, per-channel shifts", pool=2, per_channel=True, encoding="indexed"),
    Shape("indexed, odd weight rows", c_mid=3, encoding="indexed"),
    Shape("indexed, signed input", relu=False, pool=2, encoding="indexed"),
    Shape("indexed, 6 columns: one-output kernel", size=6, encoding="indexed", row_kernel=False),
]


class TwoConvs(nn.Module):
    def __init__(self, s: Shape) -> None:
        super().__init__()
        self.s = s
        self.conv0 = PoTConv2d(s.c_in, s.c_mid, 3, padding=1)
        self.conv1 = PoTConv2d(s.c_mid, s.c_out, 3, padding=s.pad)
        side = (s.size + 2 * s.pad - 2) // s.pool
        self.head = PoTLinear(s.c_out * side * side, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv0(x)
        x = torch.relu(x) if self.s.relu else x
        x = torch.relu(self.conv1(x))
        if self.s.pool > 1:
            x = F.max_pool2d(x, self.s.pool)
        return self.head(x.flatten(1))


def _images(rng: np.random.Generator, shape: tuple[int, ...], n: int = 96) -> np.ndarray:
    images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    images[0], images[1] = 0, 255
    images[2:n // 4] = (images[2:n // 4] > 128) * np.uint8(255)
    return images


def _export(model: nn.Module, config: potnn.Config, images: np.ndarray, path: Path) -> str:
    x = torch.from_numpy(images).float() / 255
    mean = torch.tensor(config.channel_mean()).view(1, -1, *([1] * (images.ndim - 2)))
    std = torch.tensor(config.channel_std()).view(1, -1, *([1] * (images.ndim - 2)))
    potnn.calibrate(model, [((x - mean) / std,)], config)
    potnn.prepare_qat(model, config)
    potnn.export(model, path, config)
    return path.read_text()


def _check_exact(model: nn.Module, header: Path, images: np.ndarray) -> None:
    ref = potnn.simulate(model, images)
    classes, logits = run_header(header, images, ref.shape[1])
    diff = np.argwhere(logits != ref)
    assert diff.size == 0, f"{len(np.unique(diff[:, 0]))} images differ, first {diff[:3].tolist()}"
    assert np.array_equal(classes, ref.argmax(1))


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_row_kernel_equals_simulate(shape: Shape, tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = TwoConvs(shape).eval()
    config = potnn.Config(flash=10**6, ram=10**6, mean=0.3, std=0.3, input_h=shape.size, input_w=shape.size,
                          input_channels=shape.c_in, per_channel=shape.per_channel,
                          layer_encodings={"conv0": "unroll", "conv1": shape.encoding,
                                           "head": "indexed" if shape.encoding == "indexed" else "fp130"})
    images = _images(np.random.default_rng(3), (shape.c_in, shape.size, shape.size))
    text = _export(model, config, images, tmp_path / "m.h")
    assert ("potnn_row4_" in text) == shape.row_kernel
    if not shape.relu:
        assert f"potnn_row4_{shape.encoding}_s8(" in text
    _check_exact(model, tmp_path / "m.h", images)
    if shape.row_kernel:
        for board in ("ch32v003", "py32f003"):  # raises on a multiply in the assembly
            measure(text, load_board_facts(board))


class Signal(nn.Module):
    """1-d: conv1d 4 -> 6 (k3, pad 1) packed, as the row kernel's rows of one weight row per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = PoTConv1d(2, 4, 3, padding=1)
        self.conv1 = PoTConv1d(4, 6, 3, padding=1)
        self.head = PoTLinear(6 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(torch.relu(self.conv0(x))))
        return self.head(F.max_pool1d(x, 2).flatten(1))


def test_row_kernel_on_1d_signals(tmp_path: Path) -> None:
    torch.manual_seed(4)
    model = Signal().eval()
    config = potnn.Config(flash=10**6, ram=10**6, input_channels=2, input_length=16, mean=[0.4, 0.5],
                          std=[0.3, 0.2], layer_encodings={"conv0": "unroll", "conv1": "fp130", "head": "fp130"})
    images = _images(np.random.default_rng(4), (2, 16))
    assert "potnn_row4_fp130_u8(" in _export(model, config, images, tmp_path / "m.h")
    _check_exact(model, tmp_path / "m.h", images)


class Funnel(nn.Module):
    """A wide first stage, then two packed convs on 8x8: the last runs while the arena has room for its
    receptive-field copy, which it takes there instead of on the stack."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = PoTConv2d(1, 8, 3, padding=1)
        self.conv1 = PoTConv2d(8, 4, 3, padding=1)
        self.conv2 = PoTConv2d(4, 4, 3, padding=1)
        self.head = PoTLinear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv0(x))
        x = torch.relu(self.conv1(F.max_pool2d(x, 2)))
        x = torch.relu(self.conv2(x))
        return self.head(F.max_pool2d(x, 2).flatten(1))


def test_scratch_in_the_arena_where_it_is_free(tmp_path: Path) -> None:
    torch.manual_seed(5)
    model = Funnel().eval()
    config = potnn.Config(flash=10**6, ram=10**6, mean=0.3, std=0.3,
                          layer_encodings={"conv0": "unroll", "conv1": "fp130", "conv2": "fp130", "head": "fp130"})
    images = _images(np.random.default_rng(5), (1, 16, 16))
    text = _export(model, config, images, tmp_path / "m.h")
    assert text.count("uint8_t *scratch)") == 1, "conv2's copy goes to the arena, conv1's stays on the stack"
    assert "uint8_t patch[" in text
    _check_exact(model, tmp_path / "m.h", images)


def test_scratch_never_grows_the_arena() -> None:
    """Scratch gets arena bytes only beside what is live during its operation, inside the arena's size."""
    model = Funnel().eval()
    config = potnn.Config(flash=10**6, ram=10**6, mean=0.3, std=0.3, layer_encodings={"conv1": "fp130", "conv2": "fp130"})
    potnn.calibrate(model, [((torch.randint(0, 256, (4, 1, 16, 16)) / 255 - 0.3) / 0.3,)], config)
    potnn.prepare_qat(model, config)
    program = lower(model)
    plain = plan_memory(program, set())
    huge = {op.output: 1 << 20 for op in program.ops}
    fitting = {op.output: 64 for op in program.ops}
    assert plan_memory(program, set(), huge).scratch == {}
    planned = plan_memory(program, set(), fitting)
    assert planned.scratch, "some operation runs while 64 arena bytes are free"
    assert planned.arena_bytes == plain.arena_bytes and planned.offsets == plain.offsets
    for i, op in enumerate(program.ops):
        if op.output not in planned.scratch:
            continue
        start = planned.scratch[op.output]
        assert start + 64 <= planned.arena_bytes
        live = {op.output, *op.inputs}
        for name in live & set(planned.offsets):
            size = program.tensors[name].size * program.tensors[name].itemsize
            lo = planned.offsets[name]
            assert start + 64 <= lo or lo + size <= start, f"{op.name}'s scratch overlaps {name}"


@pytest.mark.parametrize("board", ["ch32v003", "py32f003"])
def test_row_kernel_in_the_bench_firmware_on_the_emulator(board: str, tmp_path: Path) -> None:
    """The real firmware build (GCC, else zig) on Unicorn: both scratch placements, logits equal to simulate."""
    torch.manual_seed(5)
    model = Funnel().eval()
    config = potnn.Config(flash=10**6, ram=10**6, mean=0.3, std=0.3,
                          layer_encodings={"conv0": "unroll", "conv1": "fp130", "conv2": "fp130", "head": "fp130"})
    images = _images(np.random.default_rng(6), (1, 16, 16), n=12)
    _export(model, config, images, tmp_path / "m.h")
    reference = potnn.simulate(model, images)
    result = build(board, tmp_path / "m.h", tmp_path / board)
    with launch(board, result.elf) as emu:
        client = BenchClient(emu.open_serial(timeout=5), timeout=5, infer_timeout=30)
        for image, ref in zip(images, reference):
            assert list(client.infer(image.tobytes()).logits) == ref.tolist()
        assert emu.fault is None


class Digits(nn.Module):
    """8x8 input, conv 1 -> 24 + pool (unroll), conv 24 -> 16 + pool (fp130): the packed conv's copy of four
    outputs' field is 432 bytes, over the one-output patch limit, so it goes on the stack only if RAM allows."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = PoTConv2d(1, 24, 3, padding=1)
        self.conv1 = PoTConv2d(24, 16, 3, padding=1)
        self.head = PoTLinear(16 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.conv0(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        return self.head(x.flatten(1))


def test_stack_copy_gives_way_when_ram_is_short(tmp_path: Path) -> None:
    """With the board's RAM the 432-byte copy goes on the stack (measured); with a budget a byte short of
    what that needs, export takes the same model with the one-output kernel instead of refusing it."""
    torch.manual_seed(7)
    images = _images(np.random.default_rng(7), (1, 8, 8), n=32)
    board = potnn.Config.for_board("ch32v003", mean=0.3, std=0.3, input_h=8, input_w=8,
                                   layer_encodings={"conv1": "fp130", "head": "fp130"})
    model = Digits().eval()
    text = _export(model, board, images, tmp_path / "roomy.h")
    assert "potnn_row4_fp130_u8(" in text and "uint8_t patch[432];" in text
    report = potnn.export(model, tmp_path / "roomy.h", board)
    assert report.stack_bytes is not None
    need = report.ram_bytes + firmware_buffers(lower(model)) + report.stack_bytes
    short = dataclasses.replace(board, ram=need - 1)
    tight = potnn.export(model, tmp_path / "tight.h", short)
    text = (tmp_path / "tight.h").read_text()
    assert "potnn_row4_" not in text and "potnn_dot_fp130_u8(patch" in text
    assert tight.stack_bytes is not None and tight.stack_bytes < report.stack_bytes
    _check_exact(model, tmp_path / "tight.h", images)
    _check_exact(model, tmp_path / "roomy.h", images)


def test_indexed_sparse_filters_with_long_steps(tmp_path: Path) -> None:
    """indexed with most weights pruned: the 24-channel conv's positions in the 432-byte copy and the head's
    steps pass 255 (bridged in the stream), zero weights take no bytes; equal to simulate on the host and in
    the bench firmware on the emulated CH32V003."""
    torch.manual_seed(8)
    model = Digits().eval()
    with torch.no_grad():
        for layer, keep in ((model.conv1, 0.1), (model.head, 0.05)):
            layer.weight.mul_((torch.rand_like(layer.weight) < keep).float())
    images = _images(np.random.default_rng(8), (1, 8, 8), n=48)
    config = potnn.Config(flash=10**6, ram=10**6, mean=0.3, std=0.3, input_h=8, input_w=8,
                          layer_encodings={"conv1": "indexed", "head": "indexed"})
    text = _export(model, config, images, tmp_path / "m.h")
    assert "potnn_row4_indexed_u8(" in text and "potnn_dot_indexed_u8(" in text
    fp130_bytes = (model.conv1.weight.numel() + model.head.weight.numel()) // 2
    assert potnn.export(model, tmp_path / "m.h", config).weight_bytes < fp130_bytes / 2
    _check_exact(model, tmp_path / "m.h", images)
    reference = potnn.simulate(model, images[:6])
    result = build("ch32v003", tmp_path / "m.h", tmp_path / "fw")
    with launch("ch32v003", result.elf) as emu:
        client = BenchClient(emu.open_serial(timeout=5), timeout=5, infer_timeout=30)
        for image, ref in zip(images, reference):
            assert list(client.infer(image.tobytes()).logits) == ref.tolist()
