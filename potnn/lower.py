"""Lowering: a prepared PyTorch model → `IntProgram`, the integer model that simulate and export share.

The integer parameters come from each layer's own `integer_params(exact=True)` — the very code
that `enable_integer_sim` runs — so the reference, the PyTorch integer simulation and the C are
three executions of one set of integers, never three derivations of them.

Every operation of an IntProgram reads int tensors and writes an int tensor:

* ``conv``: acc = bias[o] + Σ weight·x (zero padding), then ``clamp(acc >> shift[o], lo, hi)``
  (a negative shift is a left shift); a final layer (no shift) writes acc as int32 logits.
  Conv1d is a conv with height 1; depthwise is a conv with groups. ``linear`` likewise.
* ``maxpool`` (padding never wins), ``relu``, ``reshape`` (no data movement: buffers are C×H×W).
* a ``conv`` followed only by a ``maxpool`` becomes one op with ``pool`` set: the pooled output is
  the max-pool of the requantized conv output (equal to requantizing the max accumulator, since
  shift and clamp are monotone), so the full-size conv output never needs RAM.
* ``gap``: ``clamp((Σ x + bias) >> shift, lo, hi)``.
* ``add``: ``clamp(((a << shift_a) + (b << shift_b) + bias) >> shift, lo, hi)``.

Biases already contain the rounding constant of their shift (`potnn.rounding.rounding_bias`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .graph import Graph
from .layers import PoTAdd, PoTConv1d, PoTGlobalAvgPool, PoTLayer, PoTLinear
from .program import IntOp, IntProgram, TensorSpec, as3d
from .rounding import rounding_bias


def _ints(t: torch.Tensor) -> np.ndarray:
    a = t.detach().cpu().double().numpy()
    if not np.all(a == np.round(a)):
        raise AssertionError("lowering produced a non-integer parameter")
    return a.astype(np.int64)


def _layer_op(n, m: PoTLayer, tensors: dict[str, TensorSpec]) -> IntOp:
    p = m.integer_params(exact=True)
    weight, bias = _ints(p.weight), _ints(p.bias)
    shift = None if p.shift is None else _ints(p.shift)
    in_shape, out_shape = as3d(tensors[n.inputs[0]].shape), as3d(n.shape)
    common = dict(name=n.module, inputs=list(n.inputs), output=n.name, in_shape=in_shape, out_shape=out_shape,
                  bias=bias, shift=shift, encoding=m.encoding or "unroll", final=n.final)
    if isinstance(m, PoTLinear):
        return IntOp("linear", weight=weight, **common)
    if isinstance(m, PoTConv1d):
        weight = weight[:, :, None, :]
        kernel, stride, padding = (1, m.kernel_size[0]), (1, m.stride[0]), (0, m.padding[0])
    else:
        kernel, stride, padding = tuple(m.kernel_size), tuple(m.stride), tuple(m.padding)
    return IntOp("conv", weight=weight, kernel=kernel, stride=stride, padding=padding, groups=m.groups,  # type: ignore[arg-type]
                 **common)


@torch.no_grad()
def lower(model: nn.Module) -> IntProgram:
    """The integer program of a prepared model (see potnn.prepare_qat / potnn.train); the model is not changed."""
    graph: Graph | None = getattr(model, "_potnn_graph", None)
    if graph is None:
        raise RuntimeError("the model has not been prepared for quantization: run potnn.train, or "
                           "potnn.calibrate and potnn.prepare_qat, first")
    modules = dict(model.named_modules())
    tensors: dict[str, TensorSpec] = {}
    ops: list[IntOp] = []
    for n in graph.nodes:
        lo, hi = (n.range if n.range is not None else (None, None))
        tensors[n.name] = TensorSpec(n.name, tuple(n.shape), lo, hi)
        if n.op == "input":
            continue
        m = modules.get(n.module) if n.module else None
        in3 = as3d(tensors[n.inputs[0]].shape)
        if n.op == "layer":
            assert isinstance(m, PoTLayer)
            ops.append(_layer_op(n, m, tensors))
        elif n.op == "gap":
            assert isinstance(m, PoTGlobalAvgPool)
            shift = np.array([int(m.act_shift)], dtype=np.int64)
            ops.append(IntOp("gap", n.module or n.name, list(n.inputs), n.name, in3, as3d(n.shape),
                             bias=rounding_bias(shift), shift=shift))
        elif n.op == "add":
            assert isinstance(m, PoTAdd)
            shift = np.array([int(m.act_shift)], dtype=np.int64)
            ops.append(IntOp("add", n.module or n.name, list(n.inputs), n.name, in3, as3d(n.shape),
                             bias=rounding_bias(shift), shift=shift, in_shifts=m.alignment()))
        elif n.op == "maxpool":
            ops.append(IntOp("maxpool", n.name, list(n.inputs), n.name, in3, as3d(n.shape),
                             kernel=n.params["kernel"], stride=n.params["stride"], padding=n.params["padding"]))
        elif n.op in ("relu", "reshape"):
            ops.append(IntOp(n.op, n.name, list(n.inputs), n.name, in3, as3d(n.shape)))
        else:  # pragma: no cover - graph.py produces no other ops
            raise AssertionError(n.op)
    _fuse_pools(ops, tensors, graph.output)
    return IntProgram(tensors, ops, graph.nodes[0].name, graph.output,
                      meta={"model": type(model).__name__})


def _fuse_pools(ops: list[IntOp], tensors: dict[str, TensorSpec], output: str) -> None:
    """Merge each non-final conv whose only reader is a max-pool into that conv (see the module doc)."""
    for pool in [op for op in ops if op.kind == "maxpool"]:
        conv = next((op for op in ops if op.output == pool.inputs[0]), None)
        readers = [op for op in ops if pool.inputs[0] in op.inputs]
        if conv is None or conv.kind != "conv" or conv.final or conv.pool or readers != [pool] or conv.output == output:
            continue
        del tensors[conv.output]
        conv.pool = (pool.kernel, pool.stride, pool.padding)
        conv.conv_shape, conv.out_shape, conv.output = conv.out_shape, pool.out_shape, pool.output
        ops.remove(pool)
