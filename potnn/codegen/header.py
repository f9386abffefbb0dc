"""The header as a whole: the layer functions in program order, the arena they share, potnn_predict,
and the macros the bench and the firmware read (the header contract)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config
from ..contract import EXPORT_VERSION
from ..encoding import get_encoding
from ..program import IntOp, IntProgram
from ..memory import MemoryPlan, plan_memory
from ..boards import load_board_facts
from .budget import (FlashNeed, RamNeed, check_accumulators, check_budgets, estimated_flash,
                     firmware_buffers, fit_ladder, flash_bound)
from .emitter import Emitter, FitChoice
from .kernels import dot_kernel, gather_kernel, prelude, row_kernel
from .layer_symbols import INPUT_BUFFER, PREDICT, layer_function
from .registry import emit_op, scratch_requests
from .compiled import Compiled, NoCompiler, core_boards, measure
from .target import RV32EC_GCC, Target

_HOPELESS = 2  # an estimated flash this many times the budget is refused without compiling
#: Bytes the arena keeps behind the input, so that a receiver can take a whole frame into
#: potnn_input_buffer(): the bench firmware's LOAD payload ends with a 2-byte offset.
RECEIVE_ROOM = 2


@dataclass
class ExportReport:
    """What an export produced: the files written and the sizes the budgets were checked against."""

    path: Path
    ram_bytes: int  # the model's static RAM: its arena (input, activations, the logits of a caller without an array)
    weight_bytes: int
    flash_estimate: int
    bundle: Path | None = None  # the model.potnn written beside the header (None: nothing written yet)
    stack_bytes: int | None = None  # potnn_predict's stack, largest over the toolchains (Config.for_board only)
    compiled: dict[str, Compiled] | None = None  # stack and flash per toolchain present (Config.for_board only)
    flash_bytes: int = 0  # the flash checked against Config.flash: measured, or the bound (potnn.codegen.budget)
    flash_measured_with: str = ""  # the toolchain (plain Config: and board) that made the largest; "": the bound
    kernels: tuple[tuple[str, int], ...] = ()  # the kernels the header defines, most multiply-accumulates first

    @property
    def arena_bytes(self) -> int:
        """The arena is all of the model's static RAM: the same as `ram_bytes`."""
        return self.ram_bytes


class _Program:
    """Names of a program's tensors in C, and its operations as lines of the header."""

    def __init__(self, program: IntProgram) -> None:
        self.p = program
        self.logits_external = program.tensors[program.output].ctype == "int32_t"
        # int32 logits are written straight into the caller's array: the arena holds no room for them
        self.plan: MemoryPlan = plan_memory(program, {program.output} if self.logits_external else set(),
                                            scratch_requests(program),
                                            input_room=program.tensors[program.input].size + RECEIVE_ROOM,
                                            logits_bytes=4 * program.num_classes)

    @property
    def input_offset(self) -> int:
        return self.plan.offsets[self.p.input]

    def ref(self, name: str) -> str:
        """The C expression of a tensor: the caller's logits, or a place in the arena (the input included)."""
        if name == self.p.output and self.logits_external:
            return "out"
        return f"(({self.p.tensors[name].ctype} *)(potnn_arena.bytes + {self.plan.offsets[name]}))"

    def functions(self) -> list[tuple[IntOp, str]]:
        """Each operation that is code (reshapes are views) and the name of its C function (``layer_symbols``)."""
        return [(op, layer_function(i, op.name)) for i, op in enumerate(self.p.ops) if op.kind != "reshape"]

    def call(self, op: IntOp, fn: str) -> str:
        args = [self.ref(n) for n in op.inputs] + [self.ref(op.output)]
        if op.output in self.plan.scratch:
            args.append(f"potnn_arena.bytes + {self.plan.scratch[op.output]}")
        return f"    {fn}({', '.join(args)});"

    def describe(self, op: IntOp) -> str:
        """One line of the header's comment: the operation, its weights, and where its output lives."""
        out = self.p.tensors[op.output]
        where = "logits" if op.output == self.p.output and self.logits_external else \
            f"arena+{self.plan.offsets.get(op.output, 0)}"
        detail = ""
        if op.kind in ("conv", "linear"):
            assert op.weight is not None
            detail = f" {op.encoding}, {int(np.count_nonzero(op.weight))}/{op.weight.size} nonzero weights"
            if op.kind == "conv":
                detail = f" {op.kernel[0]}x{op.kernel[1]}/s{op.stride[0]}" \
                    f"{'' if op.groups == 1 else f' groups {op.groups}'}" + detail
        return f" *   {op.name:<16} {op.kind}{detail} -> {'x'.join(map(str, out.shape))} {out.ctype} @ {where}"

    def emit(self, target: Target, choice: FitChoice) -> Emitter:
        em = Emitter(self.p, target, choice, scratch=self.plan.scratch)
        for op, fn in self.functions():
            emit_op(em, op, fn)
            em.cost["call"] += 1
        em.cost["predict"] += 1
        return em


