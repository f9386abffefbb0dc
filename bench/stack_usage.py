"""The stack the firmware needs, measured: the compiler's frame of each function and the linked call graph.

Why measured, not assumed: a fixed stack reserve was both too small for models with large patch
buffers (they overflowed the stack on the emulator, silently wrong on a chip) and too big for small
ones. Each translation unit is compiled once more with stack-usage output (GCC `-fstack-usage`,
Clang/zig `-Xclang -stack-usage-file`, one file per unit), the linked ELF gives who calls whom
(bench.disasm.call_graph, direct calls and tail calls), and the deepest path is the stack.

What this relies on: the bench firmware has no recursion, no interrupts and no calls through
pointers (a loop in the graph is refused); functions without a frame figure (the assembly entry,
compiler runtime helpers) use no stack of their own and are listed in the report.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Sequence

from bench.disasm import call_graph

MODEL_PREFIX = "potnn_"      # the header contract reserves these symbols for the model
PREDICT = "potnn_predict"


class StackUsageError(Exception):
    """The stack could not be measured; the message is one line."""


@dataclass(frozen=True)
class StackReport:
    """total: the deepest stack from any function (the entry's path included).
    model: potnn_predict's own stack (its frame and what it calls).
    firmware: the deepest stack with the model's frames counted as zero (what boards/*.toml `[firmware]`
        records, so that a model's budget is the board less this plus the model's own stack).
    path: the functions on the deepest path, outermost first.
    unsized: functions reached that have no frame figure (counted as zero)."""

    total: int
    model: int
    firmware: int
    path: tuple[str, ...]
    unsized: tuple[str, ...]


def usage_flags(kind: str, su: Path) -> list[str]:
    """Compiler flags that write the stack-usage file of one translation unit to ``su``."""
    return ["-fstack-usage"] if kind == "gnu" else ["-Xclang", "-stack-usage-file", "-Xclang", str(su)]


def compile_frames(cc: Sequence[str], kind: str, sources: Sequence[str | Path], work: Path) -> dict[str, int]:
    """Frame bytes per function of ``sources`` compiled with ``cc`` (the build's compile line).

    The objects and stack-usage files go to a fresh temporary folder under ``work``: its path is
    part of the command, so zig cannot answer an unchanged compile from its cache (it then
    writes no stack-usage file), and no file of an earlier build is read by mistake.
    """
    frames: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="stack-", dir=work) as tmp:
        for src in map(Path, sources):
            obj = Path(tmp) / f"su-{src.parent.name}-{src.stem}.o"
            su = obj.with_suffix(".su")
            proc = subprocess.run([*cc, *usage_flags(kind, su), "-c", str(src), "-o", str(obj)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not su.exists():
                last = (proc.stderr.strip().splitlines() or ["no stack-usage file written"])[-1]
                raise StackUsageError(f"measuring the stack of {src.name} failed: {last}")
            for name, size in parse_su(su.read_text()).items():
                frames[name] = max(frames.get(name, 0), size)
    return frames


def parse_su(text: str) -> dict[str, int]:
    """``name -> bytes`` of a stack-usage file; lines read ``file:line[:col]:name<TAB>bytes<TAB>qualifier``."""
    frames: dict[str, int] = {}
    for line in text.splitlines():
        where, size, qualifier = line.split("\t")
        name = where.rsplit(":", 1)[-1]
        if "dynamic" in qualifier and "bounded" not in qualifier:
            raise StackUsageError(f"{name} has an unbounded stack frame (a variable-length array or alloca)")
        frames[name] = max(frames.get(name, 0), int(size))
    return frames


def _frame_name(elf_name: str) -> str:
    """An ELF symbol's name as the stack-usage file writes it: GCC's clone ``f.constprop.0`` is ``f.constprop``."""
    head, _, tail = elf_name.rpartition(".")
    return head if head and tail.isdigit() else elf_name


def stack_report(elf: str | Path, frames: dict[str, int]) -> StackReport:
    """The deepest stack of the linked ``elf`` whose functions have the frame sizes ``frames``."""
    graph = call_graph(elf)
    unsized = sorted(name for name in graph if _frame_name(name) not in frames)

    def deepest(count_model: bool) -> dict[str, tuple[int, tuple[str, ...]]]:
        @cache
        def depth(name: str, active: frozenset[str] = frozenset()) -> tuple[int, tuple[str, ...]]:
            if name in active:
                raise StackUsageError(f"{name} calls itself through {', '.join(sorted(active))}: the stack "
                                      "of a recursive firmware cannot be bounded")
            own = frames.get(_frame_name(name), 0)
            if not count_model and name.startswith(MODEL_PREFIX):
                own = 0
            below = [depth(c, active | {name}) for c in graph[name] if c != name]
            size, path = max(below, default=(0, ()))
            return own + size, (name, *path)
        return {name: depth(name) for name in graph}

    full, firmware = deepest(True), deepest(False)
    total, path = max(full.values())
    return StackReport(total=total, model=full[PREDICT][0] if PREDICT in full else 0,
                       firmware=max(firmware.values())[0], path=path, unsized=tuple(unsized))
