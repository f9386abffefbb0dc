"""Build the bench firmware for one board around one exported model header.

``build()`` compiles firmware/ (the protocol loop, the chip port, and the model header in its
own translation unit), links it with a linker script generated from the board file, and writes
``firmware.elf``, ``.bin``, ``.hex`` and a machine-readable ``build.json`` next to them.

Why the budget check works the way it does: a model that does not fit must be refused with the
numbers (needed vs available, for flash and for RAM including the stack), never linked into a
silently truncated image.  The real link uses the board's true region sizes, so the linker
itself refuses an overflow; when it does, a second "probe" link with oversized regions measures
what the image would need, and that is what the error reports.

The stack is measured, not assumed (bench.stack_usage): a first link with unbounded regions gives
the call graph, the compiler's stack-usage reports give each function's frame, and the real link
reserves the deepest path.  build.json records it as ``stack_bytes``.

On a board whose flash makes the core wait (``kernels_in_ram`` in its file: the CH32V003 at 48 MHz),
the model's packed kernels (``POTNN_RAMFUNC`` in the header) are linked into .data, which start-up
copies to SRAM, as many as the image still fits with: all of them, else all but the one doing the
fewest multiply-accumulates (the bundle's ``kernels``, most first; an empty ``POTNN_RAMFUNC_<name>``
keeps one in flash), and so on down to none. The kernels are a few hundred bytes that run for most of an
inference, and flash fetches, not instructions, bound them. Export does not count them as RAM (the build
only moves them into RAM that is free) and measures their flash as placed so (potnn.codegen.compiled), so
what export accepts still builds. build.json records their bytes in SRAM as ``ram_kernel_bytes`` and
their names as ``ram_kernels``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from intelhex import IntelHex
from potnn.codegen.compiled import RAM_KERNELS_DEFINE
from potnn.contract import model_hash

from bench.atomic import atomic_open, write_text
from bench.board import FIRMWARE_DIR, HOST_BOARD, REPO_ROOT, Board, load_board
from bench.elfsize import ImageSize, measure
from bench.exported import BenchModel, ModelFilesError, read_model
from bench.stack_usage import StackReport, StackUsageError, compile_frames, stack_report
from bench.toolchain import KINDS, find_toolchain, host_toolchain

__all__ = ["BuildError", "BudgetError", "BuildResult", "HostBuild", "build", "build_host",
           "model_hash", "OPT_LEVELS"]

OPT_LEVELS = ("Os", "O2", "O3")
BUILD_ROOT = REPO_ROOT / "build"
APP_SOURCES = ("app.c", "protocol.c", "model.c")
MCU_SOURCES = ("mem.c", "startup.c")
# -g: zig cc strips the symbol table without it; the size split, the mul/div check and the
# emulator all read symbols.  (Debug info never changes the generated code.)
CFLAGS = ("-std=c99", "-ffreestanding", "-fno-common", "-ffunction-sections", "-fdata-sections",
          "-Wall", "-Wextra", "-g")
LDFLAGS = ("-Wl,--gc-sections", "-Wl,--entry=bench_entry")
PROBE_REGION = 1 << 24        # region size for the measuring link: larger than any image
BUILD_FORMAT = 4              # bump when build.json or the build recipe changes meaning
#: Bounds on one compiler process (``_run``): no microcontroller image comes near them (the
#: largest ELF of a zoo build is under 1 MiB; a build takes seconds).
COMPILER_FILE_LIMIT = 64 << 20
COMPILER_TIME_LIMIT_S = 600


class BuildError(Exception):
    """The firmware did not build; the message is one line (details in build.log)."""


class BudgetError(BuildError):
    """The image does not fit the board; carries the numbers."""

    def __init__(self, board: Board, size: ImageSize, stack: int):
        self.board = board
        self.size = size
        self.stack_bytes = stack      # measured (bench.stack_usage)
        self.flash_needed = size.flash_bytes
        self.ram_needed = size.static_ram_bytes + stack
        firmware = size.flash_bytes - size.model_flash_bytes
        flash_verdict = "too big" if self.flash_needed > board.flash_size else "fits"
        ram_verdict = "too big" if self.ram_needed > board.ram_size else "fits"
        super().__init__(
            f"model does not fit {board.name}: "
            f"flash needs {self.flash_needed} B of {board.flash_size} B "
            f"(model {size.model_flash_bytes} B + firmware {firmware} B) - {flash_verdict}; "
            f"RAM needs {self.ram_needed} B of {board.ram_size} B "
            f"(.data {size.data_bytes} + .bss {size.bss_bytes} + stack {stack}, measured; "
            f"model buffers {size.model_ram_bytes} B) - {ram_verdict}; "
            f"export a smaller model (fewer channels, packed encodings) or pick a board with more "
            f"memory (potnn-bench boards)")

    @property
    def flash_over(self) -> bool:
        return self.flash_needed > self.board.flash_size

    @property
    def ram_over(self) -> bool:
        return self.ram_needed > self.board.ram_size


@dataclass(frozen=True)
class BuildResult:
    board: str
    toolchain: str            # e.g. "riscv64-unknown-elf-gcc 12.2.0 -Os"
    toolchain_kind: str       # "gnu" | "zig"
    toolchain_version: str
    opt: str
    elf: Path
    bin: Path
    hex: Path
    build_json: Path
    header: Path
    model_hash: int
    input_size: int
    num_classes: int
    flash_bytes: int          # image in flash
    flash_budget: int
    ram_bytes: int            # .data + .bss + reserved stack
    ram_budget: int
    static_ram_bytes: int     # .data + .bss
    stack_bytes: int          # stack reserved: the deepest path, measured (bench.stack_usage)
    model_stack_bytes: int    # ... of which potnn_predict's own
    firmware_stack_bytes: int  # the deepest stack with the model's frames counted as zero
    model_flash_bytes: int
    model_ram_bytes: int
    firmware_flash_bytes: int
    firmware_ram_bytes: int
    ram_checked: bool
    ram_kernel_bytes: int = 0  # bytes of packed kernels run from SRAM (the board asks and they fit; 0: flash)
    ram_kernels: tuple[str, ...] = ()  # their names
    cached: bool = False

    @property
    def model_hash_hex(self) -> str:
        return f"{self.model_hash:08x}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("cached")
        for key in ("elf", "bin", "hex", "build_json", "header"):
            d[key] = str(d[key])
        d["ram_kernels"] = list(self.ram_kernels)
        d["model_hash_hex"] = self.model_hash_hex
        d["format"] = BUILD_FORMAT
        return d


@dataclass(frozen=True)
class HostBuild:
    exe: Path
    header: Path
    model_hash: int
    input_size: int
    num_classes: int
    toolchain: str


def _defines(board_name: str, info: BenchModel, clock_hz: int, uart_base: int, baud: int,
             stack: int) -> list[str]:
    return [f"-DBENCH_BOARD={board_name}", f"-DBENCH_CLOCK_HZ={clock_hz}",
            f"-DBENCH_UART_BASE={uart_base:#x}", f"-DBENCH_UART_BAUD={baud}",
            f"-DBENCH_MODEL_HASH={info.hash:#010x}u", f"-DBENCH_INPUT_SIZE={info.input_size}",
            f"-DBENCH_NUM_CLASSES={info.num_classes}", f"-DBENCH_STACK_SIZE={stack}"]


Placement = tuple[str, ...] | None  # the kernels kept in flash while the others run from SRAM; None: all in flash


def _placements(info: BenchModel, kernels_in_ram: bool) -> list[Placement]:
    """Where the kernels may run, fastest first: all from SRAM, then without the kernel doing the fewest
    multiply-accumulates, and so on, then all from flash. A bundle exported without its kernel list (before
    potnn wrote one) has all or none."""
    if not kernels_in_ram:
        return [None]
    names = [str(k.get("name")) for k in info.manifest.get("kernels", []) if isinstance(k, dict)]
    names = [n for n in names if re.fullmatch(r"potnn_\w+", n)]   # most multiply-accumulates first; C names only
    return [tuple(names[n:]) for n in range(len(names), 0, -1)] + [None] if names else [(), None]


def _placement_defines(placement: Placement) -> list[str]:
    if placement is None:
        return []
    return [RAM_KERNELS_DEFINE, *(f"-DPOTNN_RAMFUNC_{name}=" for name in placement)]


def _linker_script(board: Board, *, probe: bool, stack: int) -> str:
    """firmware/link.ld.in with the board's numbers; ``probe`` makes the regions too big to overflow."""
    fields = {
        "FLASH_ORIGIN": f"{board.flash_origin:#010x}",
        "FLASH_REGION": str(PROBE_REGION if probe else board.flash_size),
        "RAM_ORIGIN": f"{board.ram_origin:#010x}",
        "RAM_REGION": str(PROBE_REGION if probe else board.ram_size),
        "RAM_SIZE": str(board.ram_size),
        "STACK_SIZE": str(0 if probe else stack),
        "CHECK_RAM": "0" if probe else "1",
    }
    text = (FIRMWARE_DIR / "link.ld.in").read_text()
    for key, value in fields.items():
        text = text.replace(f"@{key}@", value)
    if "@" in text.split("*/", 1)[-1]:
        raise BuildError("firmware/link.ld.in has a field bench/build.py does not fill")
    return text


