"""The no-multiply contract with every compiler: exported headers compile to shifts and adds only.

Each header is compiled by potnn.codegen.compiled.measure, as export does for Config.for_board, with
every toolchain present (GCC and zig) for both architectures (RV32EC and Cortex-M0+); measure refuses a
header whose assembly multiplies (a mul/muls instruction or a call to __mulsi3 and kin), naming the
function. Random architectures (tests/random_models.py) cover every emitter and encoding; small convs with
few channels are where zig once turned -(x << 2) into a call to __mulsi3. `--stress-full` runs 60
random architectures instead of 8.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

import potnn
from potnn import PoTConv2d, PoTLinear
from potnn.boards import load_board_facts
from potnn.codegen import ExportError
from potnn.codegen.compiled import measure
from random_models import make_case

BOARDS = ("ch32v003", "py32f003")  # RV32EC, Cortex-M0+
FULL, REDUCED = 60, 8


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.function.__name__ == "test_random_architecture_compiles_without_multiply":
        count = FULL if metafunc.config.getoption("--stress-full") else REDUCED
        metafunc.parametrize("seed", range(count))


def _compiled_everywhere(text: str) -> None:
    """Compile with every toolchain for both boards; measure raises ExportError on a multiply."""
    for board in BOARDS:
        compiled = measure(text, load_board_facts(board))
        assert "zig" in compiled  # ziglang is a dependency: the check never runs with fewer compilers


def test_random_architecture_compiles_without_multiply(seed: int, tmp_path: Path) -> None:
    case = make_case(seed, n_images=16)
    potnn.export(case.model, tmp_path / "m.h", case.config)
    _compiled_everywhere((tmp_path / "m.h").read_text())


class _SmallConv(nn.Module):
    """One input channel into two, 3x3 on 8x8: the shape in which zig first multiplied."""

    def __init__(self, padding: int, pool: bool) -> None:
        super().__init__()
        self.conv = PoTConv2d(1, 2, 3, padding=padding)
        self.pool = pool
        side = (8 + 2 * padding - 2) // (2 if pool else 1)
        self.head = PoTLinear(2 * side * side, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        if self.pool:
            x = nn.functional.max_pool2d(x, 2)
        return self.head(x.flatten(1))


@pytest.mark.parametrize("encoding", ["unroll", "fp130", "5level", "2bit", "ternary"])
@pytest.mark.parametrize("padding,pool", [(0, True), (1, False)])
def test_small_conv_compiles_without_multiply(encoding: str, padding: int, pool: bool, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = _SmallConv(padding, pool).eval()
    config = potnn.Config(flash=10**6, ram=10**6, mean=0.3, std=0.3, input_h=8, input_w=8,
                          layer_encodings={"conv": encoding, "head": encoding})
    pixels = torch.randint(0, 256, (16, 1, 8, 8)).float() / 255
    potnn.calibrate(model, [((pixels - 0.3) / 0.3,)], config)
    potnn.prepare_qat(model, config)
    potnn.export(model, tmp_path / "m.h", config)
    _compiled_everywhere((tmp_path / "m.h").read_text())


@pytest.mark.parametrize("board", BOARDS)
def test_a_header_that_multiplies_is_refused_naming_the_function(board: str, tmp_path: Path) -> None:
    """Negative control: a multiply the compilers cannot remove (two run-time logits) is caught."""
    case = make_case(1, n_images=16)
    potnn.export(case.model, tmp_path / "m.h", case.config)
    text = (tmp_path / "m.h").read_text()
    assert "    int best = 0;" in text
    text = text.replace("    int best = 0;", "    out[0] = out[0] * out[1];\n    int best = 0;")
    with pytest.raises(ExportError, match=r"^potnn_predict multiplies \((mul|muls|call|jal|bl)\b.* compiles it for "):
        measure(text, load_board_facts(board))
