"""The per-layer profile: a real zoo model built for both boards and run on the unicorn emulator.

``mnist16-fast`` has three layers (convs.0, convs.1, fc); each run of it must name every one, and
the layers must account for the cycles and instructions the run measures (within 5 %, the rest is
the ``(firmware)`` row). The C and the Python block hooks must charge the layers alike, the report
must draw a bar per profiled run, ``run --profile`` must print the table, and the frontier picture
must hold our measured points and the peers' published ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bench import cli
from bench.emulator import launch
from bench.errors import RunError
from bench.profile import FIRMWARE_ROW, layer_rows
from bench.protocol import BenchClient
from bench.report import make_report
from bench.report.frontier import PEERS, ZOO_MODELS, main as frontier_main, zoo_points
from bench.report.plots import plot_layers
from bench.results import load_run
from bench.run import RunOptions, execute
from firmware_models import SHARED_MNIST

BOARDS = ("ch32v003", "py32f003")
MODEL = "mnist16-fast"
LAYERS = ["convs.0", "convs.1", "fc"]


@pytest.fixture(scope="module")
def mnist_env():
    """POTNN_DATA at CI's shared MNIST for this module (the zoo model's data is mnist16)."""
    from potnn.data import DatasetError, load_mnist

    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("POTNN_DATA") and SHARED_MNIST.is_dir():
            mp.setenv("POTNN_DATA", str(SHARED_MNIST))
        try:
            load_mnist("test", 16)
        except DatasetError as e:
            pytest.skip(f"MNIST not available: {e}")
        yield


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory, mnist_env) -> dict[str, Path]:
    """One profiled run of the zoo model per board, in one results directory: board -> run directory."""
    results = tmp_path_factory.mktemp("results")
    runs = {}
    for board in BOARDS:
        out = execute(RunOptions(board=board, model=MODEL, limit=4, profile=True, results=results,
                                 build_dir=tmp_path_factory.mktemp(f"build-{board}"), show_progress=False))
        assert out.summary is not None and out.summary["mismatches"] == 0
        runs[board] = out.run_dir
    return runs


@pytest.mark.parametrize("board", BOARDS)
def test_the_layers_add_up_to_the_measured_inference(profiled: dict[str, Path], board: str) -> None:
    summary = load_run(profiled[board]).summary
    assert summary is not None
    layers = layer_rows(summary["layers"])
    for key, total in (("cycles_mean", summary["cycles_mean"]), ("instructions_mean", summary["instructions_mean"])):
        in_layers = sum(row[key] for row in layers)
        assert 0.95 * total <= in_layers <= total, (key, in_layers, total)
        with_firmware = sum(row[key] for row in summary["layers"])
        assert with_firmware == pytest.approx(total, rel=1e-9)       # the (firmware) row is the rest
    assert all(row[key] > 0 for row in layers for key in ("cycles_mean", "instructions_mean", "stack_bytes"))
    assert sum(row["share"] for row in summary["layers"]) == pytest.approx(1.0)
    assert summary["profiled_inferences"] == summary["n"] == 4


@pytest.mark.parametrize("board", BOARDS)
def test_every_layer_of_the_three_layer_model_is_named_in_model_order(profiled: dict[str, Path], board: str) -> None:
    summary = load_run(profiled[board]).summary
    assert summary is not None
    assert [row["name"] for row in summary["layers"]] == [*LAYERS, FIRMWARE_ROW]
    assert [row["kind"] for row in summary["layers"]] == ["conv", "conv", "linear", "firmware"]
    assert [row["function"] for row in layer_rows(summary["layers"])] == ["potnn_0_convs_0", "potnn_1_convs_1",
                                                                          "potnn_3_fc"]


def test_c_and_python_block_hooks_charge_the_layers_alike(profiled: dict[str, Path]) -> None:
    elf = load_run(profiled["ch32v003"]).info["elf"]
    image = np.random.default_rng(0).integers(0, 256, 256, dtype=np.uint8).tobytes()
    seen = []
    for accelerate in (None, False):
        with launch("ch32v003", elf, accelerate=accelerate) as emu:
            client = BenchClient(emu.open_serial(timeout=30), timeout=30, infer_timeout=120)
            client.info()
            client.infer(image)
            seen.append((emu.last_layers(), emu.last_inference(), emu.layer_stack(), emu.stats.accelerated))
    (c_layers, c_total, c_stack, c_fast), (py_layers, py_total, py_stack, py_fast) = seen
    assert c_fast and not py_fast
    assert (c_layers, c_total, c_stack) == (py_layers, py_total, py_stack)
    assert set(c_layers) == {"potnn_0_convs_0", "potnn_1_convs_1", "potnn_3_fc"}


def test_the_report_draws_a_stacked_bar_per_profiled_run(profiled: dict[str, Path], tmp_path: Path) -> None:
    results = profiled["ch32v003"].parent
    rep = make_report(results, tmp_path / "report.html")
    md = rep.markdown.read_text()
    section = md.split("## Cycles per layer", 1)[1].split("\n## ", 1)[0]
    for board in BOARDS:
        for layer in [*LAYERS, FIRMWARE_ROW]:
            assert any(line.startswith(f"| {board} / {MODEL} / unicorn / ") and f" | {layer} |" in line
                       for line in section.splitlines()), (board, layer)
    png = (tmp_path / "report_files" / "layers.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert "![frontier](report_files/frontier.png)" in md
    runs = [load_run(d) for d in profiled.values()]
    for r in runs:
        r.summary.pop("layers")   # type: ignore[union-attr]
    assert plot_layers(runs) is None


def test_run_profile_prints_the_table(profiled: dict[str, Path], tmp_path: Path, capsys) -> None:
    build = Path(load_run(profiled["ch32v003"]).info["elf"]).parent
    status = cli.main(["run", "--board", "ch32v003", "--model", MODEL, "--limit", "2", "--profile",
                       "--build-dir", str(build), "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    table = out.split("per layer, mean of 2 inferences:", 1)[1].splitlines()
    assert table[1].split() == ["layer", "kind", "instructions", "cycles", "share", "max", "stack"]
    assert [line.split()[0] for line in table[2:7]] == [*LAYERS, FIRMWARE_ROW, "total"]
    assert table[6].split()[-2:] == ["100.0", "%"]


@pytest.mark.parametrize("emulator", ["none", "renode"])
def test_profile_refuses_a_placement_without_the_cycle_model(tmp_path: Path, emulator: str) -> None:
    with pytest.raises(RunError, match=f"--profile needs the unicorn emulator.*not --emulator {emulator}"):
        execute(RunOptions(board="ch32v003", model=MODEL, emulator=emulator, profile=True, results=tmp_path))
    assert not any(tmp_path.iterdir())


def test_frontier_shows_the_zoo_measured_and_the_peers_published(tmp_path: Path) -> None:
    shipped = {(path.parent.name, board, kind) for path in ZOO_MODELS.glob("*/meta.json")
               for meta in [json.loads(path.read_text())] if meta.get("dataset") == "mnist16"
               for board, by_toolchain in (meta.get("on_board") or {}).items() for kind in by_toolchain}
    ours = zoo_points()
    assert shipped and len(ours) == len(shipped) and {p.label for p in ours} == {f"{n}, {k}" for n, _, k in shipped}
    assert all(not p.published and "measured" in p.family and "meta.json" in p.source for p in ours)
    other = zoo_points([("digits", {"dataset": "digits8", "integer_accuracy": 0.9,
                                       "on_board": {"ch32v003": {"gnu": {"cycles": 1}}}})])
    assert other == []                                               # MNIST models only
    assert len(PEERS) == 6 and all(p.published and "published" in p.family and p.source for p in PEERS)
    assert {(p.accuracy, p.cycles) for p in PEERS if "CNN" in p.label} == {
        (0.9906, 785_123), (0.9928, 1_434_667), (0.9944, 2_083_568), (0.9955, 2_736_250)}
    out = tmp_path / "frontier.png"
    assert frontier_main(["--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
