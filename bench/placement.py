"""Where a firmware image runs, and the open serial link to it.

``place`` decides: on the board through its flasher when a probe is attached, else on the
board's emulator. With ``--emulator auto`` (default) and no probe it says so in one line; with
``--emulator none`` a missing probe is an error; ``--emulator unicorn|renode`` forces that
emulator. ``connect`` then programs (hardware) or boots (emulator) the ELF and yields a
``Link``, and ``check_model`` proves the firmware at the other end is the one just built.

Why the choice lives in one module: ``flash``, ``run``, ``nightly`` and ``fuzz`` must agree on
it, and a user reading one line ("no WCH-LinkE probe found ...: running on the unicorn
emulator") must be able to trust that results say ``backend: unicorn``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

import bench.emulator
from bench.errors import RunError
from bench.flashers import FlashError, FlashReport, Flasher, NoProbe, Probe, ToolMissing, flasher_for

#: The emulators a board can run on.
EMULATORS = ("unicorn", "renode")
#: ``--emulator``: auto (the board when a probe is attached, else its emulator), an emulator, or
#: none (the board only).
EMULATOR_CHOICES = ("auto", *EMULATORS, "none")


@dataclass
class Placement:
    """The decision: ``backend`` is "hardware" or an emulator's name, as results record it."""

    backend: str
    flasher: Flasher | None = None
    probe: Probe | None = None
    note: str | None = None  # the one line said to the user about the choice
    #: How to reach a board that is not on this computer (``bench.farm``: a labgrid place);
    #: called as ``opener(board, elf, flash, timeout_s, say)``, it yields the ``Link``.
    opener: Callable[..., ContextManager[Link]] | None = None

    @property
    def hardware(self) -> bool:
        return self.backend == "hardware"


def board_flasher(board: Any, pack: Path | None = None) -> Flasher:
    """The flasher the board file's ``[flasher]`` table names, configured from the board."""
    fl = board.flasher
    settings: dict[str, Any] = {
        "flash_load": board.flash_load,
        "flash_size": board.flash_size,
        "alias_base": board.link_alias,
    }
    if fl.tool == "wlink":
        settings["chip"] = fl.target
    else:
        settings["target"] = fl.target
        pack_path = pack or (Path(fl.pack) if fl.pack else None)
        if pack_path is not None and not pack_path.is_absolute():
            pack_path = (Path(board.path).parent / pack_path) if not pack_path.exists() else pack_path
        settings["pack"] = pack_path
    return flasher_for(fl.tool, **settings)


def default_emulator(board: Any) -> str:
    return str(board.emulator.get("backend") or "unicorn")


def place(board: Any, emulator: str = "auto", pack: Path | None = None,
          say: Callable[[str], None] | None = None, flasher: Flasher | None = None) -> Placement:
    """Decide hardware or emulator; with ``auto`` and no probe, say so in one line."""
    if emulator not in EMULATOR_CHOICES:
        raise FlashError(f"--emulator must be one of {', '.join(EMULATOR_CHOICES)}, not {emulator!r}")
    if emulator in EMULATORS:
        return Placement(emulator)
    fl = flasher or board_flasher(board, pack)
    try:
        probe = fl.find_probe()
    except (ToolMissing, NoProbe) as e:
        if emulator == "none":
            raise FlashError(f"{e}; --emulator none needs the board attached: connect it, "
                             "or leave out --emulator none to run on the emulator") from None
        backend = default_emulator(board)
        note = f"{e}: running on the {backend} emulator"
        if say is not None:
            say(note)
        return Placement(backend, note=note)
    return Placement("hardware", fl, probe)


def find_port(vid: int, pid: int) -> str:
    """The serial device of the USB-UART with this VID:PID (the probe's own UART bridge)."""
    from serial.tools import list_ports

    ports = sorted((p for p in list_ports.comports() if p.vid == vid and p.pid == pid), key=lambda p: p.device)
    if not ports:
        raise FlashError(f"no serial port with USB id {vid:04x}:{pid:04x} (the probe's UART); pass --port")
    return str(ports[0].device)


