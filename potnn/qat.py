"""The manual pipeline: calibrate → prepare_qat → (train) → enable_integer_sim.

All functions change the model in place and also return it, like the README's manual method.
The first of them to run captures the graph (GAP replacement, BatchNorm folding, tracing) and
keeps it on the model as ``model._potnn_graph``; the quantization state itself is in the
modules' parameters and buffers, so ``state_dict`` round-trips a trained model.
"""

from __future__ import annotations

import math
import warnings
from typing import Iterable

import torch
import torch.nn as nn

from .config import Config
from .fuse import fuse_batchnorm, replace_global_pooling
from .graph import Graph, capture, wire
from .layers import PoTAdd, PoTGlobalAvgPool, PoTLayer, QuantModule
from .quantizer import pot_round, legalize
from .rounding import ceil_log2, round_log2
from .validation import check_fits, check_normalisation

ACTIVATION_QUANTILE = 0.9999


def _quant_modules(model: nn.Module) -> list[QuantModule]:
    return [m for m in model.modules() if isinstance(m, QuantModule)]


def set_mode(model: nn.Module, mode: str) -> nn.Module:
    """Switch every PoT module to "float", "qat" or "int" (exact integer simulation)."""
    if mode not in ("float", "qat", "int"):
        raise ValueError(f"mode must be 'float', 'qat' or 'int', got {mode!r}")
    if mode != "float" and getattr(model, "_potnn_graph", None) is None:
        raise RuntimeError("the model has not been prepared: call potnn.calibrate or potnn.prepare_qat first")
    for m in _quant_modules(model):
        m.potnn_mode = mode
    return model


def ensure_captured(model: nn.Module, config: Config) -> Graph:
    """Capture the model's graph once (GAP replacement and BatchNorm folding first) and wire its modules.

    Tracing runs the float forward, so every PoT module is in float mode while it happens and gets
    its mode back afterwards.
    """
    graph = getattr(model, "_potnn_graph", None)
    if graph is not None and getattr(model, "_potnn_config", None) == config:
        return graph
    modes = {m: m.potnn_mode for m in _quant_modules(model)}
    for m in modes:
        m.potnn_mode = "float"
    replace_global_pooling(model)
    fuse_batchnorm(model)
    graph = capture(model, config)
    wire(model, graph, config)
    model._potnn_graph = graph
    model._potnn_config = config
    for m, mode in modes.items():
        m.potnn_mode = mode
    return graph


@torch.no_grad()
def init_weight_scale(layer: PoTLayer, per_channel: bool) -> None:
    """Choose the weight scale (and per-channel power-of-two factors) minimising the weights' squared error."""
    w = layer.folded_weight()
    flat = w.reshape(w.shape[0], -1)
    shifts = torch.zeros(w.shape[0], dtype=torch.int64)
    if per_channel and not layer._potnn_final:
        channel_max = flat.abs().amax(1)
        top = float(channel_max.max())
        if top > 0:
            shifts = torch.tensor([round_log2(float(c) / top) if c > 0 else 0 for c in channel_max], dtype=torch.int64)
    flat = flat / torch.pow(2.0, shifts.double()).view(-1, 1)
    top = float(flat.abs().max())
    if top == 0.0:
        layer.set_alpha(1.0)
        layer.channel_shift.copy_(shifts)
        return
    encoding = layer.encoding or "unroll"
    best, best_err = top, math.inf
    for step in range(0, 161):  # candidate scales from top down over ten octaves, 1/16 octave apart
        alpha = top * 2.0 ** (-step / 16.0)
        q = legalize(pot_round(flat / alpha, encoding), encoding)
        err = float(((flat - alpha * q) ** 2).sum())
        if err < best_err:
            best, best_err = alpha, err
    layer.set_alpha(best)
    layer.channel_shift.copy_(shifts)


def _has_trained_scales(model: nn.Module) -> bool:
    """Whether any weight scale or shift differs from a fresh layer's (calibrated, trained or loaded)."""
    return any(float(m.alpha_log2.detach()) != 0.0 or int(m.act_shift) != 0 or bool(m.channel_shift.any())
               for m in _quant_modules(model) if isinstance(m, PoTLayer))


