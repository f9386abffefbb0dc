"""`potnn.train`: the one-call pipeline — float training, calibration, QAT, exact integer check.

float epochs → BatchNorm folding → (with encodings="auto": the choice of encodings and pruning that
fits the budgets, potnn.auto_fit) → calibration → QAT epochs (weights and activations quantized
from the first QAT step) → integer simulation. Each epoch prints its loss and test accuracy; the
last line is the accuracy of the exact integer model, i.e. what the MCU will score.
"""

from __future__ import annotations

import copy
import itertools
import time
from typing import Callable, Iterable, Literal, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .auto_fit import check_can_fit, fit_budget
from .config import Config
from .encoding import ENCODINGS
from .evaluation import evaluate
from .fuse import fuse_batchnorm, replace_global_pooling
from .oscillation import OscillationFreezer
from .qat import calibrate, enable_integer_sim, ensure_captured, prepare_qat, set_mode
from .sparsity import Pruner
from .validation import check_fits


def _device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None,
          distill: float, temperature: float = 2.0) -> torch.Tensor:
    """Cross-entropy, blended with distillation from the float teacher's logits when there is one."""
    loss = F.cross_entropy(logits, labels)
    if teacher_logits is None or distill <= 0:
        return loss
    soft = F.kl_div(F.log_softmax(logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
                    reduction="batchmean", log_target=True) * temperature ** 2
    return (1 - distill) * loss + distill * soft


def _fit(model: nn.Module, loader: Iterable, test_loader: Iterable, epochs: int, lr: float, device: torch.device,
         phase: str, log: Callable[[str], None], scale_lr_factor: float = 1.0, teacher: nn.Module | None = None,
         distill: float = 0.0, pruner: Pruner | None = None, prune_ramp: int = 0,
         freezer: OscillationFreezer | None = None) -> None:
    """Train for `epochs` (AdamW, one-cycle schedule; after every step the pruning masks are applied
    again and the oscillating weights frozen)."""
    if epochs <= 0:
        return
    scales = [p for n, p in model.named_parameters() if n.endswith("alpha_log2")]
    weights = [p for n, p in model.named_parameters() if not n.endswith("alpha_log2")]
    groups = [{"params": weights, "lr": lr}, {"params": scales, "lr": lr * scale_lr_factor, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=1e-4 if phase == "float" else 0.0)
    steps = epochs * max(len(loader), 1)  # type: ignore[arg-type]
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups], total_steps=steps,
                                                   pct_start=0.1)
    ramp = max(1, prune_ramp)
    for epoch in range(1, epochs + 1):
        model.train()
        if pruner is not None:
            pruner.set_progress(epoch / ramp)
        start, seen, loss_sum = time.time(), 0, 0.0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            teacher_logits = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(x)
            loss = _loss(model(x), y, teacher_logits, distill)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if pruner is not None:
                pruner.apply()
            if freezer is not None:
                freezer.step()
            loss_sum += float(loss.detach()) * len(y)
            seen += len(y)
        acc = evaluate(model, test_loader, device)
        notes = "" if pruner is None else \
            "  zeros " + " ".join(f"{p} {100 * v:.0f}%" for p, v in pruner.sparsity().items())
        if freezer is not None:
            notes += "  frozen " + " ".join(f"{p} {n}" for p, n in freezer.counts().items())
        log(f"[{phase}] epoch {epoch}/{epochs}  loss {loss_sum / max(seen, 1):.4f}  test {100 * acc:.2f}%  "
            f"({time.time() - start:.1f}s){notes}")


def _check_auto(encodings: str | Sequence[str] | None, sparsity: Mapping[str, float] | str | None,
                max_instructions: int | None) -> Sequence[str] | None:
    """The candidate encodings of an automatic fit (None: each layer keeps Config's), arguments checked."""
    if isinstance(sparsity, str) and sparsity != "auto":
        raise ValueError(f"train: sparsity must be a mapping of layer paths to fractions, or 'auto', got {sparsity!r}")
    if isinstance(encodings, str) and encodings != "auto":
        raise ValueError(f"train: encodings must be 'auto' or a list of encodings to choose from, got {encodings!r}; "
                         "to fix a layer's encoding use Config(layer_encodings=...)")
    if max_instructions is not None and encodings is None and sparsity != "auto":
        raise ValueError("train: max_instructions needs encodings='auto' or sparsity='auto' (something to choose)")
    if max_instructions is not None and max_instructions <= 0:
        raise ValueError(f"train: max_instructions must be a positive count, got {max_instructions}")
    if encodings is None:
        return None
    return ENCODINGS if encodings == "auto" else list(encodings)


