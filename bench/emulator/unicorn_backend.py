"""The default backend: the firmware ELF on Unicorn, with a cycle model and strict memory map.

How a run goes:
1. The ELF's load segments are written into a flash buffer the size of the board's flash,
   mapped at its link address and at every alias (all views share one host buffer, as on the chip).
   SRAM is mapped with the chip's exact size; where Unicorn's page size is larger than the
   SRAM (RISC-V: 4 KB pages, 2 KB SRAM) the rest of the page faults through a hook.
   Peripheral pages are MMIO-mapped and decoded by ``peripherals.Bus``; unknown registers fault.
2. A core thread resets the CPU (RV32EC: PC at the start of flash; ARMv6-M: SP and PC from
   the vector table there)
   and runs until a fault, a hang, or :meth:`close`.
3. Every basic block is costed once (capstone + ``cycles``), the per-block counting runs in C
   (``blockhook``), and the counters give the modelled cycle count returned by SysTick reads.
   The same hook charges each block to a layer of the model (``layers``): ``last_layers()``.
4. The UART is the loopback TCP server of ``serial_bridge``.

Faults (``emu.fault``) stop the core, then the serial socket is closed so a host blocked on a
read wakes up immediately.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from capstone import CS_ARCH_ARM, CS_ARCH_RISCV, CS_MODE_MCLASS, CS_MODE_RISCV32, CS_MODE_RISCVC, CS_MODE_THUMB, Cs
from unicorn import (
    UC_ARCH_ARM, UC_ARCH_RISCV, UC_HOOK_INTR, UC_HOOK_MEM_READ, UC_HOOK_MEM_UNMAPPED, UC_HOOK_MEM_WRITE,
    UC_HOOK_MEM_WRITE_PROT, UC_HOOK_MEM_FETCH_PROT, UC_HOOK_MEM_READ_PROT, UC_MEM_FETCH_UNMAPPED,
    UC_MEM_WRITE, UC_MEM_WRITE_UNMAPPED, UC_MODE_MCLASS, UC_MODE_RISCV32,
    UC_MODE_THUMB, UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_READ, Uc, UcError,
)
from unicorn import arm_const, riscv_const

from . import blockhook
from .api import Emulator, EmulatorStats
from .cycles import BlockCost, Insn, get_model
from bench.elf import EM_ARM, EM_RISCV

from .elfimage import ElfImage
from .faults import ElfLoadError, Fault, FaultKind
from .layers import LayerMap
from .machine import RV32EC, MachineSpec
from .peripherals import Bus, UnmodelledAccess, build_peripherals
from .serial_bridge import SerialBridge

_UNTIL = 0xFFFFFFF0  # an address no firmware executes: emu_start runs until stopped

#: Symbols that name the initial stack pointer in common RISC-V linker scripts.
_STACK_TOP_SYMBOLS = ("_eusrstack", "__stack_top", "_estack", "__StackTop", "_stack_top", "__stack", "_sp")


class UnicornEmulator(Emulator):
    """One emulated board running one ELF; see the module docstring.

    Options: ``hang_instructions`` (instructions without UART traffic that count as a hang;
    default from the board), ``rx_wait_s`` (how long one blocking RX wait lasts before the
    firmware's poll loop is resumed once), ``idle_polls`` (empty polls let through after a
    silent wait in the middle of a request, so the firmware's partial-frame timeout expires;
    default 1.25 x clock/8/50), ``accelerate`` (None: C hook if possible; False:
    pure Python), ``stack_limit`` (override the static-RAM end), ``ram_fill`` (byte SRAM holds
    at power-up; 0xA5 by default so a start-up that forgets to clear .bss shows), ``port``
    (TCP port; 0 = ephemeral), ``start`` (begin running at once; default True).
    """

    backend = "unicorn"

    def __init__(self, spec: MachineSpec, elf: str | Path, *, hang_instructions: int | None = None,
                 rx_wait_s: float = 0.25, idle_polls: int | None = None, accelerate: bool | None = None, stack_limit: int | None = None,
                 ram_fill: int = 0xA5, port: int = 0, start: bool = True, **unknown: Any):
        super().__init__()
        if unknown:
            raise TypeError(f"unknown emulator option(s): {', '.join(sorted(unknown))}")
        self.spec = spec
        self.image = ElfImage(elf)
        want = EM_RISCV if spec.arch == RV32EC else EM_ARM
        if self.image.machine != want:
            raise ElfLoadError(f"{self.image.path.name} is {self.image.machine}, but {spec.chip} needs {want}")
        self.image.check_fits(spec.flash_regions)
        self.model = get_model(spec.core)
        self.hang_instructions = int(hang_instructions or spec.hang_instructions)
        self.rx_wait_s = rx_wait_s
        # Enough empty polls for the firmware's partial-frame timeout (clock/8/50) to expire.
        self.idle_polls = idle_polls if idle_polls is not None else spec.clock_hz // 8 // 50 * 5 // 4
        self._ram_fill = ram_fill
        self._accelerate = accelerate
        self._ws = 0
        self._blocks: dict[int, BlockCost] = {}
        # (instructions, cycles, per-context cycles, per-context instructions) at each counter read
        self._reads: deque[tuple[int, int, tuple[int, ...], tuple[int, ...]]] = deque(maxlen=2)
        self._counter_reads = 0
        self._stop = False
        self._wall = 0.0
        self._t0: float | None = None
        self._thread: threading.Thread | None = None
        fault_sym = self.image.symbol(spec.fault_symbol) if spec.fault_symbol else None
        self._fault_addr = (fault_sym & ~1) if fault_sym is not None else None
        self.stack_limit = stack_limit if stack_limit is not None else self.image.static_ram_end(spec.ram_origin, spec.ram_size)
        self.bridge = SerialBridge(port=port)
        self.url = self.bridge.url
        try:
            self._build()
        except Exception:
            self.bridge.close()
            raise
        if start:
            self.start()

    # ================================================================== construction
    def _build(self) -> None:
        spec = self.spec
        if spec.arch == RV32EC:
            self.uc = Uc(UC_ARCH_RISCV, UC_MODE_RISCV32)
            self.cs = Cs(CS_ARCH_RISCV, CS_MODE_RISCV32 | CS_MODE_RISCVC)
            self._pc_reg, self._sp_reg = riscv_const.UC_RISCV_REG_PC, riscv_const.UC_RISCV_REG_SP
            self._thumb = 0
        else:
            self.uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
            self.uc.ctl_set_cpu_model(arm_const.UC_CPU_ARM_CORTEX_M0)
            self.cs = Cs(CS_ARCH_ARM, CS_MODE_THUMB | CS_MODE_MCLASS)
            self._pc_reg, self._sp_reg = arm_const.UC_ARM_REG_PC, arm_const.UC_ARM_REG_SP
            self._thumb = 1
        uc = self.uc
        self.page = uc.ctl_get_page_size()
        page = self.page
        if spec.flash_size % page:
            raise ElfLoadError(f"flash size {spec.flash_size} is not a multiple of the {page}-byte page")
        # Flash: one host buffer, mapped at every address the chip shows it (read/execute only).
        self._flash = ctypes.create_string_buffer(b"\xff" * spec.flash_size, spec.flash_size)
        for base, size in spec.flash_regions:
            uc.mem_map_ptr(base, size, UC_PROT_READ | UC_PROT_EXEC, ctypes.addressof(self._flash))
        for chunk in self.image.chunks:
            off = self._flash_offset(chunk.load_address)
            ctypes.memmove(ctypes.addressof(self._flash) + off, chunk.data, len(chunk.data))
        # SRAM: exactly its size; a page rounding remainder faults through a hook.
        mapped = (spec.ram_size + page - 1) // page * page
        uc.mem_map(spec.ram_origin, mapped, UC_PROT_ALL)
        uc.mem_write(spec.ram_origin, bytes([self._ram_fill]) * spec.ram_size)
        self._ram_end = spec.ram_origin + spec.ram_size
        # Peripherals.
        self.bus = Bus(build_peripherals(spec.chip, self, spec.peripherals, spec.regions), self, spec.counter_address)
        pages = self.bus.pages(page)
        for p in pages:
            uc.mmio_map(p, page, self._mmio_read, p, self._mmio_write, p)
        # Cycle counting (C hook when possible) and the flash data-read penalty.
        self.layers = LayerMap(self.image, self._canonical)
        self.counter = blockhook.BlockCounter(uc, self._describe, sp_reg=self._sp_reg, pc_reg=self._pc_reg,
                                              stack_limit=self.stack_limit, accelerate=self._accelerate,
                                              owner=self.layers.owner, contexts=self.layers.contexts)
        self.counter.install([(b, b + s - 1) for b, s in spec.flash_regions])
        self.counter.set_data_penalty(self.model.data_read_penalty(self._ws))
        # Precise PC in peripheral callbacks needs a memory hook on those addresses.
        self.counter.install_checked([(p, p + page - 1) for p in pages] + [(spec.ram_origin, self._ram_end - 1)])
        if mapped > spec.ram_size:
            uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._on_ram_tail, None, self._ram_end, spec.ram_origin + mapped - 1)
        uc.hook_add(UC_HOOK_MEM_UNMAPPED, self._on_unmapped)
        uc.hook_add(UC_HOOK_MEM_WRITE_PROT | UC_HOOK_MEM_READ_PROT | UC_HOOK_MEM_FETCH_PROT, self._on_prot)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)
        # Reset state.
        if spec.arch == RV32EC:  # execution starts at the first word of flash
            self._reset_pc = spec.flash_origin
            top = next((self.image.symbol(s) for s in _STACK_TOP_SYMBOLS if self.image.symbol(s) is not None), None)
            self.stack_top = top if top is not None else self._ram_end
        else:
            vec = spec.flash_origin  # the vector table: initial SP, reset vector
            sp = int.from_bytes(uc.mem_read(vec, 4), "little")
            pc = int.from_bytes(uc.mem_read(vec + 4, 4), "little")
            uc.reg_write(self._sp_reg, sp)
            self._reset_pc = pc & ~1
            self.stack_top = sp
            if not spec.in_ram(sp - 4):
                raise ElfLoadError(f"initial SP 0x{sp:08x} from the vector table is not in SRAM")

    def _flash_offset(self, address: int) -> int:
        for base, size in self.spec.flash_regions:
            if base <= address < base + size:
                return address - base
        raise ElfLoadError(f"0x{address:08x} is not in flash")

    # ================================================================== running
    def start(self) -> None:
        """Start the core thread (done by the constructor unless ``start=False``)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"unicorn-{self.spec.chip}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._t0 = time.perf_counter()
        self.counter.set_limit(self.hang_instructions)
        pc = self._reset_pc
        try:
            while True:
                try:
                    self.uc.emu_start(pc | self._thumb, _UNTIL)
                except UcError as exc:
                    if self.fault is None and not self._stop:
                        self._fault_from_uc_error(exc)
                status = self.counter.clear_status()
                if self.fault is not None or self._stop:
                    break
                if status & blockhook.ST_ALIGN:
                    st = self.counter.state
                    what = "store to" if st.bad_write else "load from"
                    self._set_fault(FaultKind.MISALIGNED, pc=int(st.bad_pc), addr=int(st.bad_addr),
                                    message=f"{st.bad_size}-byte {what} a misaligned address; the "
                                            f"{self.model.name} core faults on that (Unicorn would not)")
                    break
                if status & blockhook.ST_STACK and self.stack_limit > self._ram_end:
                    self._set_fault(FaultKind.RAM_OVERFLOW, pc=self._pc(), addr=self.stack_limit,
                                    message=self._ram_overflow_text())
                    break
                if status & blockhook.ST_STACK:
                    self._set_fault(FaultKind.STACK_OVERFLOW, pc=self._pc(),
                                    message=f"stack pointer went below the end of static RAM "
                                            f"(0x{self.stack_limit:08x}): the stack now overlaps .data/.bss; "
                                            f"{self.stack_top - self.counter.state.last_sp} bytes of stack needed, "
                                            f"{self.stack_top - self.stack_limit} available")
                    break
                if status & blockhook.ST_LIMIT:
                    st = self.counter.state
                    self._set_fault(FaultKind.HANG, pc=self._pc(),
                                    message=f"no UART traffic for {self.hang_instructions:,} instructions "
                                            f"(stuck here?)")
                    break
                if status & blockhook.ST_MISS:
                    if self.fault is None:
                        self._set_fault(FaultKind.INTERNAL, pc=self._pc(), message="a block could not be decoded")
                    break
                # emu_start returned without a reason we know: resume where the core stopped.
                pc = self._pc()
        except Exception as exc:  # a bug here must not leave the host blocked forever
            if self.fault is None:
                self._set_fault(FaultKind.INTERNAL, pc=None, message=f"{type(exc).__name__}: {exc}")
        finally:
            self._wall = time.perf_counter() - (self._t0 or time.perf_counter())
            self._done.set()
            self.bridge.close()

    def _pc(self) -> int:
        return self.uc.reg_read(self._pc_reg)

    def close(self) -> None:
        """Stop the core, close the serial port, wait for the core thread (idempotent)."""
        self._stop = True
        try:
            self.uc.emu_stop()
        except UcError:
            pass
        self.bridge.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.bridge.close()
        self._done.set()

    # ================================================================== faults
    def symbolize(self, pc: int | None) -> str | None:
        """Function containing ``pc``; alias addresses are mapped back to the linked ones."""
        if pc is None:
            return None
        sym = self.image.symbolize(pc)
        if sym is None:
            for base, size in self.spec.flash_regions:
                if base <= pc < base + size:
                    for other, _ in self.spec.flash_regions:
                        if other != base:
                            sym = self.image.symbolize(pc - base + other) or sym
        return sym

    def _set_fault(self, kind: FaultKind, pc: int | None, addr: int | None = None, message: str = "") -> None:
        if self.fault is not None:
            return
        try:
            sp = self.uc.reg_read(self._sp_reg)
        except UcError:
            sp = None
        st = self.counter.state if hasattr(self, "counter") else None
        self.fault = Fault(kind=kind, pc=pc, addr=addr, symbol=self.symbolize(pc), message=message, sp=sp,
                           instructions=int(st.instrs) if st else None, cycles=int(st.cycles) if st else None)

    def _fault_from_uc_error(self, exc: UcError) -> None:
        pc = self._pc()
        self._set_fault(FaultKind.CPU_EXCEPTION, pc=pc, message=f"unicorn stopped: {exc}")

    def _classify(self, address: int, write: bool) -> FaultKind:
        sp = self.uc.reg_read(self._sp_reg)
        below_ram = self.spec.ram_origin - 0x10000 <= address < self.spec.ram_origin
        if sp < self.spec.ram_origin + 64 and (below_ram or sp <= address < sp + 0x400):
            return FaultKind.STACK_OVERFLOW
        return FaultKind.UNMAPPED_WRITE if write else FaultKind.UNMAPPED_READ

    def _on_unmapped(self, uc: Uc, access: int, address: int, size: int, value: int, _ud: Any) -> bool:
        pc = self._pc()
        if access == UC_MEM_FETCH_UNMAPPED:
            self._set_fault(FaultKind.UNMAPPED_FETCH, pc=pc, addr=address,
                            message="the program counter left flash and SRAM (bad return address or function pointer?)")
            return False
        write = access == UC_MEM_WRITE_UNMAPPED
        if self._ram_end <= address < self.stack_limit:
            self._set_fault(FaultKind.RAM_OVERFLOW, pc=pc, addr=address, message=self._ram_overflow_text())
            return False
        kind = self._classify(address, write)
        what = "write to" if write else "read from"
        msg = f"{size}-byte {what} an address where {self.spec.chip} has no memory or peripheral"
        if kind != FaultKind.STACK_OVERFLOW and _peripheral_space(address):
            kind = FaultKind.UNMODELLED_PERIPHERAL
            msg = (f"{size}-byte {what} 0x{address:08x}: a peripheral the emulator does not model "
                   f"(add a model in bench/emulator/peripherals/ and list it in the board's "
                   f"[peripherals])")
        if kind == FaultKind.STACK_OVERFLOW:
            msg = f"the stack grew below SRAM (0x{self.spec.ram_origin:08x}); {what} 0x{address:08x}"
        self._set_fault(kind, pc=pc, addr=address, message=msg)
        return False

    def _ram_overflow_text(self) -> str:
        static = self.stack_limit - self.spec.ram_origin
        return (f".data + .bss end at 0x{self.stack_limit:08x}: {static} bytes of static RAM do not fit the "
                f"{self.spec.ram_size}-byte SRAM (built without the RAM budget check?)")

    def _on_ram_tail(self, uc: Uc, access: int, address: int, size: int, value: int, _ud: Any) -> None:
        write = access == UC_MEM_WRITE
        if self._ram_end <= address < self.stack_limit:
            self._set_fault(FaultKind.RAM_OVERFLOW, pc=self._pc(), addr=address, message=self._ram_overflow_text())
            uc.emu_stop()
            return
        self._set_fault(self._classify(address, write), pc=self._pc(), addr=address,
                        message=f"{'write to' if write else 'read from'} 0x{address:08x}, past the end of the "
                                f"{self.spec.ram_size}-byte SRAM")
        uc.emu_stop()

    def _on_prot(self, uc: Uc, access: int, address: int, size: int, value: int, _ud: Any) -> bool:
        pc = self._pc()
        if access == UC_MEM_WRITE or self.spec.in_flash(address):
            if self.spec.in_flash(address):
                self._set_fault(FaultKind.WRITE_TO_FLASH, pc=pc, addr=address,
                                message=f"{size}-byte store into flash (a pointer into const data?)")
                return False
        self._set_fault(FaultKind.UNMAPPED_FETCH if access not in (UC_MEM_WRITE,) else FaultKind.UNMAPPED_WRITE,
                        pc=pc, addr=address, message=f"access type {access} not permitted at 0x{address:08x}")
        return False

    def _on_intr(self, uc: Uc, intno: int, _ud: Any) -> None:
        pc = self._pc()
        if self.spec.arch == RV32EC:
            names = {0: "instruction address misaligned", 1: "instruction access fault", 2: "illegal instruction",
                     3: "breakpoint (ebreak)", 4: "load address misaligned", 5: "load access fault",
                     6: "store address misaligned", 7: "store access fault", 11: "environment call (ecall)"}
            kind = FaultKind.ILLEGAL_INSTRUCTION if intno == 2 else FaultKind.CPU_EXCEPTION
            msg = f"RISC-V exception {intno}: {names.get(intno, 'unknown cause')}"
        else:
            names = {1: "undefined instruction", 2: "SVC", 3: "prefetch abort", 4: "data abort (unaligned or bus error)",
                     7: "breakpoint (BKPT)", 8: "exception return", 18: "invalid state"}
            kind = FaultKind.ILLEGAL_INSTRUCTION if intno == 1 else FaultKind.CPU_EXCEPTION
            msg = f"ARM exception {intno}: {names.get(intno, 'unknown')}"
        self._set_fault(kind, pc=pc, message=msg + " (the bench firmware expects none)")
        uc.emu_stop()

    # ================================================================== blocks
    def _describe(self, addr: int, size: int) -> BlockCost | None:
        """Cost of a block seen for the first time (called from the block hook)."""
        spec = self.spec
        in_flash = spec.in_flash(addr)
        if not (in_flash or spec.in_ram(addr)):
            self._set_fault(FaultKind.UNMAPPED_FETCH, pc=addr, addr=addr,
                            message="execution left flash and SRAM")
            self.uc.emu_stop()
            return BlockCost(addr, size, 0, 0, 0, 0, 0, (0,), (addr,), "outside memory")
        if self._fault_addr is not None and self._canonical(addr) == self._canonical(self._fault_addr):
            self._set_fault(FaultKind.CPU_EXCEPTION, pc=addr, message=self._trap_details())
            self.uc.emu_stop()
        code = bytes(self.uc.mem_read(addr, size))
        insns = [Insn(i.address, i.size, i.mnemonic, i.op_str) for i in self.cs.disasm(code, addr)]
        decoded = sum(i.size for i in insns)
        cost = self.model.block_cost(insns, addr, size, in_flash, self._ws)
        if decoded < size:
            bad = addr + decoded
            self._set_fault(FaultKind.ILLEGAL_INSTRUCTION, pc=bad,
                            message=f"undecodable instruction bytes {code[decoded:decoded + 4].hex()}")
            self.uc.emu_stop()
        elif cost.illegal:
            bad = cost.illegal_pc if cost.illegal_pc is not None else addr
            self._set_fault(FaultKind.ILLEGAL_INSTRUCTION, pc=bad, message=cost.illegal)
            self.uc.emu_stop()
        self._blocks[(addr << 24) | size] = cost
        return cost

    def _canonical(self, addr: int) -> int:
        """Flash addresses seen through an alias, mapped to the link address."""
        for base, size in self.spec.flash_regions:
            if base <= addr < base + size:
                return addr - base + self.spec.flash_origin
        return addr

    def _trap_details(self) -> str:
        text = f"the firmware entered its trap handler {self.spec.fault_symbol}"
        try:
            if self.spec.arch == RV32EC:
                cause = self.uc.reg_read(riscv_const.UC_RISCV_REG_MCAUSE)
                epc = self.uc.reg_read(riscv_const.UC_RISCV_REG_MEPC)
                tval = self.uc.reg_read(riscv_const.UC_RISCV_REG_MTVAL)
                text += f" (mcause={cause:#x}, mepc={epc:#010x} {self.symbolize(epc) or ''}, mtval={tval:#x})"
        except UcError:
            pass
        return text

    def _position(self) -> tuple[int, int]:
        """(instructions, cycles) executed before the current instruction."""
        st = self.counter.state
        cost = self._blocks.get((st.blk_addr << 24) | st.blk_size)
        if cost is None:
            return int(st.blk_instrs0), int(st.blk_cycles0)
        idx = cost.offset_of(self._pc())
        return int(st.blk_instrs0) + idx, int(st.blk_cycles0) + cost.prefix[idx]

    # ================================================================== MachineContext
    def now_cycles(self) -> int:
        return self._position()[1]

    def on_counter_read(self) -> None:
        self._reads.append((*self._position(), *self.counter.profile()))
        self.counter.leave_context()
        self._counter_reads += 1

    def set_wait_states(self, ws: int) -> None:
        if ws != self._ws:
            self._ws = ws
            self.counter.flush()
            self.counter.set_data_penalty(self.model.data_read_penalty(ws))

    def uart_activity(self) -> None:
        self.counter.set_limit(int(self.counter.state.instrs) + self.hang_instructions)

    def uart_tx(self, byte: int) -> None:
        self.bridge.send(bytes((byte,)))

    def uart_rx_pop(self) -> int | None:
        return self.bridge.rx_pop()

    def uart_rx_ready(self) -> bool:
        return self.bridge.rx_ready()

    def uart_rx_wait(self, bounded: bool) -> bool:
        # The firmware is idle, polling an empty receiver: wait for the host rather than spin.
        # Waiting is not hanging, so the hang budget restarts afterwards.
        got = False
        while not self._stop and not self.bridge.closed:
            if self.bridge.wait_rx(self.rx_wait_s):
                got = True
                break
            if bounded:
                break
        self.uart_activity()
        if self._stop:
            self.uc.emu_stop()
        return got

    # ================================================================== MMIO
    def _mmio_read(self, uc: Uc, offset: int, size: int, page: int) -> int:
        try:
            return self.bus.read(page + offset, size)
        except UnmodelledAccess as exc:
            self._set_fault(FaultKind.UNMODELLED_PERIPHERAL, pc=self._pc(), addr=exc.address, message=str(exc))
        except Exception as exc:  # pragma: no cover - a bug in a peripheral model
            self._set_fault(FaultKind.INTERNAL, pc=self._pc(), addr=page + offset, message=f"{type(exc).__name__}: {exc}")
        uc.emu_stop()
        return 0

    def _mmio_write(self, uc: Uc, offset: int, size: int, value: int, page: int) -> None:
        try:
            self.bus.write(page + offset, size, value)
            return
        except UnmodelledAccess as exc:
            self._set_fault(FaultKind.UNMODELLED_PERIPHERAL, pc=self._pc(), addr=exc.address, message=str(exc))
        except Exception as exc:  # pragma: no cover - a bug in a peripheral model
            self._set_fault(FaultKind.INTERNAL, pc=self._pc(), addr=page + offset, message=f"{type(exc).__name__}: {exc}")
        uc.emu_stop()

    # ================================================================== results
    def last_inference(self) -> tuple[int, int] | tuple[None, None]:
        """(instructions, cycles) between the last two cycle-counter reads (one inference).

        ``(None, None)`` until the firmware has read the counter twice.
        """
        if len(self._reads) < 2:
            return None, None
        (i0, c0, _, _), (i1, c1, _, _) = self._reads
        return i1 - i0, c1 - c0

    def last_layers(self) -> dict[str, tuple[int, int]] | None:
        """Per layer function, (instructions, cycles) of the last inference (between the last two counter reads).

        Only the layers' own work (with the kernels they call); the rest of the inference window
        (potnn_predict's calls and argmax, the counter reads) is ``last_inference()`` minus their sum.
        None until the firmware has read the counter twice.
        """
        if len(self._reads) < 2:
            return None
        (_, _, c0, n0), (_, _, c1, n1) = self._reads
        return {name: (n1[i] - n0[i], c1[i] - c0[i]) for i, name in enumerate(self.layers.names, start=1)}

    def layer_stack(self) -> dict[str, int]:
        """Per layer function, the deepest stack seen while it ran (bytes below the top of the stack)."""
        low = self.counter.profile_stack_min()
        return {name: self.stack_top - low[i] for i, name in enumerate(self.layers.names, start=1)
                if low[i] != 0xFFFFFFFF}

    @property
    def stats(self) -> EmulatorStats:
        st = self.counter.state
        wall = self._wall if self._done.is_set() else (time.perf_counter() - self._t0 if self._t0 else 0.0)
        instrs = int(st.instrs)
        sp_min = int(st.sp_min)
        rcc = self.bus.by_name("RCC")
        hclk = rcc.hclk_hz() if rcc is not None and hasattr(rcc, "hclk_hz") else self.spec.clock_hz
        usart = self.bus.by_name("USART1")
        return EmulatorStats(
            backend=self.backend, instructions=instrs, cycles=int(st.cycles), blocks=int(st.blocks),
            wall_s=wall, instr_per_s=instrs / wall if wall > 0 else 0.0, hclk_hz=hclk, wait_states=self._ws,
            stack_bytes=(self.stack_top - sp_min) if sp_min != 0xFFFFFFFF else None,
            stack_top=self.stack_top, stack_limit=self.stack_limit,
            uart_tx_bytes=getattr(usart, "tx_bytes", 0), uart_rx_bytes=getattr(usart, "rx_bytes", 0),
            counter_reads=self._counter_reads, accelerated=self.counter.accelerated,
        )


def _peripheral_space(address: int) -> bool:
    """Cortex-M / QingKe peripheral and system regions (0x4000_0000-0x5FFF_FFFF, 0xE000_0000-)."""
    return 0x40000000 <= address < 0x60000000 or address >= 0xE0000000
