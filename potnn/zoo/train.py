"""`python -m potnn.zoo.train NAME [--out DIR]`: train a zoo model from its recipe and write its files.

Writes weights.pt (state_dict), model.h (the export) and meta.json (recipe, dataset, accuracy of
the exact integer model on the dataset's test split, sizes, wall time) into potnn/zoo/models/NAME/
(or --out). Deterministic for a given recipe, torch version and thread count; the default is one
thread, so the shipped figures come back on any machine (and two models can train side by side on
two cores). `--validation F` is for choosing a recipe's hyperparameters without the test split: it
trains on the training split less a held-out fraction F of each class, reports the integer
model's accuracy on that held-out part, and writes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..config import Config
from ..data import dataset_loaders, load_dataset
from ..codegen import export
from ..qat import set_mode
from ..simulate import simulate
from ..train import train
from . import MODELS_DIR, get, load
from .recipes import Recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m potnn.zoo.train", description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the zoo's own)")
    parser.add_argument("--epochs", default=None, help="override as FLOAT,QAT (for quick trials)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the shipped models were trained so, bit for bit)")
    parser.add_argument("--reexport", action="store_true",
                        help="only export the shipped weights again (after a change to the C generator)")
    parser.add_argument("--validation", type=float, default=0.0, metavar="F",
                        help="hold out fraction F of the training split, report accuracy on it, write nothing")
    args = parser.parse_args(argv)
    recipe = get(args.name).recipe
    out = args.out or MODELS_DIR / recipe.name
    if args.reexport:
        out.mkdir(parents=True, exist_ok=True)
        model = load(recipe.name)
        report = export(model, out / "model.h", recipe.config)
        check_other_boards(model, recipe, out / "model.h")
        meta = get(recipe.name).meta()
        meta.update(ram_bytes=report.ram_bytes, weight_bytes=report.weight_bytes, flash_estimate=report.flash_estimate)
        (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"{recipe.name}: exported again to {out / 'model.h'}, flash ~{report.flash_estimate} B")
        return 0
    float_epochs, qat_epochs = (recipe.float_epochs, recipe.qat_epochs) if args.epochs is None else \
        tuple(int(v) for v in args.epochs.split(","))
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    torch.set_num_threads(max(1, args.threads))
    train_loader, test_loader = dataset_loaders(recipe.dataset, batch_size=recipe.batch_size, seed=recipe.seed,
                                                augment=recipe.augment, validation=args.validation)
    teacher = None
    if recipe.teacher is not None:
        teacher = set_mode(load(recipe.teacher), "qat")  # fake-quantized float32: the same logits, faster
    start = time.time()
    model = train(recipe.build(), train_loader, test_loader, recipe.config, float_epochs=float_epochs,
                  qat_epochs=qat_epochs, lr=recipe.lr, qat_lr=recipe.qat_lr, device="cpu",
                  distill=recipe.distill, sparsity=dict(recipe.sparsity) or None, teacher=teacher,
                  freeze=recipe.freeze)
    wall = time.time() - start
    if args.validation:
        held = test_loader.dataset
        accuracy = float((simulate(model, held.images_u8).argmax(1) == held.labels).mean())
        print(f"{recipe.name}: integer accuracy {100 * accuracy:.2f}% on {len(held.labels)} held-out training "
              f"samples (validation {args.validation}), {wall:.0f} s; nothing written")
        return 0
    images, labels, _ = load_dataset(recipe.dataset, "test")
    accuracy = float((simulate(model, images).argmax(1) == labels).mean())
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")
    report = export(model, out / "model.h", recipe.config)
    check_other_boards(model, recipe, out / "model.h")
    meta = {
        "name": recipe.name, "description": recipe.description, "dataset": recipe.dataset,
        "integer_accuracy": accuracy, "test_images": int(len(labels)),
        "ram_bytes": report.ram_bytes, "weight_bytes": report.weight_bytes, "flash_estimate": report.flash_estimate,
        "encodings": {k: v for k, v in recipe.config.layer_encodings.items()},
        "default_encoding": recipe.config.default_encoding,
        "float_epochs": float_epochs, "qat_epochs": qat_epochs, "seed": recipe.seed,
        "augment": recipe.augment, "teacher": recipe.teacher, "distill": recipe.distill,
        "sparsity": dict(recipe.sparsity), "freeze": recipe.freeze,
        "per_channel": recipe.config.per_channel,
        "train_seconds": round(wall), "threads": torch.get_num_threads(), "torch": torch.__version__,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{recipe.name}: integer accuracy {100 * accuracy:.2f}% on {len(labels)} {recipe.dataset} test samples, "
          f"RAM {report.ram_bytes} B, weights {report.weight_bytes} B, flash ~{report.flash_estimate} B, {wall:.0f} s")
    return 0


def check_other_boards(model: nn.Module, recipe: Recipe, header: Path) -> None:
    """Export for each of the recipe's other boards (their own budgets and compilers): the model must fit
    each, with the very header shipped, so that one model.h serves every board its recipe names."""
    shipped = header.read_text()
    for board in recipe.boards[1:]:
        budget = Config.for_board(board)
        config = dataclasses.replace(recipe.config, flash=budget.flash, ram=budget.ram, board=board)
        with tempfile.TemporaryDirectory() as tmp:
            export(model, Path(tmp) / "model.h", config)  # raises ExportError, with every budget, if it does not fit
            if (Path(tmp) / "model.h").read_text() != shipped:
                raise SystemExit(f"{recipe.name}: the export for {board} differs from the one for {recipe.boards[0]} "
                                 "(the fit ladder chose another form there); shrink the model until one header fits both")


if __name__ == "__main__":
    sys.exit(main())
