"""Benchmark: what the bench firmware costs beside the model (run with ``pytest -m benchmark -s``).

Targets on the CH32V003 (gnu): firmware flash at most the protocol-version-1 firmware's plus 200 B
(version 2's chunked LOAD, cached INFER answer and padding may cost less than 200 B: the issue's
limit), and at most 256 B of RAM for its own state - not counting the model's buffers, the stack,
or the request/logit buffers whose size the model dictates (input_size bytes for the image, 4
bytes per class).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.board import load_board
from bench.build import BuildResult, build
from bench.elf import read_elf
from bench.toolchain import ToolchainError, find_toolchain
from firmware_models import export_tiny, synthetic_header

V1_FLASH = 1490                 # firmware flash of protocol version 1, ch32v003 gnu, null header (measured)
FLASH_TARGET = V1_FLASH + 200   # version 2 (1,582 B when written) may grow it by less than 200 B
RAM_TARGET = 256


def _symbol_sizes(elf: Path, names: tuple[str, ...]) -> dict[str, int]:
    return {s.name: s.size for s in read_elf(elf).symbols if s.name in names}


def _row(label: str, r: BuildResult) -> tuple[str, int, int, int, int, int]:
    io = sum(_symbol_sizes(r.elf, ("logits",)).values())
    state = r.static_ram_bytes - r.model_ram_bytes - io
    return label, r.flash_bytes, r.model_flash_bytes, r.firmware_flash_bytes, state, io


@pytest.mark.benchmark
def test_firmware_overhead(tmp_path: Path) -> None:
    null = synthetic_header(tmp_path / "null.h", weight_bytes=1, ram_words=1)
    tiny = export_tiny(tmp_path).header
    rows = []
    for board in ("ch32v003", "py32f003"):
        for kind in ("gnu", "zig"):
            try:
                find_toolchain(load_board(board), kind)
            except ToolchainError:
                continue
            for name, header in (("null", null), ("tiny", tiny)):
                r = build(board, header, tmp_path / f"{board}-{kind}-{name}", toolchain=kind)
                rows.append(_row(f"{board} {kind:3} {name}", r))
    print()
    print(f"{'build':22} {'flash':>6} {'model':>6} {'firmware':>9} {'fw RAM':>7} {'I/O bufs':>9}")
    for label, flash, model, firmware, state, io in rows:
        print(f"{label:22} {flash:6d} {model:6d} {firmware:9d} {state:7d} {io:9d}")
    print(f"targets: firmware flash < {FLASH_TARGET} B, firmware RAM <= {RAM_TARGET} B (CH32V003);"
          " I/O bufs = logits (4 B x classes), sized by the model (the image is received into the model's arena)")
    ch32 = [row for row in rows if row[0].startswith("ch32v003 gnu")]
    for label, _, _, firmware, state, _ in ch32:
        assert firmware < FLASH_TARGET, f"{label}: firmware {firmware} B, not below {FLASH_TARGET} B"
        assert state <= RAM_TARGET, f"{label}: firmware state {state} B > {RAM_TARGET} B"
