"""Renode backend: the same ELF on Renode (``--emulator renode``), when ``renode`` is on PATH.

Why keep a second engine: Renode is a full-system simulator maintained by others, with its own
models of the core, memories, UART and SysTick; a result that holds under both Unicorn and Renode
does not depend on one emulator's quirks. It is not the default because it is heavy (a .NET
runtime), cannot be installed on every machine, and has no cycle model.

How it runs:
- the platform is ``boards/renode/<chip>.repl`` (CPU, flash with its alias, SRAM, an STM32-style
  USART1, register files for RCC/FLASH/GPIO, SysTick);
- a ``.resc`` is generated per run: create the machine, load the platform and the ELF, set the
  CPU speed to the board's clock in MIPS (one instruction per cycle: Renode's virtual time is
  instruction-based), open USART1 as a server-socket terminal on a free loopback port, start;
- a :class:`SerialBridge` of ours relays between that socket and ``emu.url``, so the host sees
  exactly the semantics of the Unicorn backend (TX backlog until a client connects, the port
  closed at once when Renode dies).

Limits (documented in the API): ``last_inference()`` returns ``(None, None)`` (Renode does not count cycles
the way the model does; the firmware's own SysTick figure in each reply is Renode's virtual-time
estimate), no hang or stack-overflow detection beyond what Renode logs, and ``fault`` is set
only when the Renode process exits unexpectedly.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .api import Emulator, EmulatorStats
from .faults import EmulatorUnavailable, Fault, FaultKind
from bench.board import REPO_ROOT

from .machine import ARMV6M, MachineSpec
from .serial_bridge import SerialBridge


def find_renode() -> str | None:
    """Path of the Renode executable (``$RENODE`` or ``renode`` on PATH), or None."""
    env = os.environ.get("RENODE")
    if env and Path(env).exists():
        return env
    return shutil.which("renode")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate_resc(spec: MachineSpec, elf: Path, uart_port: int, platform: Path) -> str:
    """The Renode script for one run (kept small and readable: it is written to the run log)."""
    mips = max(1, spec.clock_hz // 1_000_000)
    lines = [
        ':name: potnn bench firmware',
        'using sysbus',
        'mach create "potnn"',
        f'machine LoadPlatformDescription @{platform}',
        f'sysbus LoadELF @{elf}',
        f'cpu PerformanceInMips {mips}',
    ]
    if spec.arch == ARMV6M:
        lines.append(f'cpu VectorTableOffset {spec.flash_origin:#x}')
    else:
        lines.append(f'cpu PC {spec.flash_origin:#x}')
    lines += [
        f'emulation CreateServerSocketTerminal {uart_port} "uart" false',
        'connector Connect sysbus.usart1 uart',
        'start',
    ]
    return "\n".join(lines) + "\n"


class RenodeEmulator(Emulator):
    """One Renode process running one ELF; see the module docstring.

    Options: ``port`` (our loopback port, 0 = ephemeral), ``renode`` (executable path),
    ``timeout_s`` (how long Renode may take to open its UART socket), ``workdir`` (where the
    .resc and the Renode log go; a temporary directory by default).
    """

    backend = "renode"

    def __init__(self, spec: MachineSpec, elf: str | Path, *, port: int = 0, renode: str | None = None,
                 timeout_s: float = 60.0, workdir: str | Path | None = None, **unknown: Any):
        super().__init__()
        if unknown:
            raise TypeError(f"unknown option(s) for the renode backend: {', '.join(sorted(unknown))}")
        exe = renode or find_renode()
        if not exe:
            raise EmulatorUnavailable("renode is not on PATH (install it from https://renode.io, or set $RENODE)")
        self.spec = spec
        self.elf = Path(elf).resolve()
        platform = Path(spec.renode_platform or f"boards/renode/{spec.chip}.repl")
        if not platform.is_absolute():
            platform = REPO_ROOT / platform
        if not platform.exists():
            raise EmulatorUnavailable(f"no Renode platform description {platform}")
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="potnn-renode-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._uart_port = _free_port()
        self.resc = self.workdir / "run.resc"
        self.resc.write_text(generate_resc(spec, self.elf, self._uart_port, platform))
        self.log_path = self.workdir / "renode.log"
        self.bridge = SerialBridge(port=port)
        self.url = self.bridge.url
        self._stop = False
        self._t0 = time.perf_counter()
        self._log = open(self.log_path, "wb")
        argv = [exe, "--disable-xwt", "--console", "--plain", "-e", f"include @{self.resc}"]
        if _supports_disable_gui(exe):
            argv[1] = "--disable-gui"
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        self._sock = self._connect(timeout_s)
        self._threads = [threading.Thread(target=self._pump_from_renode, daemon=True, name="renode-uart-rx"),
                         threading.Thread(target=self._pump_to_renode, daemon=True, name="renode-uart-tx"),
                         threading.Thread(target=self._watch, daemon=True, name="renode-watch")]
        for t in self._threads:
            t.start()

    def _connect(self, timeout_s: float) -> socket.socket:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"renode exited with status {self.proc.returncode} before opening the UART "
                           f"(see {self.log_path})")
            try:
                s = socket.create_connection(("127.0.0.1", self._uart_port), timeout=1.0)
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return s
            except OSError:
                time.sleep(0.2)
        self.close()
        raise EmulatorUnavailable(f"renode did not open its UART socket within {timeout_s:g} s (see {self.log_path})")

    def _fail(self, message: str) -> None:
        self.close()
        raise EmulatorUnavailable(message)

    # ------------------------------------------------------------------ relays
    def _pump_from_renode(self) -> None:
        while not self._stop:
            try:
                data = self._sock.recv(4096)
            except OSError:
                break
            if not data:
                break
            self.bridge.send(data)
        self._ended("the Renode UART socket closed")

    def _pump_to_renode(self) -> None:
        while not self._stop and not self.bridge.closed:
            if not self.bridge.wait_rx(0.2):
                continue
            chunk = bytearray()
            while (b := self.bridge.rx_pop()) is not None:
                chunk.append(b)
            try:
                self._sock.sendall(bytes(chunk))
            except OSError:
                break

    def _watch(self) -> None:
        code = self.proc.wait()
        if not self._stop:
            self._ended(f"renode exited with status {code} (see {self.log_path})")

    def _ended(self, why: str) -> None:
        if not self._stop and self.fault is None:
            self.fault = Fault(FaultKind.INTERNAL, pc=None, message=why)
        self._done.set()
        self.bridge.close()

    # ------------------------------------------------------------------ API
    def last_inference(self) -> tuple[None, None]:
        """Not available under Renode (no cycle model): always ``(None, None)``."""
        return None, None

    @property
    def stats(self) -> EmulatorStats:
        wall = time.perf_counter() - self._t0
        return EmulatorStats(backend=self.backend, instructions=0, cycles=0, blocks=0, wall_s=wall,
                             instr_per_s=0.0, hclk_hz=self.spec.clock_hz, wait_states=0, stack_bytes=None,
                             stack_top=None, stack_limit=None, uart_tx_bytes=self.bridge.bytes_to_host,
                             uart_rx_bytes=self.bridge.bytes_from_host, counter_reads=0, accelerated=False)

    def close(self) -> None:
        """Stop Renode, close the serial port (idempotent)."""
        self._stop = True
        sock = getattr(self, "_sock", None)
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            try:
                if proc.stdin:
                    proc.stdin.write(b"quit\n")
                    proc.stdin.flush()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if hasattr(self, "bridge"):
            self.bridge.close()
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()
        self._done.set()


def _supports_disable_gui(exe: str) -> bool:
    """Renode 1.15 renamed ``--disable-xwt`` to ``--disable-gui``; ask the binary which it has."""
    try:
        out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--disable-gui" in out
