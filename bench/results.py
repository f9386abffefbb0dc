"""The results store: one directory per run, written so that a crash never loses a logged row.

Why a plain directory of CSV and JSON: every tool (pandas, a spreadsheet, ``grep``) can read it,
a partial run is still readable, and two runs never share a file, so nightly jobs and people
can run side by side; only the writers of one run (a run and its ``--resume``) take its lock.

Layout of ``results/<run-id>/`` (run-id = ``YYYYMMDDTHHMMSSZ-<board>-<model>-<6 hex>``, UTC)::

    run.json      what was run, written (atomically) before the first input: board, model,
                  model_hash, header, backend, n (planned), the data (``dataset``: a registered
                  name or the .npz file's name; ``data_sha256``; ``input_shape``; ``labeled``;
                  ``class_names`` from the manifest or null), build figures (flash_bytes,
                  ram_bytes, stack_bytes, toolchain), board budgets (flash_budget, ram_budget,
                  clock_hz), git_commit, started. ``--resume`` reads it back.
    rows.csv      one row per input, appended, flushed and fsynced as each result arrives.
    failures.npz  the inputs the board got wrong or that mismatched the reference
                  (``index`` int64 [M], ``images`` uint8 [M, *input_shape]: images or 1-D
                  signals) so the report is self-contained; written at the end of the run.
    summary.json  written (atomically) only when the run completed: its presence is what marks
                  a run as complete. Keys: see ``SUMMARY_KEYS`` plus the extra
                  keys of run.json.
    run.lock      held (``flock``) by the one process that writes the run, naming it (pid, host,
                  start time); the kernel releases it when that process ends (``bench.runlock``).

``rows.csv`` columns (header line first, comma separated, ``\\n`` line ends)::

    index         int    position of the input in the test data (0-based)
    label         int    true class; empty when the data has no labels
    pred          int    class returned by the board
    ref_pred      int    argmax of the reference logits (``potnn.simulate``); -1 without reference
    match         int    1 when every logit equals the reference, 0 otherwise; empty without reference
    cycles        int    cycles the board measured for one inference (SysTick, core clock)
    instructions  int    instructions retired (emulators only); empty on hardware
    logit0..logitK-1 int the integer logits returned by the board

Read it with ``pandas.read_csv(path)``; empty cells read as NaN. Rows are in the order they
arrived; after a resume they are still unique per ``index``. A run killed in the middle of a
write can leave a last line without its newline: readers drop it for an incomplete run (and
``--resume`` truncates it), and treat it as corruption in a completed one. An empty rows.csv
(killed between run.json and the header line) is an incomplete run with no rows yet.

Accuracy figures are fractions in [0, 1] (null without labels: the run then reports only its
agreement with the reference); times are ISO 8601 UTC strings.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.atomic import atomic_open

RUN_JSON = "run.json"
ROWS_CSV = "rows.csv"
SUMMARY_JSON = "summary.json"
FAILURES_NPZ = "failures.npz"

#: Keys every summary.json carries: what the report compares across runs.
SUMMARY_KEYS: tuple[str, ...] = (
    "board", "backend", "model", "n", "accuracy", "ref_accuracy", "mismatches",
    "instructions_mean", "cycles_mean", "cycles_max", "flash_bytes", "ram_bytes",
    "stack_bytes", "toolchain", "git_commit", "started", "finished",
)

#: The fixed leading columns of rows.csv; logit columns follow.
BASE_COLUMNS: tuple[str, ...] = (
    "index", "label", "pred", "ref_pred", "match", "cycles", "instructions",
)

#: Columns that must hold an integer in every row (the others may be empty).
_REQUIRED_INT = ("index", "pred", "ref_pred", "cycles")


class ResultsError(Exception):
    """A results file is missing, unreadable or malformed; ``str()`` is one line naming it."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def utc_now() -> str:
    """ISO 8601 UTC timestamp with seconds, the one time format of the store."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _slug(text: str) -> str:
    """Make a name safe for a directory component (model names may come from file names)."""
    s = re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("._")
    return s[:40] or "model"


def make_run_id(board: str, model: str, when: datetime | None = None) -> str:
    """Run ids sort by time, say what ran, and cannot collide (random suffix)."""
    when = when or datetime.now(timezone.utc)
    stamp = when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{_slug(board)}-{_slug(model)}-{secrets.token_hex(3)}"


def logit_columns(num_classes: int) -> list[str]:
    return [f"logit{k}" for k in range(num_classes)]


def write_json_atomic(path: Path, obj: Mapping[str, Any]) -> None:
    """Write JSON so a reader sees the old file or the new one, never half of one.

    A failed write (a full disk) raises OSError naming ``path``, not the hidden temporary file.
    """
    with _naming(path), atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an OSError with ``path`` as its file name: the file the user knows."""
    try:
        yield
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object, turning every failure into a one-line ResultsError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(path, "missing") from None
    except OSError as e:
        raise ResultsError(path, f"unreadable ({e.strerror})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultsError(path, f"not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(obj, dict):
        raise ResultsError(path, "expected a JSON object")
    return obj


@dataclass
class Row:
    """One input's result as the run loop produces it (``label`` None: the data has no labels)."""

    index: int
    label: int | None
    pred: int
    ref_pred: int
    match: bool | None
    cycles: int
    instructions: int | None
    logits: Sequence[int]

    def cells(self) -> list[str]:
        match = "" if self.match is None else str(int(self.match))
        instr = "" if self.instructions is None else str(int(self.instructions))
        label = "" if self.label is None else str(int(self.label))
        return [str(int(self.index)), label, str(int(self.pred)),
                str(int(self.ref_pred)), match, str(int(self.cycles)), instr,
                *(str(int(v)) for v in self.logits)]


class RowWriter:
    """Appends rows to rows.csv, each one written whole, flushed and fsynced before the next image is sent.

    Why per row: a run on hardware can take an hour; a pulled cable or Ctrl-C must cost at most
    the image in flight. 10 000 fsyncs cost well under the UART time of the images themselves.
    Opening an existing file (resume) first cuts a torn last line so every line stays whole.
    Why raw ``os.write`` and no buffer: a write that fails (a full disk) is cut back to the last
    whole line at once, and nothing is left in a buffer to be written half later, on close.
    A failed write raises OSError naming rows.csv (``filename``), so the run can say which file.
    """

    def __init__(self, path: Path, num_classes: int, fsync: bool = True) -> None:
        self.path = Path(path)
        self.columns = [*BASE_COLUMNS, *logit_columns(num_classes)]
        self._fsync = fsync
        existed = self.path.exists() and self.path.stat().st_size > 0
        if existed:
            truncate_torn_tail(self.path)
            with open(self.path, "r", encoding="utf-8", newline="") as f:
                header = f.readline().rstrip("\n").split(",")
            if header != [""] and header != self.columns:
                raise ResultsError(self.path, f"columns {header} differ from {self.columns}")
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size     # the end of the last whole line
        if self._size == 0:
            self._write_line(self.columns)
        self._first_row_at = self._size             # where this writer's rows begin (after a resumed file's)

    def _write_line(self, cells: Iterable[str]) -> None:
        assert self._fd is not None, "RowWriter is closed"
        data = memoryview((",".join(cells) + "\n").encode("utf-8"))
        try:
            while data:
                data = data[os.write(self._fd, data):]
            if self._fsync:
                os.fsync(self._fd)
        except OSError as e:
            try:
                os.ftruncate(self._fd, self._size)  # cutting frees space: works on a full disk
            except OSError:
                pass  # the torn line is cut by the next --resume instead
            raise OSError(e.errno, e.strerror, str(self.path)) from None
        self._size = os.fstat(self._fd).st_size

    def append(self, row: Row) -> None:
        cells = row.cells()
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, rows.csv has {len(self.columns)} columns")
        self._write_line(cells)

    @property
    def rows_written(self) -> int:
        """Whole rows this writer appended, counted in the file itself (not counting a resumed file's).

        Counted from disk, not in a variable, because a signal (Ctrl-C, SIGTERM) can land after a
        row's bytes are written and before any counter moves on; the file is what a resume sees.
        """
        with open(self.path, "rb") as f:
            f.seek(self._first_row_at)
            return f.read().count(b"\n")

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncate_torn_tail(path: Path) -> int:
    """Cut the bytes after the last newline (a write interrupted mid-line); return bytes cut."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        # Read backwards in blocks until a newline is found.
        pos, block = size, 4096
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                if keep < size:
                    f.truncate(keep)
                    f.flush()
                    os.fsync(f.fileno())
                return size - keep
            pos = start
        f.truncate(0)
        return size


def read_rows(path: Path, allow_torn_tail: bool = False) -> pd.DataFrame:
    """Read and validate rows.csv; every problem becomes a ResultsError naming the file and line.

    ``allow_torn_tail`` (an incomplete run): a last line without its newline is dropped, and an
    empty file (or one whose header line is torn, or none yet: a run stopped before its first row)
    reads as no rows.

    Validation is done here rather than trusting pandas because a silently mis-parsed file
    would turn into wrong accuracy figures in a report, which is worse than no report.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if not allow_torn_tail:
            raise ResultsError(path, "missing") from None
        raw = b""
    except OSError as e:
        raise ResultsError(path, f"unreadable ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ResultsError(path, f"not UTF-8 text (byte {e.start})") from None
    if text and not text.endswith("\n"):
        if not allow_torn_tail:
            raise ResultsError(path, "last line is incomplete (file truncated?)")
        text = text[: text.rfind("\n") + 1]
    if not text and allow_torn_tail:
        # killed (or out of disk space) between run.json and rows.csv's header line: no rows yet
        return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in BASE_COLUMNS})
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise ResultsError(path, "empty file (no header line)") from None
    if tuple(header[: len(BASE_COLUMNS)]) != BASE_COLUMNS:
        raise ResultsError(path, f"header must start with {','.join(BASE_COLUMNS)}")
    extra = header[len(BASE_COLUMNS):]
    if not extra or any(c != f"logit{k}" for k, c in enumerate(extra)):
        raise ResultsError(path, "header must end with logit0..logitK-1")
    width = len(header)
    data: list[list[float]] = []
    seen: set[int] = set()
    for lineno, cells in enumerate(reader, start=2):
        if len(cells) != width:
            raise ResultsError(path, f"line {lineno}: {len(cells)} fields, expected {width}")
        values: list[float] = []
        for name, cell in zip(header, cells):
            if cell == "":
                if name in _REQUIRED_INT or name.startswith("logit"):
                    raise ResultsError(path, f"line {lineno}: empty {name}")
                values.append(np.nan)
                continue
            try:
                values.append(int(cell))
            except ValueError:
                raise ResultsError(path, f"line {lineno}: {name}={cell!r} is not an integer") from None
        idx = int(values[0])
        if idx in seen:
            raise ResultsError(path, f"line {lineno}: index {idx} appears twice")
        seen.add(idx)
        data.append(values)
    df = pd.DataFrame(data, columns=header)
    for name in header:
        if name in _REQUIRED_INT or name.startswith("logit") or (name == "label" and df[name].notna().all()):
            df[name] = df[name].astype(np.int64)
    return df


