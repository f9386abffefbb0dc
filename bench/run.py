"""``potnn-bench run``: stream the test set through the board (or its emulator) and log every answer.

The loop (``stream``) is independent of how images reach the chip: it calls an ``infer``
function per image and appends one row per answer to ``rows.csv`` before sending the next
image, so an interrupted run keeps all it logged and ``--resume`` sends only what is missing.
``execute`` wires the loop to the real pieces: the build, the flasher or emulator
(``bench.flash``), the UART protocol client, the reference logits (``bench.reference``) and the
results store (``bench.results``, whose docstring documents the files).

Reference logits (what "mismatch" means) come from ``<header stem>.ref.npz`` beside the header,
or, through the Python API, from a potnn model (``Reference.from_model``) or any array/callable.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from bench import results as store
from bench.progress import Progress
from bench.reference import Reference, ReferenceError, images_sha256

DATASET = "mnist-test-16x16"


class RunError(Exception):
    """The run cannot start or continue; the message is one line (no traceback for users)."""


@dataclass
class Inference:
    """One answer from the board: class, integer logits, cycles (and instructions when emulated)."""

    pred: int
    logits: Sequence[int]
    cycles: int
    instructions: int | None = None


InferFn = Callable[[bytes], Inference]


@dataclass
class StreamResult:
    done: int
    correct: int
    mismatches: int
    interrupted: bool = False
    reasked: int = 0          # extra requests sent to confirm answers that differed from the reference


#: Quiet gap before a retry on the emulator: its answers come in milliseconds, and the filler
#: bytes (``BenchClient``) end a partial frame without waiting for the firmware's timeout.
EMULATOR_QUIET_S = 0.03

#: A request is retried for up to this many times ``--timeout`` (the worst case of the
#: bench's first version, which waited ``--timeout`` for each of three attempts).
RETRY_BUDGET = 3

#: Requests per image, at most, to get two equal answers in a row when the first one
#: differs from the reference (see ``stream``).
CONFIRM_ASKS = 6


def _confirm(infer: InferFn, image: bytes, first: Inference, index: int) -> tuple[Inference, int]:
    """Ask again until two answers in a row agree; return the agreed answer and the extra asks.

    Why: a mismatch must be the firmware's, never the link's. CRC-16 lets about one random
    corruption in 65536 through, and a late answer to an earlier request can pass for this
    one; neither repeats, while a real mismatch does.
    """
    prev, asks = first, 0
    while asks < CONFIRM_ASKS - 1:
        again = infer(image)
        asks += 1
        if int(again.pred) == int(prev.pred) and [int(v) for v in again.logits] == [int(v) for v in prev.logits]:
            return again, asks
        prev = again
    raise RunError(f"image {index}: the board gave {CONFIRM_ASKS} answers and no two in a row agree; "
                   "the link corrupts answers (check the cable and --port), then --resume")


def stream(images: np.ndarray, labels: np.ndarray, todo: Iterable[int], infer: InferFn,
           writer: store.RowWriter, reference: Reference | None,
           progress: Progress | None = None) -> StreamResult:
    """Send each image of ``todo``, compare with the reference, append its row (fsynced) at once.

    An answer that differs from the reference is logged only once the board has given the same
    answer twice in a row (``_confirm``), so every logged mismatch is the firmware's.
    KeyboardInterrupt stops after the last whole row and is reported, not raised: the caller
    prints how to resume. Other errors propagate after the rows so far are safely on disk.
    """
    ref_pred = reference.predictions() if reference is not None else None
    k = len(writer.columns) - len(store.BASE_COLUMNS)
    res = StreamResult(0, 0, 0)
    try:
        for i in todo:
            image = np.ascontiguousarray(images[i], dtype=np.uint8).tobytes()
            ans = infer(image)
            logits = [int(v) for v in ans.logits]
            if reference is not None and (logits != [int(v) for v in reference.logits[i]]
                                          or int(ans.pred) != int(ref_pred[i])):  # type: ignore[index]
                ans, extra = _confirm(infer, image, ans, int(i))
                res.reasked += extra
                logits = [int(v) for v in ans.logits]
            if len(logits) != k:
                raise RunError(f"image {i}: the board returned {len(logits)} logits, the model has {k}")
            if reference is not None:
                rp = int(ref_pred[i])  # type: ignore[index]
                match: bool | None = (logits == [int(v) for v in reference.logits[i]]
                                      and int(ans.pred) == rp)
            else:
                rp, match = -1, None
            label = int(labels[i])
            writer.append(store.Row(int(i), label, int(ans.pred), rp, match, int(ans.cycles),
                                    ans.instructions, logits))
            res.done += 1
            res.correct += int(ans.pred) == label
            res.mismatches += match is False
            if progress is not None:
                progress.update(int(ans.pred) == label, match is False)
    except KeyboardInterrupt:
        res.interrupted = True
    finally:
        if progress is not None:
            progress.close()
    return res


# ----------------------------------------------------------------------------- run directory
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
    """Everything fixed before the first image: where rows go and which images remain."""

    run_dir: Path
    meta: dict[str, Any]
    todo: list[int]
    done_rows: int
    correct: int
    mismatches: int


def plan_run(results_dir: Path, meta: Mapping[str, Any], n: int, resume: str | Path | None,
             num_classes: int) -> RunPlan:
    """Create a new run directory, or reopen ``resume`` (a path, a run id, or "latest").

    Resuming refuses a run of another board or model hash: mixing rows of two models would make
    every figure of the run meaningless.
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
    bad = rows[(rows["pred"] != rows["label"]) | (rows["match"] == 0)]
    idx = [int(i) for i in bad["index"]]
    store.write_failures(plan.run_dir, idx, images[idx] if idx else np.zeros((0, *images.shape[1:]), np.uint8))
    meta = {k: v for k, v in plan.meta.items() if k not in ("n", "finished")}
    summary = store.summarize(rows, meta)
    store.write_json_atomic(plan.run_dir / store.SUMMARY_JSON, summary)
    return summary


