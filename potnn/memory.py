"""Static activation memory: one arena, tensors placed by liveness so that dead buffers are reused.

An MCU with 2 KB of SRAM cannot afford a buffer per layer. Each tensor lives from the operation
that writes it to the last one that reads it; tensors whose lives overlap get disjoint byte
ranges, the others may share. Placement is greedy first-fit, largest tensor first (the usual
heuristic for this offline problem, near optimal for chains). An operation's output never
shares bytes with its inputs, so every kernel can read and write without caring about order.
Reshapes are views: they share their input's placement.

An operation may also ask for scratch: bytes it needs only while it runs (a conv's copy of a receptive
field). Scratch gets arena bytes only where they are free anyway, beside everything live during that
operation, so it never grows the arena; an operation whose scratch finds no room keeps it on its stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .program import IntProgram

ALIGN = 4


@dataclass
class MemoryPlan:
    """Byte offset of each arena tensor (by name, views included), the arena's size, and the offset of the
    scratch each operation got in the arena (by its output's name; absent: none asked for, or no room)."""

    offsets: dict[str, int]
    arena_bytes: int
    scratch: dict[str, int] = field(default_factory=dict)


def view_root(program: IntProgram, name: str) -> str:
    """The tensor whose bytes `name` is a view of (itself unless it is a reshape)."""
    by_output = {op.output: op for op in program.ops}
    while name in by_output and by_output[name].kind == "reshape":
        name = by_output[name].inputs[0]
    return name


def _first_fit(size: int, busy: list[tuple[int, int]]) -> int:
    """The lowest aligned offset where `size` bytes overlap none of the `busy` ranges."""
    offset = 0
    for start, end in sorted(busy):
        if offset + size <= start:
            break
        offset = max(offset, (end + ALIGN - 1) // ALIGN * ALIGN)
    return offset


def plan_memory(program: IntProgram, external: set[str], scratch: dict[str, int] | None = None) -> MemoryPlan:
    """Place every tensor except those in `external` (the caller's input, the int32 logits), then the
    `scratch` bytes each operation (by its output's name) asks for, where they fit inside the arena."""
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
        offsets[r] = _first_fit(sizes[r], [(offsets[o], offsets[o] + sizes[o]) for o, _ in placed
                                           if not (last[o] < first[r] or last[r] < first[o])])
        placed.append((r, offsets[r]))
    arena = max((offsets[r] + sizes[r] for r in roots), default=0)
    arena = (arena + ALIGN - 1) // ALIGN * ALIGN
    granted: dict[str, int] = {}
    for i, op in enumerate(program.ops):
        need = (scratch or {}).get(op.output, 0)
        if need:
            offset = _first_fit(need, [(offsets[o], offsets[o] + sizes[o]) for o in offsets
                                       if first[o] <= i <= last[o]])
            if offset + need <= arena:
                granted[op.output] = offset
    for name in program.tensors:
        root = view_root(program, name)
        if root in offsets:
            offsets[name] = offsets[root]
    return MemoryPlan(offsets, arena, granted)
