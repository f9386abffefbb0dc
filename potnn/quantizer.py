"""Power-of-two weight quantization and the straight-through estimators of QAT (PyTorch side).

The same functions produce the integers of the exported model (called in float64 with
``exact=True`` by the lowering) and the fake-quantized values of QAT (float32, with gradients
passed straight through). One code path for both is what keeps training and export in step.
"""

from __future__ import annotations

import torch

from .encoding import get_encoding


def _magnitudes(encoding: str) -> list[int]:
    """The non-negative magnitudes an encoding can hold, ascending (0 first when it has zero)."""
    return sorted({abs(v) for v in get_encoding(encoding).levels})


def pot_round(v: torch.Tensor, encoding: str) -> torch.Tensor:
    """Nearest level of `encoding` to each element of v (in units of the weight scale).

    Nearest in the linear domain (this minimises the squared error of the weights); a value exactly
    halfway goes to the larger magnitude. Encodings without zero send |v| below 1 to ±1 with v's sign
    (+1 for an exact 0). Only comparisons are used, so the result is the same on every device.
    """
    mags = _magnitudes(encoding)
    a = v.abs()
    idx = torch.zeros_like(a, dtype=torch.long)
    for lo, hi in zip(mags[:-1], mags[1:]):
        idx += (a >= (lo + hi) / 2).long()
    table = torch.tensor(mags, dtype=v.dtype, device=v.device)
    sign = torch.where(v < 0, -1.0, 1.0).to(v.dtype)
    return sign * table[idx]


def legalize(q: torch.Tensor, encoding: str) -> torch.Tensor:
    """Apply the encoding's structural rule to integer weights q[n_filters, filter_len] (packing order):
    the torch twin of `potnn.encoding.legalize`, defined by the encoding's own module."""
    return get_encoding(encoding).legalize_torch(q)


def quantize_weights(w_scaled: torch.Tensor, encoding: str, exact: bool) -> torch.Tensor:
    """Integer weights for w_scaled (= weight / scale), laid out [out, ...]; straight-through unless exact."""
    flat = w_scaled.detach().reshape(w_scaled.shape[0], -1)
    q = legalize(pot_round(flat, encoding), encoding).reshape(w_scaled.shape)
    if exact:
        return q
    return w_scaled + (q - w_scaled).detach()


def round_half_up(x: torch.Tensor, exact: bool) -> torch.Tensor:
    """floor(x + 0.5); the gradient passes straight through unless exact (see potnn.rounding)."""
    r = torch.floor(x + 0.5)
    return r if exact else x + (r - x).detach()


def floor(x: torch.Tensor, exact: bool) -> torch.Tensor:
    """floor(x); the gradient passes straight through unless exact."""
    r = torch.floor(x)
    return r if exact else x + (r - x).detach()
