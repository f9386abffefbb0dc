"""Find the C compiler that builds a board's firmware, and say which one it was.

Order: a GNU cross compiler on PATH (the names the board file lists, e.g.
``riscv-none-elf-gcc`` then ``riscv64-unknown-elf-gcc``, or ``arm-none-eabi-gcc``), else the
``ziglang`` wheel (``python -m ziglang cc``), which cross-compiles for both chips with no
system packages.  The chosen compiler and its version go into ``build.json`` so a cycle count
can always be traced to the code generator that produced it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from bench.board import Board

KINDS = ("gnu", "zig")

_INSTALL_HINT = {
    "rv32ec": "apt install gcc-riscv64-unknown-elf (or an xPack riscv-none-elf-gcc)",
    "armv6-m": "apt install gcc-arm-none-eabi libnewlib-arm-none-eabi",
}


class ToolchainError(Exception):
    """No usable compiler, or the requested one is missing; the message says how to get one."""


@dataclass(frozen=True)
class Toolchain:
    kind: str                         # "gnu", "zig" or "host"
    cc: tuple[str, ...]               # argv prefix that invokes the C compiler driver
    version: str                      # e.g. "riscv64-unknown-elf-gcc 12.2.0", "zig cc 0.13.0"
    cflags: tuple[str, ...] = ()      # target flags from the board file
    ldflags: tuple[str, ...] = ()
    libs: tuple[str, ...] = ()

    def describe(self, opt: str) -> str:
        """One-line name for reports, e.g. ``riscv64-unknown-elf-gcc 12.2.0 -Os``."""
        return f"{self.version} -{opt}"


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def _gnu(board: Board) -> Toolchain | None:
    flags = board.toolchains.get("gnu")
    if flags is None:
        return None
    for name in flags.compilers:
        path = shutil.which(name)
        if path:
            version = _first_line([path, "-dumpversion"]) or "unknown"
            # no C library, no start files: the firmware brings its own (libs adds libgcc)
            return Toolchain("gnu", (path,), f"{name} {version}", flags.cflags,
                             ("-nostdlib", *flags.ldflags), flags.libs)
    return None


def zig_available() -> bool:
    return importlib.util.find_spec("ziglang") is not None


def _zig(board: Board) -> Toolchain | None:
    flags = board.toolchains.get("zig")
    if flags is None or not zig_available():
        return None
    base = (sys.executable, "-m", "ziglang")
    version = _first_line([*base, "version"]) or "unknown"
    # A freestanding zig target links no C library and no start files, only compiler_rt
    # (the __mulsi3-style helpers), and only what is referenced.
    return Toolchain("zig", (*base, "cc"), f"zig cc {version}",
                     ("-target", flags.target or "", *flags.cflags), flags.ldflags, flags.libs)


def find_toolchain(board: Board, kind: str | None = None) -> Toolchain:
    """The compiler for ``board``: ``kind`` "gnu" or "zig", or None for the first available."""
    if kind is not None and kind not in KINDS:
        raise ToolchainError(f"unknown toolchain {kind!r}; choose one of {', '.join(KINDS)}")
    hint = _INSTALL_HINT.get(board.arch, "install a GNU cross compiler for it")
    if kind in (None, "gnu"):
        tc = _gnu(board)
        if tc is not None:
            return tc
        if kind == "gnu":
            names = ", ".join(board.toolchains["gnu"].compilers) if "gnu" in board.toolchains else "none listed"
            raise ToolchainError(f"no GNU compiler for {board.name} on PATH (tried {names}); {hint}")
    tc = _zig(board)
    if tc is not None:
        return tc
    if kind == "zig":
        raise ToolchainError(f"the zig toolchain is not available for {board.name}: pip install ziglang")
    raise ToolchainError(f"no compiler for {board.name} ({board.arch}): {hint}, or pip install ziglang")


def host_toolchain() -> Toolchain:
    """The native C compiler ($CC, else cc or gcc) for the host build of the bench firmware."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            version = _first_line([name, "-dumpversion"]) or "unknown"
            return Toolchain("host", (shutil.which(name) or name,), f"{name} {version}")
    raise ToolchainError("no host C compiler found (set CC, or apt install gcc)")
