"""Zoo recipes: everything that makes a zoo model reproducible (architecture, config, data, schedule, seed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping

import torch.nn as nn

from ..config import Config
from ..data import dataset_info
from .architectures import ConvNet, SignalNet

BOARDS = ("ch32v003", "py32f003")


def board_config(dataset: str, boards: tuple[str, ...] = BOARDS, **options: object) -> Config:
    """A Config for a model of `dataset` that must run on every board in `boards` from one header.

    Each budget is the smallest of the boards' `Config.for_board` budgets (what the model may use beside
    the bench firmware, with either toolchain); the header's flash and stack are measured with the first
    board's compilers at export, and `python -m potnn.zoo.train` exports again for each other board to
    check that it fits there too.
    """
    fitted = [Config.for_board(b) for b in boards]
    return dataset_info(dataset).config(flash=min(c.flash for c in fitted), ram=min(c.ram for c in fitted),
                                        board=boards[0], **options)


@dataclass(frozen=True)
class Recipe:
    """How to train one zoo model: `python -m potnn.zoo.train NAME` follows it exactly."""

    name: str
    description: str
    build: Callable[[], nn.Module]
    config: Config
    float_epochs: int
    qat_epochs: int
    lr: float = 3e-3
    qat_lr: float = 5e-4
    batch_size: int = 128
    augment: bool | Literal["shift", "affine"] = True
    distill: float = 0.0
    teacher: str | None = None  # a shipped zoo model whose outputs teach this one (train that one first)
    sparsity: Mapping[str, float] = field(default_factory=dict)
    freeze: float = 0.0  # QAT freezes weights flipping more often than this (potnn.train's `freeze`)
    seed: int = 0
    dataset: str = "mnist16"  # a registered dataset (potnn.data.DATASETS): trained on, and tested on its test split
    accuracy_floor: float = 0.0
    boards: tuple[str, ...] = BOARDS  # the boards `config` must fit (see board_config)
    default_for: tuple[str, ...] = ()


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(
        name="mnist16-fast",
        description="conv 10 + pool, conv 24 + pool, linear; all unrolled and pruned (30, 82, 50 % zeros)",
        build=lambda: ConvNet(((10, "pool"), (24, "pool"))),
        config=board_config("mnist16", per_channel=True, default_encoding="unroll"),
        float_epochs=100, qat_epochs=40, qat_lr=3e-4, augment="affine", distill=0.7, teacher="mnist16-accurate",
        sparsity={"convs.0": 0.3, "convs.1": 0.82, "fc": 0.5}, freeze=0.02, seed=1, accuracy_floor=0.989,
    ),
    Recipe(
        name="mnist16-accurate",
        description="three conv + pool stages (12, 24, 48 ch) and a linear layer; first conv unrolled, the next two "
                    "indexed and pruned (40, 50 % zeros), the linear layer fp130",
        build=lambda: ConvNet(((12, "pool"), (24, "pool"), (48, "pool"))),
        config=board_config("mnist16", per_channel=True, default_encoding="unroll",
                            layer_encodings={"convs.1": "indexed", "convs.2": "indexed", "fc": "fp130"}),
        float_epochs=40, qat_epochs=20, qat_lr=2e-4, augment="affine", distill=0.5, freeze=0.02,
        sparsity={"convs.1": 0.4, "convs.2": 0.5},
        accuracy_floor=0.992, default_for=("ch32v003", "py32f003"),
    ),
    Recipe(
        name="digits8-small",
        description="8×8 digits: conv 24 + pool (unroll), conv 32 + pool and linear (fp130)",
        build=lambda: ConvNet(((24, "pool"), (32, "pool")), size=8),
        config=board_config("digits8", per_channel=True, default_encoding="unroll",
                            layer_encodings={"convs.1": "fp130", "fc": "fp130"}),
        float_epochs=40, qat_epochs=40, batch_size=64, augment=False, distill=0.5, dataset="digits8",
        accuracy_floor=0.97,
    ),
    Recipe(
        name="basicmotions-small",
        description="6-axis motion, 100 samples: conv1d 8 (k5) + pool 4, conv1d 16 (k5) + pool 2, global average, "
                    "linear; all unrolled",
        build=lambda: SignalNet(6, ((8, 5, 4), (16, 5, 2)), 4),
        config=board_config("basicmotions", per_channel=True, default_encoding="unroll"),
        float_epochs=150, qat_epochs=300, qat_lr=3e-3, batch_size=8, augment=False, freeze=0.02,
        dataset="basicmotions", accuracy_floor=0.975,
    ),
)}
