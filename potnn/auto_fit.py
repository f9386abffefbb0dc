"""`potnn.train(..., encodings="auto")`: choose each layer's encoding and weight sparsity to fit the budgets.

Why: unrolled code is the fastest (about 2 instructions per nonzero weight) but costs about 7 bytes of
flash per nonzero weight; the packed encodings store a weight in 2–4 bits but decode it at 9–15
instructions per multiply-accumulate. Which layers to pack (and which to prune instead) is a trade of
flash, speed and accuracy that a user should not have to search by hand.

The algorithm, run by `potnn.train` after float training and before calibration:

1. **Options.** For each PoT layer: every candidate encoding (a layer pinned by `Config.layer_encodings`
   or by its own `encoding=` keeps it) and, when pruning is allowed (`sparsity="auto"`), each fraction
   of `SPARSITIES` of zero weights per filter for encodings that have a zero (unroll, 5level, ternary).
2. **Flash, exactly by export's accounting.** The model is lowered once; each option's layer is written
   by export's own emitters (`potnn.codegen.registry.emit_op`, at the fit ladder's fastest rung) with
   *dense* weights (every weight a random nonzero level except the forced zeros), so the estimate bounds
   the trained layer's: QAT cannot add nonzero weights the pruning mask forbids.
   A model's flash is the fixed part (the other operations, potnn_predict) plus its layers plus each
   dot kernel its layers call, once — the sum `Emitter.flash_bytes` makes for the whole header.
3. **Instructions, estimated** per layer as multiply-accumulates × `INSTRUCTIONS_PER_MAC` (nonzero ones
   for unroll), measured by the kernel benchmark; the emulator's count is the exact figure.
4. **Accuracy cost, probed.** A copy is calibrated and run as the exact integer model on a few training
   batches; each option is applied to one layer alone (the copy calibrated for it, as the training will
   be; magnitude pruning per filter, `potnn.sparsity`'s rule), without retraining. Its loss is the drop
   in accuracy against the unchanged copy (never below 0).
5. **Search, exact.** Over all combinations of options (a Pareto front per set of kernels used, layer by
   layer), the one within Config.flash and `max_instructions` with the least summed loss; ties go to the
   fewest instructions, then the least flash. The chosen model, calibrated (the weights QAT starts from)
   and pruned, then gets the flash figure export checks (built by the compilers, unless its bound fits
   a plain Config); if that is over Config.flash, the search runs again with the budget reduced by the excess.

RAM does not depend on the encoding (the activation arena is the same), so a model over Config.ram is
refused before any training by the budget dry run's own message; potnn_predict's stack, which the
compilers' spilling of unrolled code does change, is checked at export as always. Channel pruning (`potnn.prune_channels`)
is not chosen automatically: it replaces modules, so the trained model would no longer load into a fresh
instance of the user's class.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np
import torch.nn as nn

from .codegen.budget import ExportError, fit_ladder
from .codegen.emitter import Emitter
from .codegen.header import checked_flash
from .codegen.registry import emit_op
from .codegen.row_conv import RowPackedConv
from .codegen.target import RV32EC_GCC, Target
from .config import Config
from .encoding import ENCODINGS, dense_levels, get_encoding
from .evaluation import evaluate
from .layers import PoTLayer
from .lower import lower
from .program import IntOp, IntProgram
from .qat import calibrate, enable_integer_sim, ensure_captured, prepare_qat
from .sparsity import Pruner
from .validation import check_fits

if TYPE_CHECKING:
    import pandas as pd

SPARSITIES: tuple[float, ...] = (0.25, 0.5, 0.75)
"""Fractions of zero weights per filter tried on a layer when pruning is allowed (`sparsity="auto"`)."""

INSTRUCTIONS_PER_MAC: dict[str, float] = {"unroll": 2.4, "fp130": 9.4, "5level": 14.8, "2bit": 9.6,
                                          "ternary": 13.1, "indexed": 8.4}
"""Executed instructions per multiply-accumulate (per *nonzero* one for unroll and indexed), stores included,
measured by the kernel benchmark (tests/benchmarks/test_kernel_speed.py: CH32V003, GCC 12.2 -Os, Unicorn,
dense calibrated weights); the larger of its conv and linear figures: unroll 2.38/1.89, fp130 9.35/8.66,
5level 14.80/13.86, 2bit 9.57/8.70, ternary 13.07/12.28, indexed 8.40/6.99. The other packed kernels decode
every weight, zero or not."""

ROW_INSTRUCTIONS_PER_MAC: dict[str, float] = {"fp130": 5.7, "indexed": 4.2}
"""The same for convs the encoding's row kernel writes (potnn.codegen.row_conv; the receptive-field copy on
the stack, as auto fit assumes), from the same benchmark: fp130 5.62 and 5.40 (mnist16-accurate's convs),
indexed 4.21 (ccl-pool/conv2-indexed)."""

ELEMENTWISE_INSTRUCTIONS = 4.0
"""Instructions per input element of a max-pool, global pooling, ReLU or add that is not fused."""

_NO_LIMIT = 1 << 40
_RETRIES = 3


@dataclass(frozen=True)
class Option:
    """One way to write one layer: its encoding, its forced fraction of zero weights, and what it costs."""

    layer: str
    encoding: str
    sparsity: float
    flash: int  # bytes of the layer's code and tables, dense (an upper bound), kernels excluded
    kernels: frozenset[tuple[str, str, bool]]  # the shared kernels it calls: ("dot" | "row", encoding, signed input)
    instructions: int  # estimated, per inference
    accuracy: float = math.nan  # the probe's integer-model accuracy with this option alone
    loss: float = 0.0  # accuracy lost against the unchanged probe model (>= 0)


@dataclass(frozen=True)
class FitReport:
    """What `potnn.train(encodings="auto")` chose and why; attached to the trained model as `potnn_fit`.

    Export the model with `config`: it names every layer's chosen encoding (export checks the encodings
    a model was trained with). `table` has one row per layer and option tried: layer, encoding,
    sparsity (fraction of zero weights per filter), flash (bytes of the layer, dense, kernels excluded),
    instructions (estimated), accuracy (the probe's, with this option alone), loss (accuracy lost against
    the unchanged probe model, 0..1), chosen.
    """

    config: Config  # the Config the model was trained with: export with this one
    encodings: dict[str, str]
    sparsity: dict[str, float]  # the weight sparsity trained per layer (chosen and pinned), 0 omitted
    flash_estimate: int  # export's estimate of the chosen model with dense weights: what the search held to the budget
    flash_compiled: int | None  # the chosen model as calibrated, as export checks it (compiled, or its bound)
    flash_budget: int
    instructions: int  # estimated per inference (see INSTRUCTIONS_PER_MAC)
    max_instructions: int | None
    probe_accuracy: float  # the unchanged probe model's integer accuracy on the probe batches
    accuracy_loss: float  # the summed probe losses of the chosen options (before QAT wins some back)
    reasons: dict[str, str]  # per layer: why this option
    table: pd.DataFrame

    def __str__(self) -> str:
        budget = "" if self.max_instructions is None else f" (budget {self.max_instructions:,})"
        compiled = "" if self.flash_compiled is None else f", {self.flash_compiled:,} B as export checks it"
        lines = [f"auto fit: flash ~{self.flash_estimate:,} B (dense estimate{compiled}) of {self.flash_budget:,} B, "
                 f"~{self.instructions:,} instructions{budget}, probe accuracy {100 * self.probe_accuracy:.2f} % "
                 f"- {100 * self.accuracy_loss:.2f} points before QAT"]
        for layer, encoding in self.encodings.items():
            pruned = f" {100 * self.sparsity[layer]:.0f}% zeros" if self.sparsity.get(layer) else ""
            lines.append(f"  {layer}: {encoding}{pruned} - {self.reasons[layer]}")
        return "\n".join(lines)


def _variant(op: IntOp, encoding: str, sparsity: float) -> IntOp:
    """`op` with `encoding` and dense weights (seeded), `sparsity` of each filter zero."""
    assert op.weight is not None
    weight = dense_levels(encoding, op.weight.shape, np.random.default_rng(0), sparsity)
    return dataclasses.replace(op, encoding=encoding, weight=weight)


def _macs(op: IntOp) -> int:
    assert op.weight is not None
    return int(op.weight.size) * op.positions


def _instructions(op: IntOp, encoding: str, sparsity: float, target: Target) -> int:
    density = 1.0 - sparsity if get_encoding(encoding).free_zeros else 1.0
    per_mac = INSTRUCTIONS_PER_MAC[encoding]
    if 0 < RowPackedConv.scratch_bytes(dataclasses.replace(op, encoding=encoding)) <= target.packed_patch_limit:
        per_mac = ROW_INSTRUCTIONS_PER_MAC[encoding]
    return round(_macs(op) * density * per_mac)


class _Accounting:
    """Export's flash accounting, split into a fixed part, one part per layer option, and the kernels."""

    def __init__(self, program: IntProgram, target: Target) -> None:
        self.program = program
        self.target = target
        self.fit = next(fit_ladder(program, target))  # the fastest form: what export tries first
        whole = self._emit(program.ops)
        self.kernel_bytes = whole.shared_kernels()
        layers = sum(self.layer_flash(op)[0] for op in program.ops if op.weight is not None)
        self.fixed = whole.flash_bytes() - layers - sum(self.kernel_bytes.values())
        self.fixed_instructions = round(sum(ELEMENTWISE_INSTRUCTIONS * math.prod(op.in_shape) for op in program.ops
                                            if op.kind in ("maxpool", "gap", "relu", "add")))

    def _emit(self, ops: Iterable[IntOp]) -> Emitter:
        em = Emitter(self.program, self.target, self.fit)
        for i, op in enumerate(ops):
            if op.kind != "reshape":
                emit_op(em, op, f"potnn_{i}")
                em.cost["call"] += 1
        em.cost["predict"] += 1
        return em

    def layer_flash(self, op: IntOp) -> tuple[int, frozenset[tuple[str, str, bool]]]:
        """(bytes, kernels) of one layer as export writes it: its code and tables, without the kernels."""
        em = Emitter(self.program, self.target, self.fit)
        emit_op(em, op, "potnn_layer")
        shared = em.shared_kernels()
        for k, size in shared.items():
            self.kernel_bytes.setdefault(k, size)
        return em.flash_bytes() - sum(shared.values()), frozenset(shared)

    def total(self, options: Sequence[Option]) -> int:
        kernels = set().union(*(o.kernels for o in options))
        return self.fixed + sum(o.flash for o in options) + sum(self.kernel_bytes[k] for k in kernels)


