"""``potnn-bench report``: every run in a results directory as one HTML page and one Markdown file,
and a regression gate for nightly jobs.

What it shows: accuracy per board and model (against the integer reference), the trend across
runs (date, git commit), cycles per inference, flash and RAM against each board's budget, a
confusion matrix per board and model (any class count, with the class names), and the inputs
(images or 1-D signals) the board got wrong or whose logits differ
from the reference (``bench.report.document``, ``bench.report.plots``).

Exit status: 1 when the newest run of a comparable group regressed (``bench.report.regression``);
2 when a results file is corrupt (one line naming it) or nothing could be written.
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


def load_runs(results_dir: Path) -> list[RunRecord]:
    """Every run under ``results_dir``; the first corrupt file raises ResultsError (one line)."""
    return [load_run(d) for d in run_dirs(results_dir)]


@dataclass
class ReportResult:
    html: Path
    markdown: Path
    regressions: list[Finding]
    runs: int


def make_report(results_dir: Path, out: Path | None = None, th: Thresholds = Thresholds()) -> ReportResult:
    """Read every run and write ``out`` (HTML) and its ``.md`` sibling; ResultsError on corrupt input."""
    results_dir = Path(results_dir)
    runs = load_runs(results_dir)
    out = Path(out) if out is not None else results_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    html_path = out if out.suffix.lower() in (".html", ".htm") else out.with_suffix(".html")
    md_path = html_path.with_suffix(".md")
    secs, regressions = build_sections(runs, th)
    title = f"potnn-bench report ({results_dir})"
    write_html(html_path, title, secs)
    write_markdown(md_path, title, secs)
    return ReportResult(html_path, md_path, regressions, len(runs))


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
        run_dir = e.path.parent if e.path.parent != Path(args.results) else e.path
        print(f"potnn-bench report: error: {e}; repair {run_dir.name} or move it out of {args.results} "
              f"to report the other runs", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"potnn-bench report: error: cannot write report: {e}", file=sys.stderr)
        return 2
    print(f"report: {res.html} and {res.markdown} ({res.runs} run(s))")
    for f in res.regressions:
        print(f"REGRESSION {group_label(f.group[:3])} n={f.group[3]}: {f.message} (run {f.run_id} vs {f.previous_id})")
    return 1 if res.regressions else 0
