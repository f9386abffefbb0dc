"""A labgrid farm on loopback: the real coordinator, exporter and client, ser2net, and ``run --place``.

The board is the bench firmware built for this computer (``firmware/chips/host``: its UART is
a pty); the exporter serves that pty through ser2net (RFC 2217) as a labgrid place tagged
``board=ch32v003``. ``potnn-bench run --place`` then acquires the place through the coordinator,
streams over the network port and must log 0 mismatches against ``potnn.simulate``, release the
place however it ends, and be refused while someone else holds it. Only the probe cannot exist
here, so flashing through a place is checked up to its refusal of a place without one.

Skipped, with the reason, only when labgrid (``pip install "potnn[farm]"``) or ser2net
(``apt-get install ser2net``) is missing; ``.ci/run`` installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

pytestmark = pytest.mark.farm

pytest.importorskip("labgrid", reason="labgrid is not installed: pip install 'potnn[farm]'")
if shutil.which("ser2net") is None and not Path("/usr/sbin/ser2net").exists():
    pytest.skip("ser2net is not installed: apt-get install ser2net", allow_module_level=True)

from bench.build import build, build_host  # noqa: E402
from bench.farm import FarmSession  # noqa: E402
from bench.models import get_model  # noqa: E402
from bench.nightly import Settings, free_places, lanes, plan_jobs, spread  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODEL = "mnist16-fast"
BOARD = "ch32v003"
PLACE = "potnn-test-board"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, ok, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Farm:
    """A coordinator, one exporter and one place, all on 127.0.0.1; torn down in reverse order."""

    def __init__(self, root: Path, pty: str):
        self.address = f"127.0.0.1:{_free_port()}"
        self.env = {**os.environ, "LG_COORDINATOR": self.address, "PYTHONPATH": str(REPO)}
        self.procs: list[subprocess.Popen] = []
        self._start(["labgrid-coordinator", "-l", self.address], root, "coordinator.log")
        _wait("the coordinator", lambda: self._reachable())
        (root / "exporter.yaml").write_text(f"board1:\n  RawSerialPort:\n    port: {pty}\n    speed: 115200\n")
        self._start(["labgrid-exporter", "-c", self.address, "-n", "test-exporter", "--hostname", "127.0.0.1",
                     "exporter.yaml"], root, "exporter.log")
        _wait("the exporter's serial port", lambda: "NetworkSerialPort" in self.client("resources").stdout)
        for cmd in (["create"], ["add-match", "test-exporter/board1/NetworkSerialPort"],
                    ["set-tags", f"board={BOARD}"]):
            self.client("-p", PLACE, *cmd, check=True)

    def _start(self, cmd: list[str], cwd: Path, log: str) -> None:
        with open(cwd / log, "w") as out:
            self.procs.append(subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT))

    def _reachable(self) -> bool:
        host, port = self.address.split(":")
        with socket.socket() as s:
            return s.connect_ex((host, int(port))) == 0

    def client(self, *args: str, check: bool = False, user: str | None = None) -> subprocess.CompletedProcess:
        """The real ``labgrid-client`` (as another user when ``user`` is given)."""
        env = dict(self.env, **({"LG_USERNAME": user} if user else {}))
        return subprocess.run(["labgrid-client", "-x", self.address, *args], env=env, capture_output=True,
                              text=True, timeout=60, check=check)

    def holder(self) -> str | None:
        """Who holds the place now, as the coordinator says (None: free)."""
        session = FarmSession(self.address)
        try:
            (info,) = session.places([PLACE])
            return info.acquired_by
        finally:
            session.close()

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def host_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bench firmware for this computer, running: the pty it serves the protocol on."""
    hb = build_host(get_model(MODEL).header_path, tmp_path_factory.mktemp("host"))
    proc = subprocess.Popen([str(hb.exe)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().split() if proc.stdout else []
    assert line[:1] == ["PTY"], f"bench-host did not announce its pty: {line}"
    yield line[1]
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def farm(host_board: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    f = Farm(tmp_path_factory.mktemp("farm"), host_board)
    yield f
    f.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random 16x16 inputs without labels: agreement with potnn.simulate is all that is judged. Enough that a
    whole run (about 100 s) outlasts the interrupt test's second run on a busy machine; the others use --limit."""
    path = tmp_path_factory.mktemp("data") / "inputs.npz"
    np.savez(path, x=np.random.default_rng(0).integers(0, 256, (12000, 1, 16, 16), dtype=np.uint8))
    return path


def _bench(farm: Farm, results: Path, data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bench.cli", "run", "--board", BOARD, "--model", MODEL, "--place", PLACE,
            "--no-flash", "--data", str(data), "--results", str(results), *args]


def test_run_on_a_place_matches_the_reference_and_releases_it(farm: Farm, data: Path, tmp_path: Path) -> None:
    done = subprocess.run(_bench(farm, tmp_path, data, "--limit", "60"), cwd=REPO, env=farm.env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    (summary_path,) = tmp_path.glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert (summary["n"], summary["mismatches"], summary["backend"]) == (60, 0, "hardware")
    assert summary["probe"] == f"labgrid place {PLACE}" and summary["port"].startswith("rfc2217://127.0.0.1:")
    assert f"released place {PLACE}" in done.stderr
    assert farm.holder() is None


def test_a_held_place_is_refused_and_released_on_interrupt(farm: Farm, data: Path, tmp_path: Path) -> None:
    # A test run started in the background by a shell (`pytest &`) ignores SIGINT, and the run below
    # would inherit that and never see the Ctrl-C this test sends: it gets the default disposition.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        first = subprocess.Popen(_bench(farm, tmp_path / "first", data), cwd=REPO, env=farm.env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        _wait("the first run to stream", lambda: any((tmp_path / "first").glob("*/rows.csv")), timeout_s=120)
        assert farm.holder() is not None
        other = farm.client("-p", PLACE, "acquire", user="someone-else")
        assert other.returncode != 0 and "already acquired" in (other.stdout + other.stderr)
        second = subprocess.run(_bench(farm, tmp_path / "second", data, "--limit", "5"), cwd=REPO, env=farm.env,
                                capture_output=True, text=True, timeout=180)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines()[-1].startswith(f"potnn-bench: error: place {PLACE} is held by ")
        assert not (tmp_path / "second").exists() or not any((tmp_path / "second").iterdir())
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
            farm.client("-p", PLACE, "release", "--kick")   # the tests after this one start from a free place
    assert first.returncode == 130, err
    assert f"released place {PLACE}" in err
    assert farm.holder() is None


def test_flashing_a_place_without_a_probe_is_refused_and_releases_it(farm: Farm, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.cli", "flash", "--board", BOARD, "--model", MODEL,
                           "--place", PLACE, "--check", "0"], cwd=REPO, env=farm.env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 2
    assert f"place {PLACE} has no probe" in done.stderr.strip().splitlines()[-1]
    assert farm.holder() is None


def test_a_place_of_another_board_is_refused_before_it_is_acquired(farm: Farm, data: Path, tmp_path: Path) -> None:
    cmd = _bench(farm, tmp_path, data, "--limit", "5")
    cmd[cmd.index(BOARD)] = "py32f003"
    done = subprocess.run(cmd, cwd=REPO, env=farm.env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 2
    assert f"holds a {BOARD} board" in done.stderr.strip().splitlines()[-1]
    assert farm.holder() is None


def test_nightly_deals_jobs_to_free_places_only(farm: Farm, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``nightly --place``: the coordinator's free places get their board's jobs, in a hardware lane."""
    monkeypatch.setenv("LG_COORDINATOR", farm.address)
    said: list[str] = []
    places = free_places([PLACE], said.append)
    assert places == {BOARD: [PLACE]} and not said
    jobs = spread(plan_jobs([BOARD, "py32f003"], [MODEL]), places)
    assert [(j.board, j.place) for j in jobs] == [(BOARD, PLACE), ("py32f003", None)]
    settings = Settings(emulator="unicorn", pack=None, limit=1, results=tmp_path, opt="Os", toolchain=None,
                        timeout=1.0)
    assert lanes(jobs, settings) == ([[jobs[0]]], [[jobs[1]]])

    assert farm.client("-p", PLACE, "acquire", user="someone-else").returncode == 0
    try:
        assert free_places([PLACE], said.append) == {}
        assert said == [f"place {PLACE} is held by {socket.gethostname()}/someone-else: not used tonight"]
    finally:
        farm.client("-p", PLACE, "release", "--kick", check=True)
    assert farm.holder() is None


def test_firmware_builds_in_a_process_talking_to_the_coordinator(farm: Farm, tmp_path: Path) -> None:
    """A Python user (or ``nightly``'s parent) may build while a coordinator session is busy in the
    same process: the compilers must start clean beside labgrid's gRPC threads, whose fork handlers
    crash about one child in five that is forked with a Python hook (``preexec_fn``) to run in it."""
    stop = threading.Event()

    def poll() -> None:
        session = FarmSession(farm.address)
        try:
            while not stop.is_set():
                session.places([PLACE])
        finally:
            session.close()

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for toolchain in ("gnu", "zig"):
            for _ in range(2):
                fw = build(BOARD, get_model(MODEL).header_path, tmp_path / toolchain, toolchain=toolchain,
                           force=True)
                assert fw.elf.exists()
    finally:
        stop.set()
        poller.join(timeout=30)
