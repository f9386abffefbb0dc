"""Where a firmware image runs: on the board through its flasher, or on the board's emulator.

``potnn-bench flash`` builds the firmware for a model, then programs, verifies and resets the
board when a probe is attached. With ``--emulator auto`` (default) and no probe it says so in
one line and boots the same ELF on the emulator instead (and checks that it answers); with
``--emulator none`` a missing probe is an error; ``--emulator unicorn|renode`` forces that
emulator. ``connect`` gives ``bench.run`` the same choice as an open serial link.

Why the choice lives here and not in each command: ``flash``, ``run`` and ``nightly`` must agree
on it, and a user reading one line ("no WCH-LinkE probe found ...: running on the unicorn
emulator") must be able to trust that results say ``backend: unicorn``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.flashers import FlashError, FlashReport, Flasher, NoProbe, Probe, ToolMissing, flasher_for

EMULATOR_CHOICES = ("auto", "unicorn", "renode", "none")


@dataclass
class Placement:
    """The decision: ``backend`` is "hardware", "unicorn" or "renode" (design.md 4.4)."""

    backend: str
    flasher: Flasher | None = None
    probe: Probe | None = None
    note: str | None = None  # the one line said to the user about the choice

    @property
    def hardware(self) -> bool:
        return self.backend == "hardware"


def board_flasher(board: Any, pack: Path | None = None) -> Flasher:
    """The flasher the board file's ``[flasher]`` table names, configured from the board."""
    fl = board.flasher
    settings: dict[str, Any] = {
        "flash_base": board.flash_load,
        "flash_size": board.flash_size,
        # CH32V003 links at the alias 0 and is written at 0x08000000
        "alias_base": board.flash_origin if board.flash_origin != board.flash_load else None,
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
    if emulator in ("unicorn", "renode"):
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


@contextlib.contextmanager
def connect(board: Any, elf: Path, placement: Placement, port: str | None = None, flash: bool = True,
            timeout_s: float = 10.0, say: Callable[[str], None] | None = None) -> Iterator[Link]:
    """Program (hardware) or boot (emulator) ``elf`` and yield an open serial link to it."""
    import serial

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
    from bench.emulator import launch  # the emulator engineer's API (issue 4)

    with launch(board, elf, backend=placement.backend) as emu:
        # open_serial is serial_for_url(emu.url) whose reads say *why* when the firmware faulted
        ser = emu.open_serial(timeout=timeout_s, baudrate=baud)
        with contextlib.closing(ser):
            yield Link(ser, placement.backend, emu.url, emulator=emu)


# ----------------------------------------------------------------------------- CLI
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from bench.run import add_build_options, add_target_options

    p = subparsers.add_parser("flash", help="build and program the board (or boot its emulator)",
                              description=__doc__.split("\n\n")[0])
    add_target_options(p)
    p.add_argument("--port", help="UART of the board for the INFO check (default: found by USB id)")
    p.add_argument("--build-dir", type=Path, default=None, help="where to build")
    p.add_argument("--check", type=int, default=20, metavar="N",
                   help="after flashing, stream the first N test images and compare them with "
                        "potnn.simulate (default 20; 0: only the INFO check); `run` logs full runs")
    add_build_options(p)
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    """Build, place, program (or boot), ask INFO to prove it runs that model, then a short check."""
    from bench.board import load_board
    from bench.build import build
    from bench.models import resolve_header
    from bench.protocol import BenchClient, ProtocolError
    from bench.run import RunError, check_model, quick_check

    board = load_board(args.board)
    header, model_name = resolve_header(board.name, args.header, args.model)
    fw = build(board, header, args.build_dir, opt=args.opt, toolchain=args.toolchain)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    placement = place(board, args.emulator, args.pack, say=say)
    check_line = None
    with connect(board, fw.elf, placement, args.port, flash=True, say=say) as link:
        client = BenchClient(link.serial)
        try:
            info = client.info()
        except ProtocolError as e:
            what = "flashed, but the board" if placement.hardware else "the emulated firmware"
            raise RunError(f"{what} did not answer INFO on {link.url}: {e}") from None
        check_model(info, fw.model_hash, header)
        if args.check > 0:
            check_line = quick_check(client, header, None if args.header is not None else model_name,
                                     args.check, board.clock_hz, say)
    where = (f"{board.name} via {placement.flasher.name} ({placement.probe})" if placement.hardware
             else f"the {placement.backend} emulator (nothing written to a chip)")
    print(f"{model_name} ({fw.model_hash_hex}) runs on {where}: firmware {info.firmware_version}, "
          f"{info.num_classes} classes, flash {fw.flash_bytes}/{board.flash_size} B, "
          f"RAM {fw.ram_bytes}/{board.ram_size} B")
    if check_line:
        print(check_line)
    return 0
