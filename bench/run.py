"""``potnn-bench run``: stream test data through the board (or its emulator) and log every answer.

``execute`` wires the pieces of one run together: the model and its bundle (``bench.exported``),
the data (``bench.dataset``: ``--data test.npz``, a registered dataset, or the manifest's), the
reference logits (``bench.reference``: ``potnn.simulate`` of the bundle), the build
(``bench.build``), where it runs (``bench.placement``), the UART client (``bench.protocol``), the
run directory (``bench.run_plan``), the stream loop (``bench.stream``) and the results store
(``bench.results``, whose docstring documents the files).

Everything a user can get wrong (the options, the model files, the data, its shape, the results
directory, the port) is checked before anything is built, so a refused run leaves no run folder
behind.

Exit status of ``potnn-bench run``: 0 when every input was answered and every answer equals
``potnn.simulate``; 1 when any answer differs; 2 on an error (one line); 130 after Ctrl-C and 143
after SIGTERM, with every answer so far kept and the command that finishes the run printed.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import shlex
import signal
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
from serial import SerialException

import bench.build
from bench import results as store
from bench.board import load_board
from bench.dataset import load_data
from bench.emulator import EmulatorFault
from bench.errors import RunError, Terminated
from bench.exported import read_model
from bench.models import resolve_header
from bench.options import (build_options, data_options, model_options, place_options, placement_options,
                           profile_options, results_options, stream_options)
from bench.farm import farm_placement
from bench.placement import check_model, check_port, connect, place, require_board_for_port
from bench.profile import LayerProfiler, format_profile, profiled_emulator
from bench.progress import Progress
from bench.protocol import BenchClient, ProtocolError
from bench.reference import reference_logits
from bench.run_plan import RunPlan, finish_run, git_commit, merge_link_stats, plan_run
from bench.stream import Inference, stream
from bench.transport import FaultyPort

#: A request is retried for up to this many times ``--timeout``: enough retries to ride out a
#: lossy link, and a bounded wait before a board that stopped answering ends the run.
RETRY_BUDGET = 3


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
    #: ``--data``: a .npz path or a registered dataset name; the Python API may also pass the
    #: arrays (x uint8 [N, *input_shape], labels [N] or None). None: the manifest's dataset.
    data: str | Path | tuple[np.ndarray, np.ndarray | None] | None = None
    build_dir: Path | None = None
    opt: str = "Os"
    toolchain: str | None = None
    place: str | None = None                 # --place: a labgrid place (bench.farm), not this computer
    timeout: float = 10.0
    show_progress: bool = True
    retries: int | None = None               # None: as many as fit in RETRY_BUDGET x ``timeout``
    fault_rate: float | None = None          # a rate (0 too): bench.transport.FaultyPort between bench and board
    fault_seed: int | None = None
    profile: bool = False                    # --profile: on the unicorn emulator, print the per-layer table


@dataclass
class RunOutcome:
    run_dir: Path
    summary: dict[str, Any] | None   # None when interrupted
    interrupted: bool
    signal: int | None = None        # what interrupted it: SIGINT (Ctrl-C) or SIGTERM

    @property
    def exit_status(self) -> int:
        """0 all answers equal the reference, 1 any differs, 128 + signal number when interrupted."""
        if self.interrupted:
            return 128 + int(self.signal or signal.SIGINT)
        return 1 if (self.summary or {}).get("mismatches") else 0


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def format_summary(s: Mapping[str, Any], run_dir: Path) -> str:
    """The lines ``potnn-bench run`` prints for a finished run's summary.json."""

    def pct(v: Any) -> str:
        return "-" if v is None else f"{100 * float(v):.2f}%"

    lines = [
        f"run {run_dir.name}: {s.get('model')} on {s.get('board')} ({s.get('backend')}), {s.get('n')} inputs "
        f"of {s.get('dataset')}",
        f"  accuracy {pct(s.get('accuracy'))}  reference {pct(s.get('ref_accuracy'))}  "
        f"mismatches {'-' if s.get('mismatches') is None else s['mismatches']}"
        + ("" if s.get("labeled", True) else "  (no labels: agreement with potnn.simulate only)"),
        f"  cycles mean {s.get('cycles_mean') or 0:,.0f}  max {s.get('cycles_max') or 0:,}"
        + (f"  instructions mean {s['instructions_mean']:,.0f}" if s.get("instructions_mean") else ""),
        f"  flash {s.get('flash_bytes')} B  RAM {s.get('ram_bytes')} B  stack {s.get('stack_bytes')} B  "
        f"toolchain {s.get('toolchain')}",
    ]
    link = s.get("link")
    if isinstance(link, Mapping) and (link.get("retries") or s.get("fault_rate")):
        faults = ", ".join(f"{k} {link[k]}" for k in ("drop_out", "corrupt_out", "delay_out", "drop_in",
                                                      "corrupt_in", "delay_in") if link.get(k))
        lines.append(f"  link: {link.get('requests')} requests ({link.get('chunks')} image chunks), "
                     f"{link.get('retries')} retries "
                     f"({link.get('no_answer')} unanswered, {link.get('corrupt_answers')} corrupted answers, "
                     f"{link.get('naks_retried')} NAKs), {link.get('reasked')} answers re-asked"
                     + (f"; fault rate {s.get('fault_rate')}: {faults or 'no fault injected'}"
                        if s.get("fault_rate") else ""))
    lines.append(f"  results {run_dir}")
    return "\n".join(lines)


