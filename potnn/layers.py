"""PoT layers: ordinary `nn.Module`s that run in float, QAT or exact integer mode.

In ``float`` mode each layer is exactly its torch.nn parent. After `potnn.prepare_qat` the layers
run the integer model: every tensor between layers is ``q * s`` with ``q`` an integer of the
layer's output range and ``s`` a float64 scale computed from the learnable weight scales along the
chain (``s_out = alpha * s_in * 2**act_shift``). The rescale between layers is thus always a
power of two, i.e. a shift in C. In ``qat`` mode the roundings pass gradients straight through
(float32); in ``int`` mode (`potnn.enable_integer_sim`) everything is float64 and exact, equal
to `potnn.simulate`.

Quantization state lives in ``state_dict``: ``alpha_log2`` (log2 of the weight scale, learnable: in the
log domain an optimizer step changes the scale relatively, whatever its magnitude), ``act_shift``
(the output shift, set by calibration) and ``channel_shift`` (per-channel power-of-two scales).
Wiring (which layer feeds which, whether a ReLU is fused) is derived again from the model's
graph by `potnn.prepare_qat`, so it is never stale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import quantizer
from .rounding import round_log2

MODES = ("float", "qat", "int")
UNSIGNED_RANGE = (0, 255)
SIGNED_RANGE = (-128, 127)


@dataclass
class InputFold:
    """Dataset normalisation folded into a first layer: per-element mean/std of its input.

    The maps broadcast against one input sample (conv: [C, 1, 1] or [C, 1]; linear: [F]); the
    weight maps give the std/mean each weight element sees (same shape as the weight).
    """

    mean: torch.Tensor
    std: torch.Tensor
    weight_mean: torch.Tensor
    weight_std: torch.Tensor


@dataclass
class IntParams:
    """The integer parameters of a layer, as the integer model uses them (float64 tensors)."""

    weight: torch.Tensor  # integer levels, the layer's weight shape
    bias: torch.Tensor  # per output channel, in accumulator units, rounding constant included
    shift: torch.Tensor | None  # per output channel right shift (None for a final layer)
    s_in: torch.Tensor
    s_out: torch.Tensor


class QuantModule(nn.Module):
    """State and wiring shared by every module that produces a requantized tensor."""

    potnn_mode: str = "float"

    def _potnn_init(self) -> None:
        self.potnn_mode = "float"
        self.register_buffer("act_shift", torch.zeros((), dtype=torch.int64))
        object.__setattr__(self, "_potnn_sources", [None])
        self._potnn_range: tuple[int, int] = SIGNED_RANGE

    # Wiring, set by potnn.graph when the model is captured. A source is None for the model input
    # (integer pixels, scale 1) or the QuantModule whose output feeds this one (through any number of
    # max-pool, ReLU and reshape steps, which do not change the scale).
    def set_sources(self, sources: list["QuantModule | None"]) -> None:
        object.__setattr__(self, "_potnn_sources", list(sources))

    def input_scale(self, i: int = 0) -> torch.Tensor:
        """The float64 scale of input i (a tensor, so gradients reach the upstream weight scales)."""
        src = self._potnn_sources[i]
        if src is None:
            return torch.ones((), dtype=torch.float64, device=self.act_shift.device)
        return src.output_scale()

    def output_scale(self) -> torch.Tensor:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    @property
    def output_range(self) -> tuple[int, int]:
        """The clamp range of this module's integer output."""
        return self._potnn_range

    def _exact(self) -> bool:
        return self.potnn_mode == "int"

    def _requantize(self, acc: torch.Tensor, shift: torch.Tensor, exact: bool) -> torch.Tensor:
        """floor(acc / 2**shift) clamped to the output range; acc already holds the rounding constant."""
        view = (1, -1) + (1,) * (acc.dim() - 2)
        v = quantizer.floor(acc / torch.pow(2.0, shift.to(acc.dtype)).view(view), exact)
        lo, hi = self._potnn_range
        return torch.clamp(v, lo, hi)

    def _input_integers(self, x: torch.Tensor, i: int, exact: bool) -> torch.Tensor:
        s = self.input_scale(i)
        dtype = torch.float64 if exact else x.dtype
        return quantizer.round_half_up(x.to(dtype) / s.to(dtype), exact)


def _rounding_bias(shift: torch.Tensor) -> torch.Tensor:
    return torch.where(shift > 0, torch.pow(2.0, (shift - 1).clamp(min=0).double()), torch.zeros((), dtype=torch.float64))


