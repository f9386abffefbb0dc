"""Zoo recipes: everything that makes a zoo model reproducible (architecture, config, data, schedule, seed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from ..config import Config
from ..data import MNIST16_MEAN, MNIST16_STD
from .architectures import ConvNet


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
    augment: bool = True
    seed: int = 0
    boards: tuple[str, ...] = field(default=("ch32v003", "py32f003"))


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(
        name="mnist16-small",
        description="2 conv (8, 16 ch) + linear; conv layers unrolled, linear fp130; the bench's first default",
        build=lambda: ConvNet(((8, "pool"), (16, "pool"))),
        config=Config(flash=16384, ram=2048, mean=MNIST16_MEAN, std=MNIST16_STD,
                      layer_encodings={"fc": "fp130"}, default_encoding="unroll"),
        float_epochs=12, qat_epochs=12,
    ),
    Recipe(
        name="mnist16-fast",
        description="conv 8 + pool, stride-2 conv 16, linear; ~39k MACs, convs unrolled, linear fp130",
        build=lambda: ConvNet(((8, "pool"), (16, "stride"))),
        config=Config(flash=16384, ram=2048, mean=MNIST16_MEAN, std=MNIST16_STD,
                      layer_encodings={"fc": "fp130"}, default_encoding="unroll"),
        float_epochs=20, qat_epochs=15,
    ),
    Recipe(
        name="mnist16-accurate",
        description="three conv + pool stages (12, 24, 48 ch), linear; packed 5level/2bit weights for the big layers",
        build=lambda: ConvNet(((12, "pool"), (24, "pool"), (48, "pool"))),
        config=Config(flash=16384, ram=2048, mean=MNIST16_MEAN, std=MNIST16_STD,
                      layer_encodings={"convs.1": "5level", "convs.2": "5level", "fc": "fp130"},
                      default_encoding="unroll"),
        float_epochs=15, qat_epochs=12,
    ),
)}
