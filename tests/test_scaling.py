"""lmcourse.scaling: the power-law fit equals scipy's curve_fit, recovers known laws, and
refuses bad input; the bootstrap, the IsoFLOP parabola and the compute-optimal split."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit

from lmcourse.scaling import (
    CHINCHILLA_FIT,
    bootstrap_power_law,
    chinchilla_loss,
    compute_optimal_split,
    fit_power_law,
    loss_at_tokens,
    parabola_minimum,
    percentile_interval,
    power_law,
)

SIZES = np.geomspace(900, 60_000, 7)


@pytest.mark.parametrize("truth", [(1.8, 12.0, 0.35), (0.5, 40.0, 0.6), (2.2, 3.0, 0.076)])
def test_fit_recovers_a_known_law_from_exact_points(truth):
    fit = fit_power_law(SIZES, power_law(SIZES, *truth))
    assert np.allclose([fit.E, fit.A, fit.alpha], truth, rtol=1e-6)
    assert fit.rss < 1e-20


def test_fit_equals_curve_fit_on_noisy_points():
    rng = np.random.default_rng(1)
    loss = power_law(SIZES, 1.9, 15.0, 0.4) + rng.normal(0, 0.01, SIZES.shape)
    fit = fit_power_law(SIZES, loss)
    ref, _ = curve_fit(power_law, SIZES, loss, p0=[fit.E * 0.95, fit.A * 1.2, fit.alpha * 0.9],
                       maxfev=50_000)
    assert np.allclose([fit.E, fit.A, fit.alpha], ref, rtol=1e-4)
    ref_rss = float(np.sum((loss - power_law(SIZES, *ref)) ** 2))
    assert fit.rss <= ref_rss * (1 + 1e-9)


def test_a_wrong_exponent_fits_worse():
    loss = power_law(SIZES, 1.8, 12.0, 0.35)
    fit = fit_power_law(SIZES, loss)
    worse = float(np.sum((loss - power_law(SIZES, fit.E, fit.A, fit.alpha * 1.1)) ** 2))
    assert worse > fit.rss + 1e-6


def test_bootstrap_interval_contains_the_truth():
    truth = (1.8, 12.0, 0.35)
    exact = power_law(SIZES, *truth)
    flat = np.repeat(exact[:, None], 40, axis=1)                      # noiseless windows
    alphas = bootstrap_power_law(SIZES, flat, n_boot=20)[:, 2]
    lo, hi = percentile_interval(alphas)
    assert lo - 1e-9 <= truth[2] <= hi + 1e-9 and hi - lo < 1e-9
    rng = np.random.default_rng(0)                                     # noisy windows
    noisy = exact[:, None] + rng.normal(0, 0.05, (len(SIZES), 400))
    lo, hi = percentile_interval(bootstrap_power_law(SIZES, noisy, n_boot=100, seed=3)[:, 2])
    assert lo < truth[2] < hi and hi - lo > 1e-3


def test_parabola_minimum_and_interpolation():
    x = np.linspace(-2, 3, 6)
    xm, ym = parabola_minimum(x, 2.0 * (x - 0.7) ** 2 + 1.5)
    assert xm == pytest.approx(0.7) and ym == pytest.approx(1.5)
    with pytest.raises(ValueError, match="opens downwards"):
        parabola_minimum(x, -(x ** 2))
    tokens, losses = np.array([100.0, 1000.0, 10_000.0]), np.array([3.0, 2.0, 1.5])
    assert loss_at_tokens(tokens, losses, np.sqrt(1000.0 * 10_000.0)) == pytest.approx(1.75)
    with pytest.raises(ValueError, match="outside the evaluated range"):
        loss_at_tokens(tokens, losses, 20_000.0)


def test_compute_optimal_split_and_chinchilla():
    n, d = compute_optimal_split(6 * 70e9 * 1.4e12)                   # Chinchilla: 70B, 1.4T
    assert d / n == pytest.approx(20.0) and 6 * n * d == pytest.approx(6 * 70e9 * 1.4e12)
    assert n == pytest.approx(np.sqrt(70e9 * 1.4e12 / 20))
    f = CHINCHILLA_FIT
    assert chinchilla_loss(70e9, 1.4e12) == pytest.approx(
        f["E"] + f["A"] / 70e9 ** f["alpha"] + f["B"] / 1.4e12 ** f["beta"])
    assert chinchilla_loss(70e9, 1.4e12) < chinchilla_loss(7e9, 1.4e12)


@pytest.mark.parametrize("n, loss, match", [
    (SIZES[:3], np.ones(3), "at least 4 points"),
    (SIZES, np.ones(6), "same length"),
    (np.r_[-1.0, SIZES[1:]], np.ones(7), "sizes > 0"),
    (SIZES, np.r_[np.nan, np.ones(6)], "finite"),
    (np.array([1e3, 1e3, 2e3, 2e3]), np.ones(4), "3 distinct"),
])
def test_bad_input_is_refused(n, loss, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(n, loss)


def test_bad_arguments_elsewhere():
    with pytest.raises(ValueError, match="compute"):
        compute_optimal_split(-1.0)
    with pytest.raises(ValueError, match="window_losses"):
        bootstrap_power_law(SIZES, np.ones((3, 5)))
    with pytest.raises(ValueError, match="level"):
        percentile_interval(np.ones(5), level=1.5)
