"""The report's plots, each a PNG made on matplotlib's Agg canvas (no pyplot global state).

Why each plot is its own function of run records: the document (``bench.report.document``)
decides what to show; these only draw.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.ticker import FuncFormatter

from bench.report.regression import GroupKey, group_key, group_label, run_order
from bench.results import RunRecord, wrong_rows

MAX_FAILURE_IMAGES = 48
MAX_TREND_RUNS = 60


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


def plot_accuracy(latest: list[RunRecord]) -> bytes:
    fig = _figure(max(5.0, 0.9 * len(latest) + 2), 3.6)
    ax = fig.add_subplot()
    names = [group_label(group_key(r)) + f"\nn={r.info['n']}" for r in latest]
    acc = [100 * r.info["accuracy"] if r.info.get("accuracy") is not None else np.nan for r in latest]
    ref = [100 * r.info["ref_accuracy"] if r.info.get("ref_accuracy") is not None else np.nan for r in latest]
    x = np.arange(len(latest))
    bars = ax.bar(x, acc, width=0.6, color="#4c72b0", label="board")
    ax.set_xlim(-0.75, len(latest) - 0.25)
    ax.scatter(x, ref, color="#dd8452", marker="_", s=600, linewidths=3, zorder=3, label="potnn.simulate")
    for b, a in zip(bars, acc):
        if not np.isnan(a):
            ax.annotate(f"{a:.2f}", (b.get_x() + b.get_width() / 2, a), ha="center", va="bottom", fontsize=8)
    lo = min([v for v in acc + ref if not np.isnan(v)] or [0])
    ax.set_ylim(max(0.0, lo - 5), 100.5)
    ax.set_xticks(x, names, fontsize=7, rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy per board and model (newest run)")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def plot_trend(seqs: dict[GroupKey, list[RunRecord]]) -> bytes:
    """Accuracy and mean cycles of every run on one time-ordered axis shared by all groups."""
    everything = sorted({r.run_id: r for seq in seqs.values() for r in seq}.values(), key=run_order)
    everything = everything[-MAX_TREND_RUNS:]
    pos = {r.run_id: i for i, r in enumerate(everything)}
    fig = _figure(8, 5)
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    for key, seq in seqs.items():
        seq = [r for r in seq if r.run_id in pos]
        if not seq:
            continue
        x = [pos[r.run_id] for r in seq]
        accuracy = [100 * r.info["accuracy"] if r.info.get("accuracy") is not None else np.nan for r in seq]
        ax1.plot(x, accuracy, marker="o", label=group_label(key))
        ax2.plot(x, [r.info.get("cycles_mean") or np.nan for r in seq], marker="o", label=group_label(key))
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
        ax.set_title(group_label(group_key(r)), fontsize=8)
        ax.set_xlabel("cycles per inference", fontsize=8)
        if i % cols == 0:
            ax.set_ylabel("inputs", fontsize=8)
    fig.suptitle("Cycles per inference (newest run)")
    return _png(fig)


def plot_sizes(latest: list[RunRecord]) -> bytes:
    fig = _figure(8, 0.5 * len(latest) * 2 + 2)
    axes = fig.subplots(1, 2)
    names = [group_label(group_key(r)) for r in latest]
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
    """Counts [K, K] of (true, predicted) over the labelled rows; K from the run's logit columns."""
    k = len([c for c in run.rows.columns if c.startswith("logit")])
    m = np.zeros((k, k), dtype=np.int64)
    rows = run.rows[run.rows["label"].notna()]
    labels = rows["label"].to_numpy(dtype=np.int64)
    preds = rows["pred"].to_numpy(dtype=np.int64)
    ok = (labels >= 0) & (labels < k) & (preds >= 0) & (preds < k)
    np.add.at(m, (labels[ok], preds[ok]), 1)
    return m


def class_names(run: RunRecord, k: int) -> list[str]:
    """The manifest's class names the run recorded, else the class numbers."""
    names = run.info.get("class_names")
    return [str(n) for n in names] if isinstance(names, list) and len(names) == k else [str(i) for i in range(k)]


def labeled(run: RunRecord) -> bool:
    """Whether the run's data had labels (a run without them has no accuracy and no confusion matrix)."""
    return len(run.rows) > 0 and bool(run.rows["label"].notna().all())


