"""Register-level models of the peripherals the bench firmware touches, and nothing more.

One module per chip's peripheral set (``ch32v003``, ``py32f003``), the USART both share
(``usart``), and the register-file machinery with its strictness rule (``registers``). Which
models are built, and at which addresses, is the board file's ``[peripherals]`` table: only
what the firmware uses is mapped, so a stray access to a peripheral the firmware has no
business touching faults instead of hitting a model.
"""

from __future__ import annotations

from typing import Callable, Mapping

from bench.board import Region

from . import ch32v003, py32f003
from .registers import Bus, MachineContext, RegisterFile, RomRegion, UnmodelledAccess

__all__ = ["Bus", "MachineContext", "RegisterFile", "UnmodelledAccess", "build_peripherals"]

#: chip -> board ``[peripherals]`` name -> model
MODELS: dict[str, dict[str, Callable[[MachineContext, int], RegisterFile]]] = {
    "ch32v003": ch32v003.MODELS,
    "py32f003": py32f003.MODELS,
}


def build_peripherals(chip: str, ctx: MachineContext, bases: Mapping[str, int],
                      regions: tuple[Region, ...] = ()) -> list[RegisterFile]:
    """The models of ``chip`` that the board names in ``bases`` (name -> base), and its ROM regions."""
    try:
        models = MODELS[chip]
    except KeyError:
        raise ValueError(f"the emulator models no peripherals of chip {chip!r} (known: {', '.join(MODELS)})") from None
    out: list[RegisterFile] = []
    for name, base in bases.items():
        if name not in models:
            raise ValueError(f"the board lists peripheral {name!r}, which the {chip} emulator does not model "
                             f"(modelled: {', '.join(models)})")
        out.append(models[name](ctx, base))
    out += [RomRegion(ctx, r.origin, r.size, r.name) for r in regions]
    return out