def _kernels(em: Emitter) -> list[str]:
    """The kernels the layers call, each once."""
    levels = get_encoding("unroll").max_shift + 1
    lines: list[str] = []
    for encoding, signed in sorted(em.dot_kernels):
        lines += dot_kernel(encoding, signed)
    for encoding, signed in sorted(em.row_kernels):
        lines += row_kernel(encoding, signed)
    for signed, index_ctype in sorted(em.gather_kernels):
        lines += gather_kernel(signed, index_ctype, levels)
    return lines


def render(program: IntProgram, config: Config, target: Target = RV32EC_GCC,
           compile_plain: bool = True) -> tuple[str, ExportReport]:
    """The header text for an IntProgram, after checking its accumulators and its RAM/flash budgets.

    The fit ladder's forms are tried fastest first; the first whose flash and RAM fit is exported: flash by
    the size the compilers give it (for a plain Config, by the bound while that fits; potnn.codegen.budget)
    — a form the estimate lets through may still be too big as compiled, and a smaller form may then fit —
    and RAM with the stack they measure (Config.for_board), which a form with smaller copies may lower.
    `compile_plain=False` checks a plain Config's flash by the estimate alone (the dry run before training,
    whose dense weights are not the ones export will compile).
    """
    check_accumulators(program)
    prog = _Program(program)
    plan = prog.plan
    text, em, ram_need, flash_need, compiled = _fit(prog, config, target, compile_plain)
    check_budgets(config, ram_need, flash_need)
    return text, ExportReport(Path(), plan.arena_bytes, em.weight_bytes, em.flash_bytes(),
                              stack_bytes=ram_need.stack if compiled else None, compiled=compiled,
                              flash_bytes=flash_need.total, flash_measured_with=flash_need.compiled_with,
                              kernels=tuple(em.kernels_by_work()))


def _fit(prog: _Program, config: Config, target: Target, compile_plain: bool
         ) -> tuple[str, Emitter, RamNeed, FlashNeed, dict[str, Compiled] | None]:
    """The first form of the fit ladder whose flash and RAM fit (else the last one tried), its header and
    needs; `render` says why this order."""
    program, arena = prog.p, prog.plan.arena_bytes
    for choice in fit_ladder(program, target):
        em = prog.emit(target, choice)
        if em.flash_bytes() > config.flash:
            continue
        text = _text(prog, em)
        ram_need, flash_need, compiled = _needs(text, program, config, arena, em, compile_plain)
        # RAM only sends the search on to the same form with the row kernel's smaller stack copies
        if flash_need.total <= config.flash and (ram_need.total <= config.ram
                                                 or choice.row_stack <= target.packed_patch_limit):
            break
    else:  # over the flash budget in every form: the refusal gives the last, smallest one
        text = _text(prog, em)
        ram_need, flash_need, compiled = _needs(text, program, config, arena, em, compile_plain)
    return text, em, ram_need, flash_need, compiled


def ram_need(program: IntProgram, config: Config, target: Target = RV32EC_GCC) -> RamNeed:
    """The RAM export would check against Config.ram for `program`, flash aside: with a board budget,
    potnn_predict's stack as the board's compilers build the form export would pick."""
    unlimited_flash = dataclasses.replace(config, flash=1 << 40)
    return _fit(_Program(program), unlimited_flash, target, True)[2]


def checked_flash(program: IntProgram, config: Config, target: Target = RV32EC_GCC) -> int:
    """The flash export would check against Config.flash for `program` in its fastest form (RAM aside):
    measured by the compilers when the bound does not settle it (see `_needs`)."""
    prog = _Program(program)
    em = prog.emit(target, next(fit_ladder(program, target)))
    unlimited_ram = dataclasses.replace(config, ram=1 << 40)
    return _needs(_text(prog, em), program, unlimited_ram, prog.plan.arena_bytes, em, True)[1].total


