"""The zoo models of the non-MNIST datasets: their exported C gives potnn.simulate's logits on the whole test split."""

from __future__ import annotations

import numpy as np
import pytest

import potnn
from potnn import zoo
from potnn.data import DatasetError, load_dataset
from potnn.hostrun import run_header

SMALL_TASKS = [e for e in zoo.available() if e.recipe.dataset != "mnist16"]


def test_the_zoo_has_a_model_for_each_small_dataset() -> None:
    assert {e.recipe.dataset for e in SMALL_TASKS} == {"digits8", "basicmotions"}
    for entry in zoo.available():
        assert entry.meta()["dataset"] == entry.recipe.dataset, entry.name


@pytest.mark.parametrize("entry", SMALL_TASKS, ids=lambda e: e.name)
def test_header_on_the_host_is_the_simulation_on_the_whole_test_split(entry: zoo.ZooModel) -> None:
    try:
        x, y, names = load_dataset(entry.recipe.dataset, "test")
    except DatasetError as exc:
        pytest.skip(str(exc))
    logits = potnn.simulate(zoo.load(entry.name), x)
    classes, host_logits = run_header(entry.header, x, len(names))
    assert np.array_equal(host_logits, logits)
    assert np.array_equal(classes, logits.argmax(1))
    accuracy = float((classes == y).mean())
    assert accuracy >= entry.recipe.accuracy_floor
    assert accuracy == pytest.approx(entry.meta()["integer_accuracy"], abs=1e-9)


def test_a_validation_run_reports_on_held_out_training_samples_and_writes_nothing(tmp_path, capsys) -> None:
    from potnn.zoo.train import main

    try:
        load_dataset("digits8", "train")
    except DatasetError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "model"
    assert main(["digits8-small", "--validation", "0.25", "--epochs", "1,1", "--out", str(out)]) == 0
    assert "on 337 held-out training samples (validation 0.25)" in capsys.readouterr().out
    assert not out.exists()