def _options(program: IntProgram, accounting: _Accounting, candidates: Mapping[str, Sequence[str]],
             sparsities: Mapping[str, Sequence[float]]) -> dict[str, list[Option]]:
    """Every option of every layer, with its flash and instructions (accuracy not yet probed)."""
    out: dict[str, list[Option]] = {}
    for op in program.ops:
        if op.weight is None:
            continue
        out[op.name] = []
        for encoding in candidates[op.name]:
            fractions = sparsities[op.name] if get_encoding(encoding).has_zero else sparsities[op.name][:1]
            for s in fractions:
                flash, kernels = accounting.layer_flash(_variant(op, encoding, s))
                out[op.name].append(Option(op.name, encoding, s, flash, kernels, _instructions(op, encoding, s, accounting.target)))
    return out


def _integer_model(model: nn.Module, config: Config, batches: list, sparsity: Mapping[str, float]) -> nn.Module:
    """A calibrated exact-integer copy of the float `model` for `config`, with `sparsity` pruned by magnitude."""
    changed = copy.deepcopy(model).cpu()
    for m in changed.modules():
        if isinstance(m, PoTLayer):
            m.encoding = None  # the Config decides every layer's encoding
    with warnings.catch_warnings():  # the real calibration, after the fit, gives the data's warnings once
        warnings.simplefilter("ignore")
        calibrate(changed, batches, config, num_batches=len(batches), dry_run=False)
    prepare_qat(changed, config)
    if sparsity:
        Pruner(changed, sparsity, config).set_progress(1.0)
    return enable_integer_sim(changed)