def plot_confusion(run: RunRecord) -> bytes:
    """The confusion matrix of any class count, labelled with the class names; counts written up to 20 classes."""
    m = confusion(run)
    k = m.shape[0]
    names = class_names(run, k)
    side = min(14.0, max(4.6, 0.32 * k + 2.5))
    fig = _figure(side, side * 0.92)
    ax = fig.add_subplot()
    shade = np.log1p(m)
    ax.imshow(shade, cmap="Blues")
    dark = shade.max() * 0.6 if m.any() else 1.0
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if shade[i, j] > dark else "black")
    size = 7 if k <= 20 else 5
    ax.set_xticks(range(k), names, fontsize=size, rotation=90 if max(map(len, names)) > 2 else 0)
    ax.set_yticks(range(k), names, fontsize=size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion: {group_label(group_key(run))}", fontsize=9)
    return _png(fig)


def draw_input(ax: Any, x: np.ndarray) -> None:
    """One input as the board received it: grey image (C=1), RGB (C=3), channels side by side
    (other C), or one line per channel for a 1-D signal [C, L]."""
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim == 2:
        for c, channel in enumerate(x):
            ax.plot(channel, linewidth=0.7, label=f"c{c}")
        ax.set_ylim(-5, 260)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if x.shape[0] == 3:
        ax.imshow(np.transpose(x, (1, 2, 0)), interpolation="nearest")
    else:
        gap = np.full((x.shape[1], 1), 255, dtype=np.uint8)
        strip = np.concatenate([part for c in range(x.shape[0]) for part in ((x[c],) if c == 0 else (gap, x[c]))],
                               axis=1)
        ax.imshow(strip, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")


def plot_failures(run: RunRecord) -> bytes | None:
    """The stored inputs the board got wrong (red) or whose logits mismatched the reference (orange)."""
    bad = wrong_rows(run.rows)
    items = [(int(row["index"]), row["label"], int(row["pred"]), int(row["ref_pred"]), row["match"] == 0)
             for _, row in bad.iterrows() if int(row["index"]) in run.failures][:MAX_FAILURE_IMAGES]
    if not items:
        return None
    signal = run.failures[items[0][0]].ndim <= 2
    cols = min(6 if signal else 12, len(items))
    nrows = (len(items) + cols - 1) // cols
    cell_w, cell_h = (1.8, 1.1) if signal else (0.9, 1.05)
    fig = _figure(cols * cell_w + 0.2, nrows * cell_h + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    names = class_names(run, len([c for c in run.rows.columns if c.startswith("logit")]))
    for ax, (idx, label, pred, ref, mism) in zip(axes, items):
        ax.axis("on")
        draw_input(ax, run.failures[idx])
        truth = "" if np.isnan(label) else f" y {names[int(label)]}"      # NaN: the data has no labels
        ax.set_title(f"#{idx}{truth} p {names[pred]}" + (f" r {names[ref]}" if mism else ""), fontsize=6,
                     color="#dd8452" if mism else "#c44e52")
    fig.suptitle(f"Wrong (red) or mismatching the reference (orange): {group_label(group_key(run))}",
                 fontsize=8)
    return _png(fig)


def plot_layers(latest: list[RunRecord]) -> bytes | None:
    """One stacked bar per board and model: each layer's share of the cycles per inference, in model order.

    Shares rather than cycles on the axis: the zoo's models differ by 30× in cycles, and the question a
    bar answers is which layer to make faster; each bar ends with its total. None when no run has a
    per-layer profile (``layers``: runs on the unicorn emulator).
    """
    runs = [r for r in latest if r.info.get("layers")]
    if not runs:
        return None
    fig = _figure(9, 0.55 * len(runs) + 1.6)
    ax = fig.add_subplot()
    colours = [c for i, c in enumerate(_TAB10) if i != 7]   # grey is the firmware's
    for y, r in enumerate(runs):
        layers = r.info["layers"]
        total = sum(float(row["cycles_mean"]) for row in layers) or 1.0
        left = 0.0
        for i, row in enumerate(layers):
            share = 100 * float(row["cycles_mean"]) / total
            firmware = row.get("kind") == "firmware"
            ax.barh(y, share, left=left, color=_TAB10[7] if firmware else colours[i % len(colours)],
                    edgecolor="white", linewidth=0.5)
            if share >= 7:
                ax.text(left + share / 2, y, f"{row['name']}\n{share:.0f} %", ha="center", va="center", fontsize=7,
                        color="white")
            left += share
        ax.text(101, y, f"{total:,.0f} cycles", va="center", fontsize=7)
    ax.set_yticks(range(len(runs)), [group_label(group_key(r)) for r in runs], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 118)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("share of the cycles per inference (%), layers in model order; grey: potnn_predict and the "
                  "counter reads")
    ax.set_title("Where the cycles go, per layer (newest run, emulated)")
    return _png(fig)


_TAB10 = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b2", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
          "#64b5cd"]


def plot_frontier(points: list[Any]) -> bytes:
    """Accuracy against cycles per inference (log x) of ``bench.report.frontier.FrontierPoint``s.

    Measured points are filled, published ones hollow, and the legend says which is which; every
    point is labelled, so the picture reads without the table it comes from.
    """
    fig = _figure(8.5, 5.2)
    ax = fig.add_subplot()
    families = list(dict.fromkeys(p.family for p in points))
    for i, family in enumerate(families):
        pts = sorted((p for p in points if p.family == family), key=lambda p: p.cycles)
        published = pts[0].published
        colour = _TAB10[i % len(_TAB10)]
        ax.plot([p.cycles for p in pts], [100 * p.accuracy for p in pts], linestyle=":" if published else "-",
                linewidth=0.8, color=colour, marker="^" if published else "o", markersize=7,
                markerfacecolor="none" if published else colour, label=family)
        for j, p in enumerate(pts):
            # measured families alternate above and below their points (they share accuracies), and a model's
            # neighbouring points (one per toolchain) step further out, so that no two labels overlap
            step = 0 if published else 8 * (j % 2)
            ax.annotate(p.label, (p.cycles, 100 * p.accuracy), fontsize=6, color=colour, textcoords="offset points",
                        xytext=(5, -10 - step) if published or i % 2 else (5, 5 + step))
    ax.set_xscale("log")
    cycles = [p.cycles for p in points]
    ax.set_xlim(min(cycles) / 1.25, max(cycles) * 1.7)   # room for the labels right of the points
    ax.xaxis.set_major_formatter(FuncFormatter(_cycles_text))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: _cycles_text(v) if str(v)[0] in "25" else ""))
    ax.tick_params(axis="x", which="both", labelsize=7)
    ax.set_xlabel("cycles per inference (log scale)")
    ax.set_ylabel("accuracy on the 10,000 MNIST test images (%)")
    ax.grid(alpha=0.3, which="both")
    ax.set_title("16×16 MNIST: accuracy against cycles per inference\n"
                 "filled: potnn, measured on the emulated board; hollow: published by others", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def _cycles_text(v: float, _pos: int | None = None) -> str:
    """300k, 1M, 2.5M: a cycle count as an axis label."""
    return f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k"
