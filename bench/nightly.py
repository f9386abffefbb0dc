"""``potnn-bench nightly``: every board x zoo model (x dataset), full test set, then the report.

For each job it builds the firmware, flashes the board when its probe is attached (else runs
the emulator, see ``bench.placement``) or uses a labgrid place (``--place``, ``bench.farm``),
streams the test split of the dataset each model's manifest names, or each ``--data`` for every
model (``bench.run``), and at the end writes the report with the regression gate
(``bench.report``). Every job has its own run folder.

``--jobs N`` runs emulated jobs as separate processes, up to N at once (the emulator is one
busy core each); hardware jobs never share a board: the jobs of one local board, or of one
place, run one after the other in a lane of their own, beside the emulated ones. ``--place``
spreads each board's jobs over the free places tagged with that board.

Why it keeps going after a failure: one broken board or model must not hide the figures of all
the others; every failure is listed at the end in one line each, and the exit status says the
worst outcome: 2 when a run failed, 1 when a newest run regressed, 0 otherwise. A model that
does not fit a board (build budget check) is skipped, not failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from bench import models as zoo
from bench import report as report_mod
from bench.board import list_boards, load_board
from bench.build import BudgetError
from bench.farm import FarmError, FarmSession
from bench.options import (build_options, data_options, place_options, placement_options, results_options,
                           stream_options, threshold_options)
from bench.placement import place
from bench.report.regression import group_label, thresholds_from
from bench.run import RunOptions, execute


@dataclass(frozen=True)
class Job:
    board: str
    model: str | None = None
    header: Path | None = None
    data: str | None = None    # --data for this job; None: the dataset the model's manifest names
    place: str | None = None   # the labgrid place it runs on; None: this computer

    @property
    def label(self) -> str:
        return (f"{self.model or self.header} on {self.board}" + (f" with {self.data}" if self.data else "")
                + (f" at {self.place}" if self.place else ""))


@dataclass
class JobResult:
    job: Job
    status: str   # "ok" | "skipped" | "failed" | "interrupted"
    detail: str = ""
    run_dir: Path | None = None


@dataclass(frozen=True)
class Settings:
    """What every job of the night shares (picklable: it travels to the worker processes)."""

    emulator: str
    pack: Path | None
    limit: int | None
    results: Path
    opt: str
    toolchain: str | None
    timeout: float

    def run_options(self, job: Job, show_progress: bool) -> RunOptions:
        return RunOptions(board=job.board, header=job.header, model=job.model, emulator=self.emulator,
                          pack=self.pack, limit=self.limit, results=self.results, opt=self.opt,
                          toolchain=self.toolchain, timeout=self.timeout, data=job.data, place=job.place,
                          show_progress=show_progress)


def plan_jobs(boards: list[str] | None, models: list[str] | None,
              datasets: list[str] | None = None) -> list[Job]:
    """Board x model (x dataset) jobs; ``models`` may name zoo models or header files."""
    board_names = boards or list_boards()
    jobs: list[Job] = []
    for b in board_names:
        if models:
            targets = [Job(b, header=Path(m)) if Path(m).suffix == ".h" or Path(m).exists() else Job(b, model=m)
                       for m in models]
        else:
            targets = [Job(b, model=e.name) for e in zoo.list_models(b)]
        jobs.extend(replace(t, data=d) for t in targets for d in (datasets or [None]))
    return jobs


def free_places(patterns: list[str], say: Callable[[str], None]) -> dict[str, list[str]]:
    """Board -> the free places tagged with it, of those ``patterns`` name; held places are skipped."""
    session = FarmSession()
    try:
        infos = session.places(patterns)
    finally:
        session.close()
    by_board: dict[str, list[str]] = {}
    for info in infos:
        if info.board is None:
            raise FarmError(f"place {info.name} has no board tag: labgrid-client -p {info.name} set-tags "
                            "board=<board file name>")
        if info.acquired_by is not None:
            say(f"place {info.name} is held by {info.acquired_by}: not used tonight")
            continue
        by_board.setdefault(info.board, []).append(info.name)
    return by_board


def spread(jobs: list[Job], places: dict[str, list[str]]) -> list[Job]:
    """Each board's jobs dealt over its free places in turn (jobs of boards without one stay local)."""
    dealt: dict[str, int] = {}
    out = []
    for job in jobs:
        names = places.get(job.board)
        if names:
            k = dealt[job.board] = dealt.get(job.board, -1) + 1
            job = replace(job, place=names[k % len(names)])
        out.append(job)
    return out


def run_lane(jobs: list[Job], settings: Settings, show_progress: bool = True,
             say: Callable[[str], None] | None = None) -> list[JobResult]:
    """Jobs one after the other; an interrupt ends the lane (what did not start says so)."""
    say = say or _Prefixed("")
    out: list[JobResult] = []
    for i, job in enumerate(jobs):
        if show_progress or len(jobs) > 1:   # a worker's one-job lane: its prefix names the job
            say(f"[{len(out) + 1}/{len(jobs)}] {job.label}")
        result = _run_one(job, settings, show_progress, say)
        out.append(result)
        if result.status == "interrupted":
            out += [JobResult(j, "interrupted", "not started") for j in jobs[i + 1:]]
            break
    return out