def _probe(model: nn.Module, config: Config, batches: list, base_acc: float,
           options: dict[str, list[Option]]) -> dict[str, list[Option]]:
    """Each option's accuracy with it applied to its layer alone (the float `model` calibrated for it, as the
    training will be) and its loss against `base_acc`, the accuracy of `model` calibrated for `config`."""
    probed: dict[str, list[Option]] = {}
    for layer, opts in options.items():
        probed[layer] = []
        for o in opts:
            if o.encoding == config.encoding_for(layer) and not o.sparsity:
                acc = base_acc
            else:
                changed = dataclasses.replace(config, layer_encodings={**config.layer_encodings, layer: o.encoding})
                pruned = {layer: o.sparsity} if o.sparsity else {}
                acc = evaluate(_integer_model(model, changed, batches, pruned), batches)
            probed[layer].append(dataclasses.replace(o, accuracy=acc, loss=max(0.0, base_acc - acc)))
    return probed


def _search(options: dict[str, list[Option]], accounting: _Accounting, flash: int,
            max_instructions: int | None) -> tuple[Option, ...] | None:
    """The assignment within the budgets with the least loss, then fewest instructions, then least flash.

    Exact: layer by layer, each set of kernels used keeps the partial assignments no other beats on all of
    loss, instructions and flash; one over budget even with the cheapest remaining layers is dropped.
    """
    layers = list(options)
    rest_flash = [sum(min(o.flash for o in options[l]) for l in layers[i:]) for i in range(len(layers) + 1)]
    rest_instr = [sum(min(o.instructions for o in options[l]) for l in layers[i:]) for i in range(len(layers) + 1)]
    limit = _NO_LIMIT if max_instructions is None else max_instructions - accounting.fixed_instructions
    fronts: dict[frozenset, list[tuple[float, int, int, tuple[Option, ...]]]] = {frozenset(): [(0.0, 0, 0, ())]}
    for i, layer in enumerate(layers):
        grown: dict[frozenset, list[tuple[float, int, int, tuple[Option, ...]]]] = {}
        for (kernels, front), o in itertools.product(fronts.items(), options[layer]):
            used = kernels | o.kernels
            floor = accounting.fixed + sum(accounting.kernel_bytes[k] for k in used) + rest_flash[i + 1]
            for loss, instr, size, chosen in front:
                if size + o.flash + floor > flash or instr + o.instructions + rest_instr[i + 1] > limit:
                    continue
                grown.setdefault(used, []).append((loss + o.loss, instr + o.instructions, size + o.flash,
                                                   chosen + (o,)))
        fronts = {k: _pareto(v) for k, v in grown.items()}
    finals = [s for front in fronts.values() for s in front]
    if not finals:
        return None
    return min(finals, key=lambda s: (round(s[0], 9), s[1], accounting.total(s[3])))[3]


