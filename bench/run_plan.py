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
    """Everything fixed before the first input: where rows go and which inputs remain."""

    run_dir: Path
    meta: dict[str, Any]
    todo: list[int]
    done_rows: int
    correct: int
    mismatches: int


def plan_run(results_dir: Path, meta: Mapping[str, Any], n: int, resume: str | Path | None) -> RunPlan:
    """Create a new run directory, or reopen ``resume`` (a path, a run id, or "latest").

    Resuming refuses a run of another board, model hash or data (``data_sha256``): mixing rows of
    two models or two test sets would make every figure of the run meaningless.
    """
    results_dir = Path(results_dir)
    if resume is None:
        m = dict(meta)
        m["run_id"] = store.make_run_id(str(m["board"]), str(m["model"]))
        m["n"] = n
        run_dir = store.create_run(results_dir, m)
        return RunPlan(run_dir, m, list(range(n)), 0, 0, 0)
    if str(resume) == "latest":
        found = store.find_resumable(results_dir, str(meta["board"]), str(meta["model_hash"]))
        if found is None:
            raise RunError(f"nothing to resume in {results_dir}: no incomplete run of "
                           f"{meta['model']} on {meta['board']}")
        run_dir = found
    else:
        cand = Path(resume)
        run_dir = cand if (cand / store.RUN_JSON).exists() else results_dir / str(resume)
    try:
        old = store.read_json(run_dir / store.RUN_JSON)
    except store.ResultsError as e:
        raise RunError(f"cannot resume: {e}") from None
    if (run_dir / store.SUMMARY_JSON).exists():
        raise RunError(f"run {run_dir.name} is already complete")
    if "data_sha256" in meta and old.get("data_sha256") != meta["data_sha256"]:
        raise RunError(f"cannot resume {run_dir.name}: it streamed other data ({old.get('dataset')}, data_sha256 "
                       f"{str(old.get('data_sha256'))[:12]}), this run has {meta.get('dataset')} "
                       f"({str(meta['data_sha256'])[:12]}): pass the --data the run started with")
    for key in ("board", "model_hash", "backend"):
        if old.get(key) != meta.get(key):
            raise RunError(f"cannot resume {run_dir.name}: it ran {key}={old.get(key)}, "
                           f"this run has {key}={meta.get(key)}")
    rows_path = run_dir / store.ROWS_CSV
    if rows_path.exists():
        store.truncate_torn_tail(rows_path)
        try:
            rows = store.read_rows(rows_path)
        except store.ResultsError as e:
            raise RunError(f"cannot resume: {e}") from None
    else:
        rows = None
    m = dict(old)
    m.update({k: v for k, v in meta.items() if k not in ("run_id", "started", "n")})
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
    return RunPlan(run_dir, m, todo, len(done), correct, mism)


def finish_run(plan: RunPlan, images: np.ndarray) -> dict[str, Any]:
    """Write failures.npz and summary.json (the mark of a complete run); return the summary."""
    rows = store.read_rows(plan.run_dir / store.ROWS_CSV)
    bad = store.wrong_rows(rows)
    idx = [int(i) for i in bad["index"]]
    store.write_failures(plan.run_dir, idx, images[idx] if idx else np.zeros((0, *images.shape[1:]), np.uint8))
    meta = {k: v for k, v in plan.meta.items() if k not in ("n", "finished")}
    summary = store.summarize(rows, meta)
    store.write_json_atomic(plan.run_dir / store.SUMMARY_JSON, summary)
    return summary
