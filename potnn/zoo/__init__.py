"""The model zoo: trained potnn models that fit a CH32V003 / PY32F003x4 (16 KB flash, 2 KB RAM).

Each model is an architecture (`architectures.py`), a recipe (`recipes.py`: its registered
dataset, augmentation, schedule, seed) that `python -m potnn.zoo.train NAME` turns into the shipped files in
``models/NAME/``: ``weights.pt`` (state_dict), ``model.h`` (the export) and ``meta.json`` (its
figures). `load(name)` rebuilds the trained model from them.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..qat import prepare_qat, enable_integer_sim
from .recipes import RECIPES, Recipe

MODELS_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True)
class ZooModel:
    """A shipped model: its recipe and where its files are."""

    recipe: Recipe

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def directory(self) -> Path:
        return MODELS_DIR / self.name

    @property
    def header(self) -> Path:
        return self.directory / "model.h"

    @property
    def weights(self) -> Path:
        return self.directory / "weights.pt"

    @property
    def trained(self) -> bool:
        return self.header.exists() and self.weights.exists()

    def meta(self) -> dict[str, Any]:
        path = self.directory / "meta.json"
        return json.loads(path.read_text()) if path.exists() else {}


def available() -> list[ZooModel]:
    """Every zoo model whose trained files are shipped."""
    return [ZooModel(r) for r in RECIPES.values() if ZooModel(r).trained]


def get(name: str) -> ZooModel:
    if name not in RECIPES:
        raise KeyError(f"no zoo model {name!r}; zoo models: {', '.join(RECIPES)}")
    return ZooModel(RECIPES[name])


def load(name: str) -> nn.Module:
    """The trained model `name`, prepared and in exact integer mode (potnn.simulate works on it)."""
    entry = get(name)
    if not entry.trained:
        raise FileNotFoundError(f"zoo model {name!r} has no trained weights; run: python -m potnn.zoo.train {name}")
    model = entry.recipe.build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the freshly built model is uncalibrated until its state is loaded
        prepare_qat(model, entry.recipe.config)
    model.load_state_dict(torch.load(entry.weights, map_location="cpu", weights_only=True))
    return enable_integer_sim(model)
