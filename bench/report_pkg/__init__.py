"""``potnn-bench report``: every run in a results directory as one HTML page and one Markdown file,
and a regression gate for nightly jobs.

What it shows: accuracy per board and model (against the integer reference), the trend across
runs (date, git commit), cycles per inference (distribution, and per layer where a run recorded
``layer_cycles``), flash and RAM against each board's budget, a confusion matrix per board and
model, and the images the board got wrong or whose logits differ from the reference.

Why both formats: the HTML page is self-contained (plots embedded as base64 PNG) so it can be
mailed or archived as one file; the Markdown (PNGs in ``<stem>_files/``) reads well in a
repository or a CI summary.

Regressions: runs are *comparable* when board, model, backend and number of images are equal.
The newest complete run of each such group is compared with the one before it; accuracy down,
mean cycles up, flash/RAM/stack bytes up (each beyond its threshold), or any logit mismatch with
the reference, is a regression and the command exits with status 1. Older pairs are shown in
the report but do not fail it (a regression fixed since must not fail every later night).
Status 2: a results file is corrupt (one line naming it) or nothing could be written.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from bench.results import ResultsError, RunRecord, load_run, run_dirs

MAX_FAILURE_IMAGES = 48
MAX_TREND_RUNS = 60


# ----------------------------------------------------------------------------- regressions
@dataclass(frozen=True)
class Thresholds:
    """How much worse the newest run may be before it counts as a regression."""

    accuracy_drop_pp: float = 0.0     # percentage points
    cycles_increase_pct: float = 0.0  # percent of the previous mean
    size_increase_bytes: int = 0      # flash, RAM and stack, each
    allow_mismatches: bool = False


@dataclass(frozen=True)
class Finding:
    """One comparison outcome (a regression, or an improvement/neutral change for the table)."""

    run_id: str
    previous_id: str | None
    group: tuple[str, str, str, int]
    metric: str
    previous: float | None
    current: float | None
    regression: bool
    message: str


def group_key(run: RunRecord) -> tuple[str, str, str, int]:
    s = run.info
    return (str(s.get("board")), str(s.get("model")), str(s.get("backend")), int(s.get("n") or 0))


def _order(run: RunRecord) -> tuple[str, str]:
    return (str(run.info.get("finished") or run.info.get("started") or ""), run.run_id)


def groups(runs: Iterable[RunRecord]) -> dict[tuple[str, str, str, int], list[RunRecord]]:
    """Complete runs by comparability group, oldest first."""
    out: dict[tuple[str, str, str, int], list[RunRecord]] = {}
    for r in runs:
        if r.complete:
            out.setdefault(group_key(r), []).append(r)
    for v in out.values():
        v.sort(key=_order)
    return out


def compare(prev: RunRecord | None, cur: RunRecord, th: Thresholds) -> list[Finding]:
    """Findings of ``cur`` against ``prev`` (None: only the mismatch check applies)."""
    s = cur.summary or {}
    key = group_key(cur)
    out: list[Finding] = []
    pid = prev.run_id if prev else None
    mism = s.get("mismatches")
    if mism:
        out.append(Finding(cur.run_id, pid, key, "mismatches", None, float(mism), not th.allow_mismatches,
                           f"{mism} image(s) whose logits differ from potnn.simulate"))
    if prev is None:
        return out
    p = prev.summary or {}

    def num(d: dict[str, Any], k: str) -> float | None:
        v = d.get(k)
        return None if v is None else float(v)

    a0, a1 = num(p, "accuracy"), num(s, "accuracy")
    if a0 is not None and a1 is not None and a1 != a0:
        drop_pp = (a0 - a1) * 100
        out.append(Finding(cur.run_id, pid, key, "accuracy", a0, a1, drop_pp > th.accuracy_drop_pp + 1e-9,
                           f"accuracy {a0:.2%} -> {a1:.2%} ({-drop_pp:+.2f} pp)"))
    c0, c1 = num(p, "cycles_mean"), num(s, "cycles_mean")
    if c0 and c1 is not None and c1 != c0:
        pct = (c1 - c0) / c0 * 100
        out.append(Finding(cur.run_id, pid, key, "cycles_mean", c0, c1, pct > th.cycles_increase_pct + 1e-9,
                           f"cycles/inference {c0:,.0f} -> {c1:,.0f} ({pct:+.2f} %)"))
    for k in ("flash_bytes", "ram_bytes", "stack_bytes"):
        b0, b1 = num(p, k), num(s, k)
        if b0 is not None and b1 is not None and b1 != b0:
            out.append(Finding(cur.run_id, pid, key, k, b0, b1, b1 - b0 > th.size_increase_bytes,
                               f"{k} {b0:,.0f} -> {b1:,.0f} ({b1 - b0:+,.0f} B)"))
    return out


def all_comparisons(runs: Sequence[RunRecord], th: Thresholds) -> tuple[list[Finding], list[Finding]]:
    """(findings of the newest run of every group, findings of every older pair)."""
    latest: list[Finding] = []
    history: list[Finding] = []
    for seq in groups(runs).values():
        for i, cur in enumerate(seq):
            found = compare(seq[i - 1] if i else None, cur, th)
            (latest if i == len(seq) - 1 else history).extend(found)
    return latest, history


# ----------------------------------------------------------------------------- loading
def load_runs(results_dir: Path) -> list[RunRecord]:
    """Every run under ``results_dir``; the first corrupt file raises ResultsError (one line)."""
    return [load_run(d) for d in run_dirs(results_dir)]


# ----------------------------------------------------------------------------- plots
def _figure(w: float, h: float) -> Any:
    """A Figure on the Agg canvas, without pyplot's global state (safe in threads and tests)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _label(key: tuple[str, ...]) -> str:
    return " / ".join(str(k) for k in key)


