"""What the board's compilers make of a header: potnn_predict's stack and the model's flash, measured.

Why measured: unrolled layers keep many partial sums live and the compiler spills them, so a layer's
frame can be twice its patch buffer, and by how much differs between GCC and Clang (zig); zig's code
is also often larger than the flash estimate, which is fitted to GCC. Only the compiler knows. Each
toolchain present compiles and links the header alone with the bench's flags (code and constants in
one output section, unused functions dropped as in the firmware), reports each function's frame
(`-fstack-usage`, Clang's `-stack-usage-file`), and objcopy writes the flash section as a binary
whose length is the model's flash (linker relaxation included). No ELF file is parsed here. Each
compiler's assembly of the header is also checked for multiplies (potnn.codegen.multiply): a header one
of them would multiply in is refused.

On a board whose bench runs the packed kernels from SRAM (`kernels_in_ram`, bench/build.py), the header is
measured that way: the kernels' bytes still count as flash (start-up copies them from there, in 4-byte
steps), and each call from flash into SRAM is the long form (RV32EC: auipc + jalr, 8 bytes, where a near
call is a 4-byte jal). The build moves them only when they fit. Left in flash they are the same bytes and
each call is at least 4 bytes shorter, which covers the 2 bytes by which relaxation may shorten another
call (c.jal) with the kernels out of its way; so the figure bounds either placement.

The call structure of a header is fixed by the generator: potnn_predict calls the layer functions
(`potnn_<i>_<name>`), which call the kernels (`potnn_dot_*`, `potnn_gather*`), which call nothing.
So the deepest stack is predict's frame + the largest layer frame + the largest kernel frame (a
function the compiler inlined has no frame of its own; its caller's frame holds it). Clones a compiler
makes of one function (`.constprop`, `.part`, `.isra`) are added up, since a `.part` clone is called by
its origin. Calls the compiler itself writes to memset/memcpy land in the firmware and are in its
measured stack (potnn.boards.FirmwareCost.stack).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..boards import BoardFacts, board_names, load_board_facts
from .budget import ExportError
from .layer_symbols import INPUT_BUFFER, PREDICT
from .multiply import multiplies

# The bench firmware's flags that change code generation (bench/build.py CFLAGS, at its default -Os).
BENCH_CFLAGS = ("-std=c99", "-ffreestanding", "-fno-common", "-ffunction-sections", "-fdata-sections", "-Os")
_LAYER = re.compile(r"potnn_\d+_")
# Everything the model stores in flash goes to one section at 0; its buffers elsewhere. The C library
# routines a compiler may call (the firmware's; stubs here) get a section of their own, not counted.
_LINKER_SCRIPT = """SECTIONS {
  . = 0;
  .libc : { *(.text.memset) *(.text.memcpy) *(.text.memmove) }
  .flash : { *(.text*) *(.rodata*) *(.srodata*) *(.data*) *(.sdata*) }
  . = 0x20000000;
  .ramfunc : { *(.ramfunc*) }
  .ram (NOLOAD) : { *(.bss*) *(.sbss*) *(COMMON) }
}
"""
#: How a firmware places the header's kernels (POTNN_RAMFUNC) in SRAM: the section .ramfunc, which its
#: linker script puts in .data (firmware/link.ld.in), copied from flash at start-up.
RAM_KERNELS_DEFINE = '-DPOTNN_RAMFUNC=__attribute__((section(".ramfunc")))'
#: How every kernel's definition in a header begins (then its own placement macro, POTNN_RAMFUNC_<name>:
#: potnn.codegen.kernels): a header without one has no .ramfunc, and zig's objcopy refuses to copy a section
#: that is not there.
RAM_KERNEL = "POTNN_KERNEL POTNN_RAMFUNC"
_LIBC = """
typedef __SIZE_TYPE__ potnn_size_t;
void *memset(void *d, int c, potnn_size_t n) { (void)c; (void)n; return d; }
void *memcpy(void *d, const void *s, potnn_size_t n) { (void)s; (void)n; return d; }
void *memmove(void *d, const void *s, potnn_size_t n) { (void)s; (void)n; return d; }
"""
# No start files or C library; the compiler's runtime (libgcc, zig's compiler_rt) stays, as in the firmware.
# potnn_predict is the entry; potnn_input_buffer, which the firmware calls too, is kept beside it.
_KEEP = (f"-Wl,-e,{PREDICT}", f"-Wl,-u,{INPUT_BUFFER}")
_LINK = {"gnu": ("-nostartfiles", "-nodefaultlibs", "-Wl,--gc-sections", *_KEEP),
         "zig": ("-nostartfiles", "-Wl,--gc-sections", *_KEEP)}
_LIBS = {"gnu": ("-lgcc",), "zig": ()}


class NoCompiler(ExportError):
    """No toolchain for a board is present here (neither its GNU cross compiler nor the ziglang wheel)."""


@dataclass(frozen=True)
class Compiled:
    """One toolchain's figures for a header: potnn_predict's deepest stack, the model's flash bytes."""

    stack: int
    flash: int


@dataclass(frozen=True)
class _Toolchain:
    cc: tuple[str, ...]  # compiles for the board
    objcopy: tuple[str, ...]