def _fingerprint(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _firmware_sources_digest() -> str:
    files = sorted(p for p in FIRMWARE_DIR.rglob("*") if p.is_file() and p.suffix in (".c", ".h", ".in"))
    return _fingerprint(*(f"{p.relative_to(FIRMWARE_DIR)}".encode() + p.read_bytes() for p in files))


def _bounded(argv: list[str]) -> list[str]:
    """``argv`` behind a shell that first sets the file-size bound (``COMPILER_FILE_LIMIT``).

    Why a shell and not ``preexec_fn``: a Python hook in the child makes ``subprocess`` fork the
    whole interpreter, and a process holding gRPC threads (labgrid's client, ``--place``) has
    its fork handlers crash such children now and then (SIGSEGV before the compiler starts). The
    shell's ``ulimit -f`` counts 512-byte blocks (POSIX); ``exec`` leaves the compiler in its place.
    """
    if os.name != "posix":    # Windows: no output bound (the time bound still holds)
        return argv
    return ["/bin/sh", "-c", f'ulimit -f {COMPILER_FILE_LIMIT // 512} && exec "$@"', argv[0], *argv]


def _run(argv: list[str], log: Path) -> subprocess.CompletedProcess[str]:
    """Run one compiler command, bounded in output size and time; its output goes to ``log``.

    Why bounded: a header is code (README, "Trust"), and one line such as ``.space 1<<34`` or an
    array of ``1<<(1<<34)`` bytes makes the assembler write gigabytes for minutes before any error.
    Past a bound the build stops at once with one line that says so.
    """
    try:
        proc = subprocess.run(_bounded(argv), capture_output=True, text=True, check=False,
                              timeout=COMPILER_TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        with open(log, "a") as f:
            f.write("$ " + " ".join(argv) + f"\n[stopped after {COMPILER_TIME_LIMIT_S} s]\n\n")
        raise BuildError(f"build stopped: the compiler ran past {COMPILER_TIME_LIMIT_S} s (a header or board file "
                         f"that asks for that much work cannot fit a microcontroller); full log: {log}") from None
    with open(log, "a") as f:
        f.write("$ " + " ".join(argv) + "\n" + proc.stdout + proc.stderr + f"[exit {proc.returncode}]\n\n")
    why = (f"the header or board file asks for more memory than any microcontroller has, e.g. a huge array or "
           f".space); full log: {log}")
    if proc.returncode != 0 and re.search(r"File size limit exceeded|File too large", proc.stdout + proc.stderr):
        raise BuildError(f"build stopped: the compiler wrote a file past {COMPILER_FILE_LIMIT >> 20} MiB ({why}")
    if proc.returncode < 0 and not (proc.stdout + proc.stderr).strip():
        # zig, compiling several files at once, dies by SIGABRT without a word when one of them
        # passes the file bound (with the others cached it says "File too large" instead).
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise BuildError(f"build stopped: the compiler was killed by {name} without a message, as zig is when a file "
                         f"it writes passes {COMPILER_FILE_LIMIT >> 20} MiB (most likely {why}")
    return proc


def _first_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    for line in lines:
        if re.search(r"(^|[\s:])(fatal )?error:", line):
            return line
    return lines[-1] if lines else f"exit status {proc.returncode}"


def _write_images(board: Board, elf: Path) -> tuple[Path, Path]:
    """BIN and HEX of the flash contents at the flasher's address (the same bytes the flashers write)."""
    from bench.flashers.base import FlashError
    from bench.flashers.image import FlashImage

    try:
        image = FlashImage.from_elf(elf, board.flash_load, board.flash_size, alias_base=board.link_alias)
    except FlashError as e:
        raise BuildError(str(e)) from None
    bin_path, hex_path = elf.with_suffix(".bin"), elf.with_suffix(".hex")
    image.write_bin(bin_path)
    hex_image = IntelHex()
    hex_image.frombytes(image.data, offset=image.address)
    with atomic_open(hex_path, "w") as f:
        hex_image.write_hex_file(f, byte_count=16)
    return bin_path, hex_path


def default_out_dir(board: str, kind: str, opt: str, info: BenchModel) -> Path:
    return BUILD_ROOT / f"{board}-{kind}-{opt}-{info.hash_hex}"


def build(board: str | Board, header: str | Path, out_dir: str | Path | None = None, *,
          opt: str = "Os", toolchain: str | None = None, check_ram: bool = True,
          force: bool = False) -> BuildResult:
    """Build the bench firmware for ``board`` around ``header``; refuse an image that does not fit.

    ``toolchain``: "gnu", "zig" or None (first available).  ``check_ram=False`` links a model
    whose static RAM leaves less than the reserved stack (or overflows RAM) anyway, for tests of
    run-time stack/RAM faults; such an image is marked ``ram_checked: false``.  A build whose
    inputs (sources, board, header, compiler, options) are unchanged is reused unless ``force``.
    """
    b = board if isinstance(board, Board) else load_board(board)
    if opt not in OPT_LEVELS:
        raise BuildError(f"unknown optimisation level {opt!r}; choose one of {', '.join(OPT_LEVELS)}")
    try:
        info = read_model(header)
    except ModelFilesError as e:
        raise BuildError(str(e)) from None
    tc = find_toolchain(b, toolchain)
    out = Path(out_dir) if out_dir is not None else default_out_dir(b.name, tc.kind, opt, info)
    out.mkdir(parents=True, exist_ok=True)
    elf = out / "firmware.elf"
    build_json = out / "build.json"

    # Two runs at once may build into the same directory (the default one is per board, model,
    # compiler and options): one builds, the other waits and then reuses that build.
    with _build_lock(out):
        fingerprint = _fingerprint(str(BUILD_FORMAT), _firmware_sources_digest(),
                                   json.dumps(b.raw, sort_keys=True, default=str),
                                   info.header.read_bytes(), " ".join(tc.cc), tc.version, opt,
                                   str(check_ram), RAM_KERNELS_DEFINE)
        if not force and build_json.exists() and elf.exists():
            try:
                old = json.loads(build_json.read_text())
            except ValueError:
                old = {}
            if old.get("fingerprint") == fingerprint:
                return _result_from_json(old, cached=True)

        for stale in ("firmware.elf", "firmware.bin", "firmware.hex", "build.json", "probe.elf"):
            (out / stale).unlink(missing_ok=True)     # a failed build must not leave an old image behind
        shutil.copyfile(info.header, out / "potnn_model.h")
        log = out / "build.log"
        log.write_text("")
        chip_dir = FIRMWARE_DIR / "chips" / b.chip
        sources = [str(FIRMWARE_DIR / s) for s in APP_SOURCES + MCU_SOURCES] + [str(chip_dir / "chip.c")]
        compile_line = [*tc.cc, *tc.cflags, *CFLAGS, f"-{opt}", f"-I{out}", f"-I{FIRMWARE_DIR}", f"-I{chip_dir}"]

        def compile_with(stack: int, placement: Placement) -> list[str]:
            return [*compile_line, *_defines(b.name, info, b.clock_hz, b.uart.base, b.uart.baud, stack),
                    *_placement_defines(placement)]

        def link(script_name: str, probe: bool, target: Path, stack: int,
                 placement: Placement) -> subprocess.CompletedProcess[str]:
            script = out / script_name
            script.write_text(_linker_script(b, probe=probe, stack=stack))
            mapfile = [f"-Wl,-Map,{target.with_suffix('.map')}"] if tc.kind == "gnu" else []  # zig cc has no -Map
            return _run([*compile_with(stack, placement), *LDFLAGS, *tc.ldflags, f"-Wl,-T,{script}", *mapfile,
                         "-o", str(target), *sources, *tc.libs], log)

        probe_elf = out / "probe.elf"
        for placement in _placements(info, b.kernels_in_ram):   # kernels in SRAM only while the image fits
            probe = link("probe.ld", probe=True, target=probe_elf, stack=0, placement=placement)
            if probe.returncode != 0:
                raise BuildError(f"build failed for {b.name} ({_first_error(probe)}); full log: {log}")
            stack = _measure_stack(probe_elf, compile_with(0, placement), tc.kind, sources, out)
            size = measure(probe_elf, b.flash_origin, b.ram_origin)
            if size.flash_bytes <= b.flash_size and size.static_ram_bytes + stack.total <= b.ram_size:
                break
        if size.flash_bytes > b.flash_size or (check_ram and size.static_ram_bytes + stack.total > b.ram_size):
            raise BudgetError(b, size, stack.total)
        proc = link("link.ld", probe=not check_ram, target=elf, stack=stack.total, placement=placement)
        if proc.returncode != 0:
            raise BuildError(f"build failed for {b.name} ({_first_error(proc)}); full log: {log}")
        probe_elf.unlink()
        size = measure(elf, b.flash_origin, b.ram_origin)
        bin_path, hex_path = _write_images(b, elf)

        result = BuildResult(
            board=b.name, toolchain=tc.describe(opt), toolchain_kind=tc.kind, toolchain_version=tc.version,
            opt=opt, elf=elf, bin=bin_path, hex=hex_path, build_json=build_json, header=info.header.resolve(),
            model_hash=info.hash, input_size=info.input_size, num_classes=info.num_classes,
            flash_bytes=size.flash_bytes, flash_budget=b.flash_size,
            ram_bytes=size.static_ram_bytes + stack.total, ram_budget=b.ram_size,
            static_ram_bytes=size.static_ram_bytes, stack_bytes=stack.total,
            model_stack_bytes=stack.model, firmware_stack_bytes=stack.firmware,
            model_flash_bytes=size.model_flash_bytes, model_ram_bytes=size.model_ram_bytes,
            firmware_flash_bytes=size.flash_bytes - size.model_flash_bytes,
            firmware_ram_bytes=size.static_ram_bytes - size.model_ram_bytes,
            ram_checked=check_ram, ram_kernel_bytes=size.model_ram_code_bytes, ram_kernels=size.ram_kernels)
        record = result.to_json()
        record["fingerprint"] = fingerprint
        write_text(build_json, json.dumps(record, indent=2) + "\n")   # a killed build leaves no half file
        return result


def _measure_stack(elf: Path, compile_line: list[str], kind: str, sources: list[str], out: Path) -> StackReport:
    """The stack of the linked ``elf``, from the frames the compiler reports for ``sources``."""
    try:
        return stack_report(elf, compile_frames(compile_line, kind, sources, out))
    except StackUsageError as e:
        raise BuildError(str(e)) from None


@contextlib.contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` while building (POSIX ``flock``; no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:       # Windows: no concurrent-run protection
        yield
        return
    with open(out / ".build.lock", "w") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _result_from_json(d: dict[str, Any], cached: bool) -> BuildResult:
    fields = {k: d[k] for k in BuildResult.__dataclass_fields__ if k in d and k != "cached"}
    for key in ("elf", "bin", "hex", "build_json", "header"):
        fields[key] = Path(fields[key])
    fields["ram_kernels"] = tuple(fields.get("ram_kernels", ()))
    return BuildResult(**fields, cached=cached)


def build_host(header: str | Path, out_dir: str | Path | None = None, *,
               sanitize: bool = False) -> HostBuild:
    """The same application for this computer; its UART is a pty (chips/host/chip.c)."""
    try:
        info = read_model(header)
    except ModelFilesError as e:
        raise BuildError(str(e)) from None
    tc = host_toolchain()
    out = Path(out_dir) if out_dir is not None else BUILD_ROOT / f"host-{info.hash_hex}{'-san' if sanitize else ''}"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(info.header, out / "potnn_model.h")
    chip_dir = FIRMWARE_DIR / "chips" / "host"
    exe = out / "bench-host"
    log = out / "build.log"
    log.write_text("")
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"] if sanitize else []
    argv = [*tc.cc, "-std=c99", "-O2", "-g", "-Wall", "-Wextra", *san, f"-I{out}", f"-I{FIRMWARE_DIR}",
            f"-I{chip_dir}", *_defines(HOST_BOARD, info, 0, 0, 0, 0),
            *(str(FIRMWARE_DIR / s) for s in APP_SOURCES), str(chip_dir / "chip.c"), "-o", str(exe)]
    proc = _run(argv, log)
    if proc.returncode != 0:
        raise BuildError(f"host build failed ({_first_error(proc)}); full log: {log}")
    return HostBuild(exe=exe, header=info.header.resolve(), model_hash=info.hash, input_size=info.input_size,
                     num_classes=info.num_classes, toolchain=tc.describe("O2"))


# --- CLI: potnn-bench build ----------------------------------------------------------------

def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``potnn-bench build``."""
    p = subparsers.add_parser("build", help="build the bench firmware for a board around a model header")
    p.add_argument("--board", required=True, help="board name (see `potnn-bench boards`) or host")
    p.add_argument("--header", required=True, type=Path, help="model header written by potnn.export")
    p.add_argument("--out", type=Path, help="output directory (default: build/<board>-<toolchain>-<opt>-<hash>)")
    p.add_argument("--opt", choices=OPT_LEVELS, default="Os", help="optimisation level (default Os)")
    p.add_argument("--toolchain", choices=KINDS, help="gnu or zig (default: first available, gnu first)")
    p.add_argument("--no-ram-check", action="store_true",
                   help="link even if static RAM leaves less than the reserved stack (fault tests)")
    p.add_argument("--force", action="store_true", help="rebuild even if an identical build exists")
    p.set_defaults(func=_cmd_build)


def _pct(used: int, budget: int) -> str:
    return f"{100.0 * used / budget:5.1f} %"


def _cmd_build(args: argparse.Namespace) -> int:
    if args.board == HOST_BOARD:
        hb = build_host(args.header, args.out)
        print(f"built host firmware with {hb.toolchain}: {hb.exe}")
        print(f"  model {hb.model_hash:08x}  input {hb.input_size}  classes {hb.num_classes}")
        print("  run it; it prints 'PTY <path>' and serves the bench protocol on that pty")
        return 0
    r = build(args.board, args.header, args.out, opt=args.opt, toolchain=args.toolchain,
              check_ram=not args.no_ram_check, force=args.force)
    print(f"built {r.board} with {r.toolchain}{' (cached)' if r.cached else ''}")
    print(f"  flash {r.flash_bytes:6d} / {r.flash_budget} B ({_pct(r.flash_bytes, r.flash_budget)})"
          f"   model {r.model_flash_bytes} B + firmware {r.firmware_flash_bytes} B")
    print(f"  RAM   {r.ram_bytes:6d} / {r.ram_budget} B ({_pct(r.ram_bytes, r.ram_budget)})"
          f"   .data+.bss {r.static_ram_bytes} B (model {r.model_ram_bytes} B) + stack {r.stack_bytes} B "
          f"(measured; potnn_predict {r.model_stack_bytes} B)")
    if r.ram_kernel_bytes:
        print(f"  packed kernels run from SRAM: {', '.join(r.ram_kernels)} ({r.ram_kernel_bytes} B of the model's "
              "RAM, copied there at start-up: the board's flash has wait states)")
    if not r.ram_checked:
        print("  warning: RAM budget not checked (--no-ram-check)")
    print(f"  model {r.model_hash_hex}  input {r.input_size}  classes {r.num_classes}")
    print(f"  {r.elf}  (+ .bin .hex build.json)")
    return 0
