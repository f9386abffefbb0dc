"""``potnn-bench run``: stream test data through the board (or its emulator) and log every answer.

``execute`` wires the pieces of one run together: the model and its bundle (``bench.exported``),
the data (``bench.dataset``: ``--data test.npz``, a registered dataset, or the manifest's), the
reference logits (``bench.reference``: ``potnn.simulate`` of the bundle), the build
(``bench.build``), where it runs (``bench.placement``), the UART client (``bench.protocol``), the
run directory (``bench.run_plan``), the stream loop (``bench.stream``) and the results store
(``bench.results``, whose docstring documents the files).

Everything a user can get wrong (the model files, the data, its shape, the results directory) is
checked before anything is built, so a refused run leaves no run folder behind.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from serial import SerialException

import bench.build
from bench import results as store
from bench.board import load_board
from bench.dataset import load_data
from bench.emulator import EmulatorFault
from bench.errors import RunError
from bench.exported import read_model
from bench.models import resolve_header
from bench.options import (build_options, data_options, model_options, placement_options, results_options,
                           stream_options)
from bench.placement import check_model, connect, place
from bench.progress import Progress
from bench.protocol import QUIET_S, BenchClient, ProtocolError
from bench.reference import reference_logits
from bench.run_plan import finish_run, git_commit, plan_run
from bench.stream import Inference, stream
from bench.transport import FaultyPort

#: Quiet gap before a retry on the emulator: its answers come in milliseconds, and the filler
#: bytes (``BenchClient``) end a partial frame without waiting for the firmware's timeout.
EMULATOR_QUIET_S = 0.03

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
        lines.append(f"  link: {link.get('requests')} requests ({link.get('barriers')} barriers), "
                     f"{link.get('retries')} retries "
                     f"({link.get('no_answer')} unanswered, {link.get('corrupt_answers')} corrupted answers, "
                     f"{link.get('naks_retried')} NAKs), {link.get('reasked')} answers re-asked"
                     + (f"; fault rate {s.get('fault_rate')}: {faults or 'no fault injected'}"
                        if s.get("fault_rate") else ""))
    lines.append(f"  results {run_dir}")
    return "\n".join(lines)


def resume_command(opts: RunOptions, board: str, header: Path, model_name: str, run_dir: Path) -> str:
    """The command line that finishes an interrupted or broken run."""
    target = f"--header {header}" if opts.model is None and opts.header is not None else f"--model {model_name}"
    data = f" --data {opts.data}" if isinstance(opts.data, (str, Path)) else ""
    return f"potnn-bench run --board {board} {target}{data} --results {opts.results} --resume {run_dir.name}"


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
    ``bench.transport.FaultyPort`` when ``opts.fault_rate`` > 0. A link that fails for good (no
    answer within the budget, the port gone) ends the run with one line that says what was lost,
    where the rows are, and the command that finishes the run.
    """
    if not 0.0 <= opts.fault_rate < 1.0:
        raise RunError(f"--fault-rate must be in [0, 1), not {opts.fault_rate}")
    board = load_board(opts.board)
    header, model_name = resolve_header(board.name, opts.header, opts.model)
    model = read_model(header)
    store.ensure_writable(opts.results)          # before minutes of building and flashing
    data = load_data(opts.data, model)
    n = len(data) if opts.limit is None else max(0, min(int(opts.limit), len(data)))
    if opts.resume is not None and opts.limit is None:
        n = 0  # keep the interrupted run's own size (its reference is computed once it is known)
    reference = reference_logits(model, data, n)

    fw = bench.build.build(board, header, opts.build_dir, opt=opts.opt, toolchain=opts.toolchain)
    placement = place(board, opts.emulator, opts.pack, say=say)

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
        if opts.fault_rate:
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
        plan = plan_run(opts.results, meta, n, opts.resume)
        if len(reference.logits) < int(plan.meta["n"]):
            reference = reference_logits(model, data, int(plan.meta["n"]))
        say(f"run {plan.run_dir.name}: {model_name} on {board.name} ({placement.backend}), "
            f"{len(plan.todo)} of {plan.meta['n']} inputs of {data.name} to go")

        def infer(image: bytes) -> Inference:
            ans = client.infer(image)
            instr, _cycles = link.last_inference()
            return Inference(ans.cls, ans.logits, ans.cycles, instr)

        progress = Progress(int(plan.meta["n"]), plan.done_rows, plan.correct, plan.mismatches,
                            label=board.name, labeled=data.y is not None) if opts.show_progress else None
        with store.RowWriter(plan.run_dir / store.ROWS_CSV, fw.num_classes) as writer:
            try:
                res = stream(data.x, data.y, plan.todo, infer, writer, reference, progress)
            except (ProtocolError, EmulatorFault, SerialException, RunError) as e:
                fault = link.fault()
                why = f"emulator: {fault}" if fault else _link_problem(e, link.url)
                logged = writer.rows_written
                raise RunError(f"{why}; {plan.done_rows + logged} of {plan.meta['n']} inputs are logged in "
                               f"{plan.run_dir}; finish the run with: "
                               f"{resume_command(opts, board.name, header, model_name, plan.run_dir)}") from None
        if res.interrupted:
            say(f"interrupted: {plan.done_rows + res.done} of {plan.meta['n']} inputs logged in {plan.run_dir}; "
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
    summary = finish_run(plan, data.x)
    return RunOutcome(plan.run_dir, summary, False)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("run", help="stream test data through the board or emulator and log results",
                              description=__doc__.split("\n\n")[0],
                              parents=[model_options(), data_options(), placement_options(), stream_options(),
                                       results_options(), build_options()])
    p.add_argument("--port", help="pyserial URL or device of the board's UART (default: found by USB id)")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN",
                   help="continue an interrupted run (a run id or directory; default the newest one "
                        "of this board and model)")
    p.add_argument("--no-flash", action="store_true", help="hardware: use the firmware already on the board")
    p.add_argument("--retries", type=int, default=None, metavar="N",
                   help="retries per request (default: as many as fit in 3 x --timeout)")
    p.add_argument("--fault-rate", type=float, default=0.0, metavar="R",
                   help="inject link faults: each byte is dropped, corrupted or delayed with probability R "
                        "(tests the bench's retries; default 0)")
    p.add_argument("--fault-seed", type=int, default=None, metavar="S", help="seed of the fault injector")
    p.set_defaults(func=main)
    return p


def options_from_args(args: argparse.Namespace) -> RunOptions:
    return RunOptions(board=args.board, header=args.header, model=args.model, emulator=args.emulator,
                      pack=args.pack, limit=args.limit, port=args.port, results=args.results,
                      resume=args.resume, flash=not args.no_flash, data=args.data,
                      build_dir=args.build_dir, opt=args.opt, toolchain=args.toolchain, timeout=args.timeout,
                      retries=args.retries, fault_rate=args.fault_rate, fault_seed=args.fault_seed)


def main(args: argparse.Namespace) -> int:
    """Exit 0 when every input was answered and equals the reference, 1 on any mismatch."""
    out = execute(options_from_args(args))
    if out.interrupted:
        return 130
    assert out.summary is not None
    print(format_summary(out.summary, out.run_dir))
    return 1 if out.summary.get("mismatches") else 0