def resume_command(opts: RunOptions, board: str, header: Path, model_name: str, run_dir: Path) -> str:
    """The command line that finishes an interrupted or broken run, quoted for a POSIX shell.

    Every argument goes through ``shlex.join``: a path with spaces, ``;`` or ``$(...)`` in it is
    one word when the line is pasted, never a command. The options that decide where and how the
    run goes (emulator, port, build) are repeated so the resume runs like the first part.
    """
    argv = ["potnn-bench", "run", "--board", board]
    argv += ["--header", str(header)] if opts.model is None and opts.header is not None else ["--model", model_name]
    if isinstance(opts.data, (str, Path)):
        argv += ["--data", str(opts.data)]
    optional: list[tuple[str, Any, Any]] = [
        ("--emulator", opts.emulator, "auto"), ("--place", opts.place, None), ("--pack", opts.pack, None),
        ("--port", opts.port, None),
        ("--build-dir", opts.build_dir, None), ("--opt", opts.opt, "Os"), ("--toolchain", opts.toolchain, None),
        ("--timeout", opts.timeout, 10.0), ("--retries", opts.retries, None),
        ("--fault-rate", opts.fault_rate, None), ("--fault-seed", opts.fault_seed, None)]
    for flag, value, default in optional:
        if value != default:
            argv += [flag, str(value)]
    if not opts.flash:
        argv.append("--no-flash")
    argv += ["--results", str(opts.results), "--resume", run_dir.name]
    return shlex.join(argv)


def check_options(opts: RunOptions) -> None:
    """Refuse, in one line each, the numbers and the port no run can use; before any work.

    Why here and not only in argparse: nightly and Python callers build ``RunOptions`` directly.
    """
    if opts.fault_rate is not None and not 0.0 <= opts.fault_rate < 1.0:
        raise RunError(f"--fault-rate must be in [0, 1), not {opts.fault_rate}")
    if opts.limit is not None and int(opts.limit) < 1:
        raise RunError(f"--limit must be at least 1, not {opts.limit} (leave it out to stream every input)")
    if opts.retries is not None and int(opts.retries) < 0:
        raise RunError(f"--retries must be 0 or more, not {opts.retries}")
    if not (math.isfinite(opts.timeout) and opts.timeout > 0):
        raise RunError(f"--timeout must be a positive number of seconds, not {opts.timeout}")
    check_port(opts.port, opts.emulator)


@contextlib.contextmanager
def _sigterm_interrupts(received: dict[str, int]) -> Iterator[None]:
    """While a run streams, SIGTERM interrupts it like Ctrl-C (``Terminated``): rows kept, resume printed.

    Only the main thread can install a handler; elsewhere SIGTERM keeps its default.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, _frame: Any) -> None:
        received["signal"] = signum
        raise Terminated()

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _write_problem(e: OSError) -> tuple[str, str]:
    """(``disk full writing results/x/rows.csv``, what to do first): the file and why, in the user's words."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full writing {e.filename}", "free some space"
    return f"{e.strerror or type(e).__name__} writing {e.filename}", "make it writable"


def _store_error(e: BaseException) -> bool:
    """An error of the results store (it names its file), not of the serial port (also an OSError)."""
    return isinstance(e, OSError) and not isinstance(e, SerialException) and e.filename is not None


def _keep_link_stats(plan: RunPlan, part: Mapping[str, Any]) -> None:
    """Record this part's link figures in run.json, so the summary after a resume covers all parts."""
    plan.meta["link"] = merge_link_stats(plan.meta.get("link"), part)
    try:
        store.write_json_atomic(plan.run_dir / store.RUN_JSON, plan.meta)
    except OSError:
        pass  # a full disk: the figures of this part are lost, the rows are not


def _link_problem(e: BaseException, url: str) -> str:
    """One line for a failure of the link itself (the port vanished) or of the protocol."""
    if isinstance(e, SerialException):
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"lost the serial port {url} ({why})"
    return str(e)


