"""``potnn-bench nightly``: every board x every zoo model, full test set, then the report.

For each pair it builds the firmware, flashes the board when its probe is attached (else runs
the emulator, see ``bench.placement``), streams the test split of the dataset each model's manifest
names, or ``--data`` for every model (``bench.run``), and at the end writes the report with the
regression gate (``bench.report``).

Why it keeps going after a failure: one broken board or model must not hide the figures of all
the others; every failure is listed at the end in one line each, and the exit status says the
worst outcome: 2 when a run failed, 1 when a newest run regressed, 0 otherwise. A model that
does not fit a board (build budget check) is skipped, not failed.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench import models as zoo
from bench import report as report_mod
from bench.board import list_boards
from bench.build import BudgetError
from bench.options import (build_options, data_options, placement_options, results_options, stream_options,
                           threshold_options)
from bench.report.regression import thresholds_from
from bench.run import RunOptions, execute


@dataclass
class Job:
    board: str
    model: str | None = None
    header: Path | None = None

    @property
    def label(self) -> str:
        return f"{self.model or self.header} on {self.board}"


@dataclass
class JobResult:
    job: Job
    status: str   # "ok" | "skipped" | "failed" | "interrupted"
    detail: str = ""
    run_dir: Path | None = None


def plan_jobs(boards: list[str] | None, models: list[str] | None) -> list[Job]:
    """Board x model pairs; ``models`` may name zoo models or header files."""
    board_names = boards or list_boards()
    jobs: list[Job] = []
    for b in board_names:
        if models:
            for m in models:
                path = Path(m)
                if path.suffix == ".h" or path.exists():
                    jobs.append(Job(b, header=path))
                else:
                    jobs.append(Job(b, model=m))
        else:
            jobs.extend(Job(b, model=e.name) for e in zoo.list_models(b))
    return jobs


def run_jobs(jobs: list[Job], args: argparse.Namespace,
             say: Callable[[str], None]) -> list[JobResult]:
    out: list[JobResult] = []
    for i, job in enumerate(jobs, 1):
        say(f"[{i}/{len(jobs)}] {job.label}")
        opts = RunOptions(board=job.board, header=job.header, model=job.model, emulator=args.emulator,
                          pack=args.pack, limit=args.limit, results=args.results, opt=args.opt,
                          toolchain=args.toolchain, timeout=args.timeout, data=args.data)
        try:
            res = execute(opts, say=say)
        except BudgetError as e:
            out.append(JobResult(job, "skipped", str(e)))
            continue
        except KeyboardInterrupt:
            out.append(JobResult(job, "interrupted", "stopped by the user"))
            break
        except Exception as e:  # one failing pair must not stop the night; report it in one line
            out.append(JobResult(job, "failed", str(e).strip().splitlines()[0] if str(e).strip()
                                 else type(e).__name__))
            continue
        if res.interrupted:
            out.append(JobResult(job, "interrupted", f"resume with --resume {res.run_dir.name}", res.run_dir))
            break
        out.append(JobResult(job, "ok", "", res.run_dir))
    return out


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("nightly", help="every board x zoo model on the full test set, then the report",
                              description=__doc__.split("\n\n")[0],
                              parents=[data_options(), placement_options(), stream_options(), results_options(),
                                       build_options(build_dir=False), threshold_options()])
    p.add_argument("--boards", nargs="+", metavar="BOARD", help="boards (default: every board file)")
    p.add_argument("--models", nargs="+", metavar="MODEL",
                   help="zoo model names or header files (default: every zoo model that fits the board)")
    p.add_argument("--out", type=Path, default=None, help="report HTML (default RESULTS/report.html)")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    jobs = plan_jobs(args.boards, args.models)
    if not jobs:
        say("potnn-bench nightly: the model zoo has no model for these boards yet; "
            "pass --models model.h to measure exported headers")
        return 2
    results = run_jobs(jobs, args, say)
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
            print(f"  REGRESSION {' / '.join(f.group[:3])}: {f.message}")
    if rep is None or any(r.status in ("failed", "interrupted") for r in results):
        return 2
    return 1 if rep.regressions else 0