def _toolchains(facts: BoardFacts) -> dict[str, _Toolchain]:
    """The toolchains present here (a GNU compiler needs its objcopy beside it)."""
    found: dict[str, _Toolchain] = {}
    for gcc in facts.gnu_compilers:
        objcopy = gcc.removesuffix("gcc") + "objcopy"
        if shutil.which(gcc) and shutil.which(objcopy):
            found["gnu"] = _Toolchain((gcc, *facts.cflags["gnu"]), (objcopy,))
            break
    if importlib.util.find_spec("ziglang") is not None:
        zig = (sys.executable, "-m", "ziglang")
        found["zig"] = _Toolchain((*zig, "cc", *facts.cflags["zig"]), (*zig, "objcopy"))
    return found


def frames(su_text: str) -> dict[str, int]:
    """Frame bytes per function of a stack-usage file (GCC's or Clang's), clones added to their origin.

    A line reads `file:line[:column]:name<TAB>bytes<TAB>static|dynamic[,bounded]`; an unbounded
    dynamic frame (a variable-length array) has no figure to give, and the generator never writes one.
    """
    out: dict[str, int] = defaultdict(int)
    for line in su_text.splitlines():
        where, size, kind = line.split("\t")
        name = where.rsplit(":", 1)[-1]
        if "dynamic" in kind and "bounded" not in kind:
            raise ExportError(f"{name} has an unbounded stack frame; this is a generator bug, please report it")
        out[name.split(".")[0]] += int(size)
    return dict(out)


def predict_stack(function_frames: dict[str, int]) -> int:
    """potnn_predict's deepest stack from the frames of a header's functions (see the module's docstring)."""
    layers = [n for name, n in function_frames.items() if _LAYER.match(name)]
    kernels = [n for name, n in function_frames.items()
               if name not in (PREDICT, INPUT_BUFFER) and not _LAYER.match(name)]
    return function_frames.get(PREDICT, 0) + max(layers, default=0) + max(kernels, default=0)


def measure(text: str, facts: BoardFacts) -> dict[str, Compiled]:
    """The stack and flash of the header `text` on board `facts`, per toolchain present here ("gnu", "zig")."""
    toolchains = _toolchains(facts)
    if not toolchains:
        raise NoCompiler(f"no C compiler for {facts.name} to measure the model with: pip install ziglang "
                          "(a dependency of potnn), or put a GNU cross compiler on PATH")
    result: dict[str, Compiled] = {}
    with tempfile.TemporaryDirectory(prefix="potnn-measure-") as tmp:
        work = Path(tmp)
        (work / "model.c").write_text(text)
        (work / "libc.c").write_text(_LIBC)  # its own unit: the compiler must not inline these stubs
        (work / "flash.ld").write_text(_LINKER_SCRIPT)
        for kind, tc in toolchains.items():
            out = work / kind
            out.mkdir()
            su = out / "model.su"
            usage = ["-fstack-usage"] if kind == "gnu" else ["-Xclang", "-stack-usage-file", "-Xclang", str(su)]
            elf, binary, ram_code = out / "model.elf", out / "model.bin", out / "ramfunc.bin"
            placed = (RAM_KERNELS_DEFINE,) if facts.kernels_in_ram and RAM_KERNEL in text else ()
            _run(kind, facts, [*tc.cc, *BENCH_CFLAGS, "-c", str(work / "libc.c"), "-o", str(out / "libc.o")], cwd=out)
            _run(kind, facts, [*tc.cc, *BENCH_CFLAGS, *placed, *usage, *_LINK[kind], f"-Wl,-T,{work / 'flash.ld'}",
                               str(work / "model.c"), str(out / "libc.o"), *_LIBS[kind], "-o", str(elf)], cwd=out)
            _run(kind, facts, [*tc.objcopy, "-O", "binary", "-j", ".flash", str(elf), str(binary)], cwd=out)
            flash = binary.stat().st_size
            if placed:      # the kernels' copy in flash, in .data's 4-byte steps
                _run(kind, facts, [*tc.objcopy, "-O", "binary", "-j", ".ramfunc", str(elf), str(ram_code)], cwd=out)
                flash += (ram_code.stat().st_size + 3) & ~3
            _run(kind, facts, [*tc.cc, *BENCH_CFLAGS, "-S", str(work / "model.c"), "-o", str(out / "model.s")], cwd=out)
            _refuse_multiplies(kind, facts, (out / "model.s").read_text())
            reports = sorted(out.glob("*.su"))
            if not reports:
                raise ExportError(f"{kind} wrote no stack-usage report for {facts.name}; its compiler may be too "
                                  "old for -fstack-usage (GCC 4.6+, Clang 13+)")
            result[kind] = Compiled(predict_stack(frames(reports[0].read_text())), flash)
    return result


def core_boards() -> list[BoardFacts]:
    """A board of each core the bench supports (the first board file of each `arch`): a plain Config's
    flash is the largest any of their toolchains makes of the header."""
    seen: dict[str, BoardFacts] = {}
    for name in board_names():
        facts = load_board_facts(name)
        seen.setdefault(facts.arch, facts)
    return list(seen.values())


def _refuse_multiplies(kind: str, facts: BoardFacts, assembly: str) -> None:
    """The header must compile to shifts and adds only (potnn.codegen.multiply says why it might not)."""
    found = multiplies(assembly)
    if found:
        function, instructions = next(iter(found.items()))
        raise ExportError(f"{function.split('.')[0]} multiplies ({instructions[0]}) as {kind} compiles it for "
                          f"{facts.name}: the model would break the no-multiply contract; this is a generator bug, "
                          "please report it with the header")


def _run(kind: str, facts: BoardFacts, argv: list[str], cwd: Path) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise ExportError(f"measuring the header with {kind} for {facts.name} failed: {last}")
