"""The static C of the header, kept as real C files (package data) and instantiated by name: the
macros every header defines (c/prelude.h), the dot-product kernels of the packed encodings (each
encoding's kernels/dot_<name>.c, and row4_<name>.c where it has a row kernel) and the gather kernel of
tabled unrolled linear layers (c/gather.c).

The templates compile on their own (tests/test_encoding.py): NAME, X (input type) and, for the
gather kernel, INDEX, MAX_EXPONENT and COUNTS are the only tokens replaced. Each kernel is placed by
a macro of its own, ``POTNN_RAMFUNC_<name>``, which is ``POTNN_RAMFUNC`` unless the firmware defines it:
a build whose SRAM holds only some of the kernels defines the others' empty, so they stay in flash.

The dot-product kernels sum x[i] * w[i] over a filter as uint32 (wrapping, so no signed overflow in
any order; the result fits int32 by the accumulator check). A negative term is added as its one's
complement, t ^ -1 = -t - 1, and the layer's bias table holds +1 per such term: no negation and no
branch per weight.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ..encoding import get_encoding

C_DIR = Path(__file__).parent / "c"
RAM_MARK = "POTNN_KERNEL POTNN_RAMFUNC static"  # how every kernel template's definition begins


@cache
def _template(path: Path) -> str:
    return path.read_text()


def prelude() -> list[str]:
    """The macros every header defines before its tables (POTNN_SHL, POTNN_NEG, POTNN_KERNEL, ...)."""
    return _template(C_DIR / "prelude.h").splitlines()


def _placed(name: str, text: str) -> list[str]:
    """The kernel `text` (its NAME already `name`) under its own placement macro (see the module's docstring)."""
    macro = f"POTNN_RAMFUNC_{name}"
    assert text.count(RAM_MARK) == 1, name
    return [f"#ifndef {macro}", f"#define {macro} POTNN_RAMFUNC", "#endif",
            *text.replace(RAM_MARK, f"POTNN_KERNEL {macro} static").splitlines(), ""]


def _input_ctype(signed: bool) -> str:
    return "int8_t" if signed else "uint8_t"


def dot_kernel_name(encoding: str, signed: bool) -> str:
    return f"potnn_dot_{encoding}_{'s8' if signed else 'u8'}"


def dot_kernel(encoding: str, signed: bool) -> list[str]:
    """C text of one dot-product kernel for inputs of the given signedness."""
    text = get_encoding(encoding).kernel_source()
    name = dot_kernel_name(encoding, signed)
    return _placed(name, text.replace("NAME", name).replace("const X *", f"const {_input_ctype(signed)} *"))


def row_kernel_name(encoding: str, signed: bool) -> str:
    return f"potnn_row4_{encoding}_{'s8' if signed else 'u8'}"


def row_kernel(encoding: str, signed: bool) -> list[str]:
    """C text of one row kernel (four outputs of a conv row per weight decoded) for inputs of the given
    signedness."""
    text = get_encoding(encoding).row_kernel_source()
    name = row_kernel_name(encoding, signed)
    return _placed(name, text.replace("NAME", name).replace("const X *", f"const {_input_ctype(signed)} *"))


def gather_kernel_name(signed: bool, index_ctype: str) -> str:
    return f"potnn_gather_{'s8' if signed else 'u8'}_{'u8' if index_ctype == 'uint8_t' else 'u16'}"


def gather_kernel(signed: bool, index_ctype: str, levels: int) -> list[str]:
    """C text of the kernel that sums one output's tabled weights (see UnrolledLinear)."""
    text = _template(C_DIR / "gather.c")
    name = gather_kernel_name(signed, index_ctype)
    return _placed(name, text.replace("NAME", name).replace("const X *", f"const {_input_ctype(signed)} *")
                   .replace("INDEX", index_ctype).replace("MAX_EXPONENT", str(levels - 1))
                   .replace("COUNTS", str(2 * levels)))