def train(model: nn.Module, train_loader: Iterable, test_loader: Iterable, config: Config, float_epochs: int = 10,
          qat_epochs: int = 10, lr: float = 3e-3, qat_lr: float | None = None, device: str | torch.device | None = None,
          calibration_batches: int = 8, scale_lr_factor: float = 0.05, distill: float = 0.0,
          sparsity: Mapping[str, float] | Literal["auto"] | None = None, teacher: nn.Module | None = None,
          freeze: float = 0.0, log: Callable[[str], None] = print,
          encodings: Literal["auto"] | Sequence[str] | None = None, max_instructions: int | None = None) -> nn.Module:
    """Train `model` (in place) into an integer model for `config`; returns it in integer-simulation mode.

    Loaders yield (normalised float images [N, C, H, W], labels), normalised with config.mean/std.
    Uses the GPU only when `device` asks for it or one is present; CPU otherwise.
    During QAT the weight scales learn at `scale_lr_factor` × the weights' rate: a scale moves the
    whole chain of activation scales behind it, and at the weights' rate QAT oscillates
    (measured on mnist16-fast: ±1.5 points per epoch, against a steady climb at 1/20 of the rate).
    `distill` in (0, 1] makes QAT learn also from the float model's softened outputs (knowledge
    distillation, temperature 2) with that weight; the float model stays the teacher throughout.
    `teacher` (a trained model, e.g. a bigger zoo model) replaces that teacher and teaches the float
    phase too: a small network learns more from a strong model's soft outputs than from labels alone.
    `sparsity` (module path → fraction) prunes each filter of those layers to that fraction of zero
    weights (see potnn.sparsity: zero weights cost nothing in unrolled code), ramped over the first
    half of float training (of QAT when there is none); the pruned weights stay zero after that.
    `freeze` > 0 fixes, during QAT, each weight whose integer value flips back and forth more often
    than that frequency (flips per step, see potnn.oscillation): otherwise such a weight ends on
    whichever side of its power-of-two boundary the last step left it.
    Before the first epoch the graph is captured on a copy of the model (an unsupported module is
    named with its path and type) and its budgets dry-run (potnn.validation.check_fits): RAM exactly,
    flash as the dense figure (every weight nonzero), so a model that cannot fit fails in seconds with
    every exceeded budget listed. With `sparsity` the trained model can be smaller than the dense
    figure, so a dense flash over Config.flash then only warns.
    `encodings="auto"` (or a list of encodings to choose from) chooses each layer's encoding after the
    float epochs, and with `sparsity="auto"` also a fraction of zero weights per layer (pruned from the
    first QAT step), so that the model fits Config.flash (and `max_instructions`, estimated per
    inference) with the least accuracy loss (potnn.auto_fit). Layers that Config.layer_encodings names
    keep their encoding. What it chose and why is the returned model's `potnn_fit` (a potnn.FitReport);
    export with its `config`, which names the chosen encodings. A model over Config.ram is refused
    before training, whatever the encodings.
    """
    if teacher is not None and distill <= 0:
        raise ValueError("train: a teacher needs distill > 0 (the weight of its outputs in the loss)")
    candidates = _check_auto(encodings, sparsity, max_instructions)
    auto = encodings is not None or sparsity == "auto"
    pinned = sparsity if isinstance(sparsity, Mapping) else None
    dev = _device(device)
    model.to(dev)
    if teacher is not None:
        teacher.to(dev).eval()
    replace_global_pooling(model)
    pruner = Pruner(model, pinned, config) if pinned else None
    probe = copy.deepcopy(model).cpu()
    ensure_captured(probe, config)  # an unsupported part is named now, not after the float epochs
    if auto:  # over RAM, or over flash or max_instructions whatever the fit chooses: refused now
        check_can_fit(model, config, candidates, sparsity == "auto", pinned, max_instructions)
    else:
        check_fits(probe, config, pruning=pruner is not None)
    del probe
    if float_epochs > 0:
        if getattr(model, "_potnn_graph", None) is not None:
            set_mode(model, "float")
        _fit(model, train_loader, test_loader, float_epochs, lr, dev, "float", log, teacher=teacher,
             distill=distill, pruner=pruner, prune_ramp=float_epochs // 2)
    model.eval()
    fuse_batchnorm(model)
    if teacher is None and distill > 0:
        teacher = copy.deepcopy(model).eval()
    report = None
    if auto:
        batches = [(x.cpu(), y.cpu()) for x, y in itertools.islice(train_loader, calibration_batches)]
        report = fit_budget(model.cpu(), batches, config, candidates, prune=sparsity == "auto",
                            pinned_sparsity=pinned, max_instructions=max_instructions)
        model.to(dev)
        log(str(report))
        config = report.config
        pruner = Pruner(model, report.sparsity, config) if report.sparsity else None
    calibrate(model, ((x.to(dev), y) for x, y in train_loader), config, num_batches=calibration_batches,
              dry_run=False)
    prepare_qat(model, config)
    log(f"[qat] after calibration: test {100 * evaluate(model, test_loader, dev):.2f}%")
    freezer = OscillationFreezer(model, freeze) if freeze > 0 else None
    _fit(model, train_loader, test_loader, qat_epochs, qat_lr if qat_lr is not None else lr / 10, dev, "qat", log,
         scale_lr_factor, teacher, distill, pruner, 0 if float_epochs > 0 else qat_epochs // 2, freezer)
    enable_integer_sim(model)
    log(f"[int] exact integer model: test {100 * evaluate(model, test_loader, dev):.2f}%")
    model.to("cpu")
    if report is not None:
        model.potnn_fit = report
    return model
