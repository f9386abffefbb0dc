"""The bench as a labgrid client: find, acquire and release places through the coordinator.

Why labgrid: a board farm needs reservations that two users (or two nightly jobs) cannot both
win, exporters on the machines the boards hang off, and a serial port reachable over the
network. labgrid's coordinator, exporter and client do exactly that; the bench only speaks to
the coordinator the way ``labgrid-client`` does, through labgrid's own ``ClientSession`` (gRPC,
labgrid >= 24), so a place held by ``potnn-bench`` shows in ``labgrid-client who`` and a place
held by a person is refused to the bench.

A potnn board in the farm is a place whose matches name its serial port (a ``RawSerialPort`` or
``USBSerialPort`` that the exporter serves through ser2net, RFC 2217) and, to be flashed, its
probe (a ``USBDebugger``), and whose tag ``board=<board file name>`` says which board it is.

The coordinator's address comes from ``LG_COORDINATOR`` (labgrid's own variable; default
``127.0.0.1:20408``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from bench.errors import RunError

#: labgrid's default coordinator address, as ``labgrid-client`` assumes it.
DEFAULT_COORDINATOR = "127.0.0.1:20408"
#: How long the exporter may take to start ser2net for a freshly acquired place.
PORT_WAIT_S = 15.0
#: Resource classes of a place's serial port and of its probe, as a client sees them.
SERIAL_CLASS = "NetworkSerialPort"
PROBE_CLASSES = ("NetworkUSBDebugger", "USBDebugger")


class FarmError(RunError):
    """A place cannot be used (unknown, held by someone else, no serial port); one line to act on."""


@dataclass(frozen=True)
class PlaceInfo:
    """A place as the coordinator describes it: its name, its ``board`` tag and who holds it."""

    name: str
    board: str | None
    acquired_by: str | None
    tags: dict[str, str]


@dataclass(frozen=True)
class HeldPlace:
    """A place this process holds: where its serial port is and which host its probe is on."""

    name: str
    board: str | None
    serial_url: str
    probe_host: str | None   # the exporter host that runs the flasher; None: the place has no probe
    tags: dict[str, str]


def coordinator_address() -> str:
    return os.environ.get("LG_COORDINATOR", DEFAULT_COORDINATOR)


def _labgrid_client() -> Any:
    try:
        from labgrid.remote import client
    except ImportError:
        raise FarmError("--place needs labgrid: pip install 'potnn[farm]'") from None
    return client


class FarmSession:
    """One connection to the coordinator (labgrid's ``ClientSession`` and its event loop)."""

    def __init__(self, address: str | None = None):
        client = _labgrid_client()
        self.address = address or coordinator_address()
        self._errors = (client.Error,)
        try:
            with _quiet():
                self._session = client.start_session(self.address)
        except client.Error as e:
            raise FarmError(f"cannot reach the labgrid coordinator at {self.address} ({_one_line(e)}); "
                            "start labgrid-coordinator or set LG_COORDINATOR=HOST:PORT") from None

    def _call(self, coro_fn: Callable[[], Any], place: str) -> None:
        """Run one ``ClientSession`` coroutine for ``place``; its errors become one line (the bench says
        what happened itself: labgrid-client's progress prints are dropped)."""
        self._session.args = argparse.Namespace(place=place, allow_unmatched=False, kick=False)
        try:
            with _quiet():
                self._session.loop.run_until_complete(coro_fn())
        except self._errors as e:
            raise FarmError(f"place {place}: {_one_line(e)}") from None

    def _sync(self) -> None:
        with _quiet():
            self._session.loop.run_until_complete(self._session.sync_with_coordinator())

    def places(self, patterns: list[str]) -> list[PlaceInfo]:
        """The places named (exactly, or by labgrid's pattern match: a unique part of a name or alias)."""
        self._sync()
        try:
            found = {self._session.get_place(p).name for p in patterns}
        except self._errors as e:
            raise FarmError(f"{_one_line(e)} (see `labgrid-client places`)") from None
        places = self._session.places
        return [PlaceInfo(n, places[n].tags.get("board"), places[n].acquired, dict(places[n].tags))
                for n in sorted(found)]

    def acquire(self, name: str) -> None:
        self._call(self._session.acquire, name)

    def release(self, name: str) -> None:
        self._call(self._session.release, name)

    def resources(self, name: str) -> dict[str, Any]:
        """Class name -> the acquired place's resource entry (host, port, ...), once the exporter serves it."""
        self._sync()
        try:
            place = self._session.get_acquired_place(name)
            entries = self._session.get_target_resources(place)
        except self._errors as e:
            raise FarmError(f"place {name}: {_one_line(e)}") from None
        return {cls: entry for (_, cls), entry in entries.items()}

    def close(self) -> None:
        with contextlib.suppress(Exception), _quiet():
            self._session.loop.run_until_complete(self._session.stop())
            self._session.loop.run_until_complete(self._session.close())


def serial_url(entry: Any, timeout_s: float) -> str:
    """The pyserial URL of an exported serial port (RFC 2217 through ser2net, or raw TCP).

    ``ign_set_control``: ser2net cannot set modem lines on every device (a pty, some bridges) and
    then never acknowledges them; labgrid's own serial driver ignores them the same way.
    """
    args = entry.args
    if args.get("protocol", "rfc2217") == "raw":
        return f"socket://{args['host']}:{args['port']}"
    return f"rfc2217://{args['host']}:{args['port']}?ign_set_control&timeout={timeout_s:g}"


def _wait_for_port(session: FarmSession, name: str) -> dict[str, Any]:
    """The place's resources once its serial port has a TCP port (the exporter starts ser2net on acquire)."""
    deadline = time.monotonic() + PORT_WAIT_S
    while True:
        res = session.resources(name)
        serial = res.get(SERIAL_CLASS)
        if serial is None:
            raise FarmError(f"place {name} has no serial port ({SERIAL_CLASS}): add a match for its exporter's "
                            "RawSerialPort or USBSerialPort (labgrid-client -p NAME add-match ...)")
        if serial.avail and serial.args.get("port"):
            return res
        if time.monotonic() > deadline:
            raise FarmError(f"place {name}: its exporter did not serve the serial port within {PORT_WAIT_S:g} s "
                            "(is ser2net installed on the exporter host? see its log)")
        time.sleep(0.2)


def check_board(info: PlaceInfo, board: str) -> None:
    """Refuse a place whose ``board`` tag names another board (an untagged place is taken on trust)."""
    if info.board is not None and info.board != board:
        raise FarmError(f"place {info.name} holds a {info.board} board (its board tag), not {board}: "
                        f"pass --board {info.board} or another place")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a place is held, SIGTERM unwinds like Ctrl-C, so the place is released on ``kill`` too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def hold(name: str, board: str | None = None, timeout_s: float = 1.0,
         say: Callable[[str], None] | None = None) -> Iterator[HeldPlace]:
    """Acquire place ``name`` for the duration of the block and release it on exit, error or interrupt.

    ``board``: the board the caller builds for; a place tagged with another board is refused
    before it is acquired.
    """
    session = FarmSession()
    try:
        (info,) = session.places([name])
        if board is not None:
            check_board(info, board)
        with _sigterm_as_interrupt():
            session.acquire(info.name)
            try:
                res = _wait_for_port(session, info.name)
                probe = next((res[c] for c in PROBE_CLASSES if c in res), None)
                held = HeldPlace(info.name, info.board, serial_url(res[SERIAL_CLASS], timeout_s),
                                 None if probe is None else str(probe.args.get("host") or "localhost"),
                                 info.tags)
                if say is not None:
                    say(f"acquired place {info.name} (serial {held.serial_url.split('?')[0]})")
                yield held
            finally:
                try:
                    session.release(info.name)
                    if say is not None:
                        say(f"released place {info.name}")
                except FarmError as e:  # never hide the error that ended the block
                    print(f"potnn-bench: warning: {e}; release it with: labgrid-client -p {info.name} release",
                          file=sys.stderr)
    finally:
        session.close()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence labgrid-client's prints and its root-logger errors: the bench says what went wrong, once."""
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().removeprefix("Error: ")   # labgrid's errors print with that prefix
    return text.splitlines()[0] if text else type(e).__name__
