"""`potnn.Config`: the target's budgets, the input's shape and normalisation, the encodings.

One object carries what export and training must agree on. It is a frozen dataclass so that
nothing downstream (export in particular) can change it behind the user's back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .encoding import ENCODINGS, get_encoding

_IMAGE_SIDE = 16  # the default image is 16×16, the zoo's MNIST size


@dataclass(frozen=True)
class Config:
    """What the model is for: the MCU's budgets, the input format, and the weight encodings.

    flash, ram: bytes the model may use (the export refuses a model that needs more, naming every budget
        it exceeds). Given directly, they budget the model alone: its weights and code, its activation
        buffers and logits; the firmware around it and the stack are the caller's to leave room for.
        `Config.for_board(name)` sets them to what the model may use on that board beside the bench
        firmware, with potnn_predict's stack counted and the flash measured (by compiling the header).
    board: set by `Config.for_board`: the board the budgets are for (None: they budget the model alone).
    mean, std: the dataset normalisation the float model was trained with, for inputs scaled to
        [0, 1]; a scalar or one value per input channel. It is folded into the first layer, so the
        integer model and the C take raw uint8 values.
    input_channels: channels of one input (C).
    input_h, input_w: an image input, C×H×W uint8 (16×16 when neither they nor input_length are given).
    input_length: a 1-d input instead (a signal window), C×L uint8; the model's forward takes [N, C, L].
        It excludes input_h/input_w: a model is captured with one example input shape.
    layer_encodings: module path → encoding name, overriding `default_encoding`.
    per_channel: give each output channel its own power-of-two weight scale (a per-channel shift
        in the integer model); the last layer always keeps one scale so logits stay comparable.
    class_names, dataset: the name of each output class and the registered dataset the model is for;
        export records them in the bundle's manifest so the bench and the report can name classes
        and find test data without being told. They change nothing in the model or the C.
    """

    flash: int = 16384
    ram: int = 2048
    mean: float | Sequence[float] = 0.0
    std: float | Sequence[float] = 1.0
    input_h: int | None = None
    input_w: int | None = None
    input_channels: int = 1
    layer_encodings: Mapping[str, str] = field(default_factory=dict)
    default_encoding: str = "unroll"
    per_channel: bool = False
    input_length: int | None = None
    class_names: tuple[str, ...] | None = None
    dataset: str | None = None
    board: str | None = None

    @classmethod
    def for_board(cls, name: str, **overrides: Any) -> Config:
        """A Config whose flash and RAM budgets are exactly what a model may use on board `name` with the
        bench firmware (`potnn-bench build --board name`), with either toolchain.

        The budgets are the board's flash and SRAM (boards/<name>.toml) less the firmware's measured
        cost there (`[firmware]`, the largest over GCC and zig): its code, its own static RAM, and its own
        stack. What the model then needs is counted at export, where it is known: the firmware's input and
        logit buffers (sized by the model), and potnn_predict's stack and the model's flash as each of the
        board's compilers present builds the header (the largest). The build measures the linked firmware's
        stack from the same compilers' reports and reserves it, so export and build give one verdict: what
        export accepts, the build accepts with either toolchain and runs within its stack (at the bench's
        default -Os).

        overrides: any other Config field (mean, std, input shape, encodings, ...).
        """
        from .boards import load_board_facts

        taken = sorted({"flash", "ram", "board"} & overrides.keys())
        if taken:
            raise ValueError(f"Config.for_board: {', '.join(taken)} come from the board file; give a plain "
                             "Config(flash=, ram=) to budget the model alone")
        facts = load_board_facts(name)
        cost = facts.worst_firmware
        flash, ram = facts.flash_size - cost.flash, facts.ram_size - cost.ram - cost.stack
        return cls(flash=flash, ram=ram, board=name, **overrides)

    def __post_init__(self) -> None:
        for name in (self.default_encoding, *self.layer_encodings.values()):
            get_encoding(name)  # raises with the list of valid names
        if self.flash <= 0 or self.ram <= 0:
            raise ValueError(f"Config: flash and ram must be positive byte counts (got flash={self.flash}, ram={self.ram})")
        if self.input_length is None:
            object.__setattr__(self, "input_h", _IMAGE_SIDE if self.input_h is None else self.input_h)
            object.__setattr__(self, "input_w", _IMAGE_SIDE if self.input_w is None else self.input_w)
        elif self.input_h is not None or self.input_w is not None:
            raise ValueError("Config: give input_length (a 1-d input) or input_h/input_w (an image), not both")
        if min(self.input_shape) <= 0:
            raise ValueError(f"Config: the input shape must be positive, got {self.input_shape}")
        self.channel_mean()  # raises when mean has the wrong number of values
        stds = self.channel_std()
        if any(s <= 0 for s in stds):
            raise ValueError(f"Config: std must be positive, got {stds}")
        # A frozen dataclass keeps the caller's dict; copy it so later edits by the caller cannot leak in.
        object.__setattr__(self, "layer_encodings", dict(self.layer_encodings))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input's shape without the batch dimension: (C, H, W), or (C, L) for a 1-d input."""
        if self.input_length is not None:
            return (self.input_channels, self.input_length)
        assert self.input_h is not None and self.input_w is not None  # set by __post_init__
        return (self.input_channels, self.input_h, self.input_w)

    def _per_channel(self, value: float | Sequence[float], what: str) -> tuple[float, ...]:
        if isinstance(value, (int, float)):
            return (float(value),) * self.input_channels
        values = tuple(float(v) for v in value)
        if len(values) == 1:
            return values * self.input_channels
        if len(values) != self.input_channels:
            raise ValueError(f"Config: {what} has {len(values)} values for {self.input_channels} input channels")
        return values

    def channel_mean(self) -> tuple[float, ...]:
        """The mean as one value per input channel."""
        return self._per_channel(self.mean, "mean")

    def channel_std(self) -> tuple[float, ...]:
        """The std as one value per input channel."""
        return self._per_channel(self.std, "std")

    def encoding_for(self, path: str) -> str:
        """The encoding of the layer at module path `path`."""
        return self.layer_encodings.get(path, self.default_encoding)


__all__ = ["Config", "ENCODINGS"]
