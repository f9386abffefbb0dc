"""The stream loop: each input to the board, each answer to its row on disk before the next input.

The loop is independent of how inputs reach the chip: it calls an ``infer`` function per
input, so the same loop runs a board, an emulator or a test's fake. Every row is appended
(fsynced) before the next input goes out, so an interrupted run keeps all it logged and
``--resume`` sends only what is missing. Inputs may come without labels: then the row's label
is empty and only the agreement with the reference is counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from bench import results as store
from bench.errors import RunError
from bench.progress import Progress
from bench.reference import Reference


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


#: Requests per input, at most, to get two equal answers in a row when the first one
#: differs from the reference (see ``stream``).
CONFIRM_ASKS = 6


def _same(a: Inference, b: Inference) -> bool:
    return int(a.pred) == int(b.pred) and [int(v) for v in a.logits] == [int(v) for v in b.logits]


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
        if _same(again, prev):
            return again, asks
        prev = again
    raise RunError(f"input {index}: the board gave {CONFIRM_ASKS} answers and no two in a row agree; "
                   "the link corrupts answers (check the cable and --port), then --resume")


def stream(images: np.ndarray, labels: np.ndarray | None, todo: Iterable[int], infer: InferFn,
           writer: store.RowWriter, reference: Reference | None,
           progress: Progress | None = None) -> StreamResult:
    """Send each input of ``todo``, compare with the reference, append its row (fsynced) at once.

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
            match: bool | None = None
            rp = -1
            if reference is not None:
                rp = int(ref_pred[i])  # type: ignore[index]
                expected = Inference(rp, reference.logits[i], 0)
                if not _same(ans, expected):
                    ans, extra = _confirm(infer, image, ans, int(i))
                    res.reasked += extra
                match = _same(ans, expected)
            logits = [int(v) for v in ans.logits]
            if len(logits) != k:
                raise RunError(f"input {i}: the board returned {len(logits)} logits, the model has {k}")
            label = None if labels is None else int(labels[i])
            writer.append(store.Row(int(i), label, int(ans.pred), rp, match, int(ans.cycles),
                                    ans.instructions, logits))
            correct = label is not None and int(ans.pred) == label
            res.done += 1
            res.correct += correct
            res.mismatches += match is False
            if progress is not None:
                progress.update(correct, match is False)
    except KeyboardInterrupt:
        res.interrupted = True
    finally:
        if progress is not None:
            progress.close()
    return res