def find_board_port(board: Any) -> str:
    """The UART of the board: the first serial port whose USB id the board file lists."""
    ids = [tuple(int(x, 16) for x in usb.split(":")) for usb in board.uart.usb]
    if not ids:
        raise FlashError(f"board {board.name} lists no UART USB id ([uart] usb); pass --port")
    for vid, pid in ids:
        try:
            return find_port(vid, pid)
        except FlashError:
            continue
    raise FlashError(f"no serial port with the USB id of {board.name}'s UART ({', '.join(board.uart.usb)}); "
                     "pass --port")


@dataclass
class Link:
    """An open serial link to the firmware, wherever it runs."""

    serial: Any
    backend: str
    url: str
    emulator: Any = None  # the emulator handle (last_inference(), fault) when emulated
    flash_report: FlashReport | None = None

    def last_inference(self) -> tuple[int | None, int | None]:
        """(instructions, cycles) of the inference that just answered; (None, None) on hardware."""
        if self.emulator is None:
            return None, None
        instr, cycles = self.emulator.last_inference()
        return instr, cycles

    def fault(self) -> str | None:
        f = getattr(self.emulator, "fault", None) if self.emulator is not None else None
        return None if f is None else str(f)


@contextlib.contextmanager
def connect(board: Any, elf: Path, placement: Placement, port: str | None = None, flash: bool = True,
            timeout_s: float = 10.0, say: Callable[[str], None] | None = None) -> Iterator[Link]:
    """Program (hardware) or boot (emulator) ``elf`` and yield an open serial link to it."""
    import serial

    if placement.opener is not None:
        if port is not None:
            raise FlashError("--port names a local serial port; a farm place brings its own (leave out --port)")
        with placement.opener(board, elf, flash, timeout_s, say) as link:
            yield link
        return
    baud = int(board.baud)
    if placement.hardware:
        report = None
        if flash:
            assert placement.flasher is not None
            report = placement.flasher.flash(elf, placement.probe)
            if say is not None:
                say(f"flashed {report.size} bytes at 0x{report.address:08x} via {placement.flasher.name}"
                    f" ({placement.probe}), verified")
        if port is None:
            port = find_board_port(board)
        try:
            ser = serial.serial_for_url(port, baudrate=baud, timeout=timeout_s)
        except (serial.SerialException, ValueError) as e:
            raise FlashError(f"cannot open {port}: {e}") from None
        with contextlib.closing(ser):
            yield Link(ser, "hardware", port, flash_report=report)
        return
    # looked up at call time: tests replace bench.emulator.launch
    with bench.emulator.launch(board, elf, backend=placement.backend) as emu:
        # open_serial is serial_for_url(emu.url) whose reads say *why* when the firmware faulted
        ser = emu.open_serial(timeout=timeout_s, baudrate=baud)
        with contextlib.closing(ser):
            yield Link(ser, placement.backend, emu.url, emulator=emu)


def check_model(info: Any, expected_hash: int, header: Path) -> None:
    """Refuse firmware built from another model (its INFO answer): both hashes in the message."""
    if int(info.model_hash) != int(expected_hash):
        raise RunError(f"the board runs firmware built from model {int(info.model_hash):08x}, but {header} "
                       f"is model {int(expected_hash):08x}: flash it first (potnn-bench flash, or drop --no-flash)")


def check_port(port: str | None, emulator: str) -> None:
    """Refuse, before any work, a ``--port`` no run can use: one naming no device, or one beside an emulator.

    Why: a mistyped port used to be ignored when no probe was found, and the run went to the
    emulator with exit status 0. (After ``place``, ``require_board_for_port`` covers auto.)
    """
    if port is None:
        return
    if emulator in EMULATORS:
        raise RunError(f"--port {port} is a board's UART, but --emulator {emulator} runs no board: "
                       "leave out one of them")
    if "://" not in port and os.name != "nt" and not Path(port).exists():
        raise RunError(f"--port {port}: no such device; list the serial ports with "
                       "`python -m serial.tools.list_ports`, or leave out --port to find the board's UART by USB id")


def require_board_for_port(port: str | None, placement: Placement) -> None:
    """``--port`` with ``--emulator auto`` and no probe found: an error, never a silent emulator run."""
    if port is not None and not placement.hardware:
        raise RunError(f"--port {port} names a board's UART, but {placement.note or 'no board is used'}: "
                       "connect the probe, or leave out --port to run on the emulator")
