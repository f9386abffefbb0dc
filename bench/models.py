"""The model zoo registry: named, exported headers the bench can run without further arguments.

Why a registry: ``potnn-bench run --board ch32v003`` should just work for a new user, and the
nightly job needs the list of models to measure on every board. The shipped models of
``potnn.zoo`` register themselves (a recipe's ``default_for`` names the boards whose bare
``--board`` runs it); a checkout without them has an empty registry, and every caller handles
"no model" with a clear message rather than a made-up model.

A zoo entry registers itself with ``register(ModelEntry(...))``; ``header_path`` points at the
exported ``.h`` (its bundle ``.potnn`` sits beside it, see ``bench.exported``); ``figures`` holds
the published numbers for the model (e.g. ``{"accuracy": 0.9886, "params": 12000}``) the report
can show beside the measured ones; ``boards`` lists the boards it fits (empty: all).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ModelNotFound(LookupError):
    """No model of that name, or no default model for a board; one-line message."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    header_path: Path
    description: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    boards: tuple[str, ...] = ()
    default_for: tuple[str, ...] = ()

    def fits(self, board: str) -> bool:
        return not self.boards or board in self.boards


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> ModelEntry:
    """Add a zoo model (called by the zoo package at import; later entries replace earlier)."""
    _REGISTRY[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Remove an entry (tests use it to leave the registry as they found it)."""
    _REGISTRY.pop(name, None)


_zoo_loaded = False


def _load_zoo() -> None:
    """Register the trained models of ``potnn.zoo`` once; an absent zoo is an empty one."""
    global _zoo_loaded
    if _zoo_loaded:
        return
    _zoo_loaded = True
    try:
        import potnn.zoo as zoo

        shipped = list(zoo.available())
    except (ImportError, AttributeError):
        return
    for m in shipped:
        recipe = m.recipe
        try:
            figures = dict(m.meta())
        except (OSError, ValueError):
            figures = {}
        register(ModelEntry(
            name=m.name, header_path=Path(m.header), description=str(getattr(recipe, "description", "")),
            figures=figures, boards=tuple(getattr(recipe, "boards", ()) or ()),
            default_for=tuple(getattr(recipe, "default_for", ()) or ())))


def list_models(board: str | None = None) -> list[ModelEntry]:
    """Registered models whose header exists, optionally only those that fit ``board``."""
    _load_zoo()
    return [e for e in sorted(_REGISTRY.values(), key=lambda e: e.name)
            if Path(e.header_path).exists() and (board is None or e.fits(board))]


def get_model(name: str) -> ModelEntry:
    _load_zoo()
    try:
        entry = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none yet"
        raise ModelNotFound(f"no model named {name!r} in the zoo (known: {known})") from None
    if not Path(entry.header_path).exists():
        raise ModelNotFound(f"zoo model {name!r}: header {entry.header_path} is missing")
    return entry


def default_model(board: str) -> ModelEntry | None:
    """The model a bare ``--board`` runs: one marked default for the board, else the first that fits."""
    models = list_models(board)
    for e in models:
        if board in e.default_for:
            return e
    return models[0] if models else None


def resolve_header(board: str, header: str | Path | None, model: str | None) -> tuple[Path, str]:
    """Turn ``--header``/``--model``/nothing into (header path, model name), or ModelNotFound."""
    if header is not None and model is not None:
        raise ModelNotFound("give --header or --model, not both")
    if header is not None:
        path = Path(header)
        if not path.is_file():
            raise ModelNotFound(f"header {path} not found")
        return path, path.name.rsplit(".", 1)[0]
    if model is not None:
        entry = get_model(model)
        return Path(entry.header_path), entry.name
    entry = default_model(board)
    if entry is None:
        raise ModelNotFound(f"the model zoo has no model for {board} yet: pass --header model.h "
                            "(a header exported with potnn.export)")
    return Path(entry.header_path), entry.name


# ----------------------------------------------------------------------------- CLI
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("models", help="list the zoo models the bench can run, with their figures")
    p.add_argument("--board", help="only the models that fit this board")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    models = list_models(args.board)
    if not models:
        print("the model zoo has no trained model yet" + (f" for {args.board}" if args.board else "")
              + "; run any exported header with --header model.h")
        return 0
    for e in models:
        boards = ", ".join(e.boards) if e.boards else "all boards"
        default = f"  [default on {', '.join(e.default_for)}]" if e.default_for else ""
        print(f"{e.name}  ({boards}){default}  {e.description}")
        for line in describe_figures(e.figures):
            print(f"    {line}")
        print(f"    {e.header_path}")
    return 0


def describe_figures(meta: dict[str, Any]) -> list[str]:
    """The lines `models` prints from a zoo model's meta.json: how it was trained, how it runs per board.

    The per-board figures (``on_board``: board → toolchain kind → figures) are those recorded by
    tests/benchmarks/test_zoo_benchmark.py (emulated boards; the number of test inputs they cover is
    printed with them).
    """
    lines = []
    if "integer_accuracy" in meta:
        lines.append(f"integer reference {100 * float(meta['integer_accuracy']):.2f} % on "
                     f"{meta.get('test_images', '?')} "
                     f"{meta.get('dataset', 'MNIST')} test inputs; trained in {meta.get('train_seconds', '?')} s "
                     f"({meta.get('threads', '?')} thread(s), python -m potnn.zoo.train {meta.get('name', 'NAME')})")
    for board, by_toolchain in sorted(dict(meta.get("on_board", {})).items()):
        for kind, f in sorted(by_toolchain.items()):
            lines.append(f"{board:<9} {kind:<3} {100 * f['accuracy']:.2f} % of {f['images']:,}, "
                         f"{f['mismatches']} mismatches, {f['instructions']:,} instructions, {f['cycles']:,} cycles "
                         f"({f['ms']:.1f} ms), flash {f['flash_bytes']:,} B, RAM {f['ram_bytes']:,} + "
                         f"{f['stack_bytes']:,} B stack")
    return lines
