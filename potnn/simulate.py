"""`potnn.simulate`: the integer reference. NumPy, integers only; it defines every result.

Generated C, host builds and on-device runs must equal this bit for bit. It computes in int64 and
checks that every accumulator stays inside int32, the C's accumulator type: a value outside is a
broken model (export checks the worst case statically, this checks the actual inputs).

With a bundle or a bundle's path it needs NumPy alone (torch is imported only to lower a model), so a
bench or a user's script computes the reference answers of an exported model where torch is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .bundle import Bundle, load_bundle
from .program import INT32_MAX, IntOp, IntProgram

if TYPE_CHECKING:
    import torch.nn as nn

_CHUNK = 512


def _check_int32(acc: np.ndarray, op: IntOp) -> None:
    if acc.size and (acc.max() > INT32_MAX or acc.min() < -INT32_MAX - 1):
        raise OverflowError(f"{op.name}: accumulator leaves int32 ({acc.min()}..{acc.max()})")


def requantize(acc: np.ndarray, shift: np.ndarray, lo: int, hi: int, op: IntOp) -> np.ndarray:
    """clamp(acc >> shift, lo, hi), shift per channel (axis 1); a negative shift is a left shift, which must
    stay inside int32 like everything the C computes. The bias (with its rounding constant) is already in acc."""
    s = shift.reshape((1, -1) + (1,) * (acc.ndim - 2))
    v = np.where(s >= 0, np.right_shift(acc, np.maximum(s, 0)), np.left_shift(acc, np.maximum(-s, 0)))
    _check_int32(v, op)
    return np.clip(v, lo, hi)


def _conv(x: np.ndarray, op: IntOp) -> np.ndarray:
    assert op.weight is not None and op.bias is not None
    n = x.shape[0]
    c, h, w = op.in_shape
    x = x.reshape(n, c, h, w)
    (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oc, oh, ow = op.conv_shape or op.out_shape
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :oh, :ow]
    icpg, ocpg = c // op.groups, oc // op.groups
    out = np.empty((n, oc, oh, ow), dtype=np.int64)
    for g in range(op.groups):
        patches = win[:, g * icpg:(g + 1) * icpg]  # [n, icpg, oh, ow, kh, kw]
        wg = op.weight[g * ocpg:(g + 1) * ocpg]  # [ocpg, icpg, kh, kw]
        out[:, g * ocpg:(g + 1) * ocpg] = np.einsum("nchwyx,ocyx->nohw", patches, wg, optimize=True)
    return out + op.bias.reshape(1, -1, 1, 1)


def _maxpool(x: np.ndarray, in_shape: tuple[int, int, int], out_shape: tuple[int, int, int],
             window: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]) -> np.ndarray:
    n = x.shape[0]
    c, h, w = in_shape
    x = x.reshape(n, c, h, w)
    (kh, kw), (sh, sw), (ph, pw) = window
    low = np.iinfo(np.int64).min
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=low)
    _, oh, ow = out_shape
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :oh, :ow]
    return win.max(axis=(4, 5))


def check_inputs(program: IntProgram, inputs: np.ndarray) -> np.ndarray:
    """`inputs` as uint8 [N, *input_shape], or a one-line error that names what was given and what the model takes.

    Integer arrays of another dtype are accepted when every value is a uint8 value (0..255), so that
    the int64 arrays a user's own file may hold need no cast; anything else is refused rather than
    wrapped or rounded, since the C takes raw uint8.
    """
    x = np.asarray(inputs)
    shape = tuple(program.input_shape)
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"simulate: images have shape {tuple(x.shape[1:])}, the model takes {shape}: pass an "
                         f"array [N, {', '.join(map(str, shape))}] (got one of shape {tuple(x.shape)})")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"simulate: inputs are {x.dtype}, the model takes uint8 values 0..255 (raw, not normalised)")
    if x.size and (x.min() < 0 or x.max() > 255):
        raise ValueError(f"simulate: inputs ({x.dtype}) hold values {x.min()}..{x.max()}, the model takes "
                         "uint8 values 0..255")
    return x.astype(np.uint8)


def run(program: IntProgram, inputs: np.ndarray) -> np.ndarray:
    """Execute an IntProgram on uint8 inputs [N, *input_shape]; returns the output as int32 [N, K]."""
    x = check_inputs(program, inputs)
    outs = [_run_chunk(program, x[i:i + _CHUNK]) for i in range(0, len(x), _CHUNK)]
    if not outs:
        return np.zeros((0, program.num_classes), dtype=np.int32)
    return np.concatenate(outs).astype(np.int32)


def _run_chunk(program: IntProgram, x: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    values: dict[str, np.ndarray] = {program.input: x.astype(np.int64).reshape(n, -1)}
    for op in program.ops:
        spec = program.tensors[op.output]
        a = values[op.inputs[0]]
        if op.kind == "conv":
            acc = _conv(a, op)
        elif op.kind == "linear":
            assert op.weight is not None and op.bias is not None
            acc = a @ op.weight.T + op.bias.reshape(1, -1)
        elif op.kind == "gap":
            assert op.bias is not None
            c = op.in_shape[0]
            acc = a.reshape(n, c, -1).sum(axis=2) + op.bias[0]
        elif op.kind == "add":
            assert op.bias is not None
            b = values[op.inputs[1]]
            acc = np.left_shift(a, op.in_shifts[0]) + np.left_shift(b, op.in_shifts[1]) + op.bias[0]
        elif op.kind == "maxpool":
            values[op.output] = _maxpool(a, op.in_shape, op.out_shape, (op.kernel, op.stride, op.padding)).reshape(n, -1)
            continue
        elif op.kind == "relu":
            values[op.output] = np.maximum(a, 0)
            continue
        elif op.kind == "reshape":
            values[op.output] = a
            continue
        else:  # pragma: no cover
            raise AssertionError(op.kind)
        _check_int32(acc, op)
        if op.shift is None:
            values[op.output] = acc.reshape(n, -1)
        else:
            assert spec.lo is not None and spec.hi is not None
            v = requantize(acc, op.shift, spec.lo, spec.hi, op)
            if op.pool is not None:
                assert op.conv_shape is not None
                v = _maxpool(v, op.conv_shape, op.out_shape, op.pool)
            values[op.output] = v.reshape(n, -1)
    return values[program.output]


def simulate(model: nn.Module | IntProgram | Bundle | str | Path, inputs: np.ndarray) -> np.ndarray:
    """Integer logits [N, K] (int32) for uint8 inputs [N, *input_shape] ([N, C, H, W], or [N, C, L] for 1-d).

    `model` is a prepared potnn model, its IntProgram, a loaded bundle, or the path of a bundle
    (``model.potnn``, written by potnn.export beside the header); the last two need no torch.
    This is the specification: every other execution (the PyTorch integer simulation, the exported
    C on the host and on every board) must give exactly these numbers.
    """
    if isinstance(model, (str, Path)):
        model = load_bundle(model)
    if isinstance(model, Bundle):
        program = model.program
    elif isinstance(model, IntProgram):
        program = model
    else:
        from .lower import lower  # torch: only a PyTorch model needs lowering

        program = lower(model)
    return run(program, inputs)
