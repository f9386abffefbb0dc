"""``potnn-bench fuzz``: malformed frames against the real firmware, with an exact oracle.

What it does: builds the bench firmware for a board, boots it on the emulator, and sends N
malformed frames (``bench.fuzz.cases``) - each batch followed by a valid INFO or INFER request
whose answer is checked against what the firmware must answer (``bench.fuzz.oracle``, driven by
``bench.fuzz.campaign``). It stops at the first hang, fault or wrong answer and exits non-zero.

The coverage-guided fuzzer of the parser itself (libFuzzer + ASan/UBSan on the host build of
protocol.c and app.c) is ``firmware/fuzz/fuzz_protocol.c``, built by ``bench.fuzz.coverage``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import bench.build
import bench.emulator
from bench.board import load_board
from bench.exported import BenchModel, read_model
from bench.fuzz.campaign import FuzzFailure, FuzzStats, Fuzzer, FuzzTarget
from bench.models import resolve_header
from bench.options import build_options, emulator_only_options, model_options

#: Inputs (with their reference logits) the campaign sends as valid INFER requests.
REFERENCE_INPUTS = 16


def references_for(model: BenchModel, n: int = REFERENCE_INPUTS,
                   no_reference: bool = False) -> dict[bytes, Sequence[int]]:
    """``n`` inputs of the model's shape (all 0, all 255, then seeded random bytes) with their
    logits from ``potnn.simulate`` of the bundle: valid requests need exact answers, not a dataset.

    Without a reference (``no_reference``) valid INFER requests are not sent: only INFO and
    the NAKs are checked.
    """
    if no_reference:
        return {}
    import potnn  # imported here: loading the command line must stay cheap

    inputs = np.random.default_rng(0).integers(0, 256, (n, *model.input_shape), dtype=np.uint8)
    inputs[0], inputs[1] = 0, 255
    logits = potnn.simulate(model.bundle, inputs)
    return {inputs[i].tobytes(): [int(v) for v in logits[i]] for i in range(n)}


def fuzz_emulated(board: Any, elf: Path, references: dict[bytes, Sequence[int]], frames: int, seed: int,
                  backend: str = "unicorn", expected_hash: int | None = None,
                  launch_opts: dict[str, Any] | None = None, **opts: Any) -> FuzzStats:
    """Boot ``elf`` on the emulator (``launch_opts`` for ``bench.emulator.launch``) and run one
    campaign against it (``opts`` for :class:`Fuzzer`)."""
    with bench.emulator.launch(board, elf, backend=backend, **(launch_opts or {})) as emu:
        port = emu.open_serial(timeout=0.05)
        try:
            target = FuzzTarget(port, fault=lambda: None if emu.fault is None else str(emu.fault),
                                name=f"{backend} emulator")
            return Fuzzer(target, references, seed, expected_hash=expected_hash, **opts).run(frames)
        finally:
            port.close()


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("fuzz", help="send malformed frames to the firmware on the emulator; fail on any "
                                           "hang, fault or wrong answer",
                              description=__doc__.split("\n\n")[0],
                              parents=[model_options(), emulator_only_options(), build_options()])
    p.add_argument("--frames", type=int, default=1000, metavar="N", help="malformed frames to send (default 1000)")
    p.add_argument("--seed", type=int, default=None, help="RNG seed (default: random, printed; reproduces a run)")
    p.add_argument("--no-reference", action="store_true",
                   help="no reference logits: send valid INFO requests only, no INFER")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise ValueError("--frames must be at least 1")
    board = load_board(args.board)
    header, model_name = resolve_header(board.name, args.header, args.model)
    refs = references_for(read_model(header), no_reference=args.no_reference)
    fw = bench.build.build(board, header, args.build_dir, opt=args.opt, toolchain=args.toolchain)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"fuzz {board.name} ({args.emulator}): {model_name} {fw.model_hash_hex}, {args.frames} malformed frames, "
          f"seed {seed}", flush=True)
    try:
        stats = fuzz_emulated(board, fw.elf, refs, args.frames, seed, backend=args.emulator,
                              expected_hash=fw.model_hash)
    except FuzzFailure as e:
        for line in e.stats.lines() if e.stats is not None else []:
            print(line)
        print(f"fuzz FAILED: {e}; reproduce with: potnn-bench fuzz --board {board.name} "
              f"--frames {args.frames} --seed {seed}", file=sys.stderr)
        return 1
    for line in stats.lines():
        print(line)
    print(f"fuzz passed: {stats.malformed} malformed frames, no hang, no fault, no wrong answer")
    return 0
