"""Benchmark: speed and flash of the exported kernels, per layer and per encoding, on the emulator.

Run: ``pytest -m benchmark -s tests/benchmarks/test_kernel_speed.py``. For each case (a small
MNIST-16 network with a given encoding per layer) it exports the model, builds the bench firmware
for CH32V003 and PY32F003 with ``bench.build`` (-Os, as shipped), runs a few MNIST test images on
the Unicorn emulator, checks every logit against ``potnn.simulate``, and prints one table:

    case | board | layer | encoding | MACs | instructions | instr/MAC | flash B | flash B/weight

Layer rows count the instructions executed inside that layer's function (a Python block hook
attributes each executed block to the ``potnn_<i>_<layer>`` symbol it lies in) and the flash of
that function plus its tables (ELF symbol sizes, as in the build's size report). The ``total``
row holds the whole ``potnn_predict`` (between the firmware's two cycle-counter reads) and the
modelled cycles. Why per layer: a regression in one emitter (say, the 2bit decoder) hides in the
total of a model that spends most of its time in an unrolled conv.

Weights: the models are calibrated on MNIST (``$POTNN_DATA``; random images when it is absent),
not trained, so they are dense (almost no zero weights): the worst case for ``unroll``, whose
zero weights cost nothing. Figures are per inference and do not depend on the image except for
the data-dependent branches of the requantisation clamp (a few per output).

``POTNN_KERNEL_BOARDS=ch32v003`` limits the boards; ``POTNN_KERNEL_CASES=a,b`` the cases;
``POTNN_KERNEL_EXPORT=old/potnn/codegen`` measures another version of the C generator (a package
directory, or an older single-file ``export.py``; loaded as ``potnn._export_under_test``), e.g. the one
before a change, for a before/after comparison.
"""

from __future__ import annotations

import bisect
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

import potnn
from potnn import PoTConv2d, PoTDepthwiseConv2d, PoTLinear
from potnn.data import MNIST16_MEAN, MNIST16_STD, DatasetError, load_mnist
from potnn.lower import IntOp, IntProgram, lower

pytestmark = pytest.mark.benchmark

N_IMAGES = 3
#: The kernels layers share (dot products, row kernels, gather sums): their instructions count for the
#: layer that called them, their flash once on a row of their own.
SHARED_KERNEL = re.compile(r"(potnn_(?:dot|row4|gather)_\w+)$")


