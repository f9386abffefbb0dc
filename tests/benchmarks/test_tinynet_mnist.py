"""Benchmark: the README's TinyNet on full MNIST 16×16, trained on the CPU.

Prints float, QAT and integer-reference accuracy on the 10k test set, the export's RAM/flash and
the wall time. Run: ``pytest -m benchmark -s tests/benchmarks/test_tinynet_mnist.py``
(``POTNN_BENCH_EPOCHS=float,qat`` changes the schedule; default 6,6).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

import potnn
from potnn.zoo.architectures import TinyNet
from potnn.data import MNIST16_MEAN, MNIST16_STD, DatasetError, load_mnist, mnist_loaders

pytestmark = pytest.mark.benchmark


def test_tinynet_mnist16(tmp_path) -> None:
    try:
        train_loader, test_loader = mnist_loaders(batch_size=128)
        test_u8, test_labels = load_mnist("test")
    except DatasetError as exc:
        pytest.skip(str(exc))
    float_epochs, qat_epochs = (int(v) for v in os.environ.get("POTNN_BENCH_EPOCHS", "6,6").split(","))
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    config = potnn.Config(flash=16384, ram=2048, mean=MNIST16_MEAN, std=MNIST16_STD, input_h=16, input_w=16,
                          input_channels=1)
    start = time.time()
    model = TinyNet()
    log: list[str] = []
    model = potnn.train(model, train_loader, test_loader, config, float_epochs=float_epochs, qat_epochs=qat_epochs,
                        log=lambda line: (log.append(line), print(line)))
    wall = time.time() - start
    float_acc = next((line for line in reversed(log) if line.startswith("[float]")), "-")
    qat_acc = next(line for line in reversed(log) if line.startswith("[qat]"))
    logits = potnn.simulate(model, test_u8)
    int_acc = float((logits.argmax(1) == test_labels).mean())
    report = potnn.export(model, tmp_path / "model.h", config)
    print("\n=== TinyNet, MNIST 16x16, CPU ===")
    print(f"float:      {float_acc}")
    print(f"QAT:        {qat_acc}")
    print(f"integer reference (potnn.simulate, 10k test): {100 * int_acc:.2f}%")
    print(f"export: RAM {report.ram_bytes} B (arena {report.arena_bytes}), weights {report.weight_bytes} B, "
          f"flash estimate {report.flash_estimate} B")
    print(f"wall time: {wall:.0f} s on {torch.get_num_threads()} threads ({float_epochs}+{qat_epochs} epochs)")
    assert int_acc > 0.5  # a breakage guard; the figure itself is what this benchmark reports
    assert np.array_equal(logits, potnn.simulate(model, test_u8))
