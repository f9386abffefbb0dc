"""``potnn-bench``: the bench's command line.

Each subcommand lives in the module that does the work and registers itself with a small
``add_parser(subparsers)`` function that calls ``subparsers.add_parser(...)`` and
``set_defaults(func=handler)``; ``handler(args) -> int`` returns the exit status.  Adding a
subcommand is adding that function and one line to ``COMMAND_MODULES``.

Errors: every failure prints exactly one line, ``potnn-bench: error: ...``, and exits with
status 2 - never a traceback (set ``POTNN_BENCH_TRACEBACK=1`` to see one while debugging).
Ctrl-C exits with 130 and SIGTERM with 143 (128 + signal number); both end a command the same
way, so a run killed by a CI timeout keeps its rows and prints how to resume, like Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import Any, NoReturn, Sequence

from bench.errors import Terminated

PROG = "potnn-bench"

# One line per module that contributes subcommands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "bench.board",    # boards
    "bench.build",    # build
    "bench.flash",    # flash
    "bench.run",      # run
    "bench.fuzz",     # fuzz
    "bench.report",   # report
    "bench.nightly",  # nightly
    "bench.models",   # models
)

EXIT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line like every other error."""

    def error(self, message: str) -> NoReturn:
        _fail(message)


def _fail(message: str) -> NoReturn:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"{PROG}: error: {first}", file=sys.stderr)
    sys.exit(EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Build, flash or emulate, and measure potnn models on microcontrollers.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except Exception as e:  # a broken module must not hide the others' errors as a traceback
            _fail(f"cannot load {name}: {type(e).__name__}: {e}")
        module.add_parser(subparsers)
    return parser


def _terminate(signum: int, _frame: Any) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()   # only it may install handlers
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main else None
    try:
        status = args.func(args)
    except Terminated:
        print(f"{PROG}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                       # e.g. `potnn-bench boards | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SystemExit:
        raise
    except Exception as e:
        if os.environ.get("POTNN_BENCH_TRACEBACK"):
            raise
        message = str(e).strip()
        _fail(message if message else type(e).__name__)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