class ConvConvLinear(nn.Module):
    """The zoo's shape: conv3x3 1->8 pad1 (+pool2), conv3x3 8->16 pad1 (+pool2 or stride 2), linear 256->10."""

    def __init__(self, stride2: bool = False) -> None:
        super().__init__()
        self.stride2 = stride2
        self.conv1 = PoTConv2d(1, 8, 3, padding=1)
        self.conv2 = PoTConv2d(8, 16, 3, padding=1, stride=2 if stride2 else 1)
        self.fc = PoTLinear(16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.relu(self.conv2(x))
        if not self.stride2:
            x = F.max_pool2d(x, 2)
        return self.fc(x.flatten(1))


class DepthwiseNet(nn.Module):
    """conv3x3/s2 1->8, depthwise 3x3/s2 (x2 multiplier), pointwise 1x1 16->16, linear 256->10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = PoTConv2d(1, 8, 3, stride=2, padding=1)
        self.dw = PoTDepthwiseConv2d(8, 3, stride=2, padding=1, depth_multiplier=2)
        self.pw = PoTConv2d(16, 16, 1)
        self.fc = PoTLinear(16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.dw(x))
        x = torch.relu(self.pw(x))
        return self.fc(x.flatten(1))


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], nn.Module] | None = None
    encodings: dict[str, str] = field(default_factory=dict)
    zoo: str | None = None  # a trained zoo model instead (potnn.zoo.load)


CASES = [
    *(Case(f"ccl-pool/fc-{e}", ConvConvLinear, {"fc": e}) for e in ("fp130", "5level", "2bit", "ternary", "indexed")),
    Case("ccl-stride2/fc-fp130", lambda: ConvConvLinear(stride2=True), {"fc": "fp130"}),
    *(Case(f"ccl-stride2/conv2-{e}", lambda: ConvConvLinear(stride2=True), {"conv2": e, "fc": e})
      for e in ("fp130", "5level", "2bit", "ternary", "indexed")),
    *(Case(f"ccl-pool/conv2-{e}", ConvConvLinear, {"conv2": e, "fc": e}) for e in ("fp130", "indexed")),
    Case("ccl-pool/conv1-5level,conv2-fp130", ConvConvLinear, {"conv1": "5level", "conv2": "fp130", "fc": "fp130"}),
    Case("depthwise", DepthwiseNet, {"fc": "fp130"}),
    Case("depthwise/packed", DepthwiseNet, {"conv1": "ternary", "dw": "2bit", "pw": "5level", "fc": "fp130"}),
]



def _zoo_cases() -> list[Case]:
    """The trained zoo models that are shipped (their weights are the ones that matter in the end)."""
    try:
        from potnn import zoo
        return [Case(f"zoo/{m.name}", zoo=m.name) for m in zoo.available()]
    except Exception:  # a zoo in the middle of a change must not stop the kernel benchmark
        return []


CASES += _zoo_cases()
BOARDS = ["ch32v003", "py32f003"]


def _images(n: int, shape: tuple[int, ...] = (1, 16, 16)) -> np.ndarray:
    """MNIST-16 test images, or seeded random ones (without MNIST, or for a zoo model of another input)."""
    if shape == (1, 16, 16):
        try:
            return load_mnist("test")[0][:n]
        except DatasetError:
            pass
    return np.random.default_rng(0).integers(0, 256, (n, *shape), dtype=np.uint8)


def prepare(case: Case) -> tuple[nn.Module, potnn.Config]:
    """The case's model, calibrated (seeded) on MNIST images, ready for export (a zoo model: as trained)."""
    if case.zoo is not None:
        from potnn import zoo
        return zoo.load(case.zoo), zoo.get(case.zoo).recipe.config
    assert case.build is not None
    torch.manual_seed(0)
    config = potnn.Config(flash=16384, ram=2048, mean=MNIST16_MEAN, std=MNIST16_STD, input_h=16, input_w=16,
                          input_channels=1, layer_encodings=dict(case.encodings), default_encoding="unroll")
    model = case.build().eval()
    x = (torch.from_numpy(_images(512)).float() / 255 - MNIST16_MEAN) / MNIST16_STD
    potnn.calibrate(model, [(x,)], config)
    potnn.prepare_qat(model, config)
    return model, config


def macs(op: IntOp) -> int:
    """Multiply-accumulates the layer performs (a fused pool's conv positions all count)."""
    assert op.weight is not None
    if op.kind == "linear":
        return int(op.weight.size)
    _, oh, ow = op.conv_shape or op.out_shape
    return int(op.weight.size) * oh * ow


def layer_functions(program: IntProgram) -> dict[str, IntOp]:
    """Function name (as potnn.export names it) -> op, for the conv/linear layers."""
    names: dict[str, IntOp] = {}
    for i, op in enumerate(program.ops):
        if op.kind in ("conv", "linear"):
            names[f"potnn_{i}_{re.sub(r'[^0-9A-Za-z_]', '_', op.name)}"] = op
    return names


def _symbols(elf: Path) -> list[tuple[str, int, int, str]]:
    """(name, address, size, type) of every sized symbol."""
    out = []
    with open(elf, "rb") as f:
        for sec in ELFFile(f).iter_sections():
            if isinstance(sec, SymbolTableSection):
                for s in sec.iter_symbols():
                    if s["st_size"]:
                        # GCC may clone a function as name.constprop.0 / name.isra.0: count it as name
                        out.append((s.name.split(".")[0], int(s["st_value"]) & ~1, int(s["st_size"]),
                                    s["st_info"]["type"]))
    return out


def keep_layers_apart(header: Path) -> None:
    """Mark the layer functions noinline (when the export does not already), so that each has its
    own symbol to attribute instructions and flash to. GCC inlines a static function called once."""
    text = header.read_text()
    if "POTNN_NOINLINE" not in text:
        header.write_text(text.replace("\nstatic void potnn_", "\n__attribute__((noinline)) static void potnn_"))


@dataclass
class Measured:
    instructions: int
    cycles: int
    per_function: dict[str, float]     # instructions per inference
    flash: dict[str, int]              # function + its tables, bytes
    model_flash: int
    stack: int                         # deepest stack of the whole firmware, bytes


def run_on_emulator(board: str, header: Path, out: Path, images: np.ndarray, ref: np.ndarray) -> Measured:
    """Build, run `images`, check the logits, and attribute executed instructions to functions."""
    from unicorn import UC_HOOK_BLOCK

    from bench.build import build
    from bench.emulator import launch
    from bench.protocol import BenchClient

    result = build(board, header, out)
    syms = _symbols(result.elf)
    funcs = sorted((a, a + s, n) for n, a, s, t in syms if t == "STT_FUNC")
    starts = [f[0] for f in funcs]
    counts: dict[str, int] = {}
    block_cache: dict[int, tuple[str, int]] = {}
    layer = ["?"]  # the layer function that ran last: shared kernels (SHARED_KERNEL) count for it
    with launch(board, result.elf, start=False) as emu:
        def on_block(uc, address: int, size: int, _ud: object) -> None:
            hit = block_cache.get(address)
            if hit is None:
                k = bisect.bisect_right(starts, address) - 1
                name = funcs[k][2] if k >= 0 and address < funcs[k][1] else "?"
                n = sum(1 for _ in emu.cs.disasm_lite(bytes(uc.mem_read(address, size)), address))
                hit = block_cache[address] = (name, n)
            name = hit[0]
            if re.match(r"potnn_\d+_", name):
                layer[0] = name
            elif SHARED_KERNEL.match(name):
                name = layer[0]
            counts[name] = counts.get(name, 0) + hit[1]

        emu.uc.hook_add(UC_HOOK_BLOCK, on_block)
        emu.start()
        client = BenchClient(emu.open_serial(timeout=10), timeout=10, infer_timeout=60)
        client.info()
        before = dict(counts)
        per: list[tuple[int, int]] = []
        for i, image in enumerate(images):
            answer = client.infer(image.tobytes())
            assert list(answer.logits) == ref[i].tolist(), f"{board} image {i}: logits differ from potnn.simulate"
            per.append(emu.last_inference())
        assert emu.fault is None
        stack = emu.stats.stack_bytes or 0
    n = len(images)
    per_function = {k: (v - before.get(k, 0)) / n for k, v in counts.items() if v != before.get(k, 0)}
    flash: dict[str, int] = {}
    for name, _a, size, _t in syms:
        m = re.match(r"(potnn_\d+_\w+?)(_[wbson])?$", name) or SHARED_KERNEL.match(name)
        if m:
            flash[m.group(1)] = flash.get(m.group(1), 0) + size
    instructions = int(np.mean([p[0] for p in per]))
    cycles = int(np.mean([p[1] for p in per]))
    return Measured(instructions, cycles, per_function, flash, result.model_flash_bytes, stack)


def _exporter() -> Callable[..., object]:
    """potnn.export, or the export() of the file POTNN_KERNEL_EXPORT names."""
    path = os.environ.get("POTNN_KERNEL_EXPORT")
    if not path:
        return potnn.export
    location = Path(path)
    if location.is_dir():
        spec = importlib.util.spec_from_file_location("potnn._export_under_test", location / "__init__.py",
                                                      submodule_search_locations=[str(location)])
    else:
        spec = importlib.util.spec_from_file_location("potnn._export_under_test", location)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.export


def _selected(items: list, env: str, key: Callable[[object], str]) -> list:
    want = os.environ.get(env)
    return [x for x in items if not want or key(x) in want.split(",")]


@pytest.mark.parametrize("board", _selected(BOARDS, "POTNN_KERNEL_BOARDS", str))
def test_kernel_speed(board: str, tmp_path: Path) -> None:
    from bench.board import load_board
    from bench.toolchain import ToolchainError, find_toolchain

    try:
        find_toolchain(load_board(board))
    except ToolchainError as exc:
        pytest.skip(str(exc))
    export = _exporter()
    rows = [("case", "layer", "encoding", "MACs", "instr", "instr/MAC", "flash B", "B/weight")]
    for case in _selected(CASES, "POTNN_KERNEL_CASES", lambda c: c.name):  # type: ignore[attr-defined]
        model, config = prepare(case)
        program = lower(model)
        images = _images(N_IMAGES, program.input_shape)
        ref = potnn.simulate(program, images)
        header = tmp_path / f"{re.sub(r'[^0-9A-Za-z]+', '_', case.name)}.h"
        export(model, header, config)
        keep_layers_apart(header)
        m = run_on_emulator(board, header, tmp_path / header.stem, images, ref)
        total_macs = 0
        for fn, op in layer_functions(program).items():
            assert op.weight is not None
            n_mac = macs(op)
            total_macs += n_mac
            ins = m.per_function.get(fn, 0.0)
            fl = m.flash.get(fn, 0)
            rows.append((case.name, op.name, op.encoding, str(n_mac), f"{ins:.0f}", f"{ins / n_mac:.2f}",
                         str(fl), f"{fl / op.weight.size:.2f}"))
        for fn, size in sorted(m.flash.items()):
            if SHARED_KERNEL.match(fn):
                rows.append((case.name, "kernel", fn[len("potnn_"):], "", "", "", str(size), ""))
        rows.append((case.name, "total", f"{m.cycles} cyc", str(total_macs), str(m.instructions),
                     f"{m.instructions / total_macs:.2f}", str(m.model_flash), f"stack {m.stack}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n== kernel speed, {board} (-Os, {N_IMAGES} images, logits == potnn.simulate) ==")
    for r in rows:
        print("  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
