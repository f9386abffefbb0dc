"""The facts about a board that a model's budget depends on, read from the board files as data.

Why here and not in the bench: `Config.for_board` must give the bytes a model may use beside the bench
firmware, and potnn must not depend on the bench. The board files (`boards/*.toml`) stay the one home
of chip facts; potnn reads the few it needs (memory sizes, compiler flags, and the firmware's measured
overhead in `[firmware]`) from them. `potnn/board_files` links to the repository's `boards/` folder and
is shipped as package data, so an installed potnn reads the same files.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BOARDS_DIR = Path(__file__).with_name("board_files")
TOOLCHAINS = ("gnu", "zig")


@dataclass(frozen=True)
class FirmwareCost:
    """What the bench firmware built with one toolchain takes besides the model, in bytes.

    flash: code and constants that are not the model's (`potnn_*` symbols are the model's).
    ram: .data + .bss that are not the model's, less its logits buffer (sized by the model, so export
        counts it with the model; the image is received into the model's arena).
    stack: the firmware's deepest stack with the model's own frames counted as zero (so at least the
        depth at which it calls potnn_predict, plus any library routine the model calls).
    """

    flash: int
    ram: int
    stack: int


@dataclass(frozen=True)
class BoardFacts:
    """One board as a model's budget sees it."""

    name: str
    arch: str
    flash_size: int
    ram_size: int
    gnu_compilers: tuple[str, ...]
    cflags: dict[str, tuple[str, ...]]  # toolchain kind -> target flags (zig's start with -target)
    firmware: dict[str, FirmwareCost]  # toolchain kind -> the bench firmware's measured cost
    kernels_in_ram: bool = False  # the bench runs the packed kernels from SRAM when they fit ([memory])

    @property
    def worst_firmware(self) -> FirmwareCost:
        """The largest cost over the toolchains, each figure on its own: what a budget must leave free."""
        costs = self.firmware.values()
        return FirmwareCost(max(c.flash for c in costs), max(c.ram for c in costs), max(c.stack for c in costs))


def board_names() -> list[str]:
    """Every board that has a file."""
    return sorted(p.stem for p in BOARDS_DIR.glob("*.toml"))


def read_board_file(path: Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A board file's tables with its ``extends`` chain merged in (the bench reads boards through this too).

    A file may ``extends = "<other board>"`` (a file beside it) and set only what differs; tables merge key
    by key, any other value (arrays included) replaces the parent's. Faults are one-line ValueErrors.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path.name}: not valid TOML ({e})") from None
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ValueError(f"{path.name}: 'extends' must be a board name")
    if parent in seen or parent == path.stem:
        raise ValueError(f"{path.name}: 'extends' loops through {parent!r}")
    parent_path = path.with_name(f"{parent}.toml")
    if not parent_path.exists():
        raise ValueError(f"{path.name}: extends unknown board {parent!r}")
    return _merge(read_board_file(parent_path, seen + (path.stem,)), data)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _raw(name: str) -> dict[str, Any]:
    path = BOARDS_DIR / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"unknown board {name!r}; known boards: {', '.join(board_names())}")
    return read_board_file(path)


def load_board_facts(name: str) -> BoardFacts:
    """The facts of board `name`; a one-line ValueError names what is missing or unknown."""
    data = _raw(name)
    firmware = data.get("firmware", {})
    if not firmware:
        raise ValueError(f"boards/{name}.toml has no [firmware] overhead; measure it with "
                         "tests/test_budgets.py and record it (boards/README.md)")
    try:
        costs = {kind: FirmwareCost(int(firmware[kind]["flash"]), int(firmware[kind]["ram"]),
                                    int(firmware[kind]["stack"])) for kind in TOOLCHAINS if kind in firmware}
        memory = data["memory"]
        toolchain = data["toolchain"]
        flags = {"gnu": tuple(toolchain["gnu"].get("cflags", ())),
                 "zig": ("-target", toolchain["zig"]["target"], *toolchain["zig"].get("cflags", ()))}
        return BoardFacts(name, data["board"]["arch"], int(memory["flash_size"]), int(memory["ram_size"]),
                          tuple(toolchain["gnu"]["compilers"]), flags, costs, _flag(name, memory, "kernels_in_ram"))
    except (KeyError, TypeError) as e:
        raise ValueError(f"boards/{name}.toml lacks {e} (schema: boards/README.md)") from None


def _flag(name: str, table: dict[str, Any], key: str) -> bool:
    """A true/false key of a board file's table, false when absent."""
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"boards/{name}.toml: {key} must be true or false, not {value!r}")
    return value
