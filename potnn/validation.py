"""Budget dry run: will this model fit Config's RAM and flash? Answered before any training.

A model that cannot fit should fail in seconds, not after every epoch. The dry run lowers a copy of
the captured model and renders its C with export's own code (`potnn.codegen.header.render`), so its
figures and its refusal — one message listing every exceeded budget — are export's:

* RAM is exact: the activation arena is planned from the program's tensor shapes and lifetimes,
  which training does not change.
* With a board budget (Config.for_board), potnn_predict's stack is measured as export measures it (the
  board's compilers, the fit ladder's smaller stack copies) on the dense model, and a stack that tips
  RAM over the budget warns at once. Only a warning: patch copies are fixed by the layer shapes, but
  the partial sums unrolled code spills shrink with every zero weight, so the trained model may need
  far less (mnist16-fast: 2,088 bytes dense, 424 trained and pruned, with zig).
* Flash is the *dense* figure: every weight of the copy is set to a nonzero level (spread over the
  encoding's levels, as trained weights are), since in unrolled code a zero weight costs nothing and
  the untrained model's zeros say nothing about the trained one's. Pruning (`potnn.train(sparsity=)`)
  makes the trained model smaller than this figure, so with pruning configured a dense flash over the
  budget is a warning, not a refusal; RAM still refuses.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import numpy as np
import torch
import torch.nn as nn

from .codegen.budget import ExportError, FlashNeed, RamNeed, check_budgets, firmware_buffers
from .codegen.compiled import NoCompiler
from .codegen.header import ExportReport, ram_need, render
from .config import Config
from .encoding import dense_levels
from .layers import PoTLayer, QuantModule
from .lower import lower
from .program import IntProgram

_NO_LIMIT = 1 << 40


@torch.no_grad()
def _densify(model: nn.Module) -> None:
    """Give every PoT layer unit scales and weights at nonzero levels drawn at random (seeded;
    `potnn.encoding.dense_levels`)."""
    rng = np.random.default_rng(0)
    for m in model.modules():
        if isinstance(m, QuantModule):
            m.act_shift.zero_()
        if not isinstance(m, PoTLayer):
            continue
        m.set_alpha(1.0)
        m.channel_shift.zero_()
        levels = dense_levels(m.encoding or "unroll", tuple(m.weight.shape), rng)
        m.weight.copy_(m.latent_weight(torch.from_numpy(levels).to(torch.float64)).to(m.weight.dtype))
        if m.bias is not None:
            m.bias.zero_()


def check_fits(model: nn.Module, config: Config, pruning: bool = False) -> ExportReport:
    """Refuse (ExportError listing every exceeded budget) a captured model that cannot fit `config`.

    `model` must already be captured and wired for `config` (it is not changed: a copy is measured).
    RAM is exact for the buffers (the lowered program's arena: input, activations, logits; with a board
    budget also the firmware's logit buffer); with a board budget, a measured stack of the dense model that
    tips it over warns (see the module's docstring). Flash is export's estimate of the dense model (every
    weight nonzero): export measures the trained code. With `pruning`, a dense flash figure over budget
    only warns: the pruned weights will cost nothing. Returns export's report of the dense model.
    """
    probe = copy.deepcopy(model).cpu()
    _densify(probe)
    program = lower(probe)
    alone = dataclasses.replace(config, ram=_NO_LIMIT, board=None)
    try:
        report = render(program, alone, compile_plain=False)[1]
    except ExportError:
        fastest = dataclasses.replace(alone, flash=_NO_LIMIT)
        report = render(program, fastest, compile_plain=False)[1]
    flash = FlashNeed(report.flash_estimate, report.weight_bytes)   # an estimate: export measures the trained code
    buffers = firmware_buffers(program) if config.board is not None else 0
    ram = RamNeed(report.ram_bytes, buffers)
    if config.board is not None and ram.total <= config.ram:
        _warn_of_the_stack(program, config)
    if pruning and ram.total <= config.ram and flash.total > config.flash:
        warnings.warn(f"the dense model needs {flash.describe()}, over Config.flash {config.flash}; training "
                      "continues because pruning is configured and zero weights cost no flash, but the export "
                      "will refuse the model unless pruning saves the difference", stacklevel=3)
        return report
    check_budgets(config, ram, flash)
    return report


def _warn_of_the_stack(program: IntProgram, config: Config) -> None:
    """Warn when potnn_predict's stack, as export measures it for the board on this dense model, puts the
    RAM need over Config.ram (nothing to say when no compiler is here)."""
    try:
        need = ram_need(program, config)
    except NoCompiler:
        return
    if need.total > config.ram:
        warnings.warn(f"the dense model needs {need.describe()}, over Config.ram {config.ram}; the trained model's "
                      "zero weights shrink the stack of unrolled layers, but if they do not save the difference the "
                      "export will refuse it: consider fewer channels, pooling earlier, or a packed encoding",
                      stacklevel=4)


_GRID_TOLERANCE = 0.05  # of one pixel step: float32 normalisation is exact to ~1e-4 of a step


def _off_grid(pixels: torch.Tensor) -> float:
    """The largest distance of a value from the nearest integer of 0..255."""
    return float((pixels - pixels.round().clamp(0, 255)).abs().max())


def _guess(values: torch.Tensor) -> tuple[float, float] | None:
    """The (mean, std) that put one channel's values on the 0..255 grid with its darkest value at 0, if any."""
    unique = torch.unique(values.double())
    steps = unique.diff()
    steps = steps[steps > 1e-6]
    if steps.numel() == 0:
        return None
    std = float(1.0 / (255.0 * steps.min()))
    mean = float(-unique[0] * std)
    return (mean, std) if _off_grid((values.double() * std + mean) * 255.0) <= _GRID_TOLERANCE else None


def check_normalisation(x: torch.Tensor, config: Config) -> None:
    """Warn in one line when a batch is not uint8 data normalised with Config's mean/std.

    The integer model and the C take raw uint8 values and fold Config's mean/std into the first layer;
    a loader that normalises differently trains a model that the integer model then sees differently
    (measured: 88.4 % in PyTorch's integer mode vs 89.1 % from potnn.simulate). De-normalised with
    Config's statistics, (x*std+mean)*255 must land on the integers 0..255.
    """
    x = x.detach().cpu().double()
    if x.dim() != len(config.input_shape) + 1 or x.shape[1] != config.input_channels:
        return  # a shape mismatch is the graph capture's to report, with the Config's shape
    view = (1, -1) + (1,) * (x.dim() - 2)
    mean = torch.tensor(config.channel_mean(), dtype=torch.float64).view(view)
    std = torch.tensor(config.channel_std(), dtype=torch.float64).view(view)
    off = _off_grid((x * std + mean) * 255.0)
    if off <= _GRID_TOLERANCE:
        return
    guesses = [_guess(x[:, c]) for c in range(x.shape[1])]
    if all(g is not None for g in guesses):
        seen = (f"the data look normalised with mean={[round(g[0], 4) for g in guesses]} "  # type: ignore[index]
                f"std={[round(g[1], 4) for g in guesses]}")  # type: ignore[index]
    else:
        seen = "the values are on no 1/255 grid (augmented, or not from uint8 data?)"
    warnings.warn(f"calibrate: the batches do not match Config mean={list(config.channel_mean())} "
                  f"std={list(config.channel_std())} ((x*std+mean)*255 is up to {off:.2f} off the 0..255 integers); "
                  f"{seen}; give Config the mean/std the loader uses, or the integer model will differ from training",
                  stacklevel=4)  # past calibrate and its torch.no_grad wrapper, to the caller
