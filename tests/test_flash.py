"""Flashers against the tools' documented interfaces, with no probe attached.

``wlink`` is exercised through a small fake executable on PATH that prints what ch32-rs/wlink
documents (``wlink list`` lines, ``Error: ...`` on failure) and keeps a fake chip's flash in a
file, so detection, flashing, read-back verification and reset are tested end to end. pyOCD is
the real API, which finds no probe on this machine. Programming a real chip is marked
``hardware`` and skipped without one.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import struct
import sys
from pathlib import Path

import pytest

from bench.flashers import (FlashError, FlashImage, NoProbe, PackMissing, PyOCDFlasher, ToolMissing,
                            VerifyError, WlinkFlasher, flasher_for)
from bench.flashers.wlink import parse_list

FLASH = 0x0800_0000


def make_elf(path: Path, segments: list[tuple[int, bytes]], machine: int = 0xF3) -> Path:
    """A minimal ELF32 little-endian executable with one PT_LOAD per (load address, bytes)."""
    ehsize, phentsize = 52, 32
    offset = ehsize + phentsize * len(segments)
    phdrs, blobs = b"", b""
    for addr, data in segments:
        phdrs += struct.pack("<IIIIIIII", 1, offset + len(blobs), addr, addr, len(data), len(data), 5, 4)
        blobs += data
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + b"\x00" * 8
    header = ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, segments[0][0], ehsize, 0, 0,
                                 ehsize, phentsize, len(segments), 40, 0, 0)
    path.write_bytes(header + phdrs + blobs)
    return path


FAKE_WLINK = r'''#!PYTHON
"""Fake wlink: documented output of ch32-rs/wlink; the chip's flash lives in $FAKE_WLINK_CHIP."""
import os, sys
log = os.environ.get("FAKE_WLINK_LOG")
if log:
    with open(log, "a") as f:
        f.write(" ".join(sys.argv[1:]) + "\n")
mode = os.environ.get("FAKE_WLINK_MODE", "none")
args = sys.argv[1:]
while args and args[0] in ("-d", "--chip", "-v"):
    args = args[2:] if args[0] != "-v" else args[1:]
cmd = args[0] if args else None
if cmd == "list":
    if mode == "rv":
        print("<WCH-Link#0 nusb device> ID 1a86:8010 Serial 0001A2B3 (High Speed) (RV mode)")
    elif mode == "rv-old":
        print("<WCH-Link#0 libusb device> Bus 001 Device 004 ID 1a86:8010(Full Speed) (RV mode)")
    elif mode == "dap":
        print("<WCH-Link#0 nusb device> ID 1a86:8012 Serial N/A (High Speed) (DAP mode)")
    sys.exit(0)
if mode not in ("rv", "rv-old"):
    print("Error: WCH-Link not found, please check your connection", file=sys.stderr)
    sys.exit(1)
print("12:00:00 [INFO] Connected to WCH-Link v2.11(v31) (WCH-LinkE-CH32V305)")
print("12:00:00 [INFO] Attached chip: CH32V003 [CH32V003F4P6] (ChipID: 0x00300500)")
chip = os.environ["FAKE_WLINK_CHIP"]
if cmd == "flash":
    addr = int(args[args.index("--address") + 1], 16)
    data = open(args[-1], "rb").read()
    open(chip, "wb").write(data if not os.environ.get("FAKE_WLINK_CORRUPT") else b"\x00" + data[1:])
    print(f"12:00:01 [INFO] Flashing {len(data)} bytes to 0x{addr:08x}")
    print("12:00:01 [INFO] Flash done")
