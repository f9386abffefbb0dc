"""The report as a document: sections of text, tables and plots, written as HTML and Markdown.

Why both formats: the HTML page is self-contained (plots embedded as base64 PNG) so it can be
mailed or archived as one file; the Markdown (PNGs in ``<stem>_files/``) reads well in a
repository or a CI summary. Both are written atomically: a reader never sees half a page.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import write_bytes, write_text
from bench.report.regression import Finding, Thresholds, all_comparisons, group_key, group_label, groups
from bench.report.plots import (MAX_FAILURE_IMAGES, labeled, plot_accuracy, plot_confusion, plot_cycles,
                                plot_failures, plot_layers, plot_sizes, plot_trend)
from bench.results import ResultsError, RunRecord, wrong_rows


@dataclass
class Section:
    title: str
    text: list[str]             # Markdown paragraphs (also shown, escaped, in HTML)
    tables: list[tuple[list[str], list[list[str]]]]
    images: list[tuple[str, bytes]]  # (file stem, PNG)


def _fmt(v: Any, kind: str = "") -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if kind == "pct":
        return f"{100 * float(v):.2f} %"
    if kind == "int":
        return f"{int(round(float(v))):,}"
    return str(v)


def build_sections(runs: list[RunRecord], th: Thresholds,
                   damaged: list[ResultsError] | None = None) -> tuple[list[Section], list[Finding]]:
    seqs = groups(runs)
    latest_runs = [seq[-1] for seq in seqs.values()]
    latest_f, history_f = all_comparisons(runs, th)
    regressions = [f for f in latest_f if f.regression]
    secs: list[Section] = []

    status = (f"**{len(regressions)} regression(s)** in the newest runs." if regressions
              else "No regression in the newest runs.")
    head = ["board", "model", "backend", "data", "n", "accuracy", "reference", "mismatches", "cycles mean",
            "cycles max", "ms @clock", "flash B", "RAM B", "stack B", "toolchain", "commit", "finished"]
    rows = []
    for r in latest_runs:
        s = r.info
        ms = (float(s["cycles_mean"]) / float(s["clock_hz"]) * 1e3
              if s.get("cycles_mean") and s.get("clock_hz") else None)
        rows.append([str(s.get("board")), str(s.get("model")), str(s.get("backend")),
                     f"{s.get('dataset') or '-'} ({'×'.join(str(v) for v in s.get('input_shape') or []) or '?'})",
                     _fmt(s.get("n"), "int"),
                     _fmt(s.get("accuracy"), "pct"), _fmt(s.get("ref_accuracy"), "pct"),
                     _fmt(s.get("mismatches")), _fmt(s.get("cycles_mean"), "int"), _fmt(s.get("cycles_max"), "int"),
                     "-" if ms is None else f"{ms:.2f}", _fmt(s.get("flash_bytes"), "int"),
                     _fmt(s.get("ram_bytes"), "int"), _fmt(s.get("stack_bytes"), "int"),
                     str(s.get("toolchain") or "-"), str(s.get("git_commit") or "-")[:10], str(s.get("finished"))])
    secs.append(Section("Summary", [status, f"{len([r for r in runs if r.complete])} complete run(s), "
                                            f"{len(seqs)} board/model/backend/n group(s)."],
                        [(head, rows)], [("accuracy", plot_accuracy(latest_runs))] if latest_runs else []))

    if regressions or latest_f:
        secs.append(Section("Newest run against the previous comparable one",
                            ["Comparable: same board, model, backend, number of inputs and data. "
                             f"Thresholds: accuracy drop {th.accuracy_drop_pp} pp, cycles +{th.cycles_increase_pct} %, "
                             f"size +{th.size_increase_bytes} B, mismatches "
                             f"{'allowed' if th.allow_mismatches else 'not allowed'}."],
                            [(["status", "group", "metric", "change", "run", "previous"],
                              [["REGRESSION" if f.regression else "ok", group_label(f.group), f.metric, f.message,
                                f.run_id, f.previous_id or "-"] for f in latest_f])], []))

    if seqs:
        hist_rows = [[group_label(k), str(r.info.get("n")), str(r.info.get("finished"))[:19],
                      str(r.info.get("git_commit") or "-")[:10], _fmt(r.info.get("accuracy"), "pct"),
                      _fmt(r.info.get("mismatches")), _fmt(r.info.get("cycles_mean"), "int"),
                      _fmt(r.info.get("flash_bytes"), "int"), r.run_id]
                     for k, seq in seqs.items() for r in seq]
        text = ["Every complete run, oldest first within each group."]
        if history_f:
            text.append("Older changes between consecutive runs: "
                        + "; ".join(f"{f.run_id}: {f.message}" for f in history_f[-20:]))
        secs.append(Section("Trend", text, [(["group", "n", "finished", "commit", "accuracy", "mismatches",
                                              "cycles mean", "flash B", "run"], hist_rows)],
                            [("trend", plot_trend(seqs))]))
        secs.append(Section("Cycles per inference",
                            ["Cycles measured on the board (SysTick around potnn_predict) or by the "
                             "emulator's cycle model."], [], [("cycles", plot_cycles(latest_runs))]))
        secs += _layer_sections(latest_runs)
        secs += _frontier_section(latest_runs)
        secs.append(Section("Flash and RAM against the board budget",
                            ["RAM = static data (.data + .bss) plus the measured or estimated stack."],
                            [], [("sizes", plot_sizes(latest_runs))]))
        unlabeled = [group_label(group_key(r)) for r in latest_runs if not labeled(r)]
        secs.append(Section("Confusion matrices",
                            ["Newest run of each group with labelled data; rows: true class."]
                            + ([f"No labels, so agreement with potnn.simulate only: {', '.join(unlabeled)}."]
                               if unlabeled else []), [],
                            [(f"confusion_{i}", plot_confusion(r)) for i, r in enumerate(latest_runs) if labeled(r)]))
        fail_imgs, fail_text = [], []
        for i, r in enumerate(latest_runs):
            bad = wrong_rows(r.rows)
            if bad.empty:
                continue
            png = plot_failures(r)
            if png is not None:
                fail_imgs.append((f"failures_{i}", png))
            missing = [int(x) for x in bad["index"] if int(x) not in r.failures]
            fail_text.append(f"{group_label(group_key(r))}: {len(bad)} input(s) wrong or mismatching"
                             + (f"; showing {min(len(bad), MAX_FAILURE_IMAGES)}" if png is not None else "")
                             + (f"; no input stored for {len(missing)}" if missing else ""))
        secs.append(Section("Inputs the board got wrong or that mismatched the reference",
                            fail_text or ["None."], [], fail_imgs))

    incomplete = [r for r in runs if not r.complete]
    if incomplete:
        secs.append(Section("Incomplete runs", ["Interrupted runs; continue one with the command it started "
                                                "with (the same --header or --model, --data and --toolchain) "
                                                "and `--resume RUN_ID`."],
                            [(["run", "board", "model", "rows", "planned", "started"],
                              [[r.run_id, str(r.meta.get("board")), str(r.meta.get("model")), str(len(r.rows)),
                                str(r.meta.get("n")), str(r.meta.get("started"))] for r in incomplete])], []))
    if damaged:
        secs.append(Section("Damaged runs", ["Runs whose files are corrupt (not merely cut short by a crash, "
                                             "which `--resume` repairs): repair each or move it out of the "
                                             "results directory. They are left out of every figure above."],
                            [(["run", "file", "problem"],
                              [[e.path.parent.name, e.path.name, e.reason] for e in damaged])], []))
    if not runs and not damaged:
        secs.append(Section("No runs", ["No run found in this results directory yet."], [], []))
    return secs, regressions


def _layer_sections(latest: list[RunRecord]) -> list[Section]:
    """Per layer, instructions, cycles and stack of the newest profiled runs (``layers``, ``bench.profile``)."""
    png = plot_layers(latest)
    if png is None:
        return []
    rows = []
    for r in latest:
        for row in r.info.get("layers") or []:
            kind = " ".join(v for v in (row.get("kind"), row.get("encoding")) if v)
            share = "-" if row.get("share") is None else f"{100 * float(row['share']):.1f} %"
            rows.append([group_label(group_key(r)), str(row["name"]), kind,
                         _fmt(row.get("instructions_mean"), "int"), _fmt(row.get("cycles_mean"), "int"), share,
                         _fmt(row.get("stack_bytes"), "int")])
    return [Section("Cycles per layer", ["Means per inference on the unicorn emulator: each layer's own code and the "
                                         "kernels it calls; (firmware) is potnn_predict's own work and the counter "
                                         "reads. The rows of a run add up to its cycles per inference."],
                    [(["group", "layer", "kind", "instructions", "cycles", "share", "max stack B"], rows)],
                    [("layers", png)])]


def _frontier_section(latest: list[RunRecord]) -> list[Section]:
    """Accuracy against cycles on MNIST: the zoo and these runs, measured; BitNetMCU, published.

    Only in a report with MNIST runs: the peers' points say nothing about a user's own data.
    """
    # imported here: `python -m bench.report.frontier` runs that module as __main__, which must not be
    # imported already when the package bench.report loads
    from bench.report.frontier import DATASET, frontier_png

    if not any(r.info.get("dataset") == DATASET for r in latest):
        return []
    return [Section("Accuracy against cycles: the frontier",
                   ["16×16 MNIST. Measured: the zoo's figures (meta.json, emulated boards) and this report's "
                    "full-test-set MNIST runs. Published: BitNetMCU's own figures, on the chips the legend names "
                    "(bench/report/frontier.py gives each source)."], [], [("frontier", frontier_png(latest))])]


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: str(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_markdown(path: Path, title: str, secs: list[Section]) -> None:
    assets = path.with_name(path.stem + "_files")
    assets.mkdir(parents=True, exist_ok=True)
    out = [f"# {title}", ""]
    for s in secs:
        out += [f"## {s.title}", ""]
        for t in s.text:
            out += [t, ""]
        for head, rows in s.tables:
            out += [_md_table(head, rows), ""]
        for stem, png in s.images:
            write_bytes(assets / f"{stem}.png", png)
            out += [f"![{stem}]({assets.name}/{stem}.png)", ""]
    write_text(path, "\n".join(out))


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#f3f3f3}td.REGRESSION{background:#f8d7da;font-weight:bold}img{max-width:100%;display:block;margin:.5em 0}"""


def _md_inline(text: str) -> str:
    """Escape, then render the two bits of inline Markdown used in section texts."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def write_html(path: Path, title: str, secs: list[Section]) -> None:
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    for s in secs:
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        out += [f"<p>{_md_inline(t)}</p>" for t in s.text]
        for head, rows in s.tables:
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
            for r in rows:
                out.append("<tr>" + "".join(f"<td class='{html.escape(c)}'>{html.escape(c)}</td>"
                                            if c == "REGRESSION" else f"<td>{html.escape(c)}</td>"
                                            for c in r) + "</tr>")
            out.append("</table>")
        for stem, png in s.images:
            b64 = base64.b64encode(png).decode("ascii")
            out.append(f'<img alt="{html.escape(stem)}" src="data:image/png;base64,{b64}">')
    out.append("</body></html>")
    write_text(path, "\n".join(out))
