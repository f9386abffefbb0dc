"""The command-line option groups that several ``potnn-bench`` commands share, defined once.

Each function returns a parent parser (``add_help=False``) for ``subparsers.add_parser(...,
parents=[...])``, the way pyOCD's subcommands share theirs: a flag means the same thing, with
the same choices and default, in every command that takes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.placement import EMULATOR_CHOICES, EMULATORS


def _group() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def model_options() -> argparse.ArgumentParser:
    """--board and which model: --header or --model (flash, run, fuzz)."""
    p = _group()
    p.add_argument("--board", required=True, help="board name (see `potnn-bench boards`)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--header", type=Path, help="model header exported by potnn.export")
    g.add_argument("--model", help="zoo model name (default: the zoo's default model for the board)")
    return p


def placement_options() -> argparse.ArgumentParser:
    """--emulator and --pack: where the firmware runs (flash, run, nightly; see ``bench.placement``)."""
    p = _group()
    p.add_argument("--emulator", choices=EMULATOR_CHOICES, default="auto",
                   help="auto: the board if a probe is attached, else its emulator; none: board only")
    p.add_argument("--pack", type=Path, help="CMSIS pack file for pyOCD targets (PY32: Puya.PY32F0xx_DFP)")
    return p


def place_options(many: bool = False) -> argparse.ArgumentParser:
    """--place: a board of a labgrid farm instead of this computer's (flash, run; nightly takes several)."""
    p = _group()
    if many:
        p.add_argument("--place", nargs="+", metavar="NAME", default=None,
                       help="labgrid places to spread the jobs over (each tagged board=<board>; the coordinator "
                            "is LG_COORDINATOR); boards without a free place run as without --place")
    else:
        p.add_argument("--place", metavar="NAME", default=None,
                       help="run on this labgrid place (acquired through the coordinator at LG_COORDINATOR, "
                            "released on exit); overrides --emulator")
    return p


def emulator_only_options() -> argparse.ArgumentParser:
    """--emulator for commands that never touch hardware (fuzz)."""
    p = _group()
    p.add_argument("--emulator", choices=EMULATORS, default=EMULATORS[0], help="emulator backend")
    return p


def build_options(build_dir: bool = True) -> argparse.ArgumentParser:
    """--opt and --toolchain of the firmware build, and (per command) where to build."""
    p = _group()
    if build_dir:
        p.add_argument("--build-dir", type=Path, default=None,
                       help="where to build (default build/<board>-<toolchain>-<opt>-<hash>)")
    p.add_argument("--opt", choices=("Os", "O2", "O3"), default="Os", help="firmware optimisation (default Os)")
    p.add_argument("--toolchain", choices=("gnu", "zig"), default=None,
                   help="compiler (default: first available, gnu first)")
    return p


def results_options() -> argparse.ArgumentParser:
    """--results: the results directory (run, nightly, report)."""
    p = _group()
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default results/)")
    return p


def data_options(many: bool = False) -> argparse.ArgumentParser:
    """--data: the test inputs streamed to the model (run, flash; nightly takes several; see ``bench.dataset``)."""
    p = _group()
    p.add_argument("--data", metavar="NPZ|NAME", default=None, nargs="+" if many else None,
                   help=("each of these for every model; " if many else "")
                   + "test data: a .npz with x (uint8 [N, *input_shape]) and optional y (labels [N]), or a "
                     "registered dataset (mnist16, digits8, basicmotions); default: the dataset the model's "
                     "manifest names")
    return p


def stream_options() -> argparse.ArgumentParser:
    """How a test-set run streams: --limit, --timeout (run, nightly)."""
    p = _group()
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N test inputs (default all)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for one answer (default 10); a request is retried for up to 3x that")
    return p


def threshold_options() -> argparse.ArgumentParser:
    """The regression thresholds of the report's gate (report, nightly; ``bench.report.regression.thresholds_from``)."""
    p = _group()
    p.add_argument("--max-accuracy-drop", type=float, default=0.0, metavar="PP",
                   help="accuracy may fall by this many percentage points (default 0)")
    p.add_argument("--max-cycles-increase", type=float, default=0.0, metavar="PCT",
                   help="mean cycles may grow by this percentage (default 0)")
    p.add_argument("--max-size-increase", type=int, default=0, metavar="BYTES",
                   help="flash, RAM and stack may each grow by this many bytes (default 0)")
    p.add_argument("--allow-mismatches", action="store_true",
                   help="do not fail when board logits differ from potnn.simulate")
    return p


def profile_options() -> argparse.ArgumentParser:
    """--profile: the per-layer table of a run (run; ``bench.profile``)."""
    p = _group()
    p.add_argument("--profile", action="store_true",
                   help="print instructions, cycles and stack per layer of the model (runs on the unicorn "
                        "emulator, whose cycle model charges each layer; summary.json keeps them as `layers`)")
    return p
