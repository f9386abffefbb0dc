"""Per-architecture constants of the C generator: how many accumulators fit the registers, how big a
stack copy may be, how many bytes each emitted construct costs in flash.

The generator picks between code shapes (blocks of accumulators, copied or guarded receptive fields,
repeated or looped pool windows, unrolled or tabled weights) with these numbers, and refuses a model
by the flash estimate they give. The numbers belong to a core and its compiler, not to the generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _rv32ec_gcc_code_bytes() -> dict[str, int]:
    """Bytes of GCC 12 -Os RV32EC code per construct the generator writes, fitted to real builds and then
    raised until no model was underestimated (tests/test_core.py checks the estimate stays above the
    linked size). The dot-product kernels' sizes are the encodings' own (Encoding.kernel_code_bytes)."""
    return {
        "predict": 80,  # potnn_predict: input copy (a caller's own buffer), argmax, logits copy; potnn_input_buffer
        "call": 8,  # one layer call in potnn_predict
        "layer": 12,  # a layer function's prologue, epilogue, call
        "tap": 7,  # one unrolled weight: lbu + add
        "conv_tap": 8,  # one weight of the guarded conv
        "group": 5,  # one exponent group: shift + add
        "pixel_tap": 3,  # input-major: add into an accumulator
        "pixel_shift": 4,  # input-major: shift an accumulator to the next exponent
        "pixel_load": 5,  # input-major: one lbu
        "pixel_block": 6,  # input-major: one block of accumulators (and its POTNN_OPAQUE)
        "store": 20,  # requantise (shift, clamp) and store one output
        "store_table": 29,  # ... with the shift from a table
        "pool_max": 8,  # running max of a pooled output, in a register
        "window_loop": 23,  # loop over a pool window's conv positions
        "dyn_windows": 93,  # list of the windows inside the conv output
        "conv_loops": 43,  # position loops
        "guard_flag": 13,  # one row/column padding flag
        "group_select": 12,  # read in place or copy, per group
        "copy": 13,  # one element of an interior receptive-field copy
        "copy_test": 7,  # one padding test in a border copy
        "copy_guarded": 11,  # one element of a border copy
        "copy_block": 34,  # one copy loop
        "copy_looped": 84,  # one border copy as a loop with run-time tests
        "guard": 8,  # one padding test (guarded conv)
        "packed_linear": 100,  # a packed linear layer's loop and call
        "gather_output": 20,  # an output of an unrolled linear layer summed by potnn_gather (the call)
        "kernel_gather": 130,  # a potnn_gather kernel
        "packed_conv": 163,  # a packed conv's loops (their running offsets kept: POTNN_STEP), copy set-up, calls
        "packed_conv_pool": 152,  # ... its max-pool
        "packed_conv_groups": 24,  # ... its group loop
        "row_conv": 300,  # a packed conv by rows of four outputs (potnn.codegen.row_conv): loops, call, stores
        "row_conv_pool": 80,  # ... its max-pool
        "streaming_conv": 478,  # packed conv with its own weight-by-weight decoder
        "maxpool": 205,
        "gap": 90,
        "relu": 40,
        "add": 78,
    }


@dataclass(frozen=True)
class Target:
    """The constants the generator's choices depend on, for one core and compiler.

    Attributes:
        name: what the target is, in words.
        accumulators: output channels an unrolled conv sums at once in registers (with the input, a
            temporary and the pointers, they must fit the register file).
        pooled_accumulators: the same for a conv with a fused max-pool, which also keeps each channel's
            running max in a register.
        dense_fan_in: nonzero weights per filter from which a pooled conv's loads dominate and it uses
            `accumulators`-sized blocks after all (the maxes partly spilled).
        patch_limit: largest receptive-field copy, in bytes, an unrolled conv keeps on the stack; beyond,
            per-tap padding tests.
        packed_patch_limit: the same for packed convs, whose fallback decodes every weight at every
            position and is about three times slower.
        row_stack_limit: the largest copy of four outputs' receptive field a packed conv with a row kernel
            keeps on the stack (potnn.codegen.row_conv); the fit ladder retries with `packed_patch_limit`
            when that stack is over the RAM budget.
        unrolled_window_taps: a pooled unrolled conv repeats its code per conv position of a pool window
            (no window loop) while all the copies hold at most this many weights.
        looped_copy_elements: a border copy is unrolled up to this many elements over all groups, and a
            loop with run-time tests beyond (depthwise layers with large windows).
        gather_groups: group sizes, largest first, from which an unrolled linear layer that does not fit
            the flash sums equal weights from tables of input indices.
        code_bytes: flash bytes per emitted construct (the flash estimate; the build's size is exact).
    """

    name: str
    accumulators: int = 8
    pooled_accumulators: int = 3
    dense_fan_in: int = 48
    patch_limit: int = 256
    packed_patch_limit: int = 256
    row_stack_limit: int = 512
    unrolled_window_taps: int = 512
    looped_copy_elements: int = 96
    gather_groups: tuple[int, ...] = (32, 16, 8, 4, 2, 1)
    code_bytes: dict[str, int] = field(default_factory=_rv32ec_gcc_code_bytes)


RV32EC_GCC = Target("RV32EC (CH32V003), GCC -Os")
"""16 registers, no multiplier; the numbers were measured on this target."""

CORTEX_M0PLUS = Target("Cortex-M0+ (PY32F003), GCC -Os")
"""Carries RV32EC's numbers: none were measured on Cortex-M0+. Its code is mostly smaller, except for
large unrolled linear layers (Thumb's ldrb reaches only 31 bytes from its base); the bench's build
checks the real size."""