def wrong_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows the board got wrong (labelled data only) or whose logits differ from the reference."""
    return rows[(rows["label"].notna() & (rows["pred"] != rows["label"])) | (rows["match"] == 0)]


def logits_of(rows: pd.DataFrame) -> np.ndarray:
    """The [N, K] int logits of a rows table."""
    cols = [c for c in rows.columns if c.startswith("logit")]
    return rows[cols].to_numpy(dtype=np.int64)


def summarize(rows: pd.DataFrame, meta: Mapping[str, Any], finished: str | None = None) -> dict[str, Any]:
    """Build summary.json from the rows and the run's metadata (``SUMMARY_KEYS`` first)."""
    n = int(len(rows))
    has_ref = n > 0 and bool((rows["ref_pred"] >= 0).all()) and rows["match"].notna().all()
    labeled = n > 0 and bool(rows["label"].notna().all())
    instr = rows["instructions"].dropna() if n else rows["instructions"]
    summary: dict[str, Any] = dict(meta)
    summary.update(
        n=n,
        accuracy=float((rows["pred"] == rows["label"]).mean()) if labeled else None,
        ref_accuracy=float((rows["ref_pred"] == rows["label"]).mean()) if has_ref and labeled else None,
        mismatches=int((rows["match"] == 0).sum()) if has_ref else None,
        instructions_mean=float(instr.mean()) if len(instr) else None,
        cycles_mean=float(rows["cycles"].mean()) if n else None,
        cycles_max=int(rows["cycles"].max()) if n else None,
        finished=finished or utc_now(),
    )
    for key in SUMMARY_KEYS:
        summary.setdefault(key, None)
    return summary


