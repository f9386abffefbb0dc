"""Per-block cycle and instruction counting, in C when a compiler is at hand, else in Python.

Why two implementations with one interface: the C hook (``_blockhook.c``) is what makes the
emulator fast (tens of millions of instructions per second instead of a few), but it needs a
host C compiler the first time; the Python hook gives identical counts everywhere, only slower.
``POTNN_EMULATOR_PURE_PYTHON=1`` forces the Python one (the tests compare the two).

Both also keep a per-context profile: ``owner(address)`` says which context a block belongs to
(0 for code outside the model's layers, 1.. for each layer, ``INHERIT`` for shared code such as
the dot kernels, which counts for whoever called it), and every block's cycles and instructions,
and the lowest stack pointer, are added to the current context's slot (:meth:`profile`).

The compiled library is cached under ``$POTNN_CACHE_DIR`` (default ``~/.cache/potnn``)
``/emulator/blockhook-<hash>.so``, keyed by the source text, so an edited hook is rebuilt.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable

from unicorn import UC_HOOK_BLOCK, UC_HOOK_MEM_READ, Uc

from bench.atomic import write_bytes

from .cycles import WRITES_SP, BlockCost

ST_LIMIT = 1
ST_STACK = 2
ST_MISS = 4
ST_ALIGN = 8

_TABLE_SIZE = 1 << 15  # entries; a 64 KB flash holds at most ~32 K instructions

#: Block owner: the profile context of the code that called it (bh_entry.owner).
INHERIT = 0xFFFFFFFF


class _Entry(ctypes.Structure):
    _fields_ = [
        ("key", ctypes.c_uint64),
        ("cycles", ctypes.c_uint32),
        ("instrs", ctypes.c_uint32),
        ("fallthrough", ctypes.c_uint32),
        ("exit_penalty", ctypes.c_uint32),
        ("entry_penalty", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("owner", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


_MISS_FN = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32)


class _State(ctypes.Structure):
    _fields_ = [
        ("cycles", ctypes.c_uint64),
        ("instrs", ctypes.c_uint64),
        ("blocks", ctypes.c_uint64),
        ("instr_limit", ctypes.c_uint64),
        ("blk_cycles0", ctypes.c_uint64),
        ("blk_instrs0", ctypes.c_uint64),
        ("data_reads", ctypes.c_uint64),
        ("blk_addr", ctypes.c_uint32),
        ("blk_size", ctypes.c_uint32),
        ("prev_ft", ctypes.c_uint32),
        ("prev_pen", ctypes.c_uint32),
        ("prev_flags", ctypes.c_uint32),
        ("sp_reg", ctypes.c_uint32),
        ("sp_min", ctypes.c_uint32),
        ("stack_limit", ctypes.c_uint32),
        ("status", ctypes.c_uint32),
        ("mask", ctypes.c_uint32),
        ("data_penalty", ctypes.c_uint32),
        ("last_sp", ctypes.c_uint32),
        ("table", ctypes.POINTER(_Entry)),
        ("emu_stop", ctypes.c_void_p),
        ("reg_read", ctypes.c_void_p),
        ("miss", _MISS_FN),
        ("bad_addr", ctypes.c_uint64),
        ("bad_size", ctypes.c_uint32),
        ("bad_write", ctypes.c_uint32),
        ("bad_pc", ctypes.c_uint32),
        ("pc_reg", ctypes.c_uint32),
        ("ctx", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("prof_cycles", ctypes.POINTER(ctypes.c_uint64)),
        ("prof_instrs", ctypes.POINTER(ctypes.c_uint64)),
        ("prof_sp_min", ctypes.POINTER(ctypes.c_uint32)),
    ]


class _PyState:
    """Plain-Python twin of :class:`_State` for the fallback hook (ctypes fields are slow)."""

    __slots__ = ("cycles", "instrs", "blocks", "instr_limit", "blk_cycles0", "blk_instrs0", "data_reads",
                 "blk_addr", "blk_size", "prev_ft", "prev_pen", "prev_flags", "sp_reg", "sp_min",
                 "stack_limit", "status", "data_penalty", "last_sp", "bad_addr", "bad_size", "bad_write",
                 "bad_pc", "pc_reg", "ctx")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)


_lib_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_lib_error: str | None = None


def _cache_dir() -> Path:
    base = os.environ.get("POTNN_CACHE_DIR")
    if base:
        return Path(base) / "emulator"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "potnn" / "emulator"


def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def load_library() -> ctypes.CDLL | None:
    """Compile (once, cached) and load the C hook; None when impossible (reason in ``library_error``)."""
    global _lib, _lib_error
    with _lib_lock:
        if _lib is not None or _lib_error is not None:
            return _lib
        if os.environ.get("POTNN_EMULATOR_PURE_PYTHON"):
            _lib_error = "disabled by POTNN_EMULATOR_PURE_PYTHON"
            return None
        src = Path(__file__).with_name("_blockhook.c")
        try:
            text = src.read_bytes()
            tag = hashlib.sha256(text + platform.machine().encode() + platform.system().encode()).hexdigest()[:16]
            so = _cache_dir() / f"blockhook-{tag}.so"
            if not so.exists():
                cc = _compiler()
                if cc is None:
                    _lib_error = "no C compiler (cc/gcc/clang) on PATH"
                    return None
                so.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=so.parent) as tmp:
                    built = Path(tmp) / so.name
                    proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(built), str(src)],
                                          capture_output=True, text=True)
                    if proc.returncode != 0:
                        _lib_error = f"{cc} failed: {proc.stderr.strip()[:500]}"
                        return None
                    # another process may load the library while this one installs it
                    write_bytes(so, built.read_bytes())
            lib = ctypes.CDLL(str(so))
            lib.bh_insert.argtypes = [ctypes.POINTER(_State)] + [ctypes.c_uint32] * 8
            lib.bh_insert.restype = ctypes.c_int
            _lib = lib
        except OSError as exc:
            _lib_error = f"cannot build or load the C block hook: {exc}"
        return _lib


def library_error() -> str | None:
    """Why the C hook is not in use (None when it is, or was never tried)."""
    return _lib_error


def _uclib() -> ctypes.CDLL:
    from unicorn.unicorn_py3 import unicorn as _u  # the binding's own handle on libunicorn

    return _u.uclib


class BlockCounter:
    """Counts instructions and modelled cycles per executed block, and enforces limits.

    ``describe(addr, size)`` is called once per new block and returns its :class:`BlockCost`
    (or None, which makes the counter stop the run with ``ST_MISS``). ``on_illegal`` is
    called when a described block holds an instruction the core lacks. ``owner(addr)`` gives a
    block's profile context (below ``contexts``, or ``INHERIT``); without it every block is
    context 0.
    """

    def __init__(self, uc: Uc, describe: Callable[[int, int], BlockCost | None], *, sp_reg: int, pc_reg: int,
                 stack_limit: int, accelerate: bool | None = None,
                 owner: Callable[[int], int] | None = None, contexts: int = 1):
        self.uc = uc
        self._describe = describe
        self._owner = owner or (lambda _addr: 0)
        self._hooks: list[int] = []
        lib = load_library() if accelerate in (None, True) else None
        if accelerate is True and lib is None:
            raise RuntimeError(f"C block hook unavailable: {library_error()}")
        self.accelerated = lib is not None
        self._lib = lib
        self._st: _State | _PyState
        if lib is not None:
            self._st = _State()
            self._table = (_Entry * _TABLE_SIZE)()
            self._st.mask = _TABLE_SIZE - 1
            self._st.table = ctypes.cast(self._table, ctypes.POINTER(_Entry))
        else:
            self._st = _PyState()
        st = self._st
        st.sp_reg = sp_reg
        st.pc_reg = pc_reg
        st.sp_min = 0xFFFFFFFF
        st.stack_limit = stack_limit
        st.instr_limit = (1 << 64) - 1
        st.prev_ft = 0xFFFFFFFF
        self._py_table: dict[int, tuple[BlockCost, int]] = {}
        self.prof_cycles = (ctypes.c_uint64 * contexts)()
        self.prof_instrs = (ctypes.c_uint64 * contexts)()
        self.prof_sp_min = (ctypes.c_uint32 * contexts)(*([0xFFFFFFFF] * contexts))
        if lib is not None:
            st.prof_cycles = ctypes.cast(self.prof_cycles, ctypes.POINTER(ctypes.c_uint64))
            st.prof_instrs = ctypes.cast(self.prof_instrs, ctypes.POINTER(ctypes.c_uint64))
            st.prof_sp_min = ctypes.cast(self.prof_sp_min, ctypes.POINTER(ctypes.c_uint32))
            uclib = _uclib()
            st.emu_stop = ctypes.cast(uclib.uc_emu_stop, ctypes.c_void_p).value
            st.reg_read = ctypes.cast(uclib.uc_reg_read, ctypes.c_void_p).value
            self._miss_cb = _MISS_FN(self._miss)
            st.miss = self._miss_cb

    # ------------------------------------------------------------------ installation
    def install(self, data_penalty_ranges: list[tuple[int, int]]) -> None:
        """Attach the block hook, and data-read hooks on ``(begin, end)`` flash ranges."""
        if self._lib is not None:
            uclib = _uclib()
            ud = ctypes.c_void_p(ctypes.addressof(self._st))
            specs = [(UC_HOOK_BLOCK, self._lib.bh_block, 1, 0)]
            specs += [(UC_HOOK_MEM_READ, self._lib.bh_data_read, b, e) for b, e in data_penalty_ranges]
            for htype, fn, begin, end in specs:
                h = ctypes.c_size_t()
                err = uclib.uc_hook_add(self.uc._uch, ctypes.byref(h), htype,
                                        ctypes.cast(fn, ctypes.c_void_p), ud,
                                        ctypes.c_uint64(begin), ctypes.c_uint64(end))
                if err != 0:
                    raise RuntimeError(f"uc_hook_add failed ({err})")
                self._hooks.append(h.value)
        else:
            self._hooks.append(self.uc.hook_add(UC_HOOK_BLOCK, self._py_block))
            for b, e in data_penalty_ranges:
                self._hooks.append(self.uc.hook_add(UC_HOOK_MEM_READ, self._py_data_read, None, b, e))

    def install_checked(self, ranges: list[tuple[int, int]]) -> None:
        """Alignment checks on loads and stores in ``(begin, end)`` ranges (SRAM, peripherals).

        Why: both cores fault on a misaligned word or half-word access (QingKe V2A raises a
        load/store-misaligned exception, the Cortex-M0+ a HardFault) but Unicorn performs it;
        a packed table read at the wrong offset would otherwise give wrong answers silently.
        These hooks also make Unicorn keep the PC exact for accesses there, which the
        peripheral models need (SysTick reads mid-block, fault reports).
        """
        from unicorn import UC_HOOK_MEM_WRITE

        for b, e in ranges:
            if self._lib is not None:
                h = ctypes.c_size_t()
                ud = ctypes.c_void_p(ctypes.addressof(self._st))
                err = _uclib().uc_hook_add(self.uc._uch, ctypes.byref(h), UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE,
                                           ctypes.cast(self._lib.bh_align, ctypes.c_void_p), ud,
                                           ctypes.c_uint64(b), ctypes.c_uint64(e))
                if err != 0:
                    raise RuntimeError(f"uc_hook_add failed ({err})")
                self._hooks.append(h.value)
            else:
                self._hooks.append(self.uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._py_align, None, b, e))

    def _py_align(self, uc: Uc, access: int, address: int, size: int, value: int, _ud: object) -> None:
        if size > 1 and address & (size - 1):
            st = self._st
            if not st.status & ST_ALIGN:
                from unicorn import UC_MEM_WRITE

                st.bad_addr, st.bad_size, st.bad_write = address, size, int(access == UC_MEM_WRITE)
                st.bad_pc = uc.reg_read(st.pc_reg)
            st.status |= ST_ALIGN
            uc.emu_stop()

    # ------------------------------------------------------------------ table management
    def _insert(self, cost: BlockCost) -> None:
        owner = self._owner(cost.address)
        if self._lib is None:
            self._py_table[(cost.address << 24) | cost.size] = (cost, owner)
            return
        args = (cost.address, cost.size, cost.cycles, cost.instructions, cost.exit_penalty,
                cost.entry_penalty, cost.flags & WRITES_SP, owner)
        if self._lib.bh_insert(ctypes.byref(self._st), *args) != 0:
            self.flush()
            self._lib.bh_insert(ctypes.byref(self._st), *args)

    def flush(self) -> None:
        """Forget every block cost (the flash wait states changed, so costs must be redone)."""
        if self._lib is not None:
            ctypes.memset(self._table, 0, ctypes.sizeof(self._table))
        self._py_table.clear()

    def _miss(self, addr: int, size: int) -> None:
        try:
            cost = self._describe(addr, size)
        except Exception:  # never let an exception escape into C; the run stops with ST_MISS
            cost = None
        if cost is not None:
            self._insert(cost)

    # ------------------------------------------------------------------ Python fallback
    def _py_block(self, uc: Uc, address: int, size: int, _ud: object) -> None:
        st = self._st
        cycles0 = st.cycles
        if st.prev_flags & WRITES_SP:
            sp = uc.reg_read(st.sp_reg)
            st.last_sp = sp
            if sp < st.sp_min:
                st.sp_min = sp
            if sp < self.prof_sp_min[st.ctx]:
                self.prof_sp_min[st.ctx] = sp
            if sp < st.stack_limit:
                st.status |= ST_STACK
                uc.emu_stop()
        key = (address << 24) | size
        entry = self._py_table.get(key)
        if entry is None:
            self._miss(address, size)
            entry = self._py_table.get(key)
            if entry is None:
                st.status |= ST_MISS
                uc.emu_stop()
                return
        cost, owner = entry
        if address != st.prev_ft:
            st.cycles += st.prev_pen + cost.entry_penalty
        st.blk_addr = address
        st.blk_size = size
        st.blk_cycles0 = st.cycles
        st.blk_instrs0 = st.instrs
        st.cycles += cost.cycles
        st.instrs += cost.instructions
        st.blocks += 1
        st.prev_ft = (address + size) & 0xFFFFFFFF
        st.prev_pen = cost.exit_penalty
        st.prev_flags = cost.flags
        ctx = st.ctx if owner == INHERIT else owner
        if ctx != st.ctx:
            sp = uc.reg_read(st.sp_reg)
            if sp < self.prof_sp_min[ctx]:
                self.prof_sp_min[ctx] = sp
            st.ctx = ctx
        self.prof_cycles[ctx] += st.cycles - cycles0
        self.prof_instrs[ctx] += cost.instructions
        if st.instrs >= st.instr_limit:
            st.status |= ST_LIMIT
            uc.emu_stop()

    def _py_data_read(self, uc: Uc, access: int, address: int, size: int, value: int, _ud: object) -> None:
        self._st.cycles += self._st.data_penalty
        self.prof_cycles[self._st.ctx] += self._st.data_penalty
        self._st.data_reads += 1
        self._py_align(uc, access, address, size, value, _ud)

    # ------------------------------------------------------------------ state access
    @property
    def state(self) -> _State | _PyState:
        """The live counters (read them only while the core is stopped or from its own thread)."""
        return self._st

    def set_limit(self, instructions: int) -> None:
        self._st.instr_limit = min(instructions, (1 << 64) - 1)

    def set_data_penalty(self, cycles: int) -> None:
        self._st.data_penalty = cycles

    def profile(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Cycles and instructions per profile context so far (from the core thread: a consistent copy)."""
        return tuple(self.prof_cycles), tuple(self.prof_instrs)

    def profile_stack_min(self) -> tuple[int, ...]:
        """The lowest stack pointer seen in each context (0xFFFFFFFF: none seen)."""
        return tuple(self.prof_sp_min)

    def leave_context(self) -> None:
        """Charge what follows to context 0 until a block that has an owner runs (an inference ended)."""
        self._st.ctx = 0

    def clear_status(self) -> int:
        s = self._st.status
        self._st.status = 0
        return s

