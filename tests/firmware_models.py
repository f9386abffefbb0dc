"""Model headers for the firmware and build tests.

``export_tiny``: a small real potnn model (conv 3x3/2 + fp130 linear, 16x16 -> 10 classes, for
``mnist16``), exported with ``potnn.export`` (header and bundle) and checked against
``potnn.simulate`` - what the bench builds in practice, small enough for every board.

``synthetic_header``: a header that follows the export contract but is written here, for the
cases an exporter must never produce (a weight table bigger than flash, buffers bigger than
RAM, a multiplication in the inference code) - the build and the checker must catch them anyway.
``write_bundle`` puts the bundle the bench reads beside such a header (a manifest, no program).
``rewrite_header`` replaces an exported header's code and re-ties its bundle to it: firmware
whose answers differ from ``potnn.simulate``, as a bug in the C would.

``mnist_for_subprocess``: the MNIST test images and the environment with which a ``potnn-bench``
subprocess finds them too (``export_tiny``'s bundle names ``mnist16``, so a CLI run of it streams them).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import pytest

import potnn
from potnn import PoTConv2d, PoTLinear
from potnn.bundle import FORMAT, bundle_path, encode_bundle, load_bundle
from potnn.contract import EXPORT_VERSION, header_hash
from potnn.data import DatasetError, load_mnist
from potnn.program import IntProgram, TensorSpec

SHARED_MNIST = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "mnist"


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = PoTConv2d(1, 4, 3, stride=2, padding=1)
        self.fc = PoTLinear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        x = x.view(x.size(0), -1)
        return self.fc(x)


@dataclass
class ExportedModel:
    header: Path
    model: nn.Module
    images: np.ndarray        # uint8 [N, 1, 16, 16]
    reference: np.ndarray     # potnn.simulate(model, images): int32 [N, 10]


def export_tiny(directory: Path, n_images: int = 32, seed: int = 0) -> ExportedModel:
    torch.manual_seed(seed)
    model = TinyNet().eval()
    config = potnn.Config(mean=0.13, std=0.31, input_h=16, input_w=16, input_channels=1,
                          layer_encodings={"fc": "fp130"}, dataset="mnist16")
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_images, 1, 16, 16), dtype=np.uint8)
    images[0], images[1] = 0, 255
    x = (torch.from_numpy(images).float() / 255 - 0.13) / 0.31
    potnn.calibrate(model, [(x,)], config)
    potnn.prepare_qat(model, config)
    header = Path(directory) / "tiny.h"
    potnn.export(model, header, config)
    return ExportedModel(header, model, images, potnn.simulate(model, images))


def synthetic_header(path: Path, *, weight_bytes: int = 64, ram_words: int = 4,
                     multiply: bool = False, input_size: int = 256, classes: int = 10) -> Path:
    """A contract-following header whose tables and buffers have the given sizes.

    Every weight and buffer word is used, so no compiler can drop them.  ``multiply`` puts a
    data-dependent multiplication in potnn_predict (the RV32EC checker must find it).
    ``input_size`` must be at least 256 (the weights index the image modulo 256).
    """
    weights = ",".join(str((i * 37 + 11) & 0xFF) for i in range(weight_bytes))
    mix = "acc = acc * (int32_t)input[i & 255u] + 1;" if multiply else "acc += (int32_t)(input[i & 255u] ^ potnn_w[i]);"
    path.write_text(f"""/* potnn export v{EXPORT_VERSION}: synthetic header for bench tests */
#include <stdint.h>
#define POTNN_EXPORT_VERSION {EXPORT_VERSION}
#define POTNN_INPUT_C 1
#define POTNN_INPUT_H {input_size // 16}
#define POTNN_INPUT_W 16
#define POTNN_INPUT_SIZE {input_size}
#define POTNN_NUM_CLASSES {classes}
#define POTNN_RAM_BYTES {4 * ram_words}
#define POTNN_WEIGHT_BYTES {weight_bytes}
int potnn_predict(const uint8_t *input, int32_t *logits);
uint8_t *potnn_input_buffer(void);
static const uint8_t potnn_w[{weight_bytes}] = {{ {weights} }};
static int32_t potnn_buf[{ram_words}];
static uint8_t potnn_in[{input_size} + 2];
uint8_t *potnn_input_buffer(void)
{{
    return potnn_in;
}}
int potnn_predict(const uint8_t *input, int32_t *logits)
{{
    uint32_t i;
    int32_t acc = 0;
    int k;
    for (i = 0; i < {weight_bytes}u; i++)
        {mix}
    for (i = 0; i < {ram_words}u; i++)
        potnn_buf[i] = acc + (int32_t)i;
    if (logits)
        for (k = 0; k < POTNN_NUM_CLASSES; k++)
            logits[k] = potnn_buf[(uint32_t)k < {ram_words}u ? k : 0];
    return 0;
}}
""")
    write_bundle(path, (1, input_size // 16, 16), classes)
    return path


def write_bundle(header: Path, input_shape: tuple[int, ...], num_classes: int) -> Path:
    """The bundle beside a hand-written header: its manifest (what the bench builds from), an empty program."""
    data = Path(header).read_bytes()
    manifest = {
        "format": FORMAT, "export_version": EXPORT_VERSION, "header": Path(header).name,
        "header_sha256": hashlib.sha256(data).hexdigest(), "model_hash": header_hash(data),
        "input_shape": list(input_shape), "input_layout": "CHW" if len(input_shape) == 3 else "CL",
        "input_size": int(np.prod(input_shape)), "num_classes": num_classes, "class_names": None,
        "mean": [0.0] * input_shape[0], "std": [1.0] * input_shape[0], "encodings": {}, "ram_bytes": None,
        "flash_bytes": None, "stack_bytes": None, "dataset": None, "potnn_version": None,
    }
    program = IntProgram({"input": TensorSpec("input", tuple(input_shape), 0, 255)}, [], "input", "input")
    path = bundle_path(header)
    path.write_bytes(encode_bundle(manifest, program))
    return path


def rewrite_header(header: Path, text: str) -> None:
    """Give an exported header other code, and its bundle the new header's hashes (the program stays)."""
    bundle = load_bundle(bundle_path(header))
    Path(header).write_text(text)
    data = Path(header).read_bytes()
    manifest = dict(bundle.manifest, header_sha256=hashlib.sha256(data).hexdigest(), model_hash=header_hash(data))
    bundle_path(header).write_bytes(encode_bundle(manifest, bundle.program))


def mnist_for_subprocess() -> tuple[np.ndarray, dict[str, str]]:
    """The 16×16 MNIST test images, and os.environ with POTNN_DATA set so a subprocess reads the same.

    POTNN_DATA falls back to CI's shared copy beside the repository; the test is skipped when
    neither holds MNIST.
    """
    env = dict(os.environ)
    if not env.get("POTNN_DATA") and SHARED_MNIST.is_dir():
        env["POTNN_DATA"] = str(SHARED_MNIST)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POTNN_DATA", env.get("POTNN_DATA", ""))
        try:
            images, _ = load_mnist("test", 16)
        except DatasetError as e:
            pytest.skip(f"MNIST not available: {e}")
    return images, env