def _pareto(states: list[tuple[float, int, int, tuple[Option, ...]]]) -> list[tuple[float, int, int, tuple[Option, ...]]]:
    """The states no other one beats (or equals) on loss, instructions and flash at once."""
    kept: list[tuple[float, int, int, tuple[Option, ...]]] = []
    for s in sorted(states, key=lambda s: s[:3]):
        if not any(k[0] <= s[0] + 1e-12 and k[1] <= s[1] and k[2] <= s[2] for k in kept):
            kept.append(s)
    return kept


def _named(o: Option) -> str:
    return o.encoding + (f" {100 * o.sparsity:.0f}% zeros" if o.sparsity else "")


def _reason(chosen: Option, options: list[Option]) -> str:
    """Why this option, in words: the fastest, or what the fastest of the faster ones would have cost."""
    head = f"{chosen.flash:,} B, ~{chosen.instructions:,} instructions, probe loss {100 * chosen.loss:.2f} points"
    faster = [o for o in options if o.instructions < chosen.instructions]
    if not faster:
        return f"fastest option ({head})"
    best = min(faster, key=lambda o: (o.instructions, o.loss))
    if best.flash > chosen.flash:
        why = f"needs {best.flash - chosen.flash:,} B more flash"
    elif best.loss > chosen.loss:
        why = f"loses {100 * (best.loss - chosen.loss):.2f} points more in the probe"
    else:
        why = "does not fit the budgets together with the other layers' choices"
    return f"{head}; {_named(best)} would be faster but {why}"


