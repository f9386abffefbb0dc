"""Results integrity: one directory per run, atomic files, concurrent runs side by side."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
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


# ------------------------------------------------------------------ every state a crash or a full disk leaves
K = 4
N = 12
META = dict(board="ch32v003", model="m", model_hash="hash-a", backend="unicorn", flash_bytes=1, ram_bytes=1,
            stack_bytes=1, toolchain="t", git_commit="g", started="2024-01-01T00:00:00Z")


def _row(i: int) -> R.Row:
    return R.Row(i, i % K, i % K, i % K, True, 100 + i, None, [i, 0, 0, 0])


def _started_run(tmp_path: Path, rows: int) -> Path:
    from bench.run_plan import plan_run

    with plan_run(tmp_path, META, N, None) as plan, R.RowWriter(plan.run_dir / R.ROWS_CSV, K) as w:
        for i in range(rows):
            w.append(_row(i))
    return plan.run_dir


def _resume_and_finish(tmp_path: Path, run: str) -> tuple[int, list[int]]:
    """``--resume`` the run: stream what remains and seal it; (rows found, indices of the whole run)."""
    import numpy as np

    from bench.run_plan import finish_run, plan_run

    with plan_run(tmp_path, META, 0, run) as plan:
        found = plan.done_rows
        with R.RowWriter(plan.run_dir / R.ROWS_CSV, K) as w:
            for i in plan.todo:
                w.append(_row(i))
        finish_run(plan, np.zeros((N, 1, 2, 2), np.uint8))
    rec = R.load_run(plan.run_dir)
    assert rec.complete
    return found, rec.rows["index"].tolist()


@pytest.mark.parametrize("state, kept", [
    ("empty rows.csv", 0),             # killed (or disk full) between run.json and the header line
    ("torn header line", 0),           # killed in the middle of the header line
    ("header only", 0),
    ("torn last row", 5),              # killed in the middle of a row
    ("no rows.csv", 0),
    ("failures.npz without summary.json", N),   # killed while sealing the run
])
def test_every_partial_state_is_recovered_by_resume(tmp_path: Path, state: str, kept: int) -> None:
    run_dir = _started_run(tmp_path, N if "failures" in state else 5)
    rows = run_dir / R.ROWS_CSV
    if state == "empty rows.csv":
        rows.write_bytes(b"")
    elif state == "torn header line":
        rows.write_bytes(b"index,label,pr")
    elif state == "header only":
        rows.write_text(",".join([*R.BASE_COLUMNS, *R.logit_columns(K)]) + "\n")
    elif state == "torn last row":
        with open(rows, "a") as f:
            f.write("5,1,1,1,1,10")
    elif state == "no rows.csv":
        rows.unlink()
    else:
        R.write_failures(run_dir, [], np.zeros((0, 1, 2, 2), np.uint8))
    partial = R.load_run(run_dir)       # what a report reads meanwhile: an incomplete run, not a damaged one
    assert not partial.complete and len(partial.rows) == kept
    found, indices = _resume_and_finish(tmp_path, run_dir.name)
    assert found == kept
    assert indices == list(range(N))


def test_a_run_folder_that_lost_run_json_before_any_row_is_resumed(tmp_path: Path) -> None:
    """Killed between creating the folder and writing run.json: the folder is this run's to finish."""
    run_dir = _started_run(tmp_path, 0)
    (run_dir / R.RUN_JSON).unlink()
    (run_dir / R.ROWS_CSV).unlink()
    from bench.run_plan import finish_run, plan_run

    with plan_run(tmp_path, META, N, run_dir.name) as plan:
        assert plan.todo == list(range(N)) and R.read_json(run_dir / R.RUN_JSON)["model_hash"] == "hash-a"
        with R.RowWriter(run_dir / R.ROWS_CSV, K) as w:
            for i in plan.todo:
                w.append(_row(i))
        finish_run(plan, np.zeros((N, 1, 2, 2), np.uint8))
    assert R.load_run(run_dir).complete


def test_rows_without_run_json_are_refused_in_one_line(tmp_path: Path) -> None:
    from bench.errors import RunError
    from bench.run_plan import plan_run

    run_dir = _started_run(tmp_path, 3)
    (run_dir / R.RUN_JSON).unlink()
    with pytest.raises(RunError, match=r"cannot resume: .*run\.json: missing"):
        plan_run(tmp_path, META, N, run_dir.name)


def test_a_full_disk_is_reported_naming_rows_csv_real_enospc_from_dev_full(tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC: the kernel's own full disk."""
    import errno
    import os

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    rows = tmp_path / R.ROWS_CSV
    rows.symlink_to("/dev/full")
    with pytest.raises(OSError) as e:
        R.RowWriter(rows, K)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(rows)


def test_a_row_torn_by_a_full_disk_is_cut_back_simulated_enospc(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A disk that fills up in the middle of a row (simulated: os.write writes half, then ENOSPC)."""
    import errno
    import os

    path = tmp_path / R.ROWS_CSV
    w = R.RowWriter(path, K)
    w.append(_row(0))
    real_write = os.write
    calls = {"n": 0}

    def half_then_full(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError) as e:
        w.append(_row(1))
    monkeypatch.setattr(os, "write", real_write)
    w.close()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert path.read_text().endswith("\n")                   # the half row is gone at once
    assert R.read_rows(path)["index"].tolist() == [0]


def test_json_write_on_a_full_disk_names_the_file_not_its_temporary_simulated_enospc(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    import bench.atomic

    def full(*_a: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bench.atomic.os, "fsync", full)       # simulated: the data does not fit on disk
    target = tmp_path / R.SUMMARY_JSON
    with pytest.raises(OSError) as e:
        R.write_json_atomic(target, {"a": 1})
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert not target.exists() and not list(tmp_path.glob(".*.tmp"))