class PoTLayer(QuantModule):
    """Shared behaviour of the weight layers (conv 1d/2d, depthwise, linear)."""

    encoding: str | None

    def _potnn_layer_init(self, encoding: str | None) -> None:
        self._potnn_init()
        self.encoding = encoding
        self.alpha_log2 = nn.Parameter(torch.zeros(()))
        self.register_buffer("channel_shift", torch.zeros(self.out_channels_count(), dtype=torch.int64))
        self._potnn_final = False
        self._potnn_fold: InputFold | None = None

    def out_channels_count(self) -> int:  # pragma: no cover - defined by each layer
        raise NotImplementedError

    def integer_op(self, q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.potnn_mode == "float":
            return super().forward(x)  # type: ignore[misc]
        exact = self._exact()
        p = self.integer_params(exact)
        q = self._input_ints(x, exact)
        dtype = q.dtype
        acc = self.integer_op(q, p.weight.to(dtype))
        view = (1, -1) + (1,) * (acc.dim() - 2)
        acc = acc + p.bias.to(dtype).view(view)
        if p.shift is None:
            return acc * p.s_out.to(dtype)
        return self._requantize(acc, p.shift, exact) * p.s_out.to(dtype)

    def _input_ints(self, x: torch.Tensor, exact: bool) -> torch.Tensor:
        fold = self._potnn_fold
        if fold is None:
            return self._input_integers(x, 0, exact)
        dtype = torch.float64 if exact else x.dtype
        raw = (x.double() * fold.std.to(x.device) + fold.mean.to(x.device)) * 255.0
        return torch.clamp(torch.floor(raw + 0.5), 0, 255).to(dtype)

    @property
    def alpha(self) -> torch.Tensor:
        """The weight scale: float weights ≈ alpha * 2**channel_shift * integer levels (float64)."""
        return torch.pow(2.0, self.alpha_log2.double())

    @torch.no_grad()
    def set_alpha(self, alpha: float) -> None:
        self.alpha_log2.fill_(math.log2(alpha))

    def folded_weight(self) -> torch.Tensor:
        """Float64 weight in raw-pixel units (input normalisation folded in, when this layer takes the input)."""
        w = self.weight.double()
        fold = self._potnn_fold
        return w if fold is None else w / (255.0 * fold.weight_std)

    def _float_bias(self) -> torch.Tensor:
        w = self.weight
        return self.bias.double() if self.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)

    def channel_scale(self) -> torch.Tensor:
        """Each output channel's weight scale, alpha * 2**channel_shift (float64): folded weights ≈ it * levels."""
        return self.alpha * torch.pow(2.0, self.channel_shift.double())

    def latent_weight(self, levels: torch.Tensor) -> torch.Tensor:
        """The `weight` whose folded value is exactly `levels` (integer levels, weight-shaped) times the
        channel scale: folded_weight undone, for code that sets weights to chosen levels."""
        unit = self.channel_scale().view((-1,) + (1,) * (self.weight.dim() - 1)).expand(self.weight.shape)
        fold = self._potnn_fold
        if fold is not None:
            unit = unit * 255.0 * fold.weight_std.to(unit.device)
        return levels * unit

    def integer_params(self, exact: bool) -> IntParams:
        """Integer weights, bias and shifts of this layer, from its float state (the lowering calls this)."""
        alpha = self.alpha
        alpha_c = self.channel_scale()
        w = self.folded_weight()
        wview = (-1,) + (1,) * (w.dim() - 1)
        q = quantizer.quantize_weights(w / alpha_c.view(wview), self.encoding or "unroll", exact)
        s_in = self.input_scale()
        bias = self._float_bias() / (alpha_c * s_in)
        fold = self._potnn_fold
        if fold is not None:
            # The normalisation's offset, -sum(w * mean / std), is taken through the *quantized* weights: the
            # float model then differs from the integer one by the weight error times the centred input, not
            # times the raw 0..255 input (whose mean term is large wherever a channel's std is small).
            offset = 255.0 * (q.to(torch.float64) * fold.weight_mean.to(q.device)).reshape(q.shape[0], -1).sum(1)
            bias = bias - offset / s_in
        bias = quantizer.round_half_up(bias, exact)
        if self._potnn_final:
            return IntParams(q, bias, None, s_in, alpha * s_in)
        shift = self.act_shift - self.channel_shift
        return IntParams(q, bias + _rounding_bias(shift), shift, s_in, alpha * s_in * torch.pow(2.0, self.act_shift.double()))

    def output_scale(self) -> torch.Tensor:
        s = self.alpha * self.input_scale()
        return s if self._potnn_final else s * torch.pow(2.0, self.act_shift.double())


