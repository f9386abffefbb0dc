"""What an export refuses, and the fit ladder tried before refusing.

The C accumulates in int32 only, so every accumulator's worst case must fit. A model must fit
Config.ram (its activation arena and logits) and Config.flash (its weights and estimated code): before
refusing, the generator tries slower but smaller forms, fastest first, and exports the first that fits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ..config import Config
from ..program import INT32_MAX, IntProgram
from .emitter import Emitter, FitChoice
from .target import Target


class ExportError(ValueError):
    """The model cannot be exported as asked; the message says what and what to do about it."""


def check_accumulators(program: IntProgram) -> None:
    """Worst-case |accumulator| of every operation must fit int32."""
    for op in program.ops:
        if op.kind in ("conv", "linear"):
            assert op.weight is not None and op.bias is not None
            mag = program.tensors[op.inputs[0]].magnitude
            worst = np.abs(op.weight.reshape(op.weight.shape[0], -1)).sum(1) * mag + np.abs(op.bias)
            if op.shift is not None:
                worst = worst << np.maximum(-op.shift, 0)
            bound = int(worst.max())
        elif op.kind == "gap":
            assert op.bias is not None and op.shift is not None
            bound = (program.tensors[op.inputs[0]].magnitude * op.in_shape[1] * op.in_shape[2] + abs(int(op.bias[0])))
            bound <<= max(-int(op.shift[0]), 0)
        elif op.kind == "add":
            assert op.bias is not None and op.shift is not None
            ma, mb = (program.tensors[i].magnitude for i in op.inputs)
            bound = ((ma << op.in_shifts[0]) + (mb << op.in_shifts[1]) + abs(int(op.bias[0])))
            bound <<= max(-int(op.shift[0]), 0)
        else:
            continue
        if bound > INT32_MAX:
            raise ExportError(f"{op.name}: worst-case accumulator {bound} does not fit int32; "
                              "reduce the layer's fan-in or its weight range, or recalibrate")


def fit_ladder(program: IntProgram, target: Target) -> Iterator[FitChoice]:
    """The forms to try, fastest first: ever smaller groups of equal weights of unrolled linear layers
    summed from index tables, then the same again with the pool windows of unrolled convs looped."""
    gatherable = any(op.kind == "linear" and op.encoding == "unroll" for op in program.ops)
    for window_taps in (target.unrolled_window_taps, 0):
        for gather_min in (0,) + (target.gather_groups if gatherable else ()):
            yield FitChoice(window_taps, gather_min)


def fit(program: IntProgram, target: Target, flash: int, emit: Callable[[FitChoice], Emitter]) -> Emitter:
    """The first form on the ladder within `flash` bytes, else the last one tried (for the refusal)."""
    for choice in fit_ladder(program, target):
        em = emit(choice)
        if em.flash_bytes() <= flash:
            break
    return em


def check_budgets(config: Config, arena_bytes: int, num_classes: int, em: Emitter) -> None:
    """Refuse a model over Config.ram or Config.flash, with the numbers and what to change."""
    ram = arena_bytes + 4 * num_classes
    if ram > config.ram:
        raise ExportError(f"model needs {ram} bytes of RAM (activation buffers {arena_bytes} + logits "
                          f"{4 * num_classes}) but Config.ram is {config.ram}: use fewer channels, pool earlier, "
                          "or raise Config.ram")
    flash = em.flash_bytes()
    if flash > config.flash:
        raise ExportError(f"model needs about {flash} bytes of flash (weights {em.weight_bytes} + code "
                          f"~{flash - em.weight_bytes}) but Config.flash is {config.flash}: use a packed encoding "
                          "(fp130, 5level, 2bit, ternary) for the large layers, fewer channels, or raise Config.flash")
