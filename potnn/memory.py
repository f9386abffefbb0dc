"""Static activation memory: one arena, tensors placed by liveness so that dead buffers are reused.

An MCU with 2 KB of SRAM cannot afford a buffer per layer. Each tensor lives from the operation
that writes it to the last one that reads it; tensors whose lives overlap get disjoint byte
ranges, the others may share. Placement is greedy first-fit, largest tensor first (the usual
heuristic for this offline problem, near optimal for chains). An operation's output never
shares bytes with its inputs, so every kernel can read and write without caring about order.
Reshapes are views: they share their input's placement.
"""

from __future__ import annotations

from dataclasses import dataclass

from .program import IntProgram

ALIGN = 4


@dataclass
class MemoryPlan:
    """Byte offset of each arena tensor (by name, views included) and the arena's size."""

    offsets: dict[str, int]
    arena_bytes: int


def view_root(program: IntProgram, name: str) -> str:
    """The tensor whose bytes `name` is a view of (itself unless it is a reshape)."""
    by_output = {op.output: op for op in program.ops}
    while name in by_output and by_output[name].kind == "reshape":
        name = by_output[name].inputs[0]
    return name


def plan_memory(program: IntProgram, external: set[str]) -> MemoryPlan:
    """Place every tensor except those in `external` (the caller's input, the int32 logits)."""
    external_roots = {view_root(program, t) for t in external}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, op in enumerate(program.ops):
        out = view_root(program, op.output)
        first.setdefault(out, i)
        last[out] = max(last.get(out, i), i)
        for name in op.inputs:
            r = view_root(program, name)
            last[r] = max(last.get(r, i), i)
    final = view_root(program, program.output)
    last[final] = len(program.ops)  # read by the argmax after the last operation
    roots = [r for r in first if r not in external_roots and r != program.input]
    sizes = {r: program.tensors[r].size * program.tensors[r].itemsize for r in roots}
    placed: list[tuple[str, int]] = []
    offsets: dict[str, int] = {}
    for r in sorted(roots, key=lambda t: (-sizes[t], first[t])):
        # Conflicts: overlapping lifetimes. Touching ends conflict too (an op's inputs end where its output starts).
        busy = sorted((offsets[o], offsets[o] + sizes[o]) for o, _ in placed
                      if not (last[o] < first[r] or last[r] < first[o]))
        offset = 0
        for start, end in busy:
            if offset + sizes[r] <= start:
                break
            offset = max(offset, (end + ALIGN - 1) // ALIGN * ALIGN)
        offsets[r] = offset
        placed.append((r, offset))
    arena = max((offsets[r] + sizes[r] for r in roots), default=0)
    arena = (arena + ALIGN - 1) // ALIGN * ALIGN
    for name in program.tensors:
        root = view_root(program, name)
        if root in offsets:
            offsets[name] = offsets[root]
    return MemoryPlan(offsets, arena)
