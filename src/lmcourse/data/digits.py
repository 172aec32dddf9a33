"""scikit-learn's 8×8 handwritten digits (UCI "Optical Recognition of Handwritten Digits").

Used in chapters: none directly."""

from __future__ import annotations

import math

import numpy as np

from lmcourse.validation import check_fraction, check_int


def load_digits_split(test_fraction: float = 0.25, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 1,797 digits shipped with scikit-learn, split stratified and seeded.

    Source: Alpaydin & Kaynak (1998), UCI ML repository; ``sklearn.datasets.load_digits`` (a copy
    of the UCI test set: 1,797 images written by 13 people).

    Args:
        test_fraction: share of images held out for testing, in (0, 1).
        seed: random seed of the split.

    Returns:
        ``x_train (N, 64) float64`` in [0, 1] (pixel counts 0..16 divided by 16),
        ``x_test``, ``y_train (N,) int32`` in [0, 10), ``y_test``.

    Raises:
        ValueError: if ``test_fraction`` is not a number strictly between 0 and 1 (NaN included),
            leaves fewer than one image per class on either side (below 10/1797 or above
            1787/1797), or ``seed`` is not an integer >= 0.
    """
    test_fraction = check_fraction("test_fraction", test_fraction, open_low=True, open_high=True)
    n_images, n_classes = 1_797, 10
    n_test = math.ceil(test_fraction * n_images)  # how scikit-learn rounds a float test_size
    if n_test < n_classes or n_images - n_test < n_classes:
        raise ValueError(
            f"test_fraction={test_fraction} puts {n_test} of {n_images} images in the test set; a "
            f"stratified split needs at least {n_classes} (one per class) on each side"
        )
    seed = check_int("seed", seed, 0)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return x_train, x_test, y_train, y_test
