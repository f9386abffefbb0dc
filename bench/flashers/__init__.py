"""Flashers: one small class per programming tool, all behind the ``Flasher`` interface.

Why a class per tool: each tool has its own way to find probes, name a target and report
errors; the bench only needs "is there a probe?" and "put this image on the chip, verify it,
reset it". Boards name their flasher (``wlink`` or ``pyocd``) and ``flasher_for`` builds it.
"""

from __future__ import annotations

from typing import Any

from bench.flashers.base import (FlashError, FlashReport, Flasher, NoProbe, PackMissing, Probe,
                                 ToolMissing, VerifyError)
from bench.flashers.image import FlashImage
from bench.flashers.pyocd_api import PyOCDFlasher
from bench.flashers.wlink import WlinkFlasher

FLASHERS: dict[str, type[Flasher]] = {
    WlinkFlasher.name: WlinkFlasher,
    PyOCDFlasher.name: PyOCDFlasher,
}


def flasher_for(kind: str, **settings: Any) -> Flasher:
    """Build the flasher a board file names, with the board's settings (chip, target, pack)."""
    try:
        cls = FLASHERS[kind]
    except KeyError:
        raise FlashError(f"unknown flasher {kind!r} (known: {', '.join(sorted(FLASHERS))})") from None
    return cls(**settings)


__all__ = ["FLASHERS", "FlashError", "FlashImage", "FlashReport", "Flasher", "NoProbe",
           "PackMissing", "Probe", "PyOCDFlasher", "ToolMissing", "VerifyError", "WlinkFlasher",
           "flasher_for"]
