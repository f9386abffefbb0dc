"""What an export refuses, and the fit ladder tried before refusing.

The C accumulates in int32 only, so every accumulator's worst case must fit. A model must fit
Config.ram and Config.flash: before refusing, the generator tries slower but smaller forms, fastest
first, and exports the first that fits. A refusal names every budget exceeded at once.

What the budgets hold depends on the Config. A plain Config(flash=, ram=) budgets the model alone: its
activation arena and logits, and its flash as the largest any toolchain the bench supports (GCC, zig)
makes of it for either core (RV32EC, Cortex-M0+). That figure is `flash_bound` while the bound fits the
budget (no compile needed: the model fits whatever compiles it), and otherwise measured by compiling
the header for a board of each core with every toolchain present, so that a model near its budget gets
the exact verdict. A Config.for_board budget is the board
less the bench firmware's measured flash, RAM and stack (boards/*.toml `[firmware]`), so the model's
RAM need adds what the firmware allocates for it (the logits; the input lives in the model's arena) and potnn_predict's
stack, and its flash is the size the board's compilers give it (potnn.codegen.compiled), the largest.
The bench's build measures the linked firmware's stack the same way, from the same compilers' reports,
so a model export accepts is one the build accepts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..program import INT32_MAX, IntProgram
from .emitter import Emitter, FitChoice
from .row_conv import RowPackedConv
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
    summed from index tables, then the same again with the pool windows of unrolled convs looped; each
    first with the row kernel's larger stack copies, then (when that stack is over the RAM budget) without."""
    gatherable = any(op.kind == "linear" and op.encoding == "unroll" for op in program.ops)
    copies = [RowPackedConv.scratch_bytes(op) for op in program.ops]
    stacks = (target.row_stack_limit, target.packed_patch_limit) \
        if any(target.packed_patch_limit < n <= target.row_stack_limit for n in copies) else (target.row_stack_limit,)
    for window_taps in (target.unrolled_window_taps, 0):
        for gather_min in (0,) + (target.gather_groups if gatherable else ()):
            for row_stack in stacks:
                yield FitChoice(window_taps, gather_min, row_stack)


ALONE = ("Config(flash=, ram=) budgets the model alone (its flash as the largest that GCC or zig makes of it for "
         "RV32EC or Cortex-M0+); use Config.for_board(...) to budget it with the bench firmware and the stack")
RAM_ADVICE = "use fewer channels or pool earlier"
FLASH_ADVICE = ("use a packed encoding (fp130, 5level, 2bit, ternary; indexed for a pruned layer) for the large layers, "
                "or fewer channels")


def firmware_buffers(program: IntProgram) -> int:
    """The bench firmware's RAM that the model sizes: its int32 logits. (It receives the input straight into
    the model's arena, at potnn_input_buffer(), so the input is counted in the arena.)"""
    return 4 * program.num_classes


@dataclass(frozen=True)
class RamNeed:
    """The RAM a model needs, in parts: its own buffers always (the arena holds the input); the firmware's
    buffer that the model sizes (its logits) and potnn_predict's stack only for a Config.for_board budget."""

    arena: int  # input, activations and the logits of a caller without an array (potnn.memory)
    firmware_buffers: int = 0
    stack: int = 0
    stack_toolchain: str = ""

    @property
    def total(self) -> int:
        return self.arena + self.firmware_buffers + self.stack

    def describe(self) -> str:
        parts = f"arena {self.arena} (input, activations, logits)"
        if self.firmware_buffers:
            parts += f" + the firmware's logit buffer {self.firmware_buffers}"
        if self.stack:
            parts += f" + potnn_predict's stack {self.stack} ({self.stack_toolchain})"
        return f"{self.total} bytes of RAM ({parts})"


#: Bytes of code any supported toolchain makes of a header, for either core, per byte of the estimate
#: (which is fitted to GCC on RV32EC): at most CODE_BOUND x the estimated code + CODE_BOUND_BYTES. Clang
#: (zig) on RV32EC is the far side: up to 1.79x on large unrolled layers, where it keeps more partial
#: sums live and spills them. tests/test_flash_bound.py holds it over random architectures and the zoo.
CODE_BOUND = 1.9
CODE_BOUND_BYTES = 64


@dataclass(frozen=True)
class FlashNeed:
    """The model's flash: the size a compiler made of it, the largest (`compiled_with` names it), or
    the bound that every toolchain stays within (`bound`), or the estimate."""

    total: int
    weights: int
    compiled_with: str = ""  # the toolchain (and board) whose measured size this is; "" when not compiled
    bound: bool = False

    def describe(self) -> str:
        if self.compiled_with:
            return (f"{self.total} bytes of flash (weights {self.weights} + code {self.total - self.weights}, "
                    f"as {self.compiled_with} compiles it)")
        if self.bound:
            return (f"up to {self.total} bytes of flash (weights {self.weights} + code at most "
                    f"{self.total - self.weights}: the bound for every toolchain, with no compiler here to measure "
                    "it exactly)")
        return f"about {self.total} bytes of flash (weights {self.weights} + code ~{self.total - self.weights})"


def estimated_flash(em: Emitter) -> FlashNeed:
    return FlashNeed(em.flash_bytes(), em.weight_bytes)


def flash_bound(estimate: int, weights: int) -> FlashNeed:
    """The most flash any supported toolchain makes, for either core, of a header whose flash estimate and
    weight tables are these (its POTNN_FLASH_ESTIMATE and POTNN_WEIGHT_BYTES; see CODE_BOUND)."""
    return FlashNeed(weights + math.ceil(CODE_BOUND * (estimate - weights)) + CODE_BOUND_BYTES, weights, bound=True)


def over_budget(config: Config, ram: RamNeed, flash: FlashNeed) -> list[str]:
    """Each budget the model exceeds, as a phrase with its numbers (empty: it fits)."""
    over = []
    if ram.total > config.ram:
        over.append(f"{ram.describe()} but Config.ram is {config.ram}")
    if flash.total > config.flash:
        over.append(f"{flash.describe()} but Config.flash is {config.flash}")
    return over


def check_budgets(config: Config, ram: RamNeed, flash: FlashNeed) -> None:
    """Refuse a model over Config.ram or Config.flash, naming every budget it exceeds, and what to change."""
    over = over_budget(config, ram, flash)
    if not over:
        return
    advice = [RAM_ADVICE if "RAM" in o else FLASH_ADVICE for o in over]
    if config.board is None:
        scope = f"or raise the budget. {ALONE}"
    else:
        scope = (f"or pick a board with more memory. Config.for_board({config.board!r}) leaves the model what "
                 "the board has beside the bench firmware's own flash, RAM and stack")
    raise ExportError(f"model needs {' and '.join(over)}: {'; '.join(advice)}, {scope}")
