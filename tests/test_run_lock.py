"""A run folder has one writer: a second one is refused in one line naming the first, and a dead
holder's lock is gone (the kernel releases it), so nothing is ever cleaned up by hand.

Every writer here is a real separate process, as two terminals or two CI jobs would be.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from bench import results as R
from bench.runlock import LOCK_FILE, RunLock, RunLocked
from bench.run_plan import finish_run, plan_run
from bench.stream import Inference, stream

K = 4
N = 60
META = dict(board="ch32v003", model="m", model_hash="hash-a", backend="unicorn", flash_bytes=1, ram_bytes=1,
            stack_bytes=1, toolchain="t", git_commit="g", started="2024-01-01T00:00:00Z")
CTX = mp.get_context("fork")


def _images() -> np.ndarray:
    return np.arange(N * 4, dtype=np.uint8).reshape(N, 4)


def _answer(image: bytes) -> Inference:
    """A slow board: every answer takes a few milliseconds, so two writers would overlap."""
    time.sleep(0.02)
    i = image[0] // 4
    return Inference(i % K, [i, 0, 0, 0], 100 + i)


def _interrupted_run(results: Path, done: int) -> Path:
    """A run of N inputs with ``done`` rows logged, its lock released (as after Ctrl-C)."""
    with plan_run(results, META, N, None) as plan, R.RowWriter(plan.run_dir / R.ROWS_CSV, K) as w:
        stream(_images(), None, plan.todo[:done], _answer, w, None)
    return plan.run_dir


def _hold(run_dir: Path, ready: "mp.synchronize.Event") -> None:
    RunLock(run_dir)
    ready.set()
    time.sleep(60)


def _resume(results: Path, run_id: str, start: "mp.synchronize.Event", out: "mp.Queue[str]") -> None:
    start.wait()
    try:
        plan = plan_run(results, META, N, run_id)
    except RunLocked as e:
        out.put(f"locked {os.getpid()}: {e}")
        return
    with R.RowWriter(plan.run_dir / R.ROWS_CSV, K) as w:
        stream(_images(), None, plan.todo, _answer, w, None)
    finish_run(plan, _images())
    out.put(f"done {os.getpid()}")


def test_second_writer_gets_one_line_naming_the_holder_and_a_dead_holders_lock_is_gone(tmp_path: Path) -> None:
    run_dir = _interrupted_run(tmp_path, 10)
    ready = CTX.Event()
    holder = CTX.Process(target=_hold, args=(run_dir, ready))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RunLocked) as e:
            plan_run(tmp_path, META, N, run_dir.name)
        msg = str(e.value)
        assert "\n" not in msg
        assert msg.startswith(f"run {run_dir.name} is being written by pid {holder.pid} on host "
                              f"{socket.gethostname()} since 20")
        assert msg.endswith("wait for that run to end (or stop it), then --resume it")
        with pytest.raises(RunLocked):
            plan_run(tmp_path, META, N, "latest")     # a bare --resume finds it, and is refused too
        assert len(R.read_rows(run_dir / R.ROWS_CSV)) == 10   # the refused writer touched nothing
    finally:
        os.kill(holder.pid, signal.SIGKILL)           # no chance to unlock: the kernel must do it
        holder.join(30)
    with plan_run(tmp_path, META, N, run_dir.name) as plan:
        assert plan.done_rows == 10 and plan.todo == list(range(10, N))
    assert (run_dir / LOCK_FILE).read_text() == ""    # released: no holder named


def test_two_resumes_at_once_never_interleave_rows(tmp_path: Path) -> None:
    run_dir = _interrupted_run(tmp_path, 5)
    start = CTX.Event()
    out: "mp.Queue[str]" = CTX.Queue()
    procs = [CTX.Process(target=_resume, args=(tmp_path, run_dir.name, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    said = sorted(out.get(timeout=5) for _ in procs)
    assert [s.split()[0] for s in said] == ["done", "locked"], said
    winner = int(said[0].split()[1])
    assert f"is being written by pid {winner} " in said[1]
    rows = R.read_rows(run_dir / R.ROWS_CSV)
    assert rows["index"].tolist() == list(range(N))   # in order, each once
    assert R.load_run(run_dir).complete


def test_a_new_run_is_locked_before_its_run_json_exists(tmp_path: Path) -> None:
    """A bare ``--resume`` racing a starting run must never find it unlocked."""
    with plan_run(tmp_path, META, N, None) as plan:
        assert (plan.run_dir / R.RUN_JSON).exists()
        with pytest.raises(RunLocked, match=f"pid {os.getpid()} "):
            plan_run(tmp_path, META, N, "latest")
