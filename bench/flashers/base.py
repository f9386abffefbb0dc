"""What every flasher offers, and the errors the bench tells apart.

The errors are distinct types because the caller reacts differently: a missing tool or an
absent probe sends ``--emulator auto`` to the emulator, while a failed verify must stop the run
(the board would answer with an old model).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path


class FlashError(Exception):
    """Flashing failed; the message is one line a user can act on."""


class ToolMissing(FlashError):
    """The programming tool (``wlink``, pyOCD) is not installed or not on PATH."""


class NoProbe(FlashError):
    """The tool works but no usable debug probe is attached."""


class PackMissing(FlashError):
    """pyOCD does not know the target: its CMSIS pack is not installed."""


class VerifyError(FlashError):
    """The flash read back differs from the image."""


@dataclass(frozen=True)
class Probe:
    """An attached debug probe as the tool reports it."""

    description: str
    unique_id: str | None = None
    index: int | None = None
    usb_id: tuple[int, int] | None = None  # (VID, PID)

    def __str__(self) -> str:
        uid = f" [{self.unique_id}]" if self.unique_id else ""
        return f"{self.description}{uid}"


@dataclass
class FlashReport:
    """What was written where, and what the tool said about the chip."""

    probe: Probe
    address: int
    size: int
    verified: bool
    chip: str | None = None
    log: list[str] = field(default_factory=list)


class Flasher(ABC):
    """One programming tool. ``probes()`` never programs; ``flash()`` programs, verifies, resets."""

    name: str = ""
    #: What to say the probe is when none is found ("WCH-LinkE", "CMSIS-DAP/ST-Link probe").
    probe_kind: str = "debug probe"

    @abstractmethod
    def probes(self) -> list[Probe]:
        """Attached probes usable for this target; raises ToolMissing when the tool is absent."""

    @abstractmethod
    def flash(self, image: Path, probe: Probe | None = None) -> FlashReport:
        """Program ``image`` (an ELF), read it back and compare, then reset the chip to run it."""

    def find_probe(self) -> Probe:
        """The probe to use (the first one), or NoProbe saying how detection was done."""
        found = self.probes()
        if not found:
            raise NoProbe(f"no {self.probe_kind} found ({self.detection_hint()})")
        return found[0]

    def detection_hint(self) -> str:
        return self.name
