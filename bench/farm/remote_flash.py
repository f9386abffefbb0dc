"""Flash a farm place: copy the ELF to the exporter host that has its probe and program it there.

The copy and the command go through labgrid's own SSH connection manager (``sshmanager``, the
one labgrid's drivers use for remote resources: ``rsync`` over ``ssh``, with labgrid's proxy
settings), and the exporter runs the bench's flasher (``bench.farm.program``). The place's tags
tune it: ``probe=<unique id>`` when the host has several probes, ``bench-python=<path>`` when
potnn is installed in a virtual environment there.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

from bench.farm.coordinator import FarmError, HeldPlace
from bench.flashers import FlashReport, Probe

#: Where images land on the exporter host, one folder per image digest (a re-flash reuses it).
REMOTE_ROOT = "/tmp/potnn-bench"


def flash_on_exporter(held: HeldPlace, board: str, elf: Path) -> FlashReport:
    """Program, verify and reset the place's board with ``elf``; the report the exporter printed."""
    if held.probe_host is None:
        raise FarmError(f"place {held.name} has no probe (a USBDebugger in its exporter config and a match for "
                        "it): add one, or pass --no-flash to use the firmware already on the board")
    from labgrid.driver.exception import ExecutionError
    from labgrid.util.ssh import sshmanager

    digest = hashlib.sha256(Path(elf).read_bytes()).hexdigest()[:16]
    remote = f"{REMOTE_ROOT}/{digest}/firmware.elf"
    command = [held.tags.get("bench-python", "python3"), "-m", "bench.farm.program", "--board", board,
               "--elf", remote]
    if "probe" in held.tags:
        command += ["--probe", held.tags["probe"]]
    try:
        conn = sshmanager.open(held.probe_host)
        conn.run_check(f"mkdir -p {shlex.quote(str(Path(remote).parent))}")
        conn.put_file(str(elf), remote)
        out = conn.run_check(shlex.join(command))
    except ExecutionError as e:
        why = next((ln for ln in reversed(e.stderr or []) if ln.strip()), e.msg)
        raise FarmError(f"flashing place {held.name} on {held.probe_host} failed: {why.strip()}") from None
    try:
        rep = json.loads(out[-1])
    except (IndexError, ValueError):
        raise FarmError(f"flashing place {held.name} on {held.probe_host}: no report from bench.farm.program "
                        "(is potnn installed there? set the place's tag bench-python=<its python>)") from None
    return FlashReport(probe=Probe(description=f"{rep['probe']} at {held.probe_host} (place {held.name})"),
                       address=int(rep["address"]), size=int(rep["size"]), verified=bool(rep["verified"]),
                       chip=rep.get("chip"))