@torch.no_grad()
def calibrate(model: nn.Module, data_loader: Iterable, config: Config, num_batches: int = 8,
              dry_run: bool = True) -> nn.Module:
    """Set weight scales from the weights and activation shifts from data (in place; returns the model).

    Activations: the float model runs on `num_batches` batches of `data_loader` (inputs normalised
    as in training); each requantized tensor's 99.99th percentile of |value| sets its shift so that
    it covers that value with its 8-bit range (the scale rounded up to the chain's next power of two).
    Before that, the graph is captured and checked and, with `dry_run`, the model's RAM (exact) and
    dense flash are checked against Config (potnn.validation.check_fits): a model that cannot fit is
    refused now, listing every exceeded budget. The batches are checked against Config's mean/std
    (a warning when they disagree). Calibrating a model that already has trained scales (after QAT
    or a load) overwrites them, so it warns.
    """
    if _has_trained_scales(model):
        warnings.warn("calibrate: the model already has weight scales and shifts (trained or loaded); calibrating "
                      "replaces them and changes the export; skip calibrate for a trained model (potnn.load, or "
                      "prepare_qat then load_state_dict)", stacklevel=3)  # past torch.no_grad's wrapper
    graph = ensure_captured(model, config)
    if dry_run:
        check_fits(model, config)
    modes = {m: m.potnn_mode for m in _quant_modules(model)}
    set_mode(model, "float")
    modules = dict(model.named_modules())
    for n in graph.nodes:
        if n.op == "layer":
            init_weight_scale(modules[n.module], config.per_channel)  # type: ignore[arg-type]

    samples: dict[str, list[torch.Tensor]] = {n.module: [] for n in graph.nodes if n.op in ("layer", "add", "gap")}
    generator = torch.Generator().manual_seed(0)

    def hook(path: str, relu: bool):
        def record(_m: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
            v = (out.clamp(min=0) if relu else out).detach().abs().flatten().float()
            if v.numel() > 200_000:
                v = v[torch.randint(v.numel(), (200_000,), generator=generator)]
            samples[path].append(v)
        return record

    handles = [modules[n.module].register_forward_hook(hook(n.module, n.relu))
               for n in graph.nodes if n.module in samples]
    was_training = model.training
    model.eval()
    try:
        for i, batch in enumerate(data_loader):
            if i >= num_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if i == 0:
                check_normalisation(x, config)
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not any(samples.values()):
        raise ValueError("calibrate: the data loader gave no batches")

    for n in graph.nodes:  # in execution order, so each module's input scale is final when it is reached
        if n.module is None or n.final:
            continue
        m = modules[n.module]
        values = torch.cat(samples[n.module])
        peak = float(torch.quantile(values, ACTIVATION_QUANTILE)) if values.numel() else 0.0
        lo, hi = m.output_range
        if isinstance(m, PoTLayer):
            unit = float(m.alpha * m.input_scale())
        elif isinstance(m, PoTGlobalAvgPool):
            unit = float(m.input_scale()) / m._potnn_area
        else:
            assert isinstance(m, PoTAdd)
            unit = min(float(m.input_scale(0)), float(m.input_scale(1)))
        target = peak / hi if peak > 0 else unit
        m.act_shift.fill_(ceil_log2(target / unit))  # round the range up: clipping costs more than one bit
    for m, mode in modes.items():
        m.potnn_mode = mode
    model._potnn_calibrated = True
    return model


def prepare_qat(model: nn.Module, config: Config) -> nn.Module:
    """Put the model in QAT mode: activations and weights fake-quantized from the first step (in place).

    Call `calibrate` first, or load a state_dict saved from a calibrated model right after this call.
    """
    ensure_captured(model, config)
    untouched = all(float(m.alpha_log2.detach()) == 0.0 and int(m.act_shift) == 0 for m in _quant_modules(model)
                    if isinstance(m, PoTLayer))
    if untouched and not getattr(model, "_potnn_calibrated", False):
        warnings.warn("prepare_qat: the model looks uncalibrated (all weight scales 1, all shifts 0); "
                      "call potnn.calibrate(model, loader, config) first or load a trained state_dict",
                      stacklevel=2)
    return set_mode(model, "qat")


def enable_integer_sim(model: nn.Module, input_std: float | None = None, input_mean: float | None = None) -> nn.Module:
    """Make forward compute the exact integer model in float64 (equal to potnn.simulate); no gradients.

    `input_std`/`input_mean` are accepted for compatibility with earlier potnn; when given they
    must match the Config the model was prepared with.
    """
    config = getattr(model, "_potnn_config", None)
    if config is None:
        raise RuntimeError("enable_integer_sim: call potnn.calibrate / potnn.prepare_qat first")
    for given, have, what in ((input_std, config.channel_std(), "std"), (input_mean, config.channel_mean(), "mean")):
        if given is not None:
            values = tuple(float(v) for v in (given if isinstance(given, (list, tuple)) else [given]))
            if values not in (have, have[:1]):
                raise ValueError(f"enable_integer_sim: input_{what}={given} differs from the Config's {have}")
    return set_mode(model, "int")
