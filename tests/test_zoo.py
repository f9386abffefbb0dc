"""The zoo ships what its recipes and the current exporter produce."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import potnn
from potnn import zoo
from potnn.data import DatasetError, load_dataset


@pytest.mark.parametrize("entry", zoo.available(), ids=lambda e: e.name)
def test_shipped_header_is_the_current_export(entry: zoo.ZooModel, tmp_path: Path) -> None:
    """A change to the C generator or the bundle must come with `python -m potnn.zoo.train NAME --reexport`."""
    model = zoo.load(entry.name)
    potnn.export(model, tmp_path / "model.h", entry.recipe.config)
    assert (tmp_path / "model.h").read_text() == entry.header.read_text(), \
        f"stale {entry.header}: run python -m potnn.zoo.train {entry.name} --reexport"
    fresh, shipped = potnn.load_bundle(tmp_path / "model.potnn"), potnn.load_bundle(entry.header.with_suffix(".potnn"))
    assert {k: v for k, v in shipped.manifest.items() if k != "potnn_version"} == \
        {k: v for k, v in fresh.manifest.items() if k != "potnn_version"}, \
        f"stale {shipped.path}: run python -m potnn.zoo.train {entry.name} --reexport"
    assert shipped.manifest["dataset"] == entry.recipe.dataset
    images = np.random.default_rng(0).integers(0, 256, (64, *shipped.manifest["input_shape"]), dtype=np.uint8)
    assert np.array_equal(potnn.simulate(shipped, images), potnn.simulate(model, images))


@pytest.mark.parametrize("entry", zoo.available(), ids=lambda e: e.name)
def test_shipped_accuracy_is_what_meta_says(entry: zoo.ZooModel) -> None:
    try:
        images, labels, _ = load_dataset(entry.recipe.dataset, "test")
    except DatasetError as exc:
        pytest.skip(str(exc))
    accuracy = float((potnn.simulate(zoo.load(entry.name), images).argmax(1) == labels).mean())
    assert accuracy == pytest.approx(entry.meta()["integer_accuracy"], abs=1e-9)


def test_unknown_zoo_model_lists_the_zoo() -> None:
    with pytest.raises(KeyError, match="mnist16-fast, mnist16-accurate"):
        zoo.get("mnist99")
    assert {"mnist16-fast", "mnist16-accurate"} <= {e.name for e in zoo.available()}  # their files are shipped
