"""``potnn-bench report``: every run in a results directory as one HTML page and one Markdown file,
and a regression gate for nightly jobs.

What it shows: accuracy per board and model (against the integer reference), the trend across
runs (date, git commit), cycles per inference, flash and RAM against each board's budget, a
confusion matrix per board and model (any class count, with the class names), and the inputs
(images or 1-D signals) the board got wrong or whose logits differ
from the reference (``bench.report.document``, ``bench.report.plots``).

A damaged run (a results file that is corrupt, not merely cut short by a crash) is listed as
damaged in the report and named in one line on stderr; every other run is still reported.

Exit status: 2 when a run is damaged, the results directory does not exist, or nothing could be
written; else 1 when the newest run of a comparable group regressed (``bench.report.regression``);
else 0.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.options import results_options, threshold_options
from bench.report.regression import Finding, Thresholds, group_label, thresholds_from
from bench.report.document import build_sections, write_html, write_markdown
from bench.results import ResultsError, RunRecord, load_run, run_dirs


def load_runs(results_dir: Path) -> tuple[list[RunRecord], list[ResultsError]]:
    """Every run under ``results_dir``, and one ResultsError (naming its file) per damaged run."""
    runs: list[RunRecord] = []
    damaged: list[ResultsError] = []
    for d in run_dirs(results_dir):
        try:
            runs.append(load_run(d))
        except ResultsError as e:
            damaged.append(e)
    return runs, damaged


@dataclass
class ReportResult:
    html: Path
    markdown: Path
    regressions: list[Finding]
    runs: int
    damaged: list[ResultsError]


def make_report(results_dir: Path, out: Path | None = None, th: Thresholds = Thresholds()) -> ReportResult:
    """Read every run and write ``out`` (HTML) and its ``.md`` sibling; damaged runs are listed as such.

    A results directory that does not exist is a ResultsError (a mistyped ``--results``), never
    created: an empty report of a wrong path would pass a nightly gate.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ResultsError(results_dir, "no such results directory; pass --results with the directory "
                                        "your runs wrote to")
    runs, damaged = load_runs(results_dir)
    out = Path(out) if out is not None else results_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    html_path = out if out.suffix.lower() in (".html", ".htm") else out.with_suffix(".html")
    md_path = html_path.with_suffix(".md")
    secs, regressions = build_sections(runs, th, damaged)
    title = f"potnn-bench report ({results_dir})"
    write_html(html_path, title, secs)
    write_markdown(md_path, title, secs)
    return ReportResult(html_path, md_path, regressions, len(runs), damaged)


def damaged_line(e: ResultsError, results_dir: Path) -> str:
    """``run X is damaged: <file>: <why>; repair it or move it out of <results>``: one line."""
    run_dir = e.path.parent if e.path.parent != Path(results_dir) else e.path
    return (f"run {run_dir.name} is damaged: {e}; repair it or move it out of {results_dir} "
            "(the other runs are reported)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="HTML + Markdown report of all runs; exit 1 on regression",
                              description=__doc__.split("\n\n")[0], parents=[results_options(), threshold_options()])
    p.add_argument("--out", type=Path, default=None,
                   help="HTML file to write (default RESULTS/report.html); the .md goes beside it")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    try:
        res = make_report(args.results, args.out, thresholds_from(args))
    except ResultsError as e:
        print(f"potnn-bench report: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"potnn-bench report: error: cannot write report: {e}", file=sys.stderr)
        return 2
    for e in res.damaged:
        print(f"potnn-bench report: error: {damaged_line(e, args.results)}", file=sys.stderr)
    print(f"report: {res.html} and {res.markdown} ({res.runs} run(s)"
          + (f", {len(res.damaged)} damaged" if res.damaged else "") + ")")
    for f in res.regressions:
        print(f"REGRESSION {group_label(f.group)} n={f.group[4]}: {f.message} (run {f.run_id} vs {f.previous_id})")
    return 2 if res.damaged else 1 if res.regressions else 0
