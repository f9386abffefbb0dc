"""``potnn-bench flash``: build the firmware for a model and put it where it runs.

It programs, verifies and resets the board when a probe is attached, or boots the same ELF on
the board's emulator (``bench.placement`` decides and says which); then INFO proves the
firmware runs that model, and a short check streams the first test inputs (``--data``, else the
dataset the model's manifest names) and compares their logits with ``potnn.simulate``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

import bench.build
from bench.board import load_board
from bench.dataset import DataError, RunData, load_data
from bench.errors import RunError
from bench.exported import BenchModel, read_model
from bench.models import resolve_header
from bench.options import build_options, data_options, model_options, place_options, placement_options
from bench.farm import farm_placement
from bench.placement import check_model, check_port, connect, place, require_board_for_port
from bench.protocol import BenchClient, ProtocolError
from bench.reference import reference_logits


def quick_check(client: Any, model: BenchModel, data: RunData, n: int, clock_hz: int) -> tuple[str, int]:
    """Stream the first ``n`` test inputs once (nothing stored): the line ``flash`` prints, and the mismatches."""
    n = min(n, len(data))
    reference = reference_logits(model, data, n)
    correct = mism = 0
    cycles: list[int] = []
    for i in range(n):
        ans = client.infer(np.ascontiguousarray(data.x[i], dtype=np.uint8).tobytes())
        correct += data.y is not None and int(ans.cls) == int(data.y[i])
        cycles.append(int(ans.cycles))
        mism += [int(v) for v in ans.logits] != [int(v) for v in reference.logits[i]]
    mean = sum(cycles) / len(cycles) if cycles else 0.0
    labels = f", {correct}/{n} correct" if data.y is not None else ""
    return (f"check: first {n} test inputs of {data.name}{labels}, {n - mism}/{n} logits equal to potnn.simulate; "
            f"{mean:,.0f} cycles per inference ({mean / clock_hz * 1e3:.2f} ms at {clock_hz / 1e6:g} MHz)"), mism


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("flash", help="build and program the board (or boot its emulator)",
                              description=__doc__.split("\n\n")[0],
                              parents=[model_options(), data_options(), placement_options(), place_options(),
                                       build_options()])
    p.add_argument("--port", help="UART of the board for the INFO check (default: found by USB id)")
    p.add_argument("--check", type=int, default=20, metavar="N",
                   help="after flashing, stream the first N test inputs and compare them with "
                        "potnn.simulate (default 20; 0: only the INFO check); `run` logs full runs")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Build, place, program (or boot), ask INFO to prove it runs that model, then a short check.

    Exit status: 0 when the firmware runs the model and every checked input equals
    ``potnn.simulate``; 1 when any checked input differs; 2 on an error (a failed verify included).
    """
    if args.check < 0:
        raise RunError(f"--check must be 0 or more, not {args.check}")
    check_port(args.port, args.emulator)
    board = load_board(args.board)
    header, model_name = resolve_header(board.name, args.header, args.model)
    model = read_model(header)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    data = None
    if args.check > 0:
        try:
            data = load_data(args.data, model)
        except DataError as e:
            if args.data is not None:
                raise          # data the user named must fit the model: refused before building
            say(f"input check skipped: {e}")
    placement = farm_placement(args.place, board.name) if args.place else \
        place(board, args.emulator, args.pack, say=say)   # a held or wrong place is refused before building
    require_board_for_port(args.port, placement)
    fw = bench.build.build(board, header, args.build_dir, opt=args.opt, toolchain=args.toolchain)
    check_line, mismatches = None, 0
    with connect(board, fw.elf, placement, args.port, flash=True, say=say) as link:
        client = BenchClient(link.serial)
        try:
            info = client.info()
        except ProtocolError as e:
            what = "flashed, but the board" if placement.hardware else "the emulated firmware"
            raise RunError(f"{what} did not answer INFO on {link.url}: {e}") from None
        check_model(info, fw.model_hash, header)
        if data is not None:
            check_line, mismatches = quick_check(client, model, data, args.check, board.clock_hz)
    via = placement.flasher.name if placement.flasher is not None else "its exporter host"   # a farm place
    where = (f"{board.name} via {via} ({placement.probe})" if placement.hardware
             else f"the {placement.backend} emulator (nothing written to a chip)")
    print(f"{model_name} ({fw.model_hash_hex}) runs on {where}: firmware {info.firmware_version}, "
          f"{info.num_classes} classes, flash {fw.flash_bytes}/{board.flash_size} B, "
          f"RAM {fw.ram_bytes}/{board.ram_size} B")
    if check_line:
        print(check_line)
    return 1 if mismatches else 0
