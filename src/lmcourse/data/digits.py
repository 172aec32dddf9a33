"""scikit-learn's 8×8 handwritten digits (UCI "Optical Recognition of Handwritten Digits")."""

from __future__ import annotations

import numpy as np


def load_digits_split(test_fraction: float = 0.25, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The 1,797 digits shipped with scikit-learn, split stratified and seeded.

    Source: Alpaydin & Kaynak (1998), UCI ML repository; ``sklearn.datasets.load_digits``.

    Args:
        test_fraction: share of images held out for testing, in (0, 1).
        seed: random seed of the split.

    Returns:
        ``x_train (N, 64) float64`` in [0, 1] (pixel counts 0..16 divided by 16),
        ``x_test``, ``y_train (N,) int32`` in [0, 10), ``y_test``.

    Raises:
        ValueError: if ``test_fraction`` is not in (0, 1).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return x_train, x_test, y_train, y_test
