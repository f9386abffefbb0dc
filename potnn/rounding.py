"""The one rounding convention of the integer model, shared by the reference, the QAT and the export.

Every place that turns a real number into an integer goes through these functions, so the
NumPy reference, PyTorch's integer simulation and the generated C cannot drift apart:

* a real value is rounded half up: ``floor(x + 0.5)`` (never Python's banker's rounding, never
  ``int(x + 0.5)``, which truncates toward zero for negatives) — `potnn.quantizer.round_half_up`,
  which the lowering and the integer simulation both call;
* a right shift by ``k > 0`` rounds half up by adding `rounding_bias` (``2**(k-1)``) first and then
  shifting arithmetically (floor); the constant is folded into the bias at lowering time, so the C
  and `potnn.simulate.requantize` do a single add and shift; ``k <= 0`` is an exact left shift;
* a scale ratio is turned into a shift by `round_log2` or `ceil_log2`, decided on Python floats only.
"""

from __future__ import annotations

import math

import numpy as np

_SQRT_HALF = math.sqrt(0.5)


def rounding_bias(k: np.ndarray | int) -> np.ndarray:
    """The constant added before an arithmetic right shift by k so that it rounds half up (0 for k <= 0)."""
    k = np.asarray(k, dtype=np.int64)
    return np.where(k > 0, np.left_shift(np.int64(1), np.maximum(k - 1, 0)), 0).astype(np.int64)


def round_log2(ratio: float) -> int:
    """The integer d nearest to log2(ratio) (ties up), decided exactly from the float's exponent and mantissa.

    Used to turn a ratio of scales into a shift. frexp gives ratio = m * 2**e with m in [0.5, 1): log2(ratio)
    is nearer e than e-1 exactly when m >= sqrt(1/2). No log2 library call is involved, so every caller
    (NumPy or PyTorch side) gets the same answer.
    """
    if not (ratio > 0.0 and math.isfinite(ratio)):
        raise ValueError(f"round_log2 needs a positive finite ratio, got {ratio!r}")
    m, e = math.frexp(ratio)
    return e if m >= _SQRT_HALF else e - 1


def ceil_log2(ratio: float) -> int:
    """The smallest integer d with 2**d >= ratio, decided exactly from frexp (ratio = m * 2**e, m in [0.5, 1))."""
    if not (ratio > 0.0 and math.isfinite(ratio)):
        raise ValueError(f"ceil_log2 needs a positive finite ratio, got {ratio!r}")
    m, e = math.frexp(ratio)
    return e - 1 if m == 0.5 else e
