"""The regression gate: which runs are comparable, and when the newest is worse than the one before.

Runs are *comparable* when board, model, backend, toolchain (compiler and optimisation), number of
inputs and data (``data_sha256``) are equal. The newest
complete run of each such group is compared with the one before it; accuracy down, mean cycles
up, flash/RAM/stack bytes up (each beyond its threshold), or any logit mismatch with the
reference, is a regression. Older pairs are shown in the report but do not fail it (a
regression fixed since must not fail every later night).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from bench.results import RunRecord


@dataclass(frozen=True)
class Thresholds:
    """How much worse the newest run may be before it counts as a regression."""

    accuracy_drop_pp: float = 0.0     # percentage points
    cycles_increase_pct: float = 0.0  # percent of the previous mean
    size_increase_bytes: int = 0      # flash, RAM and stack, each
    allow_mismatches: bool = False


#: (board, model, backend, toolchain, n, data_sha256): what must be equal for two runs to be compared.
GroupKey = tuple[str, str, str, str, int, str]


@dataclass(frozen=True)
class Finding:
    """One comparison outcome (a regression, or an improvement/neutral change for the table)."""

    run_id: str
    previous_id: str | None
    group: GroupKey
    metric: str
    previous: float | None
    current: float | None
    regression: bool
    message: str


def group_key(run: RunRecord) -> GroupKey:
    s = run.info
    return (str(s.get("board")), str(s.get("model")), str(s.get("backend")), str(s.get("toolchain") or ""),
            int(s.get("n") or 0), str(s.get("data_sha256") or ""))


def group_label(key: GroupKey) -> str:
    """``board / model / backend / compiler -O``: how tables, plots and the console name a group
    (``zig cc 0.17.1 -Os`` shows as ``zig -Os``)."""
    words = key[3].split()
    toolchain = f"{words[0]} {words[-1]}" if len(words) > 1 else key[3]
    return " / ".join(str(k) for k in (*key[:3], *([toolchain] if toolchain else [])))


def run_order(run: RunRecord) -> tuple[str, str]:
    return (str(run.info.get("finished") or run.info.get("started") or ""), run.run_id)


def groups(runs: Iterable[RunRecord]) -> dict[GroupKey, list[RunRecord]]:
    """Complete runs by comparability group, oldest first."""
    out: dict[GroupKey, list[RunRecord]] = {}
    for r in runs:
        if r.complete:
            out.setdefault(group_key(r), []).append(r)
    for v in out.values():
        v.sort(key=run_order)
    return out


def compare(prev: RunRecord | None, cur: RunRecord, th: Thresholds) -> list[Finding]:
    """Findings of ``cur`` against ``prev`` (None: only the mismatch check applies)."""
    s = cur.summary or {}
    key = group_key(cur)
    out: list[Finding] = []
    pid = prev.run_id if prev else None
    mism = s.get("mismatches")
    if mism:
        out.append(Finding(cur.run_id, pid, key, "mismatches", None, float(mism), not th.allow_mismatches,
                           f"{mism} input(s) whose logits differ from potnn.simulate"))
    if prev is None:
        return out
    p = prev.summary or {}

    def num(d: dict[str, Any], k: str) -> float | None:
        v = d.get(k)
        return None if v is None else float(v)

    a0, a1 = num(p, "accuracy"), num(s, "accuracy")
    if a0 is not None and a1 is not None and a1 != a0:
        drop_pp = (a0 - a1) * 100
        out.append(Finding(cur.run_id, pid, key, "accuracy", a0, a1, drop_pp > th.accuracy_drop_pp + 1e-9,
                           f"accuracy {a0:.2%} -> {a1:.2%} ({-drop_pp:+.2f} pp)"))
    c0, c1 = num(p, "cycles_mean"), num(s, "cycles_mean")
    if c0 and c1 is not None and c1 != c0:
        pct = (c1 - c0) / c0 * 100
        out.append(Finding(cur.run_id, pid, key, "cycles_mean", c0, c1, pct > th.cycles_increase_pct + 1e-9,
                           f"cycles/inference {c0:,.0f} -> {c1:,.0f} ({pct:+.2f} %)"))
    for k in ("flash_bytes", "ram_bytes", "stack_bytes"):
        b0, b1 = num(p, k), num(s, k)
        if b0 is not None and b1 is not None and b1 != b0:
            out.append(Finding(cur.run_id, pid, key, k, b0, b1, b1 - b0 > th.size_increase_bytes,
                               f"{k} {b0:,.0f} -> {b1:,.0f} ({b1 - b0:+,.0f} B)"))
    return out


def all_comparisons(runs: Sequence[RunRecord], th: Thresholds) -> tuple[list[Finding], list[Finding]]:
    """(findings of the newest run of every group, findings of every older pair)."""
    latest: list[Finding] = []
    history: list[Finding] = []
    for seq in groups(runs).values():
        for i, cur in enumerate(seq):
            found = compare(seq[i - 1] if i else None, cur, th)
            (latest if i == len(seq) - 1 else history).extend(found)
    return latest, history


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    """The thresholds of ``bench.options.threshold_options``."""
    return Thresholds(args.max_accuracy_drop, args.max_cycles_increase, args.max_size_increase,
                      args.allow_mismatches)
