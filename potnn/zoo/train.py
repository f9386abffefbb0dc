"""`python -m potnn.zoo.train NAME [--out DIR]`: train a zoo model from its recipe and write its files.

Writes weights.pt (state_dict), model.h (the export) and meta.json (recipe, accuracy of the exact
integer model on the 10k MNIST test set, sizes, wall time) into potnn/zoo/models/NAME/ (or --out).
Deterministic for a given recipe, torch version and thread count; the default is one thread, so
the shipped figures come back on any machine (and two models can train side by side on two cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..data import load_mnist, mnist_loaders
from ..export import export
from ..qat import set_mode
from ..simulate import simulate
from ..train import train
from . import MODELS_DIR, get, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m potnn.zoo.train", description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the zoo's own)")
    parser.add_argument("--epochs", default=None, help="override as FLOAT,QAT (for quick trials)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the shipped models were trained so, bit for bit)")
    parser.add_argument("--reexport", action="store_true",
                        help="only export the shipped weights again (after a change to the C generator)")
    args = parser.parse_args(argv)
    recipe = get(args.name).recipe
    out = args.out or MODELS_DIR / recipe.name
    out.mkdir(parents=True, exist_ok=True)
    if args.reexport:
        report = export(load(recipe.name), out / "model.h", recipe.config)
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
    train_loader, test_loader = mnist_loaders(batch_size=recipe.batch_size, augment=recipe.augment, seed=recipe.seed)
    teacher = None
    if recipe.teacher is not None:
        teacher = set_mode(load(recipe.teacher), "qat")  # fake-quantized float32: the same logits, faster
    start = time.time()
    model = train(recipe.build(), train_loader, test_loader, recipe.config, float_epochs=float_epochs,
                  qat_epochs=qat_epochs, lr=recipe.lr, qat_lr=recipe.qat_lr, device="cpu",
                  distill=recipe.distill, sparsity=dict(recipe.sparsity) or None, teacher=teacher,
                  freeze=recipe.freeze)
    wall = time.time() - start
    images, labels = load_mnist("test")
    accuracy = float((simulate(model, images).argmax(1) == labels).mean())
    torch.save(model.state_dict(), out / "weights.pt")
    report = export(model, out / "model.h", recipe.config)
    meta = {
        "name": recipe.name, "description": recipe.description,
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
    print(f"{recipe.name}: integer accuracy {100 * accuracy:.2f}% on {len(labels)} test images, "
          f"RAM {report.ram_bytes} B, weights {report.weight_bytes} B, flash ~{report.flash_estimate} B, {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
