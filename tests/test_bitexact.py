"""Bit-exactness stress test: random architectures, exported C on the host vs potnn.simulate.

Each seeded architecture (tests/random_models.py) is calibrated, exported, compiled with host gcc
`-O2 -Wall -Wextra -Werror -fsanitize=address,undefined` and run on 256 images including all-0 and
all-255 ones: every logit must equal potnn.simulate's, and PyTorch's integer simulation must too.
CI runs 24 architectures; `pytest --stress-full` runs 120.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import potnn
from potnn.hostrun import run_header
from random_models import make_case

FULL, REDUCED = 120, 24
RV_GCC = "riscv64-unknown-elf-gcc"
FORBIDDEN = ("__mulsi3", "__muldi3", "__divsi3", "__udivsi3", "__modsi3", "__umodsi3")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.function.__name__ == "test_export_matches_simulate":
        count = FULL if metafunc.config.getoption("--stress-full") else REDUCED
        metafunc.parametrize("seed", range(count))


def test_export_matches_simulate(seed: int, tmp_path: Path) -> None:
    case = make_case(seed)
    header = tmp_path / "model.h"
    potnn.export(case.model, header, case.config)
    ref = potnn.simulate(case.model, case.images)
    classes, logits = run_header(header, case.images, ref.shape[1])
    diff = np.argwhere(logits != ref)
    assert diff.size == 0, f"{case.description}: {len(np.unique(diff[:, 0]))} images differ, first {diff[:3].tolist()}"
    assert np.array_equal(classes, ref.argmax(1))
    # PyTorch's exact integer mode computes the same integers (scaled by the logits' scale).
    potnn.enable_integer_sim(case.model)
    mean = torch.tensor(case.config.channel_mean()).view(1, -1, 1, 1)
    std = torch.tensor(case.config.channel_std()).view(1, -1, 1, 1)
    x = ((torch.from_numpy(case.images).double() / 255 - mean) / std).float()
    with torch.no_grad():
        y = case.model(x).double()
    head = case.model.head
    scale = float(head.output_scale().detach())
    assert np.array_equal(np.round(y.numpy() / scale).astype(np.int64), ref.astype(np.int64)), case.description


def _rv32ec_offenders(header: Path, tmp: Path) -> list[str]:
    src = tmp / "unit.c"
    src.write_text(f'#include "{header}"\n')
    obj = tmp / "unit.o"
    subprocess.run([RV_GCC, "-march=rv32ec", "-mabi=ilp32e", "-Os", "-std=c99", "-Wall", "-Wextra", "-Werror",
                    "-ffreestanding", "-ffunction-sections", "-c", str(src), "-o", str(obj)], check=True, capture_output=True, text=True)
    dump = subprocess.run(["riscv64-unknown-elf-objdump", "-dr", str(obj)], check=True, capture_output=True,
                          text=True).stdout
    bad = []
    for line in dump.splitlines():
        fields = line.split("\t")
        mnemonic = fields[2].strip() if len(fields) > 2 else ""
        if mnemonic.startswith(("mul", "div", "rem")) or any(f in line for f in FORBIDDEN):
            bad.append(line.strip())
    return bad


@pytest.mark.skipif(shutil.which(RV_GCC) is None, reason=f"{RV_GCC} not installed (apt-get install gcc-riscv64-unknown-elf)")
@pytest.mark.parametrize("arch", [0, 3, 7, 11, 19, 23])
def test_rv32ec_inference_has_no_multiply(arch: int, tmp_path: Path) -> None:
    case = make_case(arch)
    header = tmp_path / "model.h"
    potnn.export(case.model, header, case.config)
    assert _rv32ec_offenders(header, tmp_path) == [], case.description


@pytest.mark.skipif(shutil.which(RV_GCC) is None, reason=f"{RV_GCC} not installed")
def test_multiply_detector_catches_a_multiply(tmp_path: Path) -> None:
    """Negative control: the detector above must flag C that multiplies on RV32EC."""
    header = tmp_path / "mul.h"
    header.write_text("#include <stdint.h>\nint32_t potnn_scale(int32_t a, int32_t b) { return a * b; }\n")
    assert any("__mulsi3" in line for line in _rv32ec_offenders(header, tmp_path))
