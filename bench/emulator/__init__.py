"""Run the bench firmware ELF without a board: Unicorn (default) or Renode.

Public API (what ``bench.run`` and the tests use)::

    from bench.emulator import launch, available_backends, EmulatorFault

    with launch("ch32v003", "build/ch32v003/firmware.elf") as emu:   # backend="unicorn"
        port = emu.open_serial(timeout=5)        # or serial.serial_for_url(emu.url)
        ...  send a request, read the reply (same code as for /dev/ttyUSB0) ...
        instructions, cycles = emu.last_inference()   # between the last two SysTick reads
        print(emu.stats)                          # EmulatorStats: totals, instr/s, stack_bytes, ...
    # a fault or hang: emu.fault is a Fault(kind, pc, addr, symbol, message, ...); the serial
    # socket is closed at once, so a blocked read ends; emu.open_serial() ports raise
    # EmulatorFault(fault) there, and emu.check() raises it anywhere.

``launch(board, elf, backend="unicorn", **opts)``
    ``board``: a ``bench.board`` Board object or a board name (``boards/<name>.toml``, e.g.
    ``ch32v003``, ``py32f003x8``); ``backend``: ``"unicorn"``, ``"renode"`` or ``"auto"``
    (the first of :func:`available_backends`). Options of the Unicorn backend:
    ``hang_instructions``, ``rx_wait_s``, ``accelerate``, ``stack_limit``, ``ram_fill``,
    ``port``, ``start`` (see :class:`~bench.emulator.unicorn_backend.UnicornEmulator`); of the
    Renode backend: ``port``, ``renode``, ``timeout_s``, ``workdir``.

Emulator object (both backends)
    ``url`` (pyserial URL, ``socket://127.0.0.1:PORT``), ``backend``, ``fault`` (None or
    :class:`Fault`), ``stats`` (:class:`EmulatorStats`), ``last_inference()`` → ``(instructions,
    cycles)`` of the last inference, i.e. between the firmware's last two cycle-counter reads
    (``(None, None)`` before two reads, and always under Renode, which has no cycle model),
    ``last_layers()`` → ``{layer function: (instructions, cycles)}`` of that inference and
    ``layer_stack()`` → ``{layer function: deepest stack}`` (Unicorn only; see ``layers``), ``check()``,
    ``open_serial(timeout=…)``, ``wait(timeout)``, ``running``, ``close()``; also a context
    manager.

``available_backends()`` → list of backend names that can run on this machine, best first,
each with a reason in ``backend_status()`` when it cannot.

Faults (:class:`FaultKind`): unmapped read/write/fetch, write-to-flash, stack-overflow (SP below
the end of .data/.bss, or below SRAM), ram-overflow (static data larger than SRAM),
misaligned-access, illegal-instruction (incl. instructions RV32EC / ARMv6-M lack),
unmodelled-peripheral, cpu-exception (incl. reaching the firmware's ``bench_fault``), hang (no
UART traffic for ``hang_instructions``), internal-error. Each has pc, addr, symbol and message.

Cycle figures come from the per-core models in :mod:`bench.emulator.cycles` (sources and the
BitNetMCU calibration are documented there). Modules: ``layers`` (which layer of the model a
block belongs to), ``machine`` (the board's memory map,
core and peripherals), ``elfimage`` (flash image, symbols), ``cycles`` (timing models),
``blockhook`` + ``_blockhook.c`` (per-block counting in C), ``peripherals/`` (register models,
one module per chip), ``serial_bridge`` (the TCP UART),
``faults``, ``api`` (shared base), ``unicorn_backend``, ``renode_backend``.

Known limits: no interrupts are delivered (the bench firmware polls; enabling one faults);
code written to SRAM after it has run once keeps its first cycle cost; Renode runs without the
cycle model, alignment and stack checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from .api import Emulator, EmulatorSerial, EmulatorStats
from .faults import ElfLoadError, EmulatorError, EmulatorFault, EmulatorUnavailable, Fault, FaultKind
from .machine import MachineSpec, machine_for

Backend = Literal["unicorn", "renode", "auto"]

__all__ = [
    "launch", "available_backends", "backend_status", "machine_for",
    "Emulator", "EmulatorSerial", "EmulatorStats", "MachineSpec",
    "Fault", "FaultKind", "EmulatorError", "EmulatorFault", "EmulatorUnavailable",
    "ElfLoadError",
]


def backend_status() -> dict[str, str | None]:
    """Backend name → None when it can run here, else the reason it cannot."""
    status: dict[str, str | None] = {}
    try:
        import capstone  # noqa: F401
        import unicorn  # noqa: F401

        status["unicorn"] = None
    except ImportError as exc:
        status["unicorn"] = f"python package missing: {exc.name}"
    from .renode_backend import find_renode

    status["renode"] = None if find_renode() else "renode is not on PATH (https://renode.io; see .github/workflows/renode.yml)"
    return status


def available_backends() -> list[str]:
    """Backends that can run on this machine, best first (``unicorn`` before ``renode``)."""
    return [name for name, why in backend_status().items() if why is None]


def launch(board: Any, elf: str | Path, backend: Backend = "unicorn", **opts: Any) -> Emulator:
    """Start ``elf`` on an emulated ``board`` and return the running emulator (see module doc)."""
    spec = machine_for(board)
    if backend == "auto":
        avail = available_backends()
        if not avail:
            raise EmulatorUnavailable("no emulator backend can run here: " + "; ".join(
                f"{k}: {v}" for k, v in backend_status().items()))
        backend = avail[0]  # type: ignore[assignment]
    if backend == "unicorn":
        why = backend_status()["unicorn"]
        if why:
            raise EmulatorUnavailable(f"unicorn backend unavailable: {why}")
        from .unicorn_backend import UnicornEmulator

        return UnicornEmulator(spec, elf, **opts)
    if backend == "renode":
        from .renode_backend import RenodeEmulator

        return RenodeEmulator(spec, elf, **opts)
    raise ValueError(f"unknown emulator backend {backend!r} (unicorn, renode or auto)")
