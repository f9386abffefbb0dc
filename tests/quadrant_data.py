"""A small learnable task for model-tool tests: four classes of 16×16 images, the bright quadrant.

Pixels are uint8-valued (so calibrate's normalisation check holds) and normalised with mean 0.5,
std 0.25, the Config these tests use.
"""

from __future__ import annotations

import torch

MEAN, STD = 0.5, 0.25


def quadrant_loader(n: int, seed: int, batch: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` normalised images in batches, with labels 0..3 (which quadrant is bright)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    pixels = torch.randint(0, 80, (n, 1, 16, 16), generator=g)
    for i, c in enumerate(labels.tolist()):
        r, q = divmod(c, 2)
        pixels[i, 0, 8 * r:8 * r + 8, 8 * q:8 * q + 8] += 170
    x = (pixels.float() / 255 - MEAN) / STD
    return [(x[i:i + batch], labels[i:i + batch]) for i in range(0, n, batch)]
