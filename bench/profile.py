"""Where an inference's cycles go: instructions, cycles and stack per layer of the model (``run --profile``).

Why from the emulator and not the board: the firmware carries no instrumentation (each layer is
already a function of its own, ``potnn.codegen.layer_symbols``), and the Unicorn emulator charges
every executed block to the layer whose function it is in, kernels to the layer that called them
(``bench.emulator.layers``). So a profiled run executes the same image, instruction for instruction,
as an unprofiled one.

The figures are means over the inferences of the run, in the layer order of the model, named as the
model names them (``convs.0``). The last row, ``(firmware)``, is what the measured window holds
besides the layers: ``potnn_predict``'s calls, logits copy and argmax, and the cycle-counter reads
around it; the protocol and the UART are outside the window, as they are outside ``cycles_mean``.
So the rows sum to the run's instructions and cycles per inference.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from potnn.bundle import load_bundle
from potnn.codegen.layer_symbols import LayerFunction, layer_functions

from bench.errors import RunError
from bench.exported import BenchModel

#: The row of the measured window's work outside the layers.
FIRMWARE_ROW = "(firmware)"


def profiled_emulator(emulator: str, place: str | None) -> str:
    """The ``--emulator`` a ``--profile`` run uses: unicorn (for auto too), or a one-line refusal."""
    if place:
        raise RunError("--profile runs on the unicorn emulator, --place on a farm's board: leave out one of them")
    if emulator not in ("auto", "unicorn"):
        raise RunError(f"--profile needs the unicorn emulator (its cycle model charges each layer), not "
                       f"--emulator {emulator}: leave out one of them")
    return "unicorn"


class LayerProfiler:
    """Sums each layer's instructions and cycles over a run's inferences, as the emulator reports them."""

    def __init__(self, model: BenchModel) -> None:
        self.functions: list[LayerFunction] = layer_functions(load_bundle(model.bundle).program)
        self.inferences = 0
        self._layers = np.zeros((len(self.functions), 2), dtype=np.int64)   # instructions, cycles
        self._window = np.zeros(2, dtype=np.int64)
        self._reads = 0           # the emulator's counter reads when the last inference was counted
        self.problem: str | None = None   # why the layers cannot be counted (then none are)

    def add(self, emulator: Any) -> None:
        """Count the inference that just answered (``emulator.last_layers()`` and ``last_inference()``).

        An answer the firmware repeats without running the model again (a re-asked INFER) reads the
        counter no more, and is not counted twice. Firmware whose layers cannot be found (a header
        not written by potnn.export) is not profiled, and ``problem`` says why: the run goes on.
        """
        layers = emulator.last_layers()
        instructions, cycles = emulator.last_inference()
        reads = emulator.stats.counter_reads
        if layers is None or instructions is None or reads == self._reads or self.problem:
            return
        self._reads = reads
        missing = [f for f in self.functions if f.symbol not in layers]
        if missing:
            self.problem = (f"the firmware has no function {missing[0].symbol} for layer {missing[0].name} "
                            "(a header not written by potnn.export?)")
            return
        self._layers += np.array([layers[f.symbol] for f in self.functions], dtype=np.int64)
        self._window += (instructions, cycles)
        self.inferences += 1

    def rows(self, stack: Mapping[str, int]) -> list[dict[str, Any]]:
        """summary.json's ``layers``: one entry per layer, then ``(firmware)``; empty when nothing was counted.

        Each entry: name, kind, encoding, function, instructions_mean, cycles_mean, share (of the
        window's cycles) and stack_bytes (deepest stack while it ran; None when not seen).
        """
        if not self.inferences or not self.functions:
            return []
        n = self.inferences
        total_cycles = self._window[1] / n
        out = []
        for f, (instr, cycles) in zip(self.functions, self._layers):
            out.append(dict(name=f.name, kind=f.kind, encoding=f.encoding, function=f.symbol,
                            instructions_mean=float(instr / n), cycles_mean=float(cycles / n),
                            share=float(cycles / n / total_cycles) if total_cycles else None,
                            stack_bytes=stack.get(f.symbol)))
        rest = (self._window - self._layers.sum(axis=0)) / n
        out.append(dict(name=FIRMWARE_ROW, kind="firmware", encoding="", function="potnn_predict",
                        instructions_mean=float(rest[0]), cycles_mean=float(rest[1]),
                        share=float(rest[1] / total_cycles) if total_cycles else None, stack_bytes=None))
        return out


def layer_rows(layers: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The model's layers of a summary's ``layers`` (without the ``(firmware)`` row)."""
    return [row for row in layers if row.get("name") != FIRMWARE_ROW]


def format_profile(summary: Mapping[str, Any]) -> str:
    """The table ``potnn-bench run --profile`` prints: one line per layer, the firmware's rest, the total."""
    layers = summary.get("layers") or []
    if not layers:
        return f"  per-layer profile: none ({summary.get('profile_problem') or 'it needs the unicorn emulator'})"
    head = f"  {'layer':<16} {'kind':<16} {'instructions':>12} {'cycles':>12} {'share':>7} {'max stack':>10}"
    lines = [f"  per layer, mean of {summary.get('profiled_inferences', '?')} inferences:", head]
    for row in layers:
        kind = " ".join(str(v) for v in (row.get("kind"), row.get("encoding")) if v)
        stack = "-" if row.get("stack_bytes") is None else f"{int(row['stack_bytes'])} B"
        share = "-" if row.get("share") is None else f"{100 * float(row['share']):.1f} %"
        lines.append(f"  {row['name']:<16} {kind:<16} {row['instructions_mean']:>12,.0f} {row['cycles_mean']:>12,.0f} "
                     f"{share:>7} {stack:>10}")
    instr = sum(float(r["instructions_mean"]) for r in layers)
    cycles = sum(float(r["cycles_mean"]) for r in layers)
    lines.append(f"  {'total':<16} {'':<16} {instr:>12,.0f} {cycles:>12,.0f} {'100.0 %':>7}")
    return "\n".join(lines)
