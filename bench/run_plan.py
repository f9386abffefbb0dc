"""A run's directory: created before the first input, reopened by ``--resume``, sealed at the end.

``plan_run`` fixes where rows go and which inputs remain; ``finish_run`` writes the files that
mark a run complete. The files themselves are ``bench.results``'s (its docstring documents them).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from bench import results as store
from bench.errors import RunError
from bench.runlock import LOCK_FILE, RunLock


def git_commit(repo: Path | None = None) -> str | None:
    """Short commit of the checkout (``+dirty`` when it has changes), for the trend plot."""
    cwd = repo or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


@dataclass
class RunPlan:
    """Everything fixed before the first input: where rows go, which inputs remain, and the run's lock.

    The lock (``bench.runlock``) is held from before the first read of rows.csv until
    ``finish_run`` or ``release()`` (``with plan_run(...) as plan:`` releases it on any exit).
    """

    run_dir: Path
    meta: dict[str, Any]
    todo: list[int]
    done_rows: int
    correct: int
    mismatches: int
    lock: RunLock | None = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> "RunPlan":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _new_run(results_dir: Path, meta: Mapping[str, Any], n: int) -> RunPlan:
    """Make the run folder, lock it, then write run.json (no other writer can see it unlocked)."""
    m = dict(meta)
    m["run_id"] = store.make_run_id(str(m["board"]), str(m["model"]))
    m["n"] = n
    run_dir = results_dir / str(m["run_id"])
    run_dir.mkdir(parents=True, exist_ok=False)
    lock = RunLock(run_dir)
    try:
        store.write_json_atomic(run_dir / store.RUN_JSON, m)
    except BaseException:
        lock.release()        # e.g. a full disk: leave no empty run folder behind
        (run_dir / LOCK_FILE).unlink(missing_ok=True)
        run_dir.rmdir()
        raise
    return RunPlan(run_dir, m, list(range(n)), 0, 0, 0, lock)


def _resumed_meta(run_dir: Path, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The run's run.json; a folder that lost it (killed before it was written) gets this run's.

    A folder with rows but no run.json is refused: nothing says which model wrote those rows.
    """
    try:
        return store.read_json(run_dir / store.RUN_JSON)
    except store.ResultsError as e:
        rows = run_dir / store.ROWS_CSV
        if e.reason == "missing" and run_dir.is_dir() and not (run_dir / store.SUMMARY_JSON).exists():
            try:
                empty = not rows.exists() or store.read_rows(rows, allow_torn_tail=True).empty
            except store.ResultsError:
                empty = False
            if empty:
                return {**meta, "run_id": run_dir.name, "n": 0}
        raise RunError(f"cannot resume: {e}") from None


def plan_run(results_dir: Path, meta: Mapping[str, Any], n: int, resume: str | Path | None) -> RunPlan:
    """Create a new run directory, or reopen ``resume`` (a path, a run id, or "latest"); lock it.

    Resuming refuses a run of another board, model hash, data (``data_sha256``) or toolchain: mixing
    rows of two models, two test sets or two builds would make every figure of the run meaningless. It refuses a run
    another live process writes (``bench.runlock.RunLocked``, naming that process), and recovers
    what a crash or a full disk leaves: a torn last row, an empty rows.csv, a lost run.json
    before any row, failures.npz without summary.json.
    """
    results_dir = Path(results_dir)
    if resume is None:
        return _new_run(results_dir, meta, n)
    if str(resume) == "latest":
        found = store.find_resumable(results_dir, str(meta["board"]), str(meta["model_hash"]))
        if found is None:
            raise RunError(f"nothing to resume in {results_dir}: no incomplete run of "
                           f"{meta['model']} on {meta['board']}")
        run_dir = found
    else:
        cand = Path(resume)
        run_dir = cand if (cand / store.RUN_JSON).exists() else results_dir / str(resume)
    if (run_dir / store.SUMMARY_JSON).exists():
        raise RunError(f"run {run_dir.name} is already complete")
    old = _resumed_meta(run_dir, meta)
    if "data_sha256" in meta and old.get("data_sha256") != meta["data_sha256"]:
        raise RunError(f"cannot resume {run_dir.name}: it streamed other data ({old.get('dataset')}, data_sha256 "
                       f"{str(old.get('data_sha256'))[:12]}), this run has {meta.get('dataset')} "
                       f"({str(meta['data_sha256'])[:12]}): pass the --data the run started with")
    for key in ("board", "model_hash", "backend"):
        if old.get(key) != meta.get(key):
            raise RunError(f"cannot resume {run_dir.name}: it ran {key}={old.get(key)}, "
                           f"this run has {key}={meta.get(key)}")
    if old.get("toolchain") != meta.get("toolchain"):      # other code: its cycles and sizes would mix
        raise RunError(f"cannot resume {run_dir.name}: it ran firmware built by {old.get('toolchain')}, this run "
                       f"has {meta.get('toolchain')}: pass the --toolchain and --opt the run started with")
    lock = RunLock(run_dir)          # before rows.csv is read or cut: the only writer from here on
    try:
        return _reopen(run_dir, old, meta, n, lock)
    except BaseException:
        lock.release()
        raise


