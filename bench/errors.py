"""The one error a bench command reports to its user: a run that cannot start or go on."""

from __future__ import annotations


class RunError(Exception):
    """The run cannot start or continue; the message is one line (no traceback for users).

    The modules of a run (placement, planning, the stream loop, the test set, the reference
    logits) raise it, and the commands let it reach ``bench.cli``, which prints that line.
    """
