"""What goes wrong when a dataset is loaded, said in one line that tells the fix."""

from __future__ import annotations

import importlib
from types import ModuleType

#: The pip extra that brings the packages the registered non-MNIST datasets ship inside.
DATASETS_EXTRA = "potnn[datasets]"


class DatasetError(RuntimeError):
    """A dataset is missing, cannot be downloaded, fails its checksum, is malformed or needs a package."""


def import_for_dataset(module: str, package: str, dataset: str) -> ModuleType:
    """Import `module` of the pip `package` that ships `dataset`, or a DatasetError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DatasetError(f"dataset {dataset!r} needs {package} ({exc}): pip install '{DATASETS_EXTRA}'") from None
