"""`potnn.sensitivity`: how much accuracy each layer loses to another encoding or to channel pruning.

A cheap map for choosing where to spend flash: each layer is changed alone, on a copy of the integer
model, and the exact integer model is evaluated on the given loader — no retraining, no recalibration
of the other layers. The accuracy changes are what the change costs *before* fine-tuning; layers that
lose little are where a packed encoding or pruning belongs.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, Iterable, Sequence

import torch.nn as nn

from .channel_pruning import prune_channels
from .config import Config
from .encoding import ENCODINGS
from .layers import PoTLayer
from .qat import init_weight_scale, enable_integer_sim, ensure_captured
from .rounding import round_log2
from .train import evaluate

if TYPE_CHECKING:
    import pandas as pd


def _with_encoding(model: nn.Module, path: str, encoding: str, config: Config) -> nn.Module:
    """A copy of `model` whose layer `path` uses `encoding`, its weight scale re-fitted to that encoding's levels.

    The layer's output shift absorbs the change of scale (to the nearest power of two), so the tensors
    after it keep their integer range and the layers after it need no recalibration. The layer's own
    encoding keeps its trained scale: that row is the model as it is.
    """
    changed = copy.deepcopy(model)
    layer = changed.get_submodule(path)
    assert isinstance(layer, PoTLayer)
    if encoding == (layer.encoding or config.encoding_for(path)):
        return changed
    old_alpha = float(layer.alpha.detach())
    layer.encoding = encoding
    init_weight_scale(layer, config.per_channel)
    if not layer._potnn_final:
        layer.act_shift += round_log2(old_alpha / float(layer.alpha.detach()))
    changed._potnn_graph = None
    ensure_captured(changed, dataclasses.replace(config, layer_encodings={**config.layer_encodings, path: encoding}))
    return enable_integer_sim(changed)


def sensitivity(model: nn.Module, loader: Iterable, config: Config, encodings: Sequence[str] | None = None,
                fractions: Sequence[float] = (0.25, 0.5)) -> pd.DataFrame:
    """One row per (layer, change tried): the integer model's accuracy and its change vs the unmodified one.

    `model` is a prepared model (after potnn.train, or calibrate/prepare_qat, or potnn.load) and is not
    changed. `encodings` (default: every encoding) are tried on each PoT layer; `fractions` of each
    layer's output channels are removed with potnn.prune_channels (layers whose channels reach an add or
    the output are skipped: they cannot be pruned alone). `loader` yields (normalised inputs, labels).
    Columns: layer, change ("encoding" or "prune"), setting (encoding name or fraction), accuracy,
    delta (accuracy minus the unmodified integer model's; negative is a loss).
    """
    import pandas as pd  # imported here: a dependency of this analysis only

    if getattr(model, "_potnn_graph", None) is None:
        raise ValueError("sensitivity: the model has not been prepared; run potnn.train (or calibrate and "
                         "prepare_qat, or potnn.load) first")
    unknown = [e for e in (encodings or ()) if e not in ENCODINGS]
    if unknown:
        raise ValueError(f"sensitivity: unknown encodings {unknown}; valid: {', '.join(ENCODINGS)}")
    batches = list(loader)
    base_model = enable_integer_sim(copy.deepcopy(model))
    base = evaluate(base_model, batches)
    rows = []
    layers = [p for p, m in base_model.named_modules() if isinstance(m, PoTLayer)]
    for path in layers:
        for encoding in (encodings if encodings is not None else ENCODINGS):
            acc = evaluate(_with_encoding(base_model, path, encoding, config), batches)
            rows.append({"layer": path, "change": "encoding", "setting": encoding, "accuracy": acc,
                         "delta": acc - base})
        for fraction in fractions:
            try:
                pruned = prune_channels(base_model, {path: fraction}, config)
            except ValueError:
                continue  # depthwise, final, or feeding an add: not prunable alone
            acc = evaluate(pruned, batches)
            rows.append({"layer": path, "change": "prune", "setting": fraction, "accuracy": acc, "delta": acc - base})
    return pd.DataFrame(rows, columns=["layer", "change", "setting", "accuracy", "delta"])