@dataclass(frozen=True)
class _Space:
    """What may be chosen for each layer, and the Config a probe starts from (pins kept, others unroll)."""

    choices: dict[str, list[str]]
    fractions: dict[str, list[float]]
    base: Config
    prune: bool
    max_instructions: int | None

    @classmethod
    def of(cls, model: nn.Module, config: Config, candidates: Sequence[str] | None, prune: bool,
           pinned_sparsity: Mapping[str, float], max_instructions: int | None) -> _Space:
        unknown = sorted(set(candidates or ()) - set(ENCODINGS))
        if unknown or candidates is not None and not candidates:
            raise ValueError(f"encodings: unknown or no candidates {unknown}; give 'auto' or a list of "
                             f"{', '.join(ENCODINGS)}")
        layers = {p: m for p, m in model.named_modules() if isinstance(m, PoTLayer)}
        pins = {p: m.encoding for p, m in layers.items() if m.encoding is not None} | dict(config.layer_encodings)
        if candidates is None:
            pins = {p: pins.get(p, config.default_encoding) for p in layers}
        choices = {p: [pins[p]] if p in pins else [e for e in candidates or () if p not in pinned_sparsity or
                                                   get_encoding(e).has_zero] for p in layers}
        fractions = {p: [pinned_sparsity[p]] if p in pinned_sparsity else [0.0, *(SPARSITIES if prune else ())]
                     for p in layers}
        base = dataclasses.replace(config, layer_encodings={p: pins.get(p, "unroll") for p in layers})
        return cls(choices, fractions, base, prune, max_instructions)

    def search(self, options: dict[str, list[Option]], accounting: _Accounting, flash: int) -> tuple[Option, ...]:
        """The best assignment within `flash` and the instruction budget, or the refusal that says why none is."""
        chosen = _search(options, accounting, flash, self.max_instructions)
        if chosen is not None:
            return chosen
        smallest = accounting.total([min(o, key=lambda x: x.flash) for o in options.values()])
        fastest = accounting.fixed_instructions + sum(min(x.instructions for x in o) for o in options.values())
        within = "" if self.max_instructions is None else \
            f" within {self.max_instructions:,} instructions (the fastest needs ~{fastest:,})"
        prune = "" if self.prune else "allow pruning (sparsity='auto'), "
        raise ExportError(f"auto fit: no choice of encodings{' and sparsity' if self.prune else ''} fits Config.flash "
                          f"{self.base.flash}{within}; the smallest needs about {smallest} bytes of flash (dense): "
                          f"{prune}use fewer channels, or raise the budget")


def check_can_fit(model: nn.Module, config: Config, candidates: Sequence[str] | None = ENCODINGS,
                  prune: bool = False, pinned_sparsity: Mapping[str, float] | None = None,
                  max_instructions: int | None = None, target: Target = RV32EC_GCC) -> None:
    """Refuse, before training, a model that no choice can fit: over Config.ram (the budget dry run's own
    message: RAM does not depend on the encoding), or over Config.flash or `max_instructions` even with
    the smallest, or fastest, options. `model` is not changed (a copy is captured and measured)."""
    space = _Space.of(model, config, candidates, prune, dict(pinned_sparsity or {}), max_instructions)
    probe = copy.deepcopy(model).cpu()
    for m in probe.modules():
        if isinstance(m, PoTLayer):
            m.encoding = None
    ensure_captured(probe, space.base)
    check_fits(probe, dataclasses.replace(space.base, flash=_NO_LIMIT))
    program = lower(probe)
    accounting = _Accounting(program, target)
    space.search(_options(program, accounting, space.choices, space.fractions), accounting, config.flash)


