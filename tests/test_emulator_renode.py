"""The same bench firmware under Renode (``--emulator renode``), on both boards.

Renode cannot be installed on the project's machines, so these tests skip here with that
reason; .github/workflows/renode.yml runs them on a hosted runner that installs Renode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.board import load_board
from bench.build import build
from bench.emulator import launch
from bench.emulator.renode_backend import find_renode
from bench.protocol import BenchClient
from bench.toolchain import ToolchainError, find_toolchain
from firmware_models import export_tiny

pytestmark = [
    pytest.mark.renode,
    pytest.mark.skipif(find_renode() is None, reason="renode is not on PATH (see .github/workflows/renode.yml)"),
]

N_IMAGES = 20


@pytest.mark.parametrize("board", ["ch32v003", "py32f003"])
def test_bench_firmware_answers_under_renode(tmp_path: Path, board: str) -> None:
    try:
        find_toolchain(load_board(board))
    except ToolchainError as exc:
        pytest.skip(str(exc))
    (tmp_path / "model").mkdir()
    model = export_tiny(tmp_path / "model", n_images=N_IMAGES)
    result = build(board, model.header, tmp_path / board)
    with launch(board, result.elf, backend="renode", workdir=tmp_path / "renode") as emu:
        client = BenchClient(emu.open_serial(timeout=10), timeout=30, infer_timeout=60)
        info = client.info()
        assert info.board == board and info.num_classes == 10
        for i in range(N_IMAGES):
            answer = client.infer(model.images[i].tobytes())
            assert list(answer.logits) == model.reference[i].tolist(), f"image {i}"
            assert answer.cls == int(np.argmax(model.reference[i]))
        assert emu.fault is None
        assert emu.last_inference() == (None, None)      # Renode has no cycle model
