"""The emulated UART as a loopback TCP port, reachable with pyserial's ``socket://`` URL.

Why TCP and a URL: the bench opens ``serial.serial_for_url(url)`` whether the firmware runs on a
board (``/dev/ttyUSB0``) or in an emulator (``socket://127.0.0.1:PORT``), so the host code is
identical in both cases, and Renode's server-socket terminal speaks the same.

Semantics:
- The server listens on 127.0.0.1 at an ephemeral port; one client at a time (a new connection
  replaces the old one, as re-opening a serial port would).
- Bytes the firmware sends while no client is connected are kept (up to ``TX_BACKLOG`` bytes)
  and delivered ``SETTLE_S`` after the client connects (pyserial empties its input right after
  connecting; the delay lets the backlog survive that), before anything sent later.
- Bytes the host sends are queued for the firmware's RX register without limit (the emulator
  never overruns; a real UART with no FIFO can).
- :meth:`close` drops the client and the listener: a host blocked in ``read()`` gets end of
  stream at once (pyserial raises ``SerialException('socket disconnected')``). The backend sets
  ``emu.fault`` *before* closing, so the host can tell a fault from a normal shutdown.
"""

from __future__ import annotations

import socket
import threading
from collections import deque

TX_BACKLOG = 1 << 16
SETTLE_S = 0.1
#: Acknowledge host bytes at once (Linux; re-armed after every read). pyserial's socket:// port
#: does not disable Nagle's algorithm, so a host write that follows another one unacknowledged
#: (a frame written in two parts) would wait for the delayed ACK, 40 ms, on every request.
QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class SerialBridge:
    """Loopback TCP server that moves bytes between the host and the emulated USART."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(1)
        self.host, self.port = self._listener.getsockname()[:2]
        self._cond = threading.Condition()
        self._rx: deque[int] = deque()
        self._tx_backlog = bytearray()
        self._client: socket.socket | None = None
        self._pending: socket.socket | None = None  # connected, backlog not yet delivered
        self._closed = False
        self.bytes_to_host = 0
        self.bytes_from_host = 0
        self.connections = 0
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"uart-accept-{self.port}", daemon=True)
        self._accept_thread.start()

    @property
    def url(self) -> str:
        """pyserial URL of the port (``socket://127.0.0.1:PORT``)."""
        return f"socket://{self.host}:{self.port}"

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ host side (threads)
    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._cond:
                if self._closed:
                    conn.close()
                    return
                old = self._client or self._pending
                self._client, self._pending = None, conn
                self.connections += 1
            if old is not None and old is not conn:
                _close_quietly(old)
            threading.Thread(target=self._reader, args=(conn,), name=f"uart-rx-{self.port}", daemon=True).start()
            timer = threading.Timer(SETTLE_S, self._activate, args=(conn,))
            timer.daemon = True
            timer.start()

    def _activate(self, conn: socket.socket) -> None:
        """Deliver the backlog to a freshly connected client, then send to it directly."""
        with self._cond:
            if self._pending is not conn or self._closed:
                return
            backlog, self._tx_backlog = bytes(self._tx_backlog), bytearray()
            try:
                if backlog:
                    conn.sendall(backlog)
            except OSError:
                self._pending = None
                return
            self._pending, self._client = None, conn

    def _reader(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(4096)
                if data and QUICKACK is not None:
                    conn.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    if self._client is conn:
                        self._client = None
                    if self._pending is conn:
                        self._pending = None
                    self._cond.notify_all()
                    break
                self._rx.extend(data)
                self.bytes_from_host += len(data)
                self._cond.notify_all()
        _close_quietly(conn)

    # ------------------------------------------------------------------ firmware side
    def rx_ready(self) -> bool:
        return bool(self._rx)

    def rx_pop(self) -> int | None:
        with self._cond:
            return self._rx.popleft() if self._rx else None

    def wait_rx(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a host byte; True when one is queued."""
        with self._cond:
            if not self._rx and not self._closed:
                self._cond.wait(timeout)
            return bool(self._rx)

    def send(self, data: bytes) -> None:
        """Firmware → host. Kept in the backlog while no client is connected."""
        with self._cond:
            client = self._client
            if client is None:
                room = TX_BACKLOG - len(self._tx_backlog)
                if room > 0:
                    self._tx_backlog += data[:room]
                self.bytes_to_host += len(data)
                return
        try:
            client.sendall(data)
        except OSError:
            with self._cond:
                if self._client is client:
                    self._client = None
        self.bytes_to_host += len(data)

    def wake(self) -> None:
        """Wake a firmware-side wait (used when the emulator is asked to stop)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Drop the client and stop listening; a blocked host read ends at once."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            client, self._client = self._client or self._pending, None
            self._pending = None
            self._cond.notify_all()
        if client is not None:
            _close_quietly(client)
        _close_quietly(self._listener)


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
