"""Results integrity: one directory per run, atomic files, concurrent runs side by side."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bench import results as R

REPO = Path(__file__).resolve().parent.parent

WRITER = r"""
import json, sys
from pathlib import Path
from bench.results import write_json_atomic
path, naive = Path(sys.argv[1]), sys.argv[2] == "naive"
big = {"rows": [[i, i * 3, "x" * 40] for i in range(60000)]}
k = 0
print("ready", flush=True)
while True:
    k += 1
    big["k"] = k
    if naive:                       # the usual way: json.dump streams into the open file
        with open(path, "w") as f:
            json.dump(big, f)
    else:
        write_json_atomic(path, big)
"""


def _kill_while_writing(tmp_path: Path, naive: bool, kills: int) -> int:
    """SIGKILL a process that rewrites one JSON file in a loop; count the kills that left it unreadable."""
    path = tmp_path / ("naive.json" if naive else "summary.json")
    torn = 0
    for i in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "naive" if naive else "atomic"],
                                cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.15 + 0.037 * (i % 7))            # somewhere in the middle of some write
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        if not path.exists():
            continue
        try:
            R.read_json(path)
        except R.ResultsError:
            torn += 1
            if not naive:
                break
    return torn


def test_json_is_never_half_written_even_when_the_writer_is_killed(tmp_path: Path) -> None:
    assert _kill_while_writing(tmp_path, naive=False, kills=12) == 0


def test_the_kill_test_does_catch_a_plain_write(tmp_path: Path) -> None:
    """Control: the same kills do leave a half-written file behind a plain ``json.dump``."""
    assert _kill_while_writing(tmp_path, naive=True, kills=12) >= 1


def test_every_run_gets_its_own_directory(tmp_path: Path) -> None:
    when = datetime(2024, 1, 1, tzinfo=timezone.utc)
    ids = {R.make_run_id("ch32v003", "m", when) for _ in range(200)}
    assert len(ids) == 200                             # same board, model and second: still distinct
    meta = {"run_id": next(iter(ids)), "board": "ch32v003"}
    R.create_run(tmp_path, meta)
    with pytest.raises(FileExistsError):
        R.create_run(tmp_path, meta)                   # a run never reuses another's directory


def test_two_runs_at_once_do_not_clobber_each_other(tmp_path: Path) -> None:
    """Two `potnn-bench run` processes, same model, board, build and results directories."""
    from firmware_models import export_tiny, mnist_for_subprocess

    _, env = mnist_for_subprocess()
    m = export_tiny(tmp_path, n_images=2)          # its bundle names mnist16: the data the runs stream
    results, build_dir = tmp_path / "results", tmp_path / "build"     # build_dir is new: both build at once
    cmd = [sys.executable, "-m", "bench.cli", "run", "--board", "ch32v003", "--header", str(m.header),
           "--emulator", "unicorn", "--limit", "40", "--results", str(results), "--build-dir", str(build_dir)]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "mismatches 0" in out
    runs = sorted(R.run_dirs(results))
    assert len(runs) == 2
    for d in runs:
        rec = R.load_run(d)
        assert rec.complete and rec.summary is not None and rec.summary["n"] == 40
        assert rec.rows["index"].tolist() == list(range(40))
    assert json.loads((build_dir / "build.json").read_text())["board"] == "ch32v003"
    assert not list(results.glob("*/.*.tmp")) and not list(build_dir.glob(".*.tmp"))
