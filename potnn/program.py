"""The integer program (`IntProgram`): what lowering produces and what simulate, export and a bundle share.

Its own module, with NumPy alone, so that simulating from a bundle and the C generator's view of a
model never need torch: only lowering (potnn.lower) reads a PyTorch model. See potnn.lower for the
meaning of each operation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INT32_MAX = 2**31 - 1


@dataclass
class TensorSpec:
    """An activation tensor: per-sample shape and integer range (None: int32 logits)."""

    name: str
    shape: tuple[int, ...]
    lo: int | None
    hi: int | None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def ctype(self) -> str:
        if self.lo is None or self.hi is None:
            return "int32_t"
        if self.lo >= 0 and self.hi <= 255:
            return "uint8_t"
        if self.lo >= -128 and self.hi <= 127:
            return "int8_t"
        return "int32_t"

    @property
    def itemsize(self) -> int:
        return {"uint8_t": 1, "int8_t": 1, "int32_t": 4}[self.ctype]

    @property
    def magnitude(self) -> int:
        """Largest |value| the tensor can hold (the int32 logits are never an input, so 2**31 is safe)."""
        if self.lo is None or self.hi is None:
            return 2**31
        return max(abs(self.lo), abs(self.hi))


@dataclass
class IntOp:
    """One integer operation. Geometry is 3-D (C, H, W) for every image op (H = 1 for 1-d data)."""

    kind: str
    name: str
    inputs: list[str]
    output: str
    in_shape: tuple[int, int, int] = (0, 0, 0)
    out_shape: tuple[int, int, int] = (0, 0, 0)
    weight: np.ndarray | None = None  # conv [OC, IC/groups, KH, KW], linear [OC, IN]; int64 levels
    bias: np.ndarray | None = None  # int64 [OC] (conv/linear) or [1] (gap/add); rounding constant included
    shift: np.ndarray | None = None  # int64 [OC] or [1]; None for a final layer
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    encoding: str = "unroll"
    in_shifts: tuple[int, int] = (0, 0)  # add: left shifts of the two inputs
    final: bool = False
    # conv fused with the max-pool that follows it: (kernel, stride, padding) of the pool, and the
    # conv's own output shape. out_shape is then the pooled shape; the conv output is never stored.
    pool: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None
    conv_shape: tuple[int, int, int] | None = None

    @property
    def positions(self) -> int:
        """Where each filter is applied per inference: once for a linear layer; for a conv, at every place
        of its output plane (before a fused pool)."""
        if self.kind == "linear":
            return 1
        _, h, w = self.conv_shape or self.out_shape
        return h * w


@dataclass
class IntProgram:
    """The integer model: tensors, operations in execution order, input and output tensor names."""

    tensors: dict[str, TensorSpec]
    ops: list[IntOp]
    input: str
    output: str
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.tensors[self.input].shape

    @property
    def input_chw(self) -> tuple[int, int, int]:
        """The input as C, H, W, the geometry of the C buffers (H = 1 for a 1-d input)."""
        return as3d(self.input_shape)

    @property
    def num_classes(self) -> int:
        return self.tensors[self.output].size


def as3d(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """A per-sample shape as the C, H, W of the C buffers: (C, L) is (C, 1, L), a flat vector (N, 1, 1)."""
    if len(shape) == 3:
        return (shape[0], shape[1], shape[2])
    if len(shape) == 2:
        return (shape[0], 1, shape[1])
    return (int(np.prod(shape)), 1, 1)
