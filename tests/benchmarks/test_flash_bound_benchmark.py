"""Benchmark: the flash bound against what GCC and zig build, for both cores, over random architectures.

Run: ``pytest -m benchmark -s tests/benchmarks/test_flash_bound_benchmark.py``. For the zoo's headers
and ``POTNN_BOUND_MODELS`` random architectures (default 80; tests/random_models.py), each header is
compiled as export measures it (potnn.codegen.compiled) with every toolchain present, for a board of
each core. Prints per core and toolchain: how the compiled code compares with the estimate (which is
fitted to GCC on RV32EC), and how far the bound is above the compiled size; fails if any compiled
size is above the bound. The bound only decides a plain Config far inside its budget (near it, export
compiles), so its slack costs a compile, never flash.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

import potnn
from potnn.codegen.budget import CODE_BOUND, CODE_BOUND_BYTES
from potnn.codegen.compiled import core_boards, measure
from random_models import make_case
from test_flash_bound import header_macro, header_bound

pytestmark = pytest.mark.benchmark


def test_the_bound_over_random_architectures(tmp_path: Path) -> None:
    n = int(os.environ.get("POTNN_BOUND_MODELS", "80"))
    headers = {p.parent.name: p.read_text() for p in (Path(potnn.__file__).parent / "zoo" / "models").glob("*/*.h")}
    for seed in range(n):
        case = make_case(seed, n_images=16)
        potnn.export(case.model, tmp_path / f"s{seed}.h", case.config)
        headers[f"seed {seed}"] = (tmp_path / f"s{seed}.h").read_text()
    rows = []
    for name, text in headers.items():
        estimate, weights = header_macro(text, "POTNN_FLASH_ESTIMATE"), header_macro(text, "POTNN_WEIGHT_BYTES")
        bound = header_bound(text)
        for facts in core_boards():
            for kind, c in measure(text, facts).items():
                rows.append(dict(model=name, core=facts.arch, toolchain=kind, estimate=estimate, weights=weights,
                                 flash=c.flash, bound=bound))
    df = pd.DataFrame(rows)
    df["code_ratio"] = (df.flash - df.weights) / (df.estimate - df.weights)
    df["slack"] = df.bound / df.flash
    table = df.groupby(["core", "toolchain"]).agg(
        headers=("model", "size"), code_vs_estimate_median=("code_ratio", "median"),
        code_vs_estimate_max=("code_ratio", "max"), bound_slack_median=("slack", "median"),
        bound_slack_min=("slack", "min"))
    print(f"\nflash bound = weights + {CODE_BOUND} x estimated code + {CODE_BOUND_BYTES} B; "
          f"{len(headers)} headers (the zoo and {n} random architectures)")
    print(table.round(3).to_string())
    worst = df.sort_values("code_ratio", ascending=False).head(5)
    print("furthest past the estimate:\n" + worst[["model", "core", "toolchain", "estimate", "weights", "flash",
                                                   "bound"]].to_string(index=False))
    over = df[df.flash > df.bound]
    assert over.empty, f"compiled above the bound:\n{over.to_string(index=False)}"
