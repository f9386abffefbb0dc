"""Which layer of the model each executed block belongs to: the emulator's side of the per-layer profile.

Why from the ELF's symbols: every layer of a potnn header is one function (``potnn.codegen.layer_symbols``),
so the firmware needs no instrumentation and runs exactly as it does unprofiled. A block inside a layer
function belongs to that layer; a block inside ``potnn_predict`` belongs to no layer (context 0, the
firmware); every other block (the dot kernels the layers share, C library helpers, the rest of the
firmware) *inherits* the context of the code that ran before it, so a kernel's cycles count for the
layer that called it. The backend also returns to context 0 at every cycle-counter read, which is
where an inference starts and ends.
"""

from __future__ import annotations

from typing import Callable

from potnn.codegen.layer_symbols import PREDICT, function_name, is_layer_symbol

from .blockhook import INHERIT
from .elfimage import ElfImage


class LayerMap:
    """The layer functions of a firmware ELF and the owner of any code address.

    ``names[i]`` is the function of context ``i + 1`` (context 0 is the firmware); ``canonical``
    maps an address seen through a flash alias to the address the ELF's symbols use.
    """

    def __init__(self, image: ElfImage, canonical: Callable[[int], int]):
        self._canonical = canonical
        funcs = [(canonical(addr), size, function_name(name)) for addr, size, name in image.functions()]
        layer_names = {name for _, _, name in funcs if is_layer_symbol(name)}
        self.names: list[str] = sorted(layer_names, key=lambda n: int(n.split("_")[1]))
        index = {name: i + 1 for i, name in enumerate(self.names)}
        self._ranges = sorted((addr, addr + size, index[name] if name in index else 0) for addr, size, name in funcs
                              if name in index or name == PREDICT)

    @property
    def contexts(self) -> int:
        """Profile contexts: the firmware (0) and one per layer function."""
        return len(self.names) + 1

    def owner(self, address: int) -> int:
        """The context of the block at ``address``: its layer, 0 in potnn_predict, else ``INHERIT``."""
        addr = self._canonical(address)
        for start, end, ctx in self._ranges:
            if start <= addr < end:
                return ctx
        return INHERIT