def execute(opts: RunOptions, say: Callable[[str], None] = _say) -> RunOutcome:
    """Build, flash or emulate, hand-shake, stream, and write the results of one run.

    The link: ``BenchClient`` with adaptive timeouts and as many retries as fit in
    ``RETRY_BUDGET * opts.timeout`` per request (``opts.retries`` caps them), through a
    ``bench.transport.FaultyPort`` when ``opts.fault_rate`` is given (0 too: the clean
    simulated link, paced at the board's baud rate on an emulator). A link that fails for good (no
    answer within the budget, the port gone) ends the run with one line that says what was lost,
    where the rows are, and the command that finishes the run.
    """
    check_options(opts)
    if opts.profile:
        opts = replace(opts, emulator=profiled_emulator(opts.emulator, opts.place))
    board = load_board(opts.board)
    header, model_name = resolve_header(board.name, opts.header, opts.model)
    model = read_model(header)
    store.ensure_writable(opts.results)          # before minutes of building and flashing
    data = load_data(opts.data, model)
    n = len(data) if opts.limit is None else min(int(opts.limit), len(data))
    if opts.resume is not None and opts.limit is None:
        n = 0  # keep the interrupted run's own size (its reference is computed once it is known)
    placement = farm_placement(opts.place, board.name) if opts.place else \
        place(board, opts.emulator, opts.pack, say=say)             # probing is quick: before the build
    require_board_for_port(opts.port, placement)
    reference = reference_logits(model, data, n)

    fw = bench.build.build(board, header, opts.build_dir, opt=opts.opt, toolchain=opts.toolchain)

    meta: dict[str, Any] = dict(
        board=board.name, backend=placement.backend, model=model_name, model_hash=fw.model_hash_hex,
        header=str(Path(header).resolve()), dataset=data.name, data_sha256=data.sha256,
        input_shape=list(data.input_shape), labeled=data.y is not None, class_names=model.class_names,
        reference=reference.source,
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
        if opts.fault_rate is not None:
            byte_time = 0.0 if placement.hardware else 10 / board.uart.baud   # an emulator has no UART pace
            port = faulty = FaultyPort(link.serial, opts.fault_rate, opts.fault_seed, byte_time_s=byte_time)
        client = BenchClient(port, timeout=max(2.0, opts.timeout / 5), infer_timeout=opts.timeout,
                             retries=opts.retries, budget_s=RETRY_BUDGET * opts.timeout)
        try:
            info = client.info()
        except (ProtocolError, EmulatorFault, SerialException) as e:
            raise RunError(f"no INFO answer from {link.url}: {_link_problem(e, link.url)}") from None
        check_model(info, fw.model_hash, header)
        meta.update(firmware_version=info.firmware_version, port=link.url,
                    probe=None if placement.probe is None else str(placement.probe))
        try:
            plan = plan_run(opts.results, meta, n, opts.resume)
        except OSError as e:
            if not _store_error(e):
                raise
            kept = "nothing was logged" if opts.resume is None else "the rows logged so far are kept"
            problem, fix = _write_problem(e)
            raise RunError(f"{problem}: {kept}; {fix}, then run the same command again") from None
        with plan:
            outcome = _stream_and_seal(opts, plan, link, client, faulty, model, data, reference, board.name,
                                       header, model_name, say)
    return outcome


def _stream_and_seal(opts: RunOptions, plan: RunPlan, link: Any, client: BenchClient, faulty: FaultyPort | None,
                     model: Any, data: Any, reference: Any, board_name: str, header: Path, model_name: str,
                     say: Callable[[str], None]) -> RunOutcome:
    """Stream what remains of ``plan`` and write summary.json; every way it can end keeps the rows.

    A link failure, a full disk, Ctrl-C or SIGTERM ends it with one line: what happened, how many
    inputs are logged where, and the (shell-quoted) command that finishes the run.
    """
    total = int(plan.meta["n"])
    if len(reference.logits) < total:
        reference = reference_logits(model, data, total)
    say(f"run {plan.run_dir.name}: {model_name} on {board_name} ({link.backend}), "
        f"{len(plan.todo)} of {total} inputs of {data.name} to go")
    finish = resume_command(opts, board_name, header, model_name, plan.run_dir)

    profiler = LayerProfiler(model) if link.backend == "unicorn" else None   # bench.profile: nearly free

    def infer(image: bytes) -> Inference:
        ans = client.infer(image)
        instr, _cycles = link.last_inference()
        if profiler is not None:
            profiler.add(link.emulator)
        return Inference(ans.cls, ans.logits, ans.cycles, instr)

    def part_stats(reasked: int = 0) -> dict[str, Any]:
        stats: dict[str, Any] = {**client.stats.to_dict(), "reasked": reasked}
        if faulty is not None:
            stats.update(faulty.stats.to_dict())
        return stats

    progress = Progress(total, plan.done_rows, plan.correct, plan.mismatches,
                        label=board_name, labeled=data.y is not None) if opts.show_progress else None
    received: dict[str, int] = {}
    logged = 0
    try:
        with store.RowWriter(plan.run_dir / store.ROWS_CSV, model.num_classes) as writer, \
                _sigterm_interrupts(received):
            try:
                res = stream(data.x, data.y, plan.todo, infer, writer, reference, progress)
            except (ProtocolError, EmulatorFault, SerialException, RunError) as e:
                logged = writer.rows_written
                fault = link.fault()
                why = f"emulator: {fault}" if fault else _link_problem(e, link.url)
                _keep_link_stats(plan, part_stats())
                raise RunError(f"{why}; {plan.done_rows + logged} of {total} inputs are logged in "
                               f"{plan.run_dir}; finish the run with: {finish}") from None
            finally:
                logged = writer.rows_written
        if res.interrupted:
            _keep_link_stats(plan, part_stats(res.reasked))
            what = "terminated (SIGTERM)" if received.get("signal") == signal.SIGTERM else "interrupted"
            say(f"{what}: {plan.done_rows + logged} of {total} inputs logged in {plan.run_dir}; "
                f"continue with: {finish}")
            return RunOutcome(plan.run_dir, None, True, received.get("signal", signal.SIGINT))
        try:
            after = client.info()
            if after.stack_high_water:
                plan.meta["stack_bytes"] = int(after.stack_high_water)
                plan.meta["stack_measured"] = True
        except (ProtocolError, EmulatorFault, SerialException):
            pass
        plan.meta["link"] = merge_link_stats(plan.meta.get("link"), part_stats(res.reasked))
        if link.emulator is not None:
            try:
                plan.meta["emulator_stats"] = link.emulator.stats.to_dict()
            except Exception:  # statistics are a nicety; never lose a finished run over them
                pass
        if profiler is not None:
            layers = profiler.rows(link.emulator.layer_stack())
            if layers:
                plan.meta.update(layers=layers, profiled_inferences=profiler.inferences)
            elif profiler.problem:
                plan.meta["profile_problem"] = profiler.problem
        summary = finish_run(plan, data.x)
    except OSError as e:
        if not _store_error(e):
            raise
        problem, fix = _write_problem(e)
        raise RunError(f"{problem}: {plan.done_rows + logged} of {total} inputs are logged in {plan.run_dir}; "
                       f"{fix}, then finish the run with: {finish}") from None
    return RunOutcome(plan.run_dir, summary, False)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("run", help="stream test data through the board or emulator and log results",
                              description=__doc__.split("\n\n")[0],
                              parents=[model_options(), data_options(), placement_options(), place_options(),
                                       stream_options(), results_options(), build_options(), profile_options()])
    p.add_argument("--port", help="pyserial URL or device of the board's UART (default: found by USB id)")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN",
                   help="continue an interrupted run (a run id or directory; default the newest one "
                        "of this board and model)")
    p.add_argument("--no-flash", action="store_true", help="hardware: use the firmware already on the board")
    p.add_argument("--retries", type=int, default=None, metavar="N",
                   help="retries per request (default: as many as fit in 3 x --timeout)")
    p.add_argument("--fault-rate", type=float, default=None, metavar="R",
                   help="run over a simulated lossy link: each byte is dropped, corrupted or delayed with "
                        "probability R (tests the bench's retries); on an emulator the link is paced at the "
                        "board's baud rate, so --fault-rate 0 is the clean link to compare with")
    p.add_argument("--fault-seed", type=int, default=None, metavar="S", help="seed of the fault injector")
    p.set_defaults(func=main)
    return p


def options_from_args(args: argparse.Namespace) -> RunOptions:
    return RunOptions(board=args.board, header=args.header, model=args.model, emulator=args.emulator,
                      pack=args.pack, limit=args.limit, port=args.port, results=args.results,
                      resume=args.resume, flash=not args.no_flash, data=args.data,
                      build_dir=args.build_dir, opt=args.opt, toolchain=args.toolchain, timeout=args.timeout,
                      retries=args.retries, fault_rate=args.fault_rate, fault_seed=args.fault_seed,
                      place=args.place, profile=args.profile)


def main(args: argparse.Namespace) -> int:
    """Exit status: see the module docstring (``RunOutcome.exit_status``)."""
    out = execute(options_from_args(args))
    if out.summary is not None:
        print(format_summary(out.summary, out.run_dir))
        if args.profile:
            print(format_profile(out.summary))
    return out.exit_status