class PoTConv2d(PoTLayer, nn.Conv2d):
    """nn.Conv2d with power-of-two weights (stride, padding, groups; zero padding, no dilation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, groups: int = 1,
                 bias: bool = True, encoding: str | None = None) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           groups=groups, bias=bias)
        self._potnn_layer_init(encoding)

    def out_channels_count(self) -> int:
        return self.out_channels

    def integer_op(self, q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(q, w, None, self.stride, self.padding, 1, self.groups)


class PoTDepthwiseConv2d(PoTConv2d):
    """Depthwise 2-D convolution: one filter (or `depth_multiplier` filters) per input channel."""

    def __init__(self, channels: int, kernel_size, stride=1, padding=0, depth_multiplier: int = 1,
                 bias: bool = True, encoding: str | None = None) -> None:
        super().__init__(channels, channels * depth_multiplier, kernel_size, stride=stride, padding=padding,
                         groups=channels, bias=bias, encoding=encoding)


class PoTConv1d(PoTLayer, nn.Conv1d):
    """nn.Conv1d with power-of-two weights (stride, padding, groups)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, groups: int = 1,
                 bias: bool = True, encoding: str | None = None) -> None:
        nn.Conv1d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           groups=groups, bias=bias)
        self._potnn_layer_init(encoding)

    def out_channels_count(self) -> int:
        return self.out_channels

    def integer_op(self, q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv1d(q, w, None, self.stride, self.padding, 1, self.groups)


class PoTLinear(PoTLayer, nn.Linear):
    """nn.Linear with power-of-two weights."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, encoding: str | None = None) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._potnn_layer_init(encoding)

    def out_channels_count(self) -> int:
        return self.out_features

    def integer_op(self, q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.linear(q, w)


class PoTGlobalAvgPool(QuantModule):
    """Global average pooling for any spatial size: a sum, then a shift into 8 bits.

    The division by H×W is not done: it is carried in the output scale (``s_in * 2**shift / (H*W)``),
    so sizes that are not powers of two cost nothing extra. Output is [N, C, 1, 1] (or [N, C, 1]
    for 1-d inputs), like nn.AdaptiveAvgPool2d(1), so user code that flattens it works unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self._potnn_init()
        self._potnn_area = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.dim()))
        if self.potnn_mode == "float":
            return x.mean(dim=dims, keepdim=True)
        exact = self._exact()
        total = self._input_integers(x, 0, exact).sum(dim=dims, keepdim=True)
        shift = self.act_shift.view(1)
        acc = total + _rounding_bias(shift).to(total.dtype)
        return self._requantize(acc, shift, exact) * self.output_scale().to(total.dtype)

    def output_scale(self) -> torch.Tensor:
        return self.input_scale() * torch.pow(2.0, self.act_shift.double()) / self._potnn_area


def add_alignment(s_a: float, s_b: float) -> tuple[int, int]:
    """Left shifts (for a, for b) that bring two addends to the finer of their scales.

    The coarser operand is shifted left by round_log2 of the scale ratio; the sum then has the
    finer operand's scale. QAT sees the same approximation, so training absorbs it.
    """
    if s_a <= s_b:
        return 0, round_log2(s_b / s_a)
    return round_log2(s_a / s_b), 0


class PoTAdd(QuantModule):
    """Residual addition of two tensors: align by shifts, add, shift into 8 bits."""

    def __init__(self) -> None:
        super().__init__()
        self._potnn_init()
        object.__setattr__(self, "_potnn_sources", [None, None])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.potnn_mode == "float":
            return a + b
        exact = self._exact()
        qa = self._input_integers(a, 0, exact)
        qb = self._input_integers(b, 1, exact)
        da, db = self.alignment()
        total = qa * 2.0 ** da + qb * 2.0 ** db
        shift = self.act_shift.view(1)
        acc = total + _rounding_bias(shift).to(total.dtype)
        return self._requantize(acc, shift, exact) * self.output_scale().to(total.dtype)

    def alignment(self) -> tuple[int, int]:
        """The current left shifts of the two inputs (see add_alignment)."""
        return add_alignment(float(self.input_scale(0).detach()), float(self.input_scale(1).detach()))

    def output_scale(self) -> torch.Tensor:
        s_a, s_b = self.input_scale(0), self.input_scale(1)
        finer = s_a if float(s_a.detach()) <= float(s_b.detach()) else s_b
        return finer * torch.pow(2.0, self.act_shift.double())