def format_summary(s: Mapping[str, Any], run_dir: Path) -> str:
    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * float(v):.2f}%"

    lines = [
        f"run {run_dir.name}: {s.get('model')} on {s.get('board')} ({s.get('backend')}), {s.get('n')} images",
        f"  accuracy {pct(s.get('accuracy'))}  reference {pct(s.get('ref_accuracy'))}  "
        f"mismatches {'-' if s.get('mismatches') is None else s['mismatches']}",
        f"  cycles mean {s.get('cycles_mean') or 0:,.0f}  max {s.get('cycles_max') or 0:,}"
        + (f"  instructions mean {s['instructions_mean']:,.0f}" if s.get("instructions_mean") else ""),
        f"  flash {s.get('flash_bytes')} B  RAM {s.get('ram_bytes')} B  stack {s.get('stack_bytes')} B  "
        f"toolchain {s.get('toolchain')}",
    ]
    link = s.get("link")
    if isinstance(link, Mapping) and (link.get("retries") or s.get("fault_rate")):
        faults = ", ".join(f"{k} {link[k]}" for k in ("drop_out", "corrupt_out", "delay_out", "drop_in",
                                                      "corrupt_in", "delay_in") if link.get(k))
        lines.append(f"  link: {link.get('requests')} requests ({link.get('barriers')} barriers), "
                     f"{link.get('retries')} retries "
                     f"({link.get('no_answer')} unanswered, {link.get('corrupt_answers')} corrupted answers, "
                     f"{link.get('naks_retried')} NAKs), {link.get('reasked')} answers re-asked"
                     + (f"; fault rate {s.get('fault_rate')}: {faults or 'no fault injected'}"
                        if s.get("fault_rate") else ""))
    lines.append(f"  results {run_dir}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- images
def load_test_images(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST 16x16 test set exactly as potnn trains and exports for (uint8 [N,1,16,16])."""
    try:
        from potnn.data import DatasetError, load_mnist
    except ImportError as e:
        raise RunError(f"cannot load the test set: potnn.data unavailable ({e})") from None
    try:
        images, labels = load_mnist("test", size=16)
    except DatasetError as e:
        raise RunError(str(e)) from None
    return images, labels


def check_reference(reference: Reference, images: np.ndarray) -> None:
    """Whole-set digest check first (the stored digest is of the full test set)."""
    try:
        reference.check_images(images)
    except ReferenceError as e:
        raise RunError(str(e)) from None


# ----------------------------------------------------------------------------- CLI
def add_target_options(p: argparse.ArgumentParser) -> None:
    """--board/--header/--model/--emulator, shared by flash, run and nightly."""
    p.add_argument("--board", required=True, help="board name (see `potnn-bench boards`)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--header", type=Path, help="model header exported by potnn.export")
    g.add_argument("--model", help="zoo model name (default: the zoo's default model for the board)")
    p.add_argument("--emulator", choices=("auto", "unicorn", "renode", "none"), default="auto",
                   help="auto: the board if a probe is attached, else its emulator; none: board only")
    p.add_argument("--pack", type=Path, help="CMSIS pack file for pyOCD targets (PY32: Puya.PY32F0xx_DFP)")


def add_build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--opt", choices=("Os", "O2", "O3"), default="Os", help="firmware optimisation (default Os)")
    p.add_argument("--toolchain", choices=("gnu", "zig"), default=None,
                   help="compiler (default: first available, gnu first)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("run", help="stream the test set through the board or emulator and log results",
                              description=__doc__.split("\n\n")[0])
    add_target_options(p)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N test images (default all)")
    p.add_argument("--port", help="pyserial URL or device of the board's UART (default: found by USB id)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default results/)")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN",
                   help="continue an interrupted run (a run id or directory; default the newest one "
                        "of this board and model)")
    p.add_argument("--no-flash", action="store_true", help="hardware: use the firmware already on the board")
    p.add_argument("--no-reference", action="store_true",
                   help="run without reference logits (no mismatch check)")
    p.add_argument("--build-dir", type=Path, default=None, help="where to build (default build/<board>-<toolchain>-<opt>-<hash>)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for one answer (default 10); a request is retried for up to 3x that")
    p.add_argument("--retries", type=int, default=None, metavar="N",
                   help="retries per request (default: as many as fit in 3 x --timeout)")
    p.add_argument("--fault-rate", type=float, default=0.0, metavar="R",
                   help="inject link faults: each byte is dropped, corrupted or delayed with probability R "
                        "(tests the bench's retries; default 0)")
    p.add_argument("--fault-seed", type=int, default=None, metavar="S", help="seed of the fault injector")
    add_build_options(p)
    p.set_defaults(func=main)
    return p


@dataclass
class RunOptions:
    """A run as the CLI, nightly or a Python caller asks for it."""

    board: str
    header: Path | None = None
    model: str | None = None
    emulator: str = "auto"
    pack: Path | None = None
    limit: int | None = None
    port: str | None = None
    results: Path = Path("results")
    resume: str | None = None
    flash: bool = True
    no_reference: bool = False
    reference: Reference | None = None       # Python API: overrides the .ref.npz
    dataset: tuple[np.ndarray, np.ndarray] | None = None  # Python API: (images, labels)
    build_dir: Path | None = None
    opt: str = "Os"
    toolchain: str | None = None
    timeout: float = 10.0
    show_progress: bool = True
    retries: int | None = None               # None: as many as fit in RETRY_BUDGET x ``timeout``
    fault_rate: float = 0.0                  # bench.transport.FaultyPort between bench and board
    fault_seed: int | None = None


@dataclass
class RunOutcome:
    run_dir: Path
    summary: dict[str, Any] | None   # None when interrupted
    interrupted: bool


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _reference_for(header: Path, zoo_name: str | None, images: np.ndarray) -> Reference:
    """``<header>.ref.npz`` if it ships; for a zoo model without one, ``potnn.simulate`` now."""
    from bench.reference import for_header, reference_path

    if zoo_name is not None and not reference_path(header).exists():
        from bench.models import get_model

        entry = get_model(zoo_name)
        if entry.load is not None:
            return Reference.from_model(entry.load(), images)
    try:
        return for_header(header)
    except ReferenceError as e:
        raise RunError(str(e)) from None


def quick_check(client: Any, header: Path, zoo_name: str | None, n: int, clock_hz: int,
                say: Callable[[str], None]) -> str | None:
    """Stream the first ``n`` test images once (nothing stored): the proof ``flash`` prints.

    Returns the one-line verdict, or None (with a line said) when the test set or the
    reference is not available: a successful flash must not fail over the check.
    """
    try:
        images, labels = load_test_images()
    except RunError as e:
        say(f"image check skipped: {e}")
        return None
    n = min(n, len(images))
    try:  # only the images checked: simulating all 10k would take longer than the check itself
        reference: Reference | None = _reference_for(header, zoo_name, images[:n])
    except RunError as e:
        say(f"no reference logits, so no bit-exactness check: {e}")
        reference = None
    correct = mism = 0
    cycles: list[int] = []
    for i in range(n):
        ans = client.infer(np.ascontiguousarray(images[i], dtype=np.uint8).tobytes())
        correct += int(ans.cls) == int(labels[i])
        cycles.append(int(ans.cycles))
        if reference is not None:
            mism += [int(v) for v in ans.logits] != [int(v) for v in reference.logits[i]]
    mean = sum(cycles) / len(cycles) if cycles else 0.0
    ref_part = (f", {n - mism}/{n} logits equal to potnn.simulate" if reference is not None else "")
    return (f"check: first {n} test images, {correct}/{n} correct{ref_part}; "
            f"{mean:,.0f} cycles per inference ({mean / clock_hz * 1e3:.2f} ms at {clock_hz / 1e6:g} MHz)")


def check_model(info: Any, expected_hash: int, header: Path) -> None:
    """Refuse firmware built from another model: both hashes in the message."""
    if int(info.model_hash) != int(expected_hash):
        raise RunError(f"the board runs firmware built from model {int(info.model_hash):08x}, but {header} "
                       f"is model {int(expected_hash):08x}: flash it first (potnn-bench flash, or drop --no-flash)")


def resume_command(opts: RunOptions, board: str, header: Path, model_name: str, run_dir: Path) -> str:
    """The command line that finishes an interrupted or broken run."""
    target = f"--header {header}" if opts.model is None and opts.header is not None else f"--model {model_name}"
    return f"potnn-bench run --board {board} {target} --results {opts.results} --resume {run_dir.name}"


def _link_problem(e: BaseException, url: str) -> str:
    """One line for a failure of the link itself (the port vanished) or of the protocol."""
    from serial import SerialException

    if isinstance(e, SerialException):
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"lost the serial port {url} ({why})"
    return str(e)


def execute(opts: RunOptions, say: Callable[[str], None] = _say) -> RunOutcome:
    """Build, flash or emulate, hand-shake, stream, and write the results of one run.

    The link: ``BenchClient`` with adaptive timeouts and as many retries as fit in
    ``RETRY_BUDGET * opts.timeout`` per request (``opts.retries`` caps them), through a
    ``bench.transport.FaultyPort`` when ``opts.fault_rate`` > 0. A link that fails for good (no
    answer within the budget, the port gone) ends the run with one line that says what was lost,
    where the rows are, and the command that finishes the run.
    """
    from bench.board import load_board
    from bench.build import build
    from bench.flash import connect, place
    from bench.models import resolve_header
    from bench.protocol import QUIET_S, BenchClient, ProtocolError
    from bench.emulator import EmulatorFault
    from serial import SerialException

    if not 0.0 <= opts.fault_rate < 1.0:
        raise RunError(f"--fault-rate must be in [0, 1), not {opts.fault_rate}")
    board = load_board(opts.board)
    header, model_name = resolve_header(board.name, opts.header, opts.model)
    store.ensure_writable(opts.results)          # before minutes of building and flashing
    images, labels = opts.dataset if opts.dataset is not None else load_test_images()
    reference = opts.reference
    if reference is None and not opts.no_reference:
        reference = _reference_for(header, None if opts.header is not None else model_name, images)
    if reference is not None:
        check_reference(reference, images)
    n = len(images) if opts.limit is None else max(0, min(int(opts.limit), len(images)))
    if opts.resume is not None and opts.limit is None:
        n = 0  # keep the interrupted run's own size

    fw = build(board, header, opts.build_dir, opt=opts.opt, toolchain=opts.toolchain)
    if reference is not None and reference.num_classes != fw.num_classes:
        raise RunError(f"reference has {reference.num_classes} classes, {header} has {fw.num_classes}")
    placement = place(board, opts.emulator, opts.pack, say=say)

    meta: dict[str, Any] = dict(
        board=board.name, backend=placement.backend, model=model_name, model_hash=fw.model_hash_hex,
        header=str(Path(header).resolve()), dataset=DATASET, images_sha256=images_sha256(images),
        reference=None if reference is None else reference.source,
        flash_bytes=fw.flash_bytes, ram_bytes=fw.static_ram_bytes, stack_bytes=fw.stack_bytes,
        stack_reserved=fw.stack_bytes, flash_budget=board.flash_size, ram_budget=board.ram_size,
        model_flash_bytes=fw.model_flash_bytes, model_ram_bytes=fw.model_ram_bytes,
        clock_hz=board.clock_hz, toolchain=fw.toolchain, elf=str(fw.elf), git_commit=git_commit(),
        started=store.utc_now())
    meta.update(fault_rate=opts.fault_rate, fault_seed=opts.fault_seed)   # (a resumed run says its own)

    with connect(board, fw.elf, placement, opts.port, flash=opts.flash, timeout_s=min(opts.timeout, 1.0),
                 say=say) as link:
        port: Any = link.serial
        faulty = None
        if opts.fault_rate:
            from bench.transport import FaultyPort

            port = faulty = FaultyPort(link.serial, opts.fault_rate, opts.fault_seed)
        # Emulator answers arrive in milliseconds: a short quiet gap keeps retries cheap there.
        client = BenchClient(port, timeout=max(2.0, opts.timeout / 5), infer_timeout=opts.timeout,
                             retries=opts.retries, budget_s=RETRY_BUDGET * opts.timeout, adaptive=True,
                             confirm_naks=True, barriers=True,
                             quiet_s=QUIET_S if placement.hardware else EMULATOR_QUIET_S)
        try:
            info = client.info()
        except (ProtocolError, EmulatorFault, SerialException) as e:
            raise RunError(f"no INFO answer from {link.url}: {_link_problem(e, link.url)}") from None
        check_model(info, fw.model_hash, header)
        meta.update(firmware_version=info.firmware_version, port=link.url,
                    probe=None if placement.probe is None else str(placement.probe))
        plan = plan_run(opts.results, meta, n, opts.resume, fw.num_classes)
        say(f"run {plan.run_dir.name}: {model_name} on {board.name} ({placement.backend}), "
            f"{len(plan.todo)} of {plan.meta['n']} images to go")

        def infer(image: bytes) -> Inference:
            ans = client.infer(image)
            instr, _cycles = link.last_inference()
            return Inference(ans.cls, ans.logits, ans.cycles, instr)

        progress = Progress(int(plan.meta["n"]), plan.done_rows, plan.correct, plan.mismatches,
                            label=board.name) if opts.show_progress else None
        with store.RowWriter(plan.run_dir / store.ROWS_CSV, fw.num_classes) as writer:
            try:
                res = stream(images, labels, plan.todo, infer, writer, reference, progress)
            except (ProtocolError, EmulatorFault, SerialException, RunError) as e:
                fault = link.fault()
                why = f"emulator: {fault}" if fault else _link_problem(e, link.url)
                logged = writer.rows_written
                raise RunError(f"{why}; {plan.done_rows + logged} of {plan.meta['n']} images are logged in "
                               f"{plan.run_dir}; finish the run with: "
                               f"{resume_command(opts, board.name, header, model_name, plan.run_dir)}") from None
        if res.interrupted:
            say(f"interrupted: {plan.done_rows + res.done} of {plan.meta['n']} images logged in {plan.run_dir}; "
                f"continue with: {resume_command(opts, board.name, header, model_name, plan.run_dir)}")
            return RunOutcome(plan.run_dir, None, True)
        try:
            after = client.info()
            if after.stack_high_water:
                plan.meta["stack_bytes"] = int(after.stack_high_water)
                plan.meta["stack_measured"] = True
        except (ProtocolError, EmulatorFault, SerialException):
            pass
        link_stats: dict[str, Any] = {**client.stats.to_dict(), "reasked": res.reasked}
        if faulty is not None:
            link_stats.update(faulty.stats.to_dict())
        plan.meta["link"] = link_stats
        if link.emulator is not None:
            try:
                plan.meta["emulator_stats"] = link.emulator.stats.to_dict()
            except Exception:  # statistics are a nicety; never lose a finished run over them
                pass
    summary = finish_run(plan, images)
    return RunOutcome(plan.run_dir, summary, False)


def options_from_args(args: argparse.Namespace) -> RunOptions:
    return RunOptions(board=args.board, header=args.header, model=args.model, emulator=args.emulator,
                      pack=args.pack, limit=args.limit, port=args.port, results=args.results,
                      resume=args.resume, flash=not args.no_flash, no_reference=args.no_reference,
                      build_dir=args.build_dir, opt=args.opt, toolchain=args.toolchain, timeout=args.timeout,
                      retries=args.retries, fault_rate=args.fault_rate, fault_seed=args.fault_seed)


def main(args: argparse.Namespace) -> int:
    out = execute(options_from_args(args))
    if out.interrupted:
        return 130
    assert out.summary is not None
    print(format_summary(out.summary, out.run_dir))
    return 0
