"""Run an exported header on the host: compile it with a small driver and feed it images.

This is how potnn checks its own C against `potnn.simulate` (and how a user can check an export
before flashing anything). The driver reads raw images from stdin and writes, per image, the
returned class and the logits as little-endian int32 to stdout. It runs each image three ways: from
its own buffer (copied into the arena), from potnn_input_buffer() (as the bench firmware does, the
model reusing those bytes) and from there with NULL logits (the logits in the arena); the three must
agree, else it stops with a message on stderr.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

STRICT_FLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
                "-fno-sanitize-recover=all")

_DRIVER = r"""
#include <stdio.h>
#include <stdint.h>
#include <string.h>

int main(void)
{
    static uint8_t image[POTNN_INPUT_SIZE];
    int32_t logits[POTNN_NUM_CLASSES], in_place[POTNN_NUM_CLASSES];
    uint8_t *const buffer = potnn_input_buffer();
    while (fread(image, 1, sizeof image, stdin) == sizeof image) {
        const int32_t cls = potnn_predict(image, logits);
        memcpy(buffer, image, sizeof image);
        const int32_t cls_in_place = potnn_predict(buffer, in_place);
        memcpy(buffer, image, sizeof image);
        const int32_t cls_no_logits = potnn_predict(buffer, NULL);
        for (int k = 0; k < POTNN_NUM_CLASSES; k++)
            if (in_place[k] != logits[k]) {
                fprintf(stderr, "logit %d from potnn_input_buffer() is %ld, from the caller's buffer %ld\n",
                        k, (long)in_place[k], (long)logits[k]);
                return 2;
            }
        if (cls_in_place != cls || cls_no_logits != cls) {
            fprintf(stderr, "class %ld from the caller's buffer, %ld in place, %ld with NULL logits\n",
                    (long)cls, (long)cls_in_place, (long)cls_no_logits);
            return 2;
        }
        if (fwrite(&cls, sizeof cls, 1, stdout) != 1 || fwrite(logits, sizeof logits, 1, stdout) != 1)
            return 1;
    }
    return 0;
}
"""


class HostBuildError(RuntimeError):
    """The host compiler rejected the header (the message holds its diagnostics)."""


def compile_header(header: str | Path, out: str | Path, flags: tuple[str, ...] = STRICT_FLAGS,
                   cc: str = "gcc") -> Path:
    """Build the driver around `header` into the executable `out`."""
    if shutil.which(cc) is None:
        raise HostBuildError(f"host C compiler {cc!r} not found: install gcc (apt-get install gcc)")
    out = Path(out)
    driver = out.with_suffix(".driver.c")
    driver.write_text(_DRIVER)
    cmd = [cc, *flags, "-include", str(Path(header).resolve()), str(driver), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HostBuildError(f"{' '.join(cmd)}\n{proc.stderr}")
    return out


def run_executable(exe: str | Path, images: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes [N] and logits [N, K] (int32) from a driver built by `compile_header`."""
    data = np.ascontiguousarray(images, dtype=np.uint8).tobytes()
    proc = subprocess.run([str(exe)], input=data, capture_output=True)
    if proc.returncode != 0:
        raise HostBuildError(f"{exe} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
    rows = np.frombuffer(proc.stdout, dtype="<i4").reshape(-1, 1 + num_classes)
    if len(rows) != len(images):
        raise HostBuildError(f"{exe} answered {len(rows)} of {len(images)} images")
    return rows[:, 0].copy(), rows[:, 1:].copy()


def run_header(header: str | Path, images: np.ndarray, num_classes: int,
               flags: tuple[str, ...] = STRICT_FLAGS) -> tuple[np.ndarray, np.ndarray]:
    """Compile `header` for the host (strict warnings, ASan and UBSan by default) and run it on `images`."""
    with tempfile.TemporaryDirectory(prefix="potnn-host-") as tmp:
        exe = compile_header(header, Path(tmp) / "predict", flags)
        return run_executable(exe, images, num_classes)
