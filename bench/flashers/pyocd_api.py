"""PY32F003 (Cortex-M0+) through pyOCD's Python API, with any CMSIS-DAP or ST-Link probe.

Why the API and not the ``pyocd`` CLI: probe discovery returns objects (unique id, vendor,
product) instead of text to parse, and one session does program, read-back and reset.

pyOCD has no built-in PY32 targets: they come from Puya's CMSIS pack (``Puya.PY32F0xx_DFP``),
either installed in pyOCD's pack cache (``pyocd pack install py32f0``) or given as a file
(``pack=`` here, ``--pack`` on the command line). ``check_target`` says which is missing before
any probe is touched.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.flashers.base import (FlashError, FlashReport, Flasher, NoProbe, PackMissing, Probe,
                                 ToolMissing, VerifyError)
from bench.flashers.image import FlashImage

PACK_HINT = ("install the Puya PY32F0xx pack: `pyocd pack install py32f0`, "
             "or pass the pack file with --pack Puya.PY32F0xx_DFP.<version>.pack")


def _pyocd() -> Any:
    try:
        from pyocd.core.helpers import ConnectHelper
    except ImportError:
        raise ToolMissing("pyOCD is not installed (pip install pyocd)") from None
    return ConnectHelper


class PyOCDFlasher(Flasher):
    name = "pyocd"
    probe_kind = "CMSIS-DAP/ST-Link probe"

    def __init__(self, target: str = "py32f003x4", pack: str | Path | None = None,
                 flash_load: int = 0x0800_0000, flash_size: int | None = None,
                 frequency_hz: int | None = None, unique_id: str | None = None,
                 alias_base: int | None = None, **_: object) -> None:
        self.target = target
        self.alias_base = alias_base
        self.pack = Path(pack) if pack else None
        self.flash_load = flash_load
        self.flash_size = flash_size
        self.frequency_hz = frequency_hz
        self.unique_id = unique_id

    def detection_hint(self) -> str:
        return "pyOCD lists no probes"

    def probes(self) -> list[Probe]:
        helper = _pyocd()
        try:
            found = helper.get_all_connected_probes(blocking=False, unique_id=self.unique_id,
                                                    print_wait_message=False)
        except Exception as e:  # USB backends raise their own errors (permissions, libusb)
            raise FlashError(f"pyOCD probe discovery failed: {type(e).__name__}: {e}") from None
        return [Probe(description=str(p.description), unique_id=str(p.unique_id)) for p in found]

    def check_target(self) -> None:
        """PackMissing unless pyOCD can build the target (built in, pack cache or pack file)."""
        _pyocd()
        from pyocd.target import TARGET
        from pyocd.target.pack.pack_target import ManagedPacks, normalise_target_type_name

        name = normalise_target_type_name(self.target)
        if name in TARGET:
            return
        if self.pack is not None:
            if not self.pack.is_file():
                raise PackMissing(f"pack file {self.pack} not found; {PACK_HINT}")
            from pyocd.target.pack.cmsis_pack import CmsisPack
            try:
                parts = {normalise_target_type_name(d.part_number) for d in CmsisPack(str(self.pack)).devices}
            except Exception as e:  # malformed pack: zip or XML errors
                raise PackMissing(f"pack file {self.pack} unreadable ({type(e).__name__}: {e})") from None
            if name not in parts:
                raise PackMissing(f"pack file {self.pack} has no target {self.target!r}")
            return
        try:
            ManagedPacks.populate_target(name)
        except Exception:  # a broken pack cache is the same, for the user, as none
            pass
        if name not in TARGET:
            raise PackMissing(f"pyOCD has no target {self.target!r}: {PACK_HINT}")

    def _options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.pack is not None:
            opts["pack"] = str(self.pack)
        if self.frequency_hz:
            opts["frequency"] = self.frequency_hz
        return opts

    def flash(self, image: Path, probe: Probe | None = None) -> FlashReport:
        self.check_target()
        probe = probe or self.find_probe()
        img = FlashImage.from_elf(Path(image), self.flash_load, self.flash_size, self.alias_base)
        helper = _pyocd()
        from pyocd.flash.file_programmer import FileProgrammer

        session = helper.session_with_chosen_probe(
            blocking=False, unique_id=probe.unique_id, target_override=self.target,
            options=self._options())
        if session is None:
            raise NoProbe(f"{probe} disappeared before flashing")
        try:
            with session, tempfile.TemporaryDirectory(prefix="potnn-pyocd-") as tmp:
                binfile = img.write_bin(Path(tmp) / "image.bin")
                FileProgrammer(session, chip_erase="auto").program(
                    str(binfile), file_format="bin", base_address=img.address)
                data = bytes(session.target.read_memory_block8(img.address, img.size))
                bad = img.compare(data)
                if bad is not None:
                    raise VerifyError(f"verify failed at 0x{img.address + bad:08x}")
                session.target.reset()
                chip = getattr(session.target, "part_number", None)
        except FlashError:
            raise
        except Exception as e:  # pyOCD raises TransferError, ProbeError, ... : one line for the user
            raise FlashError(f"pyOCD flash failed: {type(e).__name__}: {e}") from None
        return FlashReport(probe=probe, address=img.address, size=img.size, verified=True, chip=chip)