def _run_one(job: Job, settings: Settings, show_progress: bool, say: Callable[[str], None]) -> JobResult:
    try:
        res = execute(settings.run_options(job, show_progress), say=say)
    except BudgetError as e:
        return JobResult(job, "skipped", str(e))
    except KeyboardInterrupt:
        return JobResult(job, "interrupted", "stopped by the user")
    except Exception as e:  # one failing job must not stop the night; report it in one line
        return JobResult(job, "failed", str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    if res.interrupted:
        return JobResult(job, "interrupted", f"resume with --resume {res.run_dir.name}", res.run_dir)
    return JobResult(job, "ok", "", res.run_dir)


class _Prefixed:
    """``say`` for a worker: each line to stderr, prefixed with its job (lines of parallel jobs interleave)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self, msg: str) -> None:
        print(f"{self.prefix}{msg}", file=sys.stderr, flush=True)


def _worker_init() -> None:
    """An idle worker ignores Ctrl-C (the terminal sends it to every process); a job re-arms it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _lane_in_worker(jobs: list[Job], settings: Settings) -> list[JobResult]:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_lane(jobs, settings, show_progress=False,
                        say=_Prefixed(f"[{jobs[0].place or jobs[0].board}] " if len(jobs) > 1 else
                                      f"[{jobs[0].label}] "))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def lanes(jobs: list[Job], settings: Settings) -> tuple[list[list[Job]], list[list[Job]]]:
    """(hardware lanes, emulated jobs as one-job lanes): one lane per place, and one per board whose
    probe is attached here (``bench.placement.place`` decides, once per board)."""
    backend: dict[str, str] = {}
    hardware: dict[str, list[Job]] = {}
    emulated: list[list[Job]] = []
    for job in jobs:
        if job.place is None and job.board not in backend:
            backend[job.board] = place(load_board(job.board), settings.emulator, settings.pack).backend
        if job.place is None and backend[job.board] != "hardware":
            emulated.append([job])
        else:
            hardware.setdefault(f"place {job.place}" if job.place else f"board {job.board}", []).append(job)
    return list(hardware.values()), emulated


def run_parallel(jobs: list[Job], settings: Settings, n: int, say: Callable[[str], None]) -> list[JobResult]:
    """Up to ``n`` emulated jobs at once, each in its own process; the hardware lanes beside them."""
    hardware, emulated = lanes(jobs, settings)
    say(f"nightly: {len(jobs)} jobs: {len(emulated)} emulated, up to {n} at once; "
        f"{len(hardware)} hardware lane{'s' if len(hardware) != 1 else ''}")
    ctx = multiprocessing.get_context("spawn")   # no fork: the parent may hold threads (labgrid's gRPC)
    results: list[JobResult] = []
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init) as emu, \
            ProcessPoolExecutor(max_workers=max(1, len(hardware)), mp_context=ctx, initializer=_worker_init) as hw:
        futures: dict[Future, list[Job]] = {hw.submit(_lane_in_worker, lane, settings): lane for lane in hardware}
        futures.update({emu.submit(_lane_in_worker, lane, settings): lane for lane in emulated})
        pending = set(futures)
        while pending:
            try:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                say("nightly: interrupted; waiting for the running jobs to stop")
                for f in pending:
                    f.cancel()
                continue
            for f in done:
                results += _lane_results(f, futures[f])
    by_job = {r.job: r for r in results}
    return [by_job[j] for j in jobs]


def _lane_results(f: Future, lane: list[Job]) -> list[JobResult]:
    if f.cancelled():
        return [JobResult(j, "interrupted", "not started") for j in lane]
    error = f.exception()
    if error is not None:   # the worker process died (killed, out of memory)
        return [JobResult(j, "failed", f"worker died: {type(error).__name__}: {error}") for j in lane]
    return list(f.result())


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("nightly", help="every board x zoo model on the full test set, then the report",
                              description=__doc__.split("\n\n")[0],
                              parents=[data_options(many=True), placement_options(), place_options(many=True),
                                       stream_options(), results_options(), build_options(build_dir=False),
                                       threshold_options()])
    p.add_argument("--boards", nargs="+", metavar="BOARD",
                   help="boards (default: every board file; with --place, the boards of the free places)")
    p.add_argument("--models", nargs="+", metavar="MODEL",
                   help="zoo model names or header files (default: every zoo model that fits the board)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run up to N emulated jobs at once, each in its own process (default 1: one after "
                        "the other); hardware jobs run one at a time per board or place")
    p.add_argument("--out", type=Path, default=None, help="report HTML (default RESULTS/report.html)")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    say = _Prefixed("")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be 1 or more, not {args.jobs}")
    places = free_places(args.place, say) if args.place else {}
    boards = args.boards or (sorted(places) if args.place else None)
    jobs = spread(plan_jobs(boards, args.models, args.data), places)
    if not jobs:
        say("potnn-bench nightly: the model zoo has no model for these boards yet; "
            "pass --models model.h to measure exported headers")
        return 2
    settings = Settings(emulator=args.emulator, pack=args.pack, limit=args.limit, results=args.results,
                        opt=args.opt, toolchain=args.toolchain, timeout=args.timeout)
    results = run_lane(jobs, settings) if args.jobs == 1 else run_parallel(jobs, settings, args.jobs, say)
    try:
        rep = report_mod.make_report(args.results, args.out, thresholds_from(args))
    except Exception as e:  # a corrupt old run: still list tonight's outcomes below
        rep = None
        say(f"report failed: {e}")
    width = max(len(r.job.label) for r in results) if results else 0
    print("nightly:")
    for r in results:
        where = f"  {r.run_dir}" if r.run_dir else ""
        print(f"  {r.status:<11} {r.job.label:<{width}}{where}{('  ' + r.detail) if r.detail else ''}")
    if rep is not None:
        print(f"report: {rep.html} and {rep.markdown}")
        for f in rep.regressions:
            print(f"  REGRESSION {group_label(f.group)}: {f.message}")
        for e in rep.damaged:
            print(f"  DAMAGED    {report_mod.damaged_line(e, args.results)}")
    if rep is None or rep.damaged or any(r.status in ("failed", "interrupted") for r in results):
        return 2
    return 1 if rep.regressions else 0