def fit_budget(model: nn.Module, batches: list, config: Config, candidates: Sequence[str] | None = ENCODINGS,
               prune: bool = False, pinned_sparsity: Mapping[str, float] | None = None,
               max_instructions: int | None = None, target: Target = RV32EC_GCC) -> FitReport:
    """Choose each layer's encoding (and, with `prune`, weight sparsity) for a float-trained model.

    `model` (BatchNorm folded, not yet calibrated) is not changed: copies are calibrated on `batches`
    (normalised inputs and labels, a few of the training set's) and probed. `candidates`: the encodings
    to choose from (None: each layer keeps Config's). Layers named in Config.layer_encodings, or built with
    an `encoding=`, keep that encoding; layers in `pinned_sparsity` keep that sparsity (and an encoding
    with a zero). Raises ExportError when no assignment fits.
    """
    pinned_sparsity = dict(pinned_sparsity or {})
    space = _Space.of(model, config, candidates, prune, pinned_sparsity, max_instructions)
    probe = _integer_model(model, space.base, batches, {})
    program = lower(probe)
    accounting = _Accounting(program, target)
    base_acc = evaluate(probe, batches)
    options = _probe(model, space.base, batches, base_acc,
                     _options(program, accounting, space.choices, space.fractions))
    budget = config.flash
    for _ in range(_RETRIES):
        chosen = space.search(options, accounting, budget)
        compiled = _compiled_flash(model, chosen, config, batches)
        if compiled <= config.flash:
            return _report(chosen, options, config, pinned_sparsity, compiled, max_instructions, base_acc,
                           accounting)
        budget -= compiled - config.flash  # a compiler made it larger than the estimate: search again for less
    raise ExportError(f"auto fit: the board's compilers build every assignment the estimate accepts over "
                      f"Config.flash {config.flash}; use fewer channels")


def _chosen_config(config: Config, chosen: Sequence[Option]) -> Config:
    return dataclasses.replace(config, layer_encodings={o.layer: o.encoding for o in chosen})


def _compiled_flash(model: nn.Module, chosen: Sequence[Option], config: Config, batches: list) -> int:
    """The chosen model's flash as export will check it: as the compilers build it (a board Config; a plain
    one near its budget), else its bound. Built from the calibrated weights the QAT starts from, pruned as
    chosen, not the dense ones: how much code a compiler makes of unrolled weights depends on the weights
    themselves (zig made 21 KB of random dense weights whose trained counterpart it builds in 13 KB)."""
    sparsity = {o.layer: o.sparsity for o in chosen if o.sparsity}
    program = lower(_integer_model(model, _chosen_config(config, chosen), batches, sparsity))
    return checked_flash(program, config)


def _report(chosen: Sequence[Option], options: dict[str, list[Option]], config: Config,
            pinned_sparsity: Mapping[str, float], compiled: int | None, max_instructions: int | None,
            base_acc: float, accounting: _Accounting) -> FitReport:
    import pandas as pd  # the report's table only

    picked = set(chosen)
    encodings = {o.layer: o.encoding for o in chosen}
    sparsity = {o.layer: o.sparsity for o in chosen if o.sparsity} | {p: s for p, s in pinned_sparsity.items() if s}
    table = pd.DataFrame([{"layer": o.layer, "encoding": o.encoding, "sparsity": o.sparsity, "flash": o.flash,
                           "instructions": o.instructions, "accuracy": o.accuracy, "loss": o.loss,
                           "chosen": o in picked} for opts in options.values() for o in opts])
    return FitReport(
        config=_chosen_config(config, chosen), encodings=encodings, sparsity=sparsity,
        flash_estimate=accounting.total(chosen), flash_compiled=compiled, flash_budget=config.flash,
        instructions=accounting.fixed_instructions + sum(o.instructions for o in chosen),
        max_instructions=max_instructions, probe_accuracy=base_acc, accuracy_loss=sum(o.loss for o in chosen),
        reasons={o.layer: _reason(o, options[o.layer]) for o in chosen}, table=table)
