"""The accuracy–speed frontier on 16×16 MNIST: our zoo as measured, our peers as published.

Why a data table here: the peers' figures are not ours to measure (their code is not part of this
repository), so they are data with their source, chip and multiplier noted, drawn as *published*
beside the zoo's *measured* figures (each zoo model's ``meta.json`` ``on_board``: the emulated
board, 10,000 test images, written by tests/benchmarks/test_zoo_benchmark.py). The same function
draws ``docs/frontier.png`` (``python -m bench.report.frontier``) and the nightly report's section.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import potnn

from bench.atomic import write_bytes
from bench.report.plots import plot_frontier
from bench.results import RunRecord

_BITNETMCU = "github.com/cpldcpu/BitNetMCU"
_FC = "BitNetMCU FC, published: CH32V003 / CH32V002, shift-only kernels"
_CNN = "BitNetMCU CNN, published: CH32V002, hardware multiplier, 4 KB RAM"


@dataclass(frozen=True)
class FrontierPoint:
    """One model at one accuracy and cost; ``published`` when the figure is someone else's claim."""

    label: str
    accuracy: float          # fraction of the 10,000 MNIST test images, in [0, 1]
    cycles: float            # core clock cycles per inference
    chip: str
    multiplier: bool         # whether the chip has a hardware multiplier
    published: bool
    source: str
    family: str              # what the plot groups by (marker and colour)


#: BitNetMCU's published figures on 16×16 MNIST, each with where it is stated.
PEERS: tuple[FrontierPoint, ...] = (
    FrontierPoint("BitNetMCU FC 12k 4-bit", 0.9902, 655_680, "CH32V003, 48 MHz", False, True,
                  f"{_BITNETMCU} mcu/readme.md (earlier revision): 13.66 ms at 48 MHz (~650 k cycles), "
                  "kernels in SRAM", _FC),
    FrontierPoint("BitNetMCU FC 12k FP1.3.0", 0.9886, 481_624, "CH32V002, 48 MHz", False, True,
                  f"{_BITNETMCU} mcu/readme.md model table (cycles avg.); the shift-only FC kernel uses no "
                  "multiply; the earlier readme gives 10.17 ms (~488 k cycles) on the CH32V003",
                  _FC),
    FrontierPoint("BitNetMCU CNN 16", 0.9906, 785_123, "CH32V002, 48 MHz, 4 KB RAM", True, True,
                  f"{_BITNETMCU} mcu/readme.md model table", _CNN),
    FrontierPoint("BitNetMCU CNN 32", 0.9928, 1_434_667, "CH32V002, 48 MHz, 4 KB RAM", True, True,
                  f"{_BITNETMCU} mcu/readme.md model table", _CNN),
    FrontierPoint("BitNetMCU CNN 48", 0.9944, 2_083_568, "CH32V002, 48 MHz, 4 KB RAM", True, True,
                  f"{_BITNETMCU} mcu/readme.md model table", _CNN),
    FrontierPoint("BitNetMCU CNN 64", 0.9955, 2_736_250, "CH32V002, 48 MHz, 4 KB RAM", True, True,
                  f"{_BITNETMCU} mcu/readme.md model table", _CNN),
)

#: The boards of the zoo's figures: the chip as the legend names it, and whether it has a multiplier
#: (potnn's code uses none either way).
_CHIPS: dict[str, tuple[str, bool]] = {
    "ch32v003": ("CH32V003, 48 MHz, no multiplier", False),
    "py32f003": ("PY32F003, 24 MHz, multiplier unused", True),
}

DATASET = "mnist16"
ZOO_MODELS = Path(potnn.__file__).parent / "zoo" / "models"


def zoo_points(entries: Iterable[tuple[str, Mapping[str, Any]]] | None = None) -> list[FrontierPoint]:
    """The zoo's MNIST models on each board they were measured on (``meta.json`` ``on_board``).

    ``entries``: (model name, meta.json) pairs; default the shipped zoo's ``meta.json`` files, read
    as files (the zoo package itself imports torch, which a report does not need).
    """
    if entries is None:
        entries = [(path.parent.name, json.loads(path.read_text(encoding="utf-8")))
                   for path in sorted(ZOO_MODELS.glob("*/meta.json"))]
    points = []
    for name, meta in entries:
        if meta.get("dataset") != DATASET:
            continue
        accuracy = float(meta["integer_accuracy"])  # the full test split; every emulated answer equals it
        for board, by_toolchain in sorted(dict(meta.get("on_board") or {}).items()):
            chip, multiplier = _CHIPS.get(board, (board, False))
            for kind, f in sorted(by_toolchain.items()):
                toolchain = str(f.get("toolchain", kind)).split(" ")[0]
                points.append(FrontierPoint(f"{name}, {kind}", accuracy, float(f["cycles"]), chip, multiplier, False,
                                            f"potnn/zoo/models/{name}/meta.json: emulated {board}, cycles over "
                                            f"{f.get('images', '?')} test images, {toolchain}",
                                            f"potnn zoo, measured: emulated {chip}"))
    return points


def run_points(runs: Iterable[RunRecord]) -> list[FrontierPoint]:
    """A report's own runs of MNIST on all 10,000 test images, as measured points."""
    points = []
    for r in runs:
        s = r.info
        if s.get("dataset") != DATASET or s.get("n") != 10_000 or s.get("accuracy") is None or not s.get("cycles_mean"):
            continue
        chip, multiplier = _CHIPS.get(str(s.get("board")), (str(s.get("board")), False))
        points.append(FrontierPoint(str(s.get("model")), float(s["accuracy"]), float(s["cycles_mean"]), chip,
                                    multiplier, False, f"run {r.run_id}",
                                    f"this report's runs, measured: {s.get('board')} ({s.get('backend')})"))
    return points


def frontier_png(runs: Iterable[RunRecord] = ()) -> bytes:
    """The frontier picture: the zoo's points, a report's own ``runs`` of MNIST, and the peers'."""
    return plot_frontier([*zoo_points(), *run_points(runs), *PEERS])


def main(argv: list[str] | None = None) -> int:
    """Draw the zoo's and the peers' points into ``--out`` (docs/frontier.png); 2 when the zoo has no figures."""
    p = argparse.ArgumentParser(prog="python -m bench.report.frontier", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/frontier.png"),
                   help="PNG to write (default docs/frontier.png)")
    args = p.parse_args(argv)
    ours = zoo_points()
    if not ours:
        print(f"no zoo model of {DATASET} has on-board figures (meta.json on_board): nothing of ours to draw",
              file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(args.out, frontier_png())
    print(f"{args.out}: {len(ours)} measured zoo point(s), {len(PEERS)} published peer point(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
