"""Unrolled linear layers: each output's nonzero weights as shift-add code over in[]."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..encoding import get_encoding
from .emitter import OpEmitter
from .kernels import gather_kernel_name
from .shift_add import ExponentGroup, exponent_groups, group_constructs, group_lines


@dataclass(frozen=True)
class _Output:
    """One output's weights: the groups written as code and, per (exponent, sign), the count tabled."""

    groups: list[ExponentGroup]
    counts: list[int]
    indices: list[int]

    @property
    def gathered(self) -> bool:
        return any(self.counts)


class UnrolledLinear(OpEmitter):
    """Each output reads in[] through a pointer the compiler must re-read (POTNN_OPAQUE), so that it does
    not try to keep 100+ inputs in RV32EC's 16 registers.

    On the fit ladder (FitChoice.gather_min), an output's groups of at least gather_min equal weights
    become lists of input indices in a table, summed by one call of potnn_gather_* per output: one or
    two bytes per weight instead of about six of code, for a few more instructions per weight."""

    @cached_property
    def levels(self) -> int:
        return get_encoding("unroll").max_shift + 1

    @cached_property
    def index_ctype(self) -> str:
        assert self.op.weight is not None
        return "uint8_t" if self.op.weight.shape[1] < 256 else "uint16_t"  # counts (<= inputs) share the type

    @cached_property
    def outputs(self) -> list[_Output]:
        assert self.op.weight is not None
        gather_min = self.em.fit.gather_min
        outputs = []
        for row in self.op.weight:
            taps: list[tuple[str, int]] = []
            counts, indices = [], []
            for e in range(self.levels - 1, -1, -1):
                for w in (1 << e, -(1 << e)):
                    members = np.flatnonzero(row == w).tolist()
                    gathered = bool(gather_min) and len(members) >= gather_min
                    counts.append(len(members) if gathered else 0)
                    indices += members if gathered else []
                    taps += [] if gathered else [(f"p[{i}]", w) for i in members]
            outputs.append(_Output(exponent_groups(taps), counts, indices))
        return outputs

    def body(self) -> list[str]:
        fn, signed = self.fn, self.em.signed(self.op.inputs[0])
        kernel = gather_kernel_name(signed, self.index_ctype)
        indices: list[int] = []
        counts: list[int] = []
        lines = [f"const {self.in_ctype} *p;", "int32_t acc;" if self.op.final else "int32_t acc, v;"]
        for oc, out in enumerate(self.outputs):
            code = group_lines(out.groups, init=not out.gathered)
            if out.gathered:
                code = [f"acc = {kernel}(p, {fn}_i + {len(indices)}, {fn}_n + {len(counts)});"] + code
                indices += out.indices
                counts += out.counts
                self.em.gather_kernels.add((signed, self.index_ctype))
                self.em.kernel_work[kernel] += len(out.indices)
            # one group's loads at a time: Clang would otherwise load an output's every input first, then spill
            code = [line for statement in code for line in (statement, "POTNN_OPAQUE(acc);")][:-1]
            lines += ["p = in;", "POTNN_OPAQUE(p);"] + code + self.store_biased(oc, f"out[{oc}]")
        if indices:
            self.em.tables.append(f"/* {fn}: the weights summed by {kernel}: per output, the count of each "
                                  f"exponent {self.levels - 1}..0, positive then negative; their input indices */")
            self.em.table(self.index_ctype, f"{fn}_n", counts)
            self.em.table(self.index_ctype, f"{fn}_i", indices)
        return lines

    def constructs(self) -> Counter[str]:
        cost: Counter[str] = Counter(store=len(self.outputs), gather_output=sum(o.gathered for o in self.outputs))
        for out in self.outputs:
            cost.update(group_constructs(out.groups))
        return cost
