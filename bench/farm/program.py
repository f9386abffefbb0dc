"""Run on an exporter host: program an ELF with the board's own flasher, print the report as JSON.

Why the bench's flasher runs there and not a new one: a farm place flashes exactly the way a
board on the desk does (``bench.flashers``: wlink or pyOCD, read-back verify, reset); only the
machine differs. ``bench.farm.remote_flash`` copies the ELF to the exporter and runs::

    python3 -m bench.farm.program --board ch32v003 --elf /tmp/potnn-bench/<sha>/firmware.elf

so the exporter host needs potnn (``pip install potnn``) and the board's tool (wlink, or pyOCD
with the Puya pack), as the README's "A board farm" says. The last stdout line is the JSON
report; a failure is one ``error:`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from bench.board import load_board
from bench.flashers import FlashError
from bench.placement import board_flasher


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m bench.farm.program", description=__doc__.split("\n\n")[0])
    p.add_argument("--board", required=True, help="board file name")
    p.add_argument("--elf", required=True, type=Path, help="the firmware to program")
    p.add_argument("--pack", type=Path, default=None, help="CMSIS pack for pyOCD targets")
    p.add_argument("--probe", default=None, help="unique id of the probe (default: the only one attached)")
    args = p.parse_args(argv)
    try:
        flasher = board_flasher(load_board(args.board), args.pack)
        probes = flasher.probes()
        if args.probe is not None:
            probes = [q for q in probes if q.unique_id == args.probe]
        if len(probes) != 1:
            what = f"probe {args.probe}" if args.probe else f"exactly one {flasher.probe_kind}"
            raise FlashError(f"this host needs {what} for {args.board}, it has {len(probes)}"
                             + ("" if args.probe else "; tag the place with probe=<unique id>"))
        report = flasher.flash(args.elf, probes[0])
    except (FlashError, OSError, ValueError) as e:
        print(f"error: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}", file=sys.stderr)
        return 2
    print(json.dumps({"probe": str(report.probe), "address": report.address, "size": report.size,
                      "verified": report.verified, "chip": report.chip}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
