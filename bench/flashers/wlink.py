"""CH32V003 through a WCH-LinkE, driven by the ``wlink`` command-line tool (ch32-rs/wlink).

Why the CLI and not a USB library: wlink owns the WCH-Link protocol quirks (chip attach, the
CH32V003 flash algorithm, probe firmware versions); the bench only needs its documented commands:

- ``wlink list``: one line per probe on stdout, e.g.
  ``<WCH-Link#0 nusb device> ID 1a86:8010 Serial 1234 (High Speed) (RV mode)``
  (0.1.2; 0.0.8-0.1.1 print ``<WCH-Link#0 libusb device> Bus 001 Device 004 ID 1a86:8010(High
  Speed) (RV mode)``); nothing when no probe is attached. A probe in ``(DAP mode)`` cannot
  program RISC-V chips until switched with ``wlink mode-switch --rv``.
- ``wlink -d N --chip ch32v003 flash --address 0x08000000 --no-run image.bin``: program.
- ``wlink -d N --chip ch32v003 dump 0x08000000 LEN -o out.bin``: read back (verify).
- ``wlink -d N --chip ch32v003 reset``: soft reset, the chip runs the new image.

Errors are printed by wlink as ``Error: <message>`` on stderr with a non-zero exit status.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from bench.flashers.base import FlashError, FlashReport, Flasher, NoProbe, Probe, ToolMissing, VerifyError
from bench.flashers.image import FlashImage

#: wlink's probe line: index, the USB id, and the mode in the trailing parenthesis.
_LIST_LINE = re.compile(
    r"<WCH-Link#(?P<index>\d+)[^>]*>.*?\b(?P<vid>[0-9a-fA-F]{4}):(?P<pid>[0-9a-fA-F]{4})"
    r"(?:.*?Serial (?P<serial>\S+))?.*\((?P<mode>RV|DAP) mode\)\s*$")
_ATTACHED = re.compile(r"Attached chip:\s*(?P<chip>.+?)\s*$", re.IGNORECASE)
_ERROR = re.compile(r"^Error:\s*(?P<msg>.+)$")


class WlinkFlasher(Flasher):
    name = "wlink"
    probe_kind = "WCH-LinkE probe"

    def __init__(self, chip: str = "ch32v003", flash_load: int = 0x0800_0000,
                 flash_size: int | None = None, executable: str = "wlink",
                 timeout_s: float = 60.0, alias_base: int | None = 0, **_: object) -> None:
        self.chip = chip.lower()
        self.alias_base = alias_base
        self.flash_load = flash_load
        self.flash_size = flash_size
        self.executable = executable
        self.timeout_s = timeout_s

    # -- tool -------------------------------------------------------------------------------
    def tool_path(self) -> str:
        """Absolute path of the wlink executable, or ToolMissing saying how to install it."""
        path = shutil.which(self.executable)
        if path is None:
            raise ToolMissing(f"{self.executable} is not on PATH (to use a board, install it: "
                              "cargo install --git https://github.com/ch32-rs/wlink)")
        return path

    def _run(self, args: Sequence[str], probe: Probe | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [self.tool_path()]
        if probe is not None and probe.index is not None:
            cmd += ["-d", str(probe.index)]
        if args and args[0] != "list":
            cmd += ["--chip", self.chip]
        cmd += list(args)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s,
                                  env={**os.environ, "NO_COLOR": "1"})
        except subprocess.TimeoutExpired:
            raise FlashError(f"wlink {' '.join(args)} did not finish within {self.timeout_s:.0f} s") from None
        except OSError as e:
            raise ToolMissing(f"cannot run {cmd[0]}: {e.strerror}") from None
        if proc.returncode != 0:
            raise FlashError(f"wlink {args[0]} failed: {_error_line(proc)}")
        return proc

    # -- probes -----------------------------------------------------------------------------
    def probes(self) -> list[Probe]:
        proc = self._run(["list"])
        found, dap = parse_list(proc.stdout)
        if not found and dap:
            raise NoProbe(f"{dap[0].description} is in DAP mode; switch it to RV mode with "
                          "`wlink mode-switch --rv`")
        return found

    def detection_hint(self) -> str:
        return "`wlink list` shows none"

    # -- flash ------------------------------------------------------------------------------
    def flash(self, image: Path, probe: Probe | None = None) -> FlashReport:
        probe = probe or self.find_probe()
        img = FlashImage.from_elf(Path(image), self.flash_load, self.flash_size, self.alias_base)
        log: list[str] = []
        with tempfile.TemporaryDirectory(prefix="potnn-wlink-") as tmp:
            binfile = img.write_bin(Path(tmp) / "image.bin")
            proc = self._run(["flash", "--address", f"0x{img.address:08x}", "--no-run", str(binfile)], probe)
            log += _lines(proc)
            readback = Path(tmp) / "readback.bin"
            proc = self._run(["dump", f"0x{img.address:08x}", str(img.size), "-o", str(readback)], probe)
            log += _lines(proc)
            try:
                data = readback.read_bytes()
            except FileNotFoundError:
                raise FlashError("wlink dump wrote no file; cannot verify the flash") from None
            bad = img.compare(data)
            if bad is not None:
                raise VerifyError(f"verify failed at 0x{img.address + bad:08x} "
                                  f"({img.size} bytes written, {len(data)} read back)")
            proc = self._run(["reset"], probe)
            log += _lines(proc)
        chip = next((m.group("chip") for line in log if (m := _ATTACHED.search(line))), None)
        return FlashReport(probe=probe, address=img.address, size=img.size, verified=True,
                           chip=chip, log=log)


def parse_list(stdout: str) -> tuple[list[Probe], list[Probe]]:
    """Split ``wlink list`` output into probes in RV mode (usable) and in DAP mode."""
    rv: list[Probe] = []
    dap: list[Probe] = []
    for line in stdout.splitlines():
        m = _LIST_LINE.search(line.strip())
        if not m:
            continue
        probe = Probe(description=f"WCH-Link#{m.group('index')} ({m.group('vid')}:{m.group('pid')})",
                      unique_id=m.group("serial") if m.group("serial") not in (None, "N/A") else None,
                      index=int(m.group("index")),
                      usb_id=(int(m.group("vid"), 16), int(m.group("pid"), 16)))
        (rv if m.group("mode") == "RV" else dap).append(probe)
    return rv, dap


def _lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """wlink's own ``Error: ...`` line, else its last output line, else the exit status."""
    lines = _lines(proc)
    for ln in lines:
        m = _ERROR.match(ln.strip())
        if m:
            return m.group("msg")
    return lines[-1].strip() if lines else f"exit status {proc.returncode}"
