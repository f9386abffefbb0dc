"""Seeded random architectures for the bit-exactness stress test.

Each seed gives a small network drawn from everything potnn supports: Conv2d with any stride and
padding, depthwise and grouped convs, Conv1d on image rows, Linear, BatchNorm (folded), residual
PoTAdd, max pooling, global average pooling of odd sizes, every encoding (packed ones in the first
layer too), per-channel scales, per-channel input normalisation. The forward is built from a list
of steps, which torch.fx unrolls when it traces.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import potnn
from potnn import PoTAdd, PoTConv1d, PoTConv2d, PoTDepthwiseConv2d, PoTLinear
from potnn.encoding import ENCODINGS


class RandomNet(nn.Module):
    """A network whose forward follows `steps`: (kind, module name or None, argument)."""

    def __init__(self, steps: list[tuple[str, str | None, object]], modules: dict[str, nn.Module]) -> None:
        super().__init__()
        self.steps = steps
        for name, m in modules.items():
            self.add_module(name, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        saved = None
        for kind, name, arg in self.steps:
            if kind == "module":
                x = getattr(self, name)(x)
            elif kind == "relu":
                x = torch.relu(x)
            elif kind == "maxpool2d":
                k, s, p = arg  # type: ignore[misc]
                x = F.max_pool2d(x, k, s, p)
            elif kind == "maxpool1d":
                x = F.max_pool1d(x, 2)
            elif kind == "save":
                saved = x
            elif kind == "add":
                x = getattr(self, name)(x, saved)
            elif kind == "to1d":
                x = x.reshape(x.size(0), x.size(1) * x.size(2), x.size(3))
            elif kind == "flatten":
                x = x.view(x.size(0), -1)
        return x


@dataclass
class Case:
    seed: int
    model: RandomNet
    config: potnn.Config
    images: np.ndarray  # uint8 [N, C, H, W]
    description: str


#: The encodings each weighted layer is drawn from; `indexed`, which came later, takes the place of half the
#: fp130 draws from a stream of its own, so that every seed keeps the architecture it had before.
DRAWN = ("unroll", "fp130", "5level", "2bit", "ternary")
assert set(DRAWN) | {"indexed"} == set(ENCODINGS), "a new encoding must be drawn here too"


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def make_case(seed: int, n_images: int = 256) -> Case:
    rng = random.Random(seed)
    swap = random.Random(-1 - seed)
    torch.manual_seed(seed)
    c, h, w = rng.choice([1, 1, 2, 3]), rng.randint(5, 14), rng.randint(5, 14)
    in_h, in_w = h, w
    steps: list[tuple[str, str | None, object]] = []
    modules: dict[str, nn.Module] = {}
    encodings: dict[str, str] = {}
    desc: list[str] = []

    def enc(name: str) -> None:
        drawn = rng.choice(DRAWN)
        encodings[name] = "indexed" if drawn == "fp130" and swap.random() < 0.5 else drawn

    def add(name: str, m: nn.Module) -> None:
        modules[name] = m
        steps.append(("module", name, None))

    channels = c
    style = rng.choice(["conv", "conv", "conv", "conv1d", "mlp", "depthwise"])
    if style == "mlp":
        steps.append(("flatten", None, None))
        feats = c * h * w
        hidden = rng.randint(4, 24)
        add("fc0", PoTLinear(feats, hidden))
        enc("fc0")
        steps.append(("relu", None, None))
        if rng.random() < 0.5:
            add("fc1", PoTLinear(hidden, hidden))
            enc("fc1")
            if rng.random() < 0.7:
                steps.append(("relu", None, None))
        add("head", PoTLinear(hidden, rng.randint(2, 12)))
        enc("head")
        desc.append(f"mlp {feats}->{hidden}")
    elif style == "conv1d":
        steps.append(("to1d", None, None))
        length, ch = w, c * h
        out = rng.randint(3, 10)
        k = rng.choice([1, 3, 5])
        p = rng.choice([0, k // 2])
        add("c1d", PoTConv1d(ch, out, k, stride=rng.choice([1, 2]), padding=p))
        enc("c1d")
        m = modules["c1d"]
        length = _conv_out(length, k, m.stride[0], p)  # type: ignore[attr-defined]
        if rng.random() < 0.5:
            add("bn1d", nn.BatchNorm1d(out))
        steps.append(("relu", None, None))
        if length >= 2 and rng.random() < 0.5:
            steps.append(("maxpool1d", None, None))
            length //= 2
        if rng.random() < 0.5:
            add("gap1d", nn.AdaptiveAvgPool1d(1))
            length = 1
        steps.append(("flatten", None, None))
        add("head", PoTLinear(out * length, rng.randint(2, 10)))
        enc("head")
        desc.append(f"conv1d {ch}x{w} k{k}")
    else:
        for i in range(rng.randint(1, 3)):
            name = f"conv{i}"
            if style == "depthwise" and i > 0 and channels > 1:
                k = rng.choice([3, 5])
                p = k // 2
                add(name, PoTDepthwiseConv2d(channels, k, padding=p, stride=rng.choice([1, 2]),
                                             depth_multiplier=rng.choice([1, 2])))
                s = modules[name].stride[0]  # type: ignore[attr-defined]
                channels = modules[name].out_channels  # type: ignore[attr-defined]
            else:
                out = rng.randint(2, 12)
                k = rng.choice([1, 2, 3, 5])
                s = rng.choice([1, 1, 2])
                p = rng.choice([0, 1, 2]) if k > 1 else 0
                if _conv_out(min(h, w), k, s, p) < 1:
                    k, s, p = 1, 1, 0
                groups = rng.choice([g for g in (1, 2, 3) if channels % g == 0 and out % g == 0])
                add(name, PoTConv2d(channels, out, k, stride=s, padding=p, groups=groups, bias=rng.random() < 0.8))
                channels = out
            enc(name)
            h, w = _conv_out(h, k, s, p), _conv_out(w, k, s, p)
            if rng.random() < 0.5:
                add(f"bn{i}", nn.BatchNorm2d(channels))
            residual = rng.random() < 0.3
            steps.append(("relu", None, None))
            if residual:
                steps.append(("save", None, None))
                rname = f"res{i}"
                add(rname, PoTConv2d(channels, channels, 3, padding=1))
                enc(rname)
                modules[f"add{i}"] = PoTAdd()
                steps.append(("add", f"add{i}", None))
                if rng.random() < 0.7:
                    steps.append(("relu", None, None))
            if min(h, w) >= 2 and rng.random() < 0.5:
                k2, s2, p2 = rng.choice([(2, 2, 0), (3, 2, 1), (2, 1, 0), (3, 3, 1)])
                if _conv_out(min(h, w), k2, s2, p2) >= 1:
                    steps.append(("maxpool2d", None, (k2, s2, p2)))
                    h, w = _conv_out(h, k2, s2, p2), _conv_out(w, k2, s2, p2)
        if rng.random() < 0.6:
            add("gap", nn.AdaptiveAvgPool2d(1))
            h = w = 1
        steps.append(("flatten", None, None))
        add("head", PoTLinear(channels * h * w, rng.randint(2, 12)))
        enc("head")
        desc.append(f"{style} -> {channels}x{h}x{w}")
    model = RandomNet(steps, modules)
    for m in model.modules():  # BatchNorm with non-trivial statistics, so folding is exercised
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    model.eval()
    mean = [round(rng.uniform(0.0, 0.6), 3) for _ in range(c)]
    std = [round(rng.uniform(0.15, 0.5), 3) for _ in range(c)]
    config = potnn.Config(flash=10**7, ram=10**7, mean=mean, std=std, input_h=in_h, input_w=in_w, input_channels=c,
                          layer_encodings=encodings, per_channel=rng.random() < 0.4)
    gen = np.random.default_rng(seed)
    images = gen.integers(0, 256, (n_images, c, in_h, in_w), dtype=np.uint8)
    images[0], images[1] = 0, 255
    images[2:n_images // 4] = (images[2:n_images // 4] > 128) * np.uint8(255)  # saturated, MNIST-like
    x = (torch.from_numpy(images).double() / 255 - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    potnn.calibrate(model, [(x[i:i + 64].float(),) for i in range(0, n_images, 64)], config)
    potnn.prepare_qat(model, config)
    with torch.no_grad():  # push some shifts off their calibrated value: saturation must also match
        for m in model.modules():
            if isinstance(m, potnn.layers.QuantModule) and rng.random() < 0.3:
                m.act_shift.add_(rng.choice([-1, 1]))
    return Case(seed, model, config, images, f"seed {seed}: {desc}, encodings {encodings}")
