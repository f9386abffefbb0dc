"""Datasets as the MCU sees them: uint8 inputs, labels, the normalisation folded into a model, loaders.

`mnist` reads MNIST and defines the 16×16 downsampling the bench streams; `digits` and
`basicmotions` turn two datasets that Python packages ship into uint8; `registry` names them all
(`load_dataset`, `dataset_loaders`); `arrays` makes normalised training batches of any of them.
"""

from .arrays import ArrayDataset, array_loaders, channel_stats, normalize, pixel_stats, stratified_split
from .basicmotions import BASICMOTIONS_MEAN, BASICMOTIONS_STD, load_basicmotions
from .digits import DIGITS8_MEAN, DIGITS8_STD, load_digits8
from .errors import DATASETS_EXTRA, DatasetError
from .mnist import (
    MNIST16_MEAN,
    MNIST16_STD,
    MNISTDataset,
    downsample,
    load_mnist,
    mnist_file,
    mnist_loaders,
    read_idx,
)
from .registry import DATASETS, DatasetInfo, dataset_info, dataset_loaders, load_dataset

__all__ = [
    "ArrayDataset", "BASICMOTIONS_MEAN", "BASICMOTIONS_STD", "DATASETS", "DATASETS_EXTRA", "DIGITS8_MEAN",
    "DIGITS8_STD", "DatasetError", "DatasetInfo", "MNIST16_MEAN", "MNIST16_STD", "MNISTDataset", "array_loaders",
    "channel_stats", "dataset_info", "dataset_loaders", "downsample", "load_basicmotions", "load_digits8",
    "load_dataset", "load_mnist", "mnist_file", "mnist_loaders", "normalize", "pixel_stats", "read_idx",
    "stratified_split",
]
