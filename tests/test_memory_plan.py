"""potnn.memory: one arena holds the input, the activations and (for a caller without an array) the logits."""

from __future__ import annotations

import pytest

from potnn import zoo
from potnn.codegen.header import RECEIVE_ROOM
from potnn.lower import lower
from potnn.memory import ALIGN, plan_memory
from potnn.program import IntProgram


def _bytes(program: IntProgram, name: str) -> int:
    return program.tensors[name].size * program.tensors[name].itemsize


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.mark.parametrize("name", ["mnist16-accurate", "basicmotions-small"])
def test_the_input_lives_in_the_arena_and_its_bytes_are_reused(name: str) -> None:
    program = lower(zoo.load(name))
    size, classes = _bytes(program, program.input), 4 * program.num_classes
    plan = plan_memory(program, {program.output}, None, size + RECEIVE_ROOM, classes)
    first_ops = [op for op in program.ops if program.input in op.inputs]
    at = plan.offsets[program.input]
    held = (at, at + size)
    for op in first_ops:   # the layer that reads the input never writes over it
        assert not _overlap(held, (plan.offsets[op.output], plan.offsets[op.output] + _bytes(program, op.output)))
    later = [op.output for op in program.ops if op not in first_ops and op.output in plan.offsets]
    assert any(_overlap(held, (plan.offsets[t], plan.offsets[t] + _bytes(program, t))) for t in later), \
        "no later tensor reuses the input's bytes"
    assert plan.input_buffer_bytes(program) >= size + RECEIVE_ROOM
    # the logits of a caller without an array: aligned, inside the arena, beside the last operation's inputs
    last = program.ops[-1]
    logits = (plan.logits_offset, plan.logits_offset + classes)
    assert plan.logits_offset % ALIGN == 0 and logits[1] <= plan.arena_bytes
    for t in last.inputs:
        assert not _overlap(logits, (plan.offsets[t], plan.offsets[t] + _bytes(program, t)))


def test_the_input_and_logits_cost_less_than_buffers_of_their_own() -> None:
    """What the one arena saves: the firmware's image buffer and the model's logits array, less what the
    arena grows (nothing for mnist16-accurate, whose input fits beside conv1's output)."""
    program = lower(zoo.load("mnist16-accurate"))
    size, classes = _bytes(program, program.input), 4 * program.num_classes
    apart = plan_memory(program, {program.output, program.input})   # the input left out, as a caller's buffer
    one = plan_memory(program, {program.output}, None, size + RECEIVE_ROOM, classes)
    assert one.arena_bytes == apart.arena_bytes == 1152
    assert apart.arena_bytes + size + classes - one.arena_bytes == 296


def test_the_logits_room_does_not_overlap_a_non_int32_output() -> None:
    """A model whose output the generator keeps in the arena copies it into the logits after the last
    operation: the two places must differ."""
    program = lower(zoo.load("basicmotions-small"))
    plan = plan_memory(program, set(), None, _bytes(program, program.input) + RECEIVE_ROOM,
                       4 * program.num_classes)
    out = (plan.offsets[program.output], plan.offsets[program.output] + _bytes(program, program.output))
    assert not _overlap(out, (plan.logits_offset, plan.logits_offset + 4 * program.num_classes))
