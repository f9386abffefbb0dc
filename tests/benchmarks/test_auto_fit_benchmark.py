"""Benchmark: `potnn.train(encodings="auto")` from float training to a model that fits a CH32V003.

Run: ``POTNN_DATA=... pytest -m benchmark -s tests/benchmarks/test_auto_fit_benchmark.py`` (a few
minutes on one core). Two models go through the one call on 16×16 MNIST with
``Config.for_board("ch32v003")``: the README's quick-start TinyNet, asked also for at most 150,000
instructions with pruning allowed, and a plain torch.nn CNN (``nn.Sequential`` of
Conv2d/ReLU/MaxPool2d/Linear through ``potnn.convert``) whose all-unrolled form (about 25 KB) cannot
fit. Each is exported with the Config the fit returns, built with the bench's build (GCC or zig, -Os),
run on the Unicorn emulator over the first ``POTNN_AUTOFIT_IMAGES`` (default 200) test images with
every logit compared to ``potnn.simulate``, and one Markdown table is printed:

    model | chosen encodings (zeros) | float and int-ref accuracy | flash | RAM | stack | instructions (estimate, emulated)

followed by each fit's report (what it chose and why). Few epochs (4 float and 2 QAT for
TinyNet, 2 and 1 for the CNN): the point is the fit, not the last tenth of a point of accuracy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn as nn

import potnn
from potnn.data import MNIST16_MEAN, MNIST16_STD, DatasetError, load_mnist, mnist_loaders
from potnn.zoo.architectures import TinyNet

pytestmark = pytest.mark.benchmark

BOARD = "ch32v003"
IMAGES = int(os.environ.get("POTNN_AUTOFIT_IMAGES", "200"))


def plain_cnn() -> nn.Module:
    """A CNN as torch.nn users write it; its 2,560-weight classifier is ~18 KB of unrolled code."""
    return potnn.convert(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                       nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                       nn.Flatten(), nn.Linear(16 * 4 * 4, 10)))


CASES: list[tuple[str, Callable[[], nn.Module], dict]] = [  # (global pooling learns slower: more epochs)
    ("README TinyNet, max_instructions=150,000, sparsity='auto'", TinyNet,
     {"max_instructions": 150_000, "sparsity": "auto", "float_epochs": 4, "qat_epochs": 2}),
    ("plain torch.nn CNN via potnn.convert", plain_cnn, {"float_epochs": 2, "qat_epochs": 1}),
]


def _emulate(header: Path, out: Path, images: np.ndarray, reference: np.ndarray) -> tuple[object, float]:
    """Build the bench firmware around `header` (bench.build), run `images` on the emulator, check every
    logit against the reference; the build's figures and the mean instructions per inference."""
    from bench.build import build
    from bench.emulator import launch
    from bench.protocol import BenchClient

    result = build(BOARD, header, out)
    instructions = []
    with launch(BOARD, result.elf) as emu:
        client = BenchClient(emu.open_serial(timeout=10), timeout=10, infer_timeout=60)
        client.info()
        for i, image in enumerate(images):
            answer = client.infer(image.tobytes())
            assert list(answer.logits) == reference[i].tolist(), f"{header.name} image {i}: differs from simulate"
            instructions.append(emu.last_inference()[0])
        assert emu.fault is None
    return result, float(np.mean(instructions))


def test_auto_fit_to_a_ch32v003(tmp_path: Path) -> None:
    from bench.board import load_board
    from bench.toolchain import ToolchainError, find_toolchain

    try:
        find_toolchain(load_board(BOARD))
        train_loader, test_loader = mnist_loaders(batch_size=128)
        x_test, y_test = load_mnist("test")
    except (ToolchainError, DatasetError) as e:
        pytest.skip(str(e))
    torch.set_num_threads(1)
    config = potnn.Config.for_board(BOARD, mean=MNIST16_MEAN, std=MNIST16_STD, input_h=16, input_w=16,
                                    input_channels=1)
    rows, reports = [], []
    for name, build_model, options in CASES:
        torch.manual_seed(0)
        logs: list[str] = []
        model = potnn.train(build_model(), train_loader, test_loader, config, encodings="auto", log=logs.append,
                            **options)
        float_accuracy = next(line for line in reversed(logs) if line.startswith("[float]")).split("test ")[1]
        fit = model.potnn_fit
        header = tmp_path / f"model{len(rows)}.h"
        exported = potnn.export(model, header, fit.config)
        accuracy = float((potnn.simulate(model, x_test).argmax(1) == y_test).mean())
        images = x_test[:IMAGES]
        result, instructions = _emulate(header, tmp_path / header.stem, images, potnn.simulate(model, images))
        assert result.flash_bytes <= result.flash_budget and result.ram_bytes <= result.ram_budget
        if fit.max_instructions is not None:
            assert instructions <= fit.max_instructions
        chosen = ", ".join(f"{layer}:{enc}" + (f" ({100 * fit.sparsity[layer]:.0f} % zeros)" if layer in fit.sparsity
                                               else "") for layer, enc in fit.encodings.items())
        rows.append(f"| {name} | {chosen} | {float_accuracy.split()[0]} | {100 * accuracy:.2f} % | {exported.flash_bytes:,} B (fit: ~"
                    f"{fit.flash_estimate:,} dense estimate, {fit.flash_compiled:,} compiled; firmware "
                    f"{result.flash_bytes:,} of {result.flash_budget:,}) | "
                    f"{exported.ram_bytes:,} B (firmware {result.ram_bytes:,} of {result.ram_budget:,}) | "
                    f"{result.model_stack_bytes} B | ~{fit.instructions:,} / {instructions:,.0f} |")
        reports.append(f"{name}:\n{fit}")
    print(f"\n== encodings='auto' on {BOARD} ({result.toolchain}; emulated, {IMAGES} images, logits == simulate) ==")
    print("| model | chosen encodings | float accuracy | int-ref accuracy (10k) | model flash | model RAM "
          "| predict stack | instructions (estimate / emulated) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n" + "\n\n".join(reports))