@dataclass
class RunRecord:
    """A run directory as read back: metadata, summary (None while incomplete) and rows."""

    path: Path
    meta: dict[str, Any]
    summary: dict[str, Any] | None
    rows: pd.DataFrame
    failures: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def complete(self) -> bool:
        return self.summary is not None

    @property
    def info(self) -> dict[str, Any]:
        """Summary when complete, else metadata: the one mapping a report reads keys from."""
        return self.summary if self.summary is not None else self.meta

    def key(self) -> tuple[str, str, str]:
        i = self.info
        return (str(i.get("board")), str(i.get("model")), str(i.get("backend")))


def load_run(run_dir: Path, with_failures: bool = True) -> RunRecord:
    """Read one run directory, validating everything a report will rely on.

    What a crash can leave is read as the run it is: a torn last row, an empty or no rows.csv of an
    incomplete run, a complete run whose run.json was lost (summary.json holds its keys).
    """
    run_dir = Path(run_dir)
    summary_path = run_dir / SUMMARY_JSON
    summary = read_json(summary_path) if summary_path.exists() else None
    if summary is not None and not (run_dir / RUN_JSON).exists():
        meta = dict(summary)    # summary.json holds every key of run.json: the run is still whole
    else:
        meta = read_json(run_dir / RUN_JSON)
    if summary is not None:
        missing = [k for k in SUMMARY_KEYS if k not in summary]
        if missing:
            raise ResultsError(summary_path, f"missing keys: {', '.join(missing)}")
    rows = read_rows(run_dir / ROWS_CSV, allow_torn_tail=summary is None)
    if summary is not None and int(summary["n"]) != len(rows):
        raise ResultsError(summary_path, f"n={summary['n']} but rows.csv has {len(rows)} rows")
    failures: dict[int, np.ndarray] = {}
    fpath = run_dir / FAILURES_NPZ
    if with_failures and fpath.exists():
        try:
            with np.load(fpath) as z:
                for i, img in zip(z["index"], z["images"]):
                    failures[int(i)] = np.asarray(img, dtype=np.uint8)
        except Exception as e:  # np.load raises many types on a damaged archive
            raise ResultsError(fpath, f"unreadable archive ({type(e).__name__}: {e})") from None
    return RunRecord(run_dir, meta, summary, rows, failures)