def _reopen(run_dir: Path, old: dict[str, Any], meta: Mapping[str, Any], n: int, lock: RunLock) -> RunPlan:
    """Read the rows so far (cutting a torn last line) and plan the rest; run.json records the resume."""
    if (run_dir / store.SUMMARY_JSON).exists():   # finished by the writer that held the lock till now
        raise RunError(f"run {run_dir.name} is already complete")
    rows_path = run_dir / store.ROWS_CSV
    rows = None
    if rows_path.exists():
        store.truncate_torn_tail(rows_path)
        try:
            rows = store.read_rows(rows_path, allow_torn_tail=True)
        except store.ResultsError as e:
            raise RunError(f"cannot resume: {e}") from None
    m = dict(old)
    m.update({k: v for k, v in meta.items() if k not in ("run_id", "started", "n", "link")})
    m["n"] = max(int(old.get("n") or 0), n) if n else int(old.get("n") or 0)
    m.setdefault("resumed", [])
    m["resumed"] = [*m["resumed"], store.utc_now()]
    store.write_json_atomic(run_dir / store.RUN_JSON, m)
    done: set[int] = set()
    correct = mism = 0
    if rows is not None and len(rows):
        done = set(int(i) for i in rows["index"])
        correct = int((rows["pred"] == rows["label"]).sum())
        mism = int((rows["match"] == 0).sum())
    todo = [i for i in range(int(m["n"])) if i not in done]
    return RunPlan(run_dir, m, todo, len(done), correct, mism, lock)


def finish_run(plan: RunPlan, images: np.ndarray) -> dict[str, Any]:
    """Write failures.npz and summary.json (the mark of a complete run); return the summary."""
    rows = store.read_rows(plan.run_dir / store.ROWS_CSV)
    bad = store.wrong_rows(rows)
    idx = [int(i) for i in bad["index"]]
    store.write_failures(plan.run_dir, idx, images[idx] if idx else np.zeros((0, *images.shape[1:]), np.uint8))
    meta = {k: v for k, v in plan.meta.items() if k not in ("n", "finished")}
    summary = store.summarize(rows, meta)
    store.write_json_atomic(plan.run_dir / store.SUMMARY_JSON, summary)
    plan.release()
    return summary


def merge_link_stats(before: Mapping[str, Any] | None, part: Mapping[str, Any]) -> dict[str, Any]:
    """A run's link statistics over all its parts: counts add up, other values are the newest part's.

    Why: a resumed run's summary must describe the whole run, not its last part; each part that
    ends with a message (interrupt, link failure, full disk) records its figures in run.json.
    """
    out: dict[str, Any] = dict(before or {})
    for key, value in part.items():
        prev = out.get(key)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and isinstance(prev, (int, float)) and not isinstance(prev, bool):
            out[key] = prev + value
        else:
            out[key] = value
    return out
