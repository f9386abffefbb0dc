"""Running on a farm place: the ``Placement`` that ``run``, ``flash`` and ``nightly`` use with ``--place``.

The place is held only while the link is open (``bench.placement.connect`` calls the opener
after the firmware is built): acquired, flashed on its exporter host when asked, streamed over
its network serial port, released however the block ends.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

import serial

from bench.farm.coordinator import FarmError, FarmSession, check_board, hold
from bench.farm.remote_flash import flash_on_exporter
from bench.flashers import Probe
from bench.placement import Link, Placement


def farm_placement(name: str, board: str) -> Placement:
    """Hardware, reached through labgrid place ``name``; results record the place as the probe.

    Checked here, before anything is built: the place exists, holds ``board`` (its ``board`` tag)
    and nobody holds it now. It is acquired only when the link opens (``hold``).
    """
    session = FarmSession()
    try:
        (info,) = session.places([name])
    finally:
        session.close()
    check_board(info, board)
    if info.acquired_by is not None:
        raise FarmError(f"place {info.name} is held by {info.acquired_by}: wait for it to be released, "
                        "or pick a free place (labgrid-client places)")
    return Placement("hardware", probe=Probe(description=f"labgrid place {name}"), opener=_opener(name),
                     note=f"on labgrid place {name}")


def _opener(name: str) -> Callable[..., contextlib.AbstractContextManager[Link]]:
    @contextlib.contextmanager
    def open_place(board: Any, elf: Path, flash: bool, timeout_s: float,
                   say: Callable[[str], None] | None) -> Iterator[Link]:
        with hold(name, board.name, timeout_s, say) as held:
            report = flash_on_exporter(held, board.name, elf) if flash else None
            if report is not None and say is not None:
                say(f"flashed {report.size} bytes at 0x{report.address:08x} via {report.probe}, verified")
            try:
                ser = serial.serial_for_url(held.serial_url, baudrate=int(board.baud), timeout=timeout_s)
            except (serial.SerialException, ValueError) as e:
                raise FarmError(f"place {held.name}: cannot open {held.serial_url.split('?')[0]}: {e}") from None
            with contextlib.closing(ser):
                yield Link(ser, "hardware", held.serial_url.split("?")[0], flash_report=report)
    return open_place
