"""Benchmark: ``potnn-bench nightly --jobs 2`` against ``--jobs 1`` with two emulated jobs.

Run: ``pytest -m benchmark -s tests/benchmarks/test_nightly_jobs_benchmark.py``. Two jobs of
the same size (mnist16-fast on the CH32V003 emulator, two sets of random inputs, no labels)
run one after the other, then as two processes at once; it prints both wall times, their ratio
and the load average around them. The goal on two cores: the parallel night takes at most 0.65
of the sequential one. Both timed nights start with the firmware built and the reference
logits cached (an untimed night first), so they differ only in how the jobs are scheduled;
each kind runs twice, alternated, and the best of each is compared. A machine busy with other
work stretches the parallel night most: read the load average it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.benchmark

REPO = Path(__file__).resolve().parents[2]
#: Inputs per job: long enough that process start-up is small beside the emulation.
N = int(os.environ.get("POTNN_NIGHTLY_BENCH_N", "600"))
#: Timed nights of each kind, alternated; the best of each is compared (the least disturbed).
ROUNDS = 2
GOAL = 0.65


def _night(data: list[Path], jobs: int, results: Path) -> float:
    cmd = [sys.executable, "-m", "bench.cli", "nightly", "--boards", "ch32v003", "--models", "mnist16-fast",
           "--emulator", "unicorn", "--data", *map(str, data), "--jobs", str(jobs), "--results", str(results)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    assert done.returncode == 0, f"nightly --jobs {jobs} exited {done.returncode}:\n{done.stdout}{done.stderr[-3000:]}"
    summaries = [json.loads(p.read_text()) for p in results.glob("*/summary.json")]
    assert len(summaries) == len(data) and all(s["n"] == N and s["mismatches"] == 0 for s in summaries)
    return wall


def test_two_emulated_jobs_in_parallel(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = []
    for k in range(2):
        path = tmp_path / f"inputs{k}.npz"
        np.savez(path, x=rng.integers(0, 256, (N, 1, 16, 16), dtype=np.uint8))
        data.append(path)
    _night(data, 1, tmp_path / "warm")              # builds and caches the references
    load0 = os.getloadavg()[0]
    times: dict[int, list[float]] = {1: [], 2: []}
    for r in range(ROUNDS):                          # alternated, so a burst of other work hits both
        for jobs in (1, 2):
            times[jobs].append(_night(data, jobs, tmp_path / f"jobs{jobs}-{r}"))
    load1 = os.getloadavg()[0]
    sequential, parallel = min(times[1]), min(times[2])
    ratio = parallel / sequential
    print(f"\nnightly, 2 emulated jobs of {N} inputs (mnist16-fast, ch32v003, unicorn) on {os.cpu_count()} cores: "
          f"--jobs 1 {' / '.join(f'{t:.1f}' for t in times[1])} s, "
          f"--jobs 2 {' / '.join(f'{t:.1f}' for t in times[2])} s; "
          f"best {sequential:.1f} s vs {parallel:.1f} s: ratio {ratio:.2f} (goal <= {GOAL}); "
          f"load average {load0:.1f} before, {load1:.1f} after")
    assert ratio <= GOAL, f"--jobs 2 took {ratio:.2f} of --jobs 1 (goal {GOAL}); load average {load1:.1f}"