elif cmd == "dump":
    length = int(args[2], 0)
    out = args[args.index("-o") + 1]
    data = open(chip, "rb").read()
    data += b"\xff" * (-len(data) % 4)
    open(out, "wb").write(data[: (length + 3) // 4 * 4])
elif cmd == "reset":
    print("12:00:02 [INFO] Reset Quit")
else:
    print(f"error: unrecognized subcommand '{cmd}'", file=sys.stderr)
    sys.exit(2)
'''


@pytest.fixture
def fake_wlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "wlink"
    exe.write_text(FAKE_WLINK.replace("PYTHON", sys.executable, 1))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_WLINK_CHIP", str(tmp_path / "chip.bin"))
    monkeypatch.setenv("FAKE_WLINK_LOG", str(tmp_path / "calls.log"))
    return exe


def test_wlink_missing_from_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing, match="wlink is not on PATH.*cargo install"):
        WlinkFlasher().probes()


def test_wlink_present_but_no_probe_fake_wlink(fake_wlink: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_WLINK_MODE", "none")
    fl = WlinkFlasher()
    assert fl.probes() == []
    with pytest.raises(NoProbe, match=r"no WCH-LinkE probe found \(`wlink list` shows none\)"):
        fl.find_probe()


@pytest.mark.parametrize("mode", ["rv", "rv-old"])
def test_wlink_probe_detected_fake_wlink(fake_wlink: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setenv("FAKE_WLINK_MODE", mode)
    probe = WlinkFlasher().find_probe()
    assert probe.index == 0 and probe.usb_id == (0x1A86, 0x8010)
    assert probe.unique_id == ("0001A2B3" if mode == "rv" else None)


def test_wlink_probe_in_dap_mode_fake_wlink(fake_wlink: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_WLINK_MODE", "dap")
    with pytest.raises(NoProbe, match="DAP mode.*wlink mode-switch --rv"):
        WlinkFlasher().find_probe()


def test_parse_list_ignores_other_output() -> None:
    out = ("12:00:00 [INFO] something\n"
           "<WCH-Link#0 nusb device> ID 1a86:8010 Serial 77 (High Speed) (RV mode)\n"
           "<WCH-Link#1 WCHLinkDLL device> CH375Driver Device 1a86:8010 (RV mode)\n"
           "<WCH-Link#0 nusb device> ID 1a86:8012 Serial N/A (Full Speed) (DAP mode)\n")
    rv, dap = parse_list(out)
    assert [p.index for p in rv] == [0, 1] and rv[0].unique_id == "77"
    assert len(dap) == 1 and dap[0].usb_id == (0x1A86, 0x8012)


def test_wlink_flash_verify_reset_fake_wlink(fake_wlink: Path, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("FAKE_WLINK_MODE", "rv")
    code = bytes(range(256)) * 3
    elf = make_elf(tmp_path / "fw.elf", [(0x0000_0000, code), (0x0000_0400, b"\x01\x02\x03")])
    report = WlinkFlasher(flash_size=16384).flash(elf)
    assert report.verified and report.address == FLASH and report.size == 0x403
    assert report.chip == "CH32V003 [CH32V003F4P6] (ChipID: 0x00300500)"
    chip = (tmp_path / "chip.bin").read_bytes()
    assert chip[:768] == code and chip[768:1024] == b"\xff" * 256 and chip[1024:] == b"\x01\x02\x03"
    calls = [ln.split() for ln in (tmp_path / "calls.log").read_text().splitlines()]
    assert [c[c.index("--chip") + 2] for c in calls if "--chip" in c] == ["flash", "dump", "reset"]
    assert all(c[:4] == ["-d", "0", "--chip", "ch32v003"] for c in calls[1:])


def test_wlink_verify_failure_fake_wlink(fake_wlink: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FAKE_WLINK_MODE", "rv")
    monkeypatch.setenv("FAKE_WLINK_CORRUPT", "1")
    elf = make_elf(tmp_path / "fw.elf", [(FLASH, b"\x13\x00\x00\x00" * 8)])
    with pytest.raises(VerifyError, match="verify failed at 0x08000000"):
        WlinkFlasher().flash(elf)
    calls = (tmp_path / "calls.log").read_text()
    assert "reset" not in calls  # a chip with a bad image is not started


def test_wlink_tool_error_is_reported_fake_wlink(fake_wlink: Path, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("FAKE_WLINK_MODE", "none")
    elf = make_elf(tmp_path / "fw.elf", [(FLASH, b"\x00" * 4)])
    from bench.flashers import Probe

    with pytest.raises(FlashError, match="wlink flash failed: WCH-Link not found, please check your connection"):
        WlinkFlasher().flash(elf, probe=Probe("WCH-Link#0", index=0))


def test_flash_image_from_elf(tmp_path: Path) -> None:
    elf = make_elf(tmp_path / "a.elf", [(FLASH + 8, b"\xaa\xbb"), (FLASH, b"\x01"), (0x2000_0000, b"\x55")])
    img = FlashImage.from_elf(elf, FLASH, 16384)
    assert img.address == FLASH and img.data == b"\x01" + b"\xff" * 7 + b"\xaa\xbb"
    assert img.compare(img.data) is None and img.compare(b"\x01\xff\x00") == 2
    too_big = make_elf(tmp_path / "b.elf", [(FLASH, b"\x00" * 32)])
    with pytest.raises(FlashError, match="past flash end"):
        FlashImage.from_elf(too_big, FLASH, 16)
    (tmp_path / "c.elf").write_bytes(b"not an elf")
    with pytest.raises(FlashError, match="not a readable ELF"):
        FlashImage.from_elf(tmp_path / "c.elf", FLASH)


def test_pyocd_finds_no_probe_here() -> None:
    fl = PyOCDFlasher(target="py32f003x4")
    assert fl.probes() == []
    with pytest.raises(NoProbe, match=r"no CMSIS-DAP/ST-Link probe found \(pyOCD lists no probes\)"):
        fl.find_probe()


def test_pyocd_without_puya_pack_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(PackMissing, match=r"no target 'py32f003x4'.*pyocd pack install py32f0.*--pack"):
        PyOCDFlasher(target="py32f003x4").check_target()
    with pytest.raises(PackMissing, match="pack file .* not found"):
        PyOCDFlasher(target="py32f003x4", pack=tmp_path / "Puya.PY32F0xx_DFP.1.2.0.pack").check_target()
    bad = tmp_path / "bad.pack"
    bad.write_bytes(b"not a zip")
    with pytest.raises(PackMissing, match="unreadable"):
        PyOCDFlasher(target="py32f003x4", pack=bad).check_target()
    PyOCDFlasher(target="stm32f051").check_target()  # a built-in target needs no pack


def test_pyocd_flash_checks_pack_before_probing(tmp_path: Path) -> None:
    elf = make_elf(tmp_path / "fw.elf", [(FLASH, b"\x00" * 4)])
    with pytest.raises(PackMissing):
        PyOCDFlasher(target="py32f003x4").flash(elf)


class FakeProbeSession:
    """A pyOCD session with a fake probe and chip behind it (no probe exists here): what FileProgrammer
    writes lands in ``memory``; ``corrupt`` flips a bit of one byte there, as a flash cell that did not
    take the write would read back."""

    def __init__(self, corrupt_at: int | None) -> None:
        self.memory: dict[int, int] = {}
        self.corrupt_at = corrupt_at
        self.resets = 0
        self.target = self
        self.part_number = "STM32F051"

    def __enter__(self) -> "FakeProbeSession":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read_memory_block8(self, addr: int, size: int) -> list[int]:
        return [self.memory.get(a, 0xFF) for a in range(addr, addr + size)]

    def reset(self) -> None:
        self.resets += 1


def _fake_pyocd_probe(monkeypatch: pytest.MonkeyPatch, corrupt_at: int | None) -> FakeProbeSession:
    """Replace the two pyOCD calls that reach a probe: opening a session and programming through it."""
    import pyocd.flash.file_programmer as fp

    from bench.flashers import pyocd_api

    session = FakeProbeSession(corrupt_at)

    class FakeConnectHelper:
        @staticmethod
        def session_with_chosen_probe(**_: object) -> FakeProbeSession:
            return session

    class FakeFileProgrammer:
        def __init__(self, s: FakeProbeSession, **_: object) -> None:
            self.s = s

        def program(self, path: str, file_format: str, base_address: int) -> None:
            assert file_format == "bin"
            for i, b in enumerate(Path(path).read_bytes()):
                self.s.memory[base_address + i] = b ^ (0x01 if i == self.s.corrupt_at else 0)

    monkeypatch.setattr(pyocd_api, "_pyocd", lambda: FakeConnectHelper)
    monkeypatch.setattr(fp, "FileProgrammer", FakeFileProgrammer)
    return session


def test_pyocd_flash_reads_back_and_resets_fake_probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    session = _fake_pyocd_probe(monkeypatch, corrupt_at=None)
    elf = make_elf(tmp_path / "fw.elf", [(FLASH, bytes(range(64)))])
    from bench.flashers import Probe

    report = PyOCDFlasher(target="stm32f051").flash(elf, probe=Probe("fake probe", unique_id="0001"))
    assert report.verified and report.address == FLASH and report.size == 64 and report.chip == "STM32F051"
    assert session.resets == 1


def test_pyocd_verify_mismatch_fake_probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """pyOCD's FileProgrammer has no verify: the bench reads flash back and compares, byte for byte."""
    session = _fake_pyocd_probe(monkeypatch, corrupt_at=37)
    elf = make_elf(tmp_path / "fw.elf", [(FLASH, bytes(range(64)))])
    from bench.flashers import Probe

    with pytest.raises(VerifyError, match=f"^verify failed at 0x{FLASH + 37:08x}$"):
        PyOCDFlasher(target="stm32f051").flash(elf, probe=Probe("fake probe", unique_id="0001"))
    assert session.resets == 0                     # a chip with a bad image is not started


def test_verify_mismatch_is_one_line_exit_2_fake_wlink(fake_wlink: Path, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the command line: a flash that reads back wrong stops `flash` with one line and exit status 2."""
    from bench import cli
    from firmware_models import synthetic_header

    monkeypatch.setenv("FAKE_WLINK_MODE", "rv")
    monkeypatch.setenv("FAKE_WLINK_CORRUPT", "1")
    header = synthetic_header(tmp_path / "m.h")
    with pytest.raises(SystemExit) as ex:
        cli.main(["flash", "--board", "ch32v003", "--header", str(header), "--check", "0",
                  "--build-dir", str(tmp_path / "b")])
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("potnn-bench: error: verify failed at 0x08000000 (")


def test_flasher_for_board_settings() -> None:
    assert isinstance(flasher_for("wlink", chip="CH32V003"), WlinkFlasher)
    assert flasher_for("pyocd", target="py32f003x6").target == "py32f003x6"
    with pytest.raises(FlashError, match="unknown flasher 'jlink'"):
        flasher_for("jlink")


@pytest.mark.hardware
def test_flash_real_board(tmp_path: Path) -> None:
    """Programs the attached board (POTNN_HW_BOARD=ch32v003|py32f003, POTNN_HW_ELF=firmware.elf)."""
    board = os.environ.get("POTNN_HW_BOARD")
    elf = os.environ.get("POTNN_HW_ELF")
    if not board or not elf:
        pytest.skip("no board attached: set POTNN_HW_BOARD and POTNN_HW_ELF to flash a real chip")
    fl = WlinkFlasher() if board.startswith("ch32") else PyOCDFlasher()
    try:
        probe = fl.find_probe()
    except (ToolMissing, NoProbe) as e:
        pytest.skip(f"no probe: {e}")
    assert fl.flash(Path(elf), probe).verified


def test_placement_auto_none_and_forced_emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bench.board import load_board
    from bench.placement import place

    monkeypatch.setenv("PATH", str(tmp_path))  # no wlink
    board = load_board("ch32v003")
    said: list[str] = []
    p = place(board, "auto", say=said.append)
    assert p.backend == "unicorn" and not p.hardware
    assert said == ["wlink is not on PATH (to use a board, install it: cargo install --git "
                    "https://github.com/ch32-rs/wlink): running on the unicorn emulator"]
    with pytest.raises(FlashError, match="--emulator none needs the board attached"):
        place(board, "none")
    assert place(board, "renode").backend == "renode"  # forced: the probe is not even looked for
    p = place(load_board("py32f003"), "auto", say=said.append)  # real pyOCD: no probe here
    assert p.backend == "unicorn" and said[-1].startswith("no CMSIS-DAP/ST-Link probe found")


def test_board_flasher_settings_come_from_the_board_file() -> None:
    from bench.board import load_board
    from bench.placement import board_flasher

    ch32 = load_board("ch32v003")
    wl = board_flasher(ch32)
    assert isinstance(wl, WlinkFlasher) and wl.chip == "ch32v003"
    assert wl.flash_load == 0x0800_0000 and wl.alias_base == 0 and wl.flash_size == 16384
    # the load address is the board file's, not the flasher's default
    moved = board_flasher(dataclasses.replace(ch32, flash_load=0x0800_4000))
    assert moved.flash_load == 0x0800_4000 and moved.alias_base == 0
    po = board_flasher(load_board("py32f003x6"), pack=Path("/x/Puya.pack"))
    assert isinstance(po, PyOCDFlasher) and po.target == "py32f003x6" and po.pack == Path("/x/Puya.pack")
    assert po.alias_base is None and po.flash_size == 32768


def test_uart_port_found_by_usb_id(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from serial.tools import list_ports

    from bench.board import load_board
    from bench.placement import find_board_port

    ports = [SimpleNamespace(device="/dev/ttyACM1", vid=0x1A86, pid=0x8010),
             SimpleNamespace(device="/dev/ttyUSB0", vid=0x0403, pid=0x6001),
             SimpleNamespace(device="/dev/ttyACM0", vid=0x1A86, pid=0x8010)]
    monkeypatch.setattr(list_ports, "comports", lambda: ports)
    assert find_board_port(load_board("ch32v003")) == "/dev/ttyACM0"
    monkeypatch.setattr(list_ports, "comports", lambda: ports[1:2])
    with pytest.raises(FlashError, match=r"no serial port with the USB id of ch32v003's UART \(1a86:8010\); pass --port"):
        find_board_port(load_board("ch32v003"))
