"""The one error a bench command reports to its user: a run that cannot start or go on."""

from __future__ import annotations


class RunError(Exception):
    """The run cannot start or continue; the message is one line (no traceback for users).

    The modules of a run (placement, planning, the stream loop, the test set, the reference
    logits) raise it, and the commands let it reach ``bench.cli``, which prints that line.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an interrupt so that it ends a run the way Ctrl-C does.

    Why a KeyboardInterrupt: every path that keeps the rows and prints the resume command on
    Ctrl-C then serves ``kill`` (a CI timeout, a scheduler) too; the exit status tells them
    apart (130 for SIGINT, 143 for SIGTERM: 128 + the signal number, the shell's convention).
    """
