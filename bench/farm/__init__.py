"""Boards on other machines: a labgrid farm (coordinator, exporters, places) as the bench sees it.

``coordinator``: find, acquire and release places; ``remote_flash`` and ``program``: flash on the
exporter host with the bench's own flashers; ``place``: the ``Placement`` behind ``--place``.
labgrid is an optional extra (``pip install "potnn[farm]"``) and is imported only when a place
is used.
"""

from __future__ import annotations

from bench.farm.coordinator import FarmError, FarmSession, HeldPlace, PlaceInfo, hold
from bench.farm.place import farm_placement

__all__ = ["FarmError", "FarmSession", "HeldPlace", "PlaceInfo", "farm_placement", "hold"]