def run_dirs(results_dir: Path) -> Iterator[Path]:
    """Run directories under a results directory, sorted by run id (= start time).

    A directory counts as a run when it holds any of the run files, so a run whose run.json
    was lost is reported as corrupt instead of silently skipped.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return iter(())
    found = {p.parent for name in (RUN_JSON, ROWS_CSV, SUMMARY_JSON) for p in results_dir.glob(f"*/{name}")}
    return iter(sorted(found))


def ensure_writable(results_dir: Path) -> None:
    """Refuse, in one line that says what to do, a results directory no run can be written to.

    Why up front: a run finds out only after building and flashing otherwise, and the
    operating system's own message ("[Errno 20] Not a directory: ...") says nothing about
    ``--results``.
    """
    results_dir = Path(results_dir)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=results_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = "a file is in the way" if results_dir.exists() and not results_dir.is_dir() \
            else (e.strerror or type(e).__name__)
        raise ResultsError(results_dir, f"results directory is not writable ({reason}); "
                                        "pass --results DIR with a directory you can write to") from None


def create_run(results_dir: Path, meta: Mapping[str, Any]) -> Path:
    """Make ``results/<run-id>/`` and write run.json before the first image is sent."""
    run_dir = Path(results_dir) / str(meta["run_id"])
    run_dir.mkdir(parents=True, exist_ok=False)
    write_json_atomic(run_dir / RUN_JSON, meta)
    return run_dir


def write_failures(run_dir: Path, indices: Sequence[int], images: np.ndarray) -> None:
    """Store the failed inputs, of any shape, next to the rows (atomically, like the JSON files)."""
    path = Path(run_dir) / FAILURES_NPZ
    with _naming(path), atomic_open(path, "wb") as f:
        np.savez_compressed(f, index=np.asarray(indices, dtype=np.int64),
                            images=np.asarray(images, dtype=np.uint8))


def find_resumable(results_dir: Path, board: str, model_hash: str) -> Path | None:
    """Newest incomplete run of this board and model (what a bare ``--resume`` continues)."""
    for d in sorted(run_dirs(results_dir), reverse=True):
        if (d / SUMMARY_JSON).exists():
            continue
        try:
            meta = read_json(d / RUN_JSON)
        except ResultsError:
            continue
        if meta.get("board") == board and meta.get("model_hash") == model_hash:
            return d
    return None