def plot_accuracy(latest: list[RunRecord]) -> bytes:
    fig = _figure(max(5.0, 0.9 * len(latest) + 2), 3.6)
    ax = fig.add_subplot()
    names = [_label(group_key(r)[:3]) + f"\nn={r.info['n']}" for r in latest]
    acc = [100 * (r.info.get("accuracy") or 0) for r in latest]
    ref = [100 * r.info["ref_accuracy"] if r.info.get("ref_accuracy") is not None else np.nan for r in latest]
    x = np.arange(len(latest))
    bars = ax.bar(x, acc, width=0.6, color="#4c72b0", label="board")
    ax.set_xlim(-0.75, len(latest) - 0.25)
    ax.scatter(x, ref, color="#dd8452", marker="_", s=600, linewidths=3, zorder=3, label="potnn.simulate")
    for b, a in zip(bars, acc):
        ax.annotate(f"{a:.2f}", (b.get_x() + b.get_width() / 2, a), ha="center", va="bottom", fontsize=8)
    lo = min([a for a in acc + [r for r in ref if not np.isnan(r)]] or [0])
    ax.set_ylim(max(0.0, lo - 5), 100.5)
    ax.set_xticks(x, names, fontsize=7, rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy per board and model (newest run)")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def plot_trend(seqs: dict[tuple[str, str, str, int], list[RunRecord]]) -> bytes:
    """Accuracy and mean cycles of every run on one time-ordered axis shared by all groups."""
    everything = sorted({r.run_id: r for seq in seqs.values() for r in seq}.values(), key=_order)
    everything = everything[-MAX_TREND_RUNS:]
    pos = {r.run_id: i for i, r in enumerate(everything)}
    fig = _figure(8, 5)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    for key, seq in seqs.items():
        seq = [r for r in seq if r.run_id in pos]
        if not seq:
            continue
        x = [pos[r.run_id] for r in seq]
        ax1.plot(x, [100 * (r.info.get("accuracy") or 0) for r in seq], marker="o", label=_label(key[:3]))
        ax2.plot(x, [r.info.get("cycles_mean") or np.nan for r in seq], marker="o", label=_label(key[:3]))
    step = max(1, len(everything) // 12)
    ticks = list(range(0, len(everything), step))
    labels = [f"{str(everything[i].info.get('finished', ''))[:10]}\n"
              f"{str(everything[i].info.get('git_commit') or '')[:8]}" for i in ticks]
    ax2.set_xticks(ticks, labels, fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.set_ylabel("accuracy (%)")
    ax2.set_ylabel("cycles / inference")
    ax2.set_yscale("log")  # the zoo's models differ by 30× in cycles
    ax1.set_title("Trend across runs (date, git commit)")
    ax1.legend(fontsize=7)
    return _png(fig)


def plot_cycles(latest: list[RunRecord]) -> bytes:
    """One histogram per board and model, each on its own axis: models differ by 30× in cycles."""
    runs = [r for r in latest if len(r.rows["cycles"])] or latest[:1]
    cols = min(3, len(runs))
    rows = (len(runs) + cols - 1) // cols
    fig = _figure(max(4.0, 3.2 * cols), 2.6 * rows + 0.6)
    for i, r in enumerate(runs):
        ax = fig.add_subplot(rows, cols, i + 1)
        c = r.rows["cycles"].to_numpy()
        if len(c):
            ax.hist(c, bins=min(50, max(5, len(np.unique(c)))), color="#4c72b0")
            ax.ticklabel_format(axis="x", style="plain", useOffset=False)
            ax.tick_params(axis="x", labelsize=7, labelrotation=20)
        ax.set_title(_label(group_key(r)[:3]), fontsize=8)
        ax.set_xlabel("cycles per inference", fontsize=8)
        if i % cols == 0:
            ax.set_ylabel("images", fontsize=8)
    fig.suptitle("Cycles per inference (newest run)")
    return _png(fig)


def plot_layers(run: RunRecord) -> bytes:
    layers: dict[str, float] = run.info["layer_cycles"]
    fig = _figure(7, 0.35 * len(layers) + 1.5)
    ax = fig.add_subplot()
    names = list(layers)
    ax.barh(names[::-1], [layers[n] for n in names][::-1], color="#55a868")
    ax.set_xlabel("cycles (mean per inference)")
    ax.set_title(f"Per-layer cycles: {_label(group_key(run)[:3])}")
    return _png(fig)


def plot_sizes(latest: list[RunRecord]) -> bytes:
    fig = _figure(8, 0.5 * len(latest) * 2 + 2)
    axes = fig.subplots(1, 2)
    names = [_label(group_key(r)[:3]) for r in latest]
    for ax, used_key, budget_key, title in ((axes[0], "flash_bytes", "flash_budget", "Flash"),
                                            (axes[1], "ram_bytes", "ram_budget", "RAM (static + stack)")):
        used = [float(r.info.get(used_key) or 0) for r in latest]
        if used_key == "ram_bytes":
            stack = [float(r.info.get("stack_bytes") or 0) for r in latest]
        else:
            stack = [0.0] * len(latest)
        y = np.arange(len(latest))
        ax.barh(y, used, color="#4c72b0", label="static")
        if any(stack):
            ax.barh(y, stack, left=used, color="#8172b2", label="stack")
        for i, r in enumerate(latest):
            budget = r.info.get(budget_key)
            if budget:
                ax.plot([budget, budget], [i - 0.4, i + 0.4], color="#c44e52", linewidth=2)
                ax.annotate(f"{(used[i] + stack[i]) / budget:.0%}", (budget, i), fontsize=7,
                            xytext=(3, 0), textcoords="offset points", va="center")
        ax.set_yticks(y, names, fontsize=7)
        ax.set_xlabel("bytes (red: board budget)")
        ax.set_title(title)
        if any(stack):
            ax.legend(fontsize=7)
    return _png(fig)


def confusion(run: RunRecord) -> np.ndarray:
    k = len([c for c in run.rows.columns if c.startswith("logit")])
    m = np.zeros((k, k), dtype=np.int64)
    labels = run.rows["label"].to_numpy()
    preds = run.rows["pred"].to_numpy()
    ok = (labels >= 0) & (labels < k) & (preds >= 0) & (preds < k)
    np.add.at(m, (labels[ok], preds[ok]), 1)
    return m


def plot_confusion(run: RunRecord) -> bytes:
    m = confusion(run)
    fig = _figure(4.6, 4.2)
    ax = fig.add_subplot()
    shade = np.log1p(m)
    ax.imshow(shade, cmap="Blues")
    k = m.shape[0]
    dark = shade.max() * 0.6 if m.any() else 1.0
    for i in range(k):
        for j in range(k):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if shade[i, j] > dark else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion: {_label(group_key(run)[:3])}", fontsize=9)
    return _png(fig)


def failed_rows(run: RunRecord) -> Any:
    r = run.rows
    return r[(r["pred"] != r["label"]) | (r["match"] == 0)]


def plot_failures(run: RunRecord) -> bytes | None:
    bad = failed_rows(run)
    items = [(int(row["index"]), int(row["label"]), int(row["pred"]), int(row["ref_pred"]), row["match"] == 0)
             for _, row in bad.iterrows() if int(row["index"]) in run.failures][:MAX_FAILURE_IMAGES]
    if not items:
        return None
    cols = min(12, len(items))
    nrows = (len(items) + cols - 1) // cols
    fig = _figure(cols * 0.9 + 0.2, nrows * 1.05 + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (idx, label, pred, ref, mism) in zip(axes, items):
        img = run.failures[idx].reshape(run.failures[idx].shape[-2:])
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"#{idx} y{label} p{pred}" + (f" r{ref}" if mism else ""), fontsize=6,
                     color="#dd8452" if mism else "#c44e52")
    fig.suptitle(f"Wrong (red) or mismatching the reference (orange): {_label(group_key(run)[:3])}",
                 fontsize=8)
    return _png(fig)


# ----------------------------------------------------------------------------- document
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


def build_sections(runs: list[RunRecord], th: Thresholds) -> tuple[list[Section], list[Finding]]:
    seqs = groups(runs)
    latest_runs = [seq[-1] for seq in seqs.values()]
    latest_f, history_f = all_comparisons(runs, th)
    regressions = [f for f in latest_f if f.regression]
    secs: list[Section] = []

    status = (f"**{len(regressions)} regression(s)** in the newest runs." if regressions
              else "No regression in the newest runs.")
    head = ["board", "model", "backend", "n", "accuracy", "reference", "mismatches", "cycles mean",
            "cycles max", "ms @clock", "flash B", "RAM B", "stack B", "toolchain", "commit", "finished"]
    rows = []
    for r in latest_runs:
        s = r.info
        ms = (float(s["cycles_mean"]) / float(s["clock_hz"]) * 1e3
              if s.get("cycles_mean") and s.get("clock_hz") else None)
        rows.append([str(s.get("board")), str(s.get("model")), str(s.get("backend")), _fmt(s.get("n"), "int"),
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
                            ["Comparable: same board, model, backend and number of images. "
                             f"Thresholds: accuracy drop {th.accuracy_drop_pp} pp, cycles +{th.cycles_increase_pct} %, "
                             f"size +{th.size_increase_bytes} B, mismatches "
                             f"{'allowed' if th.allow_mismatches else 'not allowed'}."],
                            [(["status", "group", "metric", "change", "run", "previous"],
                              [["REGRESSION" if f.regression else "ok", _label(f.group[:3]), f.metric, f.message,
                                f.run_id, f.previous_id or "-"] for f in latest_f])], []))

    if seqs:
        hist_rows = [[_label(k[:3]), str(r.info.get("n")), str(r.info.get("finished"))[:19],
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
        images = [("cycles", plot_cycles(latest_runs))]
        text = ["Cycles measured on the board (SysTick around potnn_predict) or by the emulator's cycle model."]
        for r in latest_runs:
            if isinstance(r.info.get("layer_cycles"), dict) and r.info["layer_cycles"]:
                images.append((f"layers_{len(images)}", plot_layers(r)))
        if len(images) == 1:
            text.append("Per-layer cycles: not recorded by these runs.")
        else:
            text.append("Per-layer cycles (mean per inference) for the runs that recorded them.")
        secs.append(Section("Cycles per inference", text, [], images))
        secs.append(Section("Flash and RAM against the board budget",
                            ["RAM = static data (.data + .bss) plus the measured or estimated stack."],
                            [], [("sizes", plot_sizes(latest_runs))]))
        secs.append(Section("Confusion matrices", ["Newest run of each group; rows: true class."], [],
                            [(f"confusion_{i}", plot_confusion(r)) for i, r in enumerate(latest_runs)]))
        fail_imgs, fail_text = [], []
        for i, r in enumerate(latest_runs):
            bad = failed_rows(r)
            if bad.empty:
                continue
            png = plot_failures(r)
            if png is not None:
                fail_imgs.append((f"failures_{i}", png))
            missing = [int(x) for x in bad["index"] if int(x) not in r.failures]
            fail_text.append(f"{_label(group_key(r)[:3])}: {len(bad)} image(s) wrong or mismatching"
                             + (f"; showing {min(len(bad), MAX_FAILURE_IMAGES)}" if png is not None else "")
                             + (f"; no pixels stored for {len(missing)}" if missing else ""))
        secs.append(Section("Images the board got wrong or that mismatched the reference",
                            fail_text or ["None."], [], fail_imgs))

    incomplete = [r for r in runs if not r.complete]
    if incomplete:
        secs.append(Section("Incomplete runs", ["Interrupted runs; continue one with "
                                                "`potnn-bench run --board B --resume RUN_ID`."],
                            [(["run", "board", "model", "rows", "planned", "started"],
                              [[r.run_id, str(r.meta.get("board")), str(r.meta.get("model")), str(len(r.rows)),
                                str(r.meta.get("n")), str(r.meta.get("started"))] for r in incomplete])], []))
    if not runs:
        secs.append(Section("No runs", ["No run found in this results directory yet."], [], []))
    return secs, regressions


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
            (assets / f"{stem}.png").write_bytes(png)
            out += [f"![{stem}]({assets.name}/{stem}.png)", ""]
    _write_text(path, "\n".join(out))


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}
th{background:#f3f3f3}td.REGRESSION{background:#f8d7da;font-weight:bold}img{max-width:100%;display:block;margin:.5em 0}"""


def _md_inline(text: str) -> str:
    """Escape, then render the two bits of inline Markdown used in section texts."""
    import re

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
    _write_text(path, "\n".join(out))


def _write_text(path: Path, text: str) -> None:
    """Atomic, like the results files: a reader (or a second report) never sees half a page."""
    import os
    import secrets

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


# ----------------------------------------------------------------------------- CLI
def add_threshold_options(p: argparse.ArgumentParser) -> None:
    """The regression thresholds (shared with ``nightly``)."""
    p.add_argument("--max-accuracy-drop", type=float, default=0.0, metavar="PP",
                   help="accuracy may fall by this many percentage points (default 0)")
    p.add_argument("--max-cycles-increase", type=float, default=0.0, metavar="PCT",
                   help="mean cycles may grow by this percentage (default 0)")
    p.add_argument("--max-size-increase", type=int, default=0, metavar="BYTES",
                   help="flash, RAM and stack may each grow by this many bytes (default 0)")
    p.add_argument("--allow-mismatches", action="store_true",
                   help="do not fail when board logits differ from potnn.simulate")


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    return Thresholds(args.max_accuracy_drop, args.max_cycles_increase, args.max_size_increase,
                      args.allow_mismatches)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="HTML + Markdown report of all runs; exit 1 on regression",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default results/)")
    p.add_argument("--out", type=Path, default=None,
                   help="HTML file to write (default RESULTS/report.html); the .md goes beside it")
    add_threshold_options(p)
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
        print(f"REGRESSION {_label(f.group[:3])} n={f.group[3]}: {f.message} (run {f.run_id} vs {f.previous_id})")
    return 1 if res.regressions else 0