def _text(prog: _Program, em: Emitter) -> str:
    """The header: the layer functions written by `em`, the arena, potnn_predict and the contract's macros."""
    program, plan = prog.p, prog.plan
    k = program.num_classes
    ram = plan.arena_bytes
    flash = em.flash_bytes()
    c, h, w = program.input_chw
    n, at, room = c * h * w, prog.input_offset, plan.input_buffer_bytes(program)
    copy = [f"    if (input != potnn_arena.bytes + {at})",
            f"        for (int i = 0; i < {n}; i++) potnn_arena.bytes[{at} + i] = input[i];"]
    argmax = ["    int best = 0;", f"    for (int i = 1; i < {k}; i++) if (out[i] > out[best]) best = i;", "    return best;"]
    if not prog.logits_external:
        argmax = [f"    for (int i = 0; i < {k}; i++) out[i] = {prog.ref(program.output)}[i];"] + argmax
    return "\n".join([
        f"/* potnn export v{EXPORT_VERSION}: {str(program.meta.get('model', 'model'))}. Generated by potnn.export; do not edit.",
        " *",
        f" * Input: raw uint8 pixels, C x H x W = {c} x {h} x {w} (normalisation is folded into the first layer).",
        f" * Output: {k} int32 logits; potnn_predict returns the index of the first largest one.",
        f" * RAM: {ram} bytes (one arena: the input, activations, and the logits when the caller passes none); "
        f"weight tables: {em.weight_bytes} bytes.",
        f" * The input lives in the arena: write it at potnn_input_buffer() ({room} bytes there)",
        " * and pass that pointer, so the caller needs no buffer of its own; its bytes are reused once the first",
        " * layer has read them. Any other pointer is copied there first.",
        " * Must equal potnn.simulate bit for bit. Assumes >> on negative int32 is arithmetic (GCC, Clang).",
        " *",
        " * Operations:",
        *(prog.describe(op) for op, _ in prog.functions()),
        " */",
        "#ifndef POTNN_MODEL_H",
        "#define POTNN_MODEL_H",
        "",
        "#include <stdint.h>",
        "",
        f"#define POTNN_EXPORT_VERSION {EXPORT_VERSION}",
        f"#define POTNN_INPUT_C {c}",
        f"#define POTNN_INPUT_H {h}",
        f"#define POTNN_INPUT_W {w}",
        f"#define POTNN_INPUT_SIZE {c * h * w}",
        f"#define POTNN_NUM_CLASSES {k}",
        f"#define POTNN_RAM_BYTES {ram}",
        f"#define POTNN_WEIGHT_BYTES {em.weight_bytes}",
        f"#define POTNN_FLASH_ESTIMATE {flash}",
        f"#define POTNN_INPUT_BUFFER_BYTES {room}",
        "",
        f"int {PREDICT}(const uint8_t *input, int32_t *logits);",
        f"uint8_t *{INPUT_BUFFER}(void);",
        "",
        *prelude(),
        "",
        f"static union {{ uint32_t align; uint8_t bytes[{max(plan.arena_bytes, 4)}]; }} potnn_arena;",
        "",
        *em.tables,
        "",
        *_kernels(em),
        *em.functions,
        f"uint8_t *{INPUT_BUFFER}(void)",
        "{",
        f"    return potnn_arena.bytes + {at};",
        "}",
        "",
        f"int {PREDICT}(const uint8_t *input, int32_t *logits)",
        "{",
        f"    int32_t *out = logits ? logits : (int32_t *)(potnn_arena.bytes + {plan.logits_offset});",
        *copy,
        *(prog.call(op, fn) for op, fn in prog.functions()),
        *argmax,
        "}",
        "",
        "#endif /* POTNN_MODEL_H */",
        "",
    ])


def _needs(text: str, program: IntProgram, config: Config, arena: int, em: Emitter,
           compile_plain: bool) -> tuple[RamNeed, FlashNeed, dict[str, Compiled] | None]:
    """The model's RAM and flash needs against the Config, and what each toolchain made of it (board budgets).

    A board budget also counts the firmware's logit buffer, the stack, and the flash as the
    board's compilers build it (the largest). The compile is skipped when the model is over budget
    without it: by its buffers, or by an estimated flash so far over that no compiler could save it
    (the estimate is within a few tens of percent of every compiler's size).
    """
    flash = estimated_flash(em)
    if config.board is None:
        return RamNeed(arena), _flash_alone(text, em, config) if compile_plain else flash, None
    buffers = firmware_buffers(program)
    need = RamNeed(arena, buffers)
    if need.total > config.ram or flash.total > _HOPELESS * config.flash:
        return need, flash, None
    compiled = measure(text, load_board_facts(config.board))
    stack_tc = max(compiled, key=lambda kind: compiled[kind].stack)
    flash_tc = max(compiled, key=lambda kind: compiled[kind].flash)
    return (RamNeed(arena, buffers, compiled[stack_tc].stack, stack_tc),
            FlashNeed(compiled[flash_tc].flash, em.weight_bytes, flash_tc), compiled)


def _flash_alone(text: str, em: Emitter, config: Config) -> FlashNeed:
    """A plain Config's flash: the bound while it fits the budget, else the largest that a toolchain present
    makes of the header for a board of each core (the bound again when there is no compiler at all)."""
    bound, estimate = flash_bound(em.flash_bytes(), em.weight_bytes), estimated_flash(em)
    if bound.total <= config.flash:
        return bound
    if estimate.total > _HOPELESS * config.flash:
        return estimate
    sizes: dict[str, int] = {}
    for facts in core_boards():
        try:
            compiled = measure(text, facts)
        except NoCompiler:
            continue
        sizes.update({f"{kind} for {facts.name}": c.flash for kind, c in compiled.items()})
    if not sizes:
        return bound
    largest = max(sizes, key=lambda k: sizes[k])
    return FlashNeed(sizes[largest], em.weight_bytes, largest)
