"""Unrolled convs whose receptive field is too big for a stack copy: taps read the input in place, and
the taps that can fall into the padding are grouped under one test per kernel row/column combination."""

from __future__ import annotations

from collections import Counter
from functools import cached_property

from .cwriter import INT32_MIN, CWriter, steps
from .emitter import OpEmitter
from .geometry import ConvGeometry, PositionLoops
from .shift_add import ExponentGroup, exponent_groups, group_constructs, group_lines


class GuardedUnrolledConv(OpEmitter):

    @cached_property
    def guards(self) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
        return ConvGeometry.of(self.op, pooled=False).guards()

    @cached_property
    def outputs(self) -> list[list[tuple[str, list[ExponentGroup]]]]:
        """Per output channel, its taps grouped by padding test ('' for none), sorted by test."""
        op = self.op
        assert op.weight is not None
        c, h, w = op.in_shape
        (kh, kw) = op.kernel
        icpg, ocpg = c // op.groups, op.out_shape[0] // op.groups
        rows, cols = self.guards
        outputs = []
        for oc in range(op.out_shape[0]):
            by_guard: dict[str, list[tuple[str, int]]] = {}
            for j in range(icpg):
                ic = oc // ocpg * icpg + j
                for ky in range(kh):
                    for kx in range(kw):
                        wv = int(op.weight[oc, j, ky, kx])
                        if wv:
                            guard = " && ".join(([f"ry{ky}"] if ky in rows else []) + ([f"cx{kx}"] if kx in cols else []))
                            by_guard.setdefault(guard, []).append((f"in[base + {ic * h * w + ky * w + kx}]", wv))
            outputs.append([(guard, exponent_groups(taps)) for guard, taps in sorted(by_guard.items())])
        return outputs

    def body(self) -> list[str]:
        op = self.op
        oc_n = op.out_shape[0]
        rows, cols = self.guards
        loops = PositionLoops(op)
        pooled = op.pool is not None
        out = CWriter()
        out("int32_t acc;" if op.final else "int32_t acc, v;", "int pos = 0;")
        if pooled:
            out(f"int32_t best[{oc_n}];")
        with loops.outputs(out):
            out(steps("pos"))
            if pooled:
                out(f"for (int oc = 0; oc < {oc_n}; oc++) best[oc] = {INT32_MIN};")
            with loops.window(out):
                for ky, conds in rows.items():
                    out(f"const int ry{ky} = {' && '.join(c.replace('@', 'iy0') for c in conds)};")
                for kx, conds in cols.items():
                    out(f"const int cx{kx} = {' && '.join(c.replace('@', 'ix0') for c in conds)};")
                for oc, guarded_groups in enumerate(self.outputs):
                    bias, shift = self.bias_shift(oc)
                    out(f"acc = {bias};")
                    for guard, groups in guarded_groups:
                        if guard:
                            with out.block(f"if ({guard})"):
                                out.extend(group_lines(groups))
                        else:
                            out.extend(group_lines(groups))
                    if pooled:
                        out(f"if (acc > best[{oc}]) best[{oc}] = acc;")
                    else:
                        out.extend(self.store(f"out[{oc * loops.plane} + pos]", shift))
            if pooled:
                for oc in range(oc_n):
                    out.extend(self.store(f"out[{oc * loops.plane} + pos]", self.bias_shift(oc)[1], f"best[{oc}]"))
            out("pos++;")
        return out.lines

    def constructs(self) -> Counter[str]:
        cost: Counter[str] = Counter(conv_loops=1, store=len(self.outputs))
        for guarded_groups in self.outputs:
            for guard, groups in guarded_groups:
                cost.update(group_constructs(groups, tap="conv_tap"))
                cost.update(guard=1 if guard else 0)
        return cost
