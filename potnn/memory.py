"""Static activation memory: one arena, tensors placed by liveness so that dead buffers are reused.

An MCU with 2 KB of SRAM cannot afford a buffer per layer. Each tensor lives from the operation
that writes it to the last one that reads it; tensors whose lives overlap get disjoint byte
ranges, the others may share. Placement is greedy first-fit, largest tensor first (the usual
heuristic for this offline problem, near optimal for chains). An operation's output never
shares bytes with its inputs, so every kernel can read and write without caring about order.
Reshapes are views: they share their input's placement.

The logits are the caller's array; for a caller that passes none, the arena keeps room for them
beside the last operation's inputs (no separate static array: 40 bytes that a firmware always passing
its own array would never use).

The input is an arena tensor too: the caller writes it into the arena (potnn_input_buffer in the
header) and the first layer's output may not overlap it, but the next layers may reuse its bytes. So a
firmware needs no input buffer of its own, which on a 2 KB part is often the largest thing it has after
the arena (a 6×100 sensor window is 600 bytes). The arena holds at least `input_room` bytes from the
input's offset on: a receiver may put a frame's trailer behind the input while no inference runs.

An operation may also ask for scratch: bytes it needs only while it runs (a conv's copy of a receptive
field). Scratch gets arena bytes only where they are free anyway, beside everything live during that
operation, so it never grows the arena; an operation whose scratch finds no room keeps it on its stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .program import IntProgram

ALIGN = 4
_LOGITS = "<logits>"


@dataclass
class MemoryPlan:
    """Byte offset of each arena tensor (by name, views included), the arena's size, and the offset of the
    scratch each operation got in the arena (by its output's name; absent: none asked for, or no room)."""

    offsets: dict[str, int]
    arena_bytes: int
    scratch: dict[str, int] = field(default_factory=dict)
    logits_offset: int = 0  # where the logits go when the caller passes no array of its own

    def input_buffer_bytes(self, program: IntProgram) -> int:
        """The bytes from the input's offset to the end of the arena: what potnn_input_buffer() offers."""
        return self.arena_bytes - self.offsets[program.input]


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


def plan_memory(program: IntProgram, external: set[str], scratch: dict[str, int] | None = None,
                input_room: int = 0, logits_bytes: int = 0) -> MemoryPlan:
    """Place every tensor except those in `external` (the int32 logits: the caller's), `logits_bytes` for
    the logits of a caller that passes no array (live from the last operation on), then the `scratch`
    bytes each operation (by its output's name) asks for, where they fit inside the arena; the arena ends
    at least `input_room` bytes after the input's offset."""
    external_roots = {view_root(program, t) for t in external}
    first: dict[str, int] = {program.input: -1}  # written by the caller before the first operation
    last: dict[str, int] = {program.input: -1}
    for i, op in enumerate(program.ops):
        out = view_root(program, op.output)
        first.setdefault(out, i)
        last[out] = max(last.get(out, i), i)
        for name in op.inputs:
            r = view_root(program, name)
            last[r] = max(last.get(r, i), i)
    final = view_root(program, program.output)
    last[final] = len(program.ops)  # read by the argmax after the last operation
    roots = [r for r in first if r not in external_roots]
    sizes = {r: program.tensors[r].size * program.tensors[r].itemsize for r in roots}
    if logits_bytes:  # a name no tensor has (tensor names are the model's module paths)
        roots.append(_LOGITS)
        sizes[_LOGITS], first[_LOGITS], last[_LOGITS] = logits_bytes, len(program.ops) - 1, len(program.ops)
    placed: list[tuple[str, int]] = []
    offsets: dict[str, int] = {}
    for r in sorted(roots, key=lambda t: (-sizes[t], first[t])):
        # Conflicts: overlapping lifetimes. Touching ends conflict too (an op's inputs end where its output starts).
        offsets[r] = _first_fit(sizes[r], [(offsets[o], offsets[o] + sizes[o]) for o, _ in placed
                                           if not (last[o] < first[r] or last[r] < first[o])])
        placed.append((r, offsets[r]))
    room = [offsets[program.input] + input_room] if program.input in offsets else []
    arena = max([offsets[r] + sizes[r] for r in roots] + room, default=0)
    arena = (arena + ALIGN - 1) // ALIGN * ALIGN
    granted: dict[str, int] = {}
    for i, op in enumerate(program.ops):
        need = (scratch or {}).get(op.output, 0)
        if need:
            offset = _first_fit(need, [(offsets[o], offsets[o] + sizes[o]) for o in offsets
                                       if first[o] <= i <= last[o]])
            if offset + need <= arena:
                granted[op.output] = offset
    logits_offset = offsets.pop(_LOGITS, 0)
    for name in program.tensors:
        root = view_root(program, name)
        if root in offsets:
            offsets[name] = offsets[root]
    return MemoryPlan(offsets, arena, granted, logits_offset)
