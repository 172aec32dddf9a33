"""Scaling laws: fit L(N) = E + A·N^(−α), bootstrap its exponent, find an IsoFLOP optimum.

Used in chapters: 11.

A **scaling law 缩放定律** says how the held-out loss of a language model falls as its size
``N`` (parameters), its data ``D`` (training tokens) or its compute ``C ≈ 6·N·D`` grows.
Sources: Kaplan et al. (2020), *Scaling Laws for Neural Language Models*, eq. 1.1 and §3
(``L(N) = (N_c / N)^α_N`` with ``α_N ≈ 0.076`` for non-embedding parameters, §2.1 for
``C ≈ 6·N·D``); Hoffmann et al. (2022), *Training Compute-Optimal Large Language Models*
("Chinchilla"), §3.2 (approach 2: IsoFLOP profiles, a parabola in ``log N`` per compute budget)
and §3.3 (Approach 3) with Appendix D.2 (``L(N, D) = E + A/N^α + B/D^β``).

What is here (pure NumPy; no JAX):

* :func:`power_law` and :func:`fit_power_law`: the least-squares fit of ``E + A·N^(−α)`` to
  points ``(N_i, L_i)``, minimising ``Σ (L_i − E − A·N_i^(−α))²``. A grid over ``E`` with a
  linear regression of ``log(L − E)`` on ``log N`` for each ``E`` gives a start; Levenberg–
  Marquardt (damped Gauss–Newton) on ``(E, log A, α)`` then polishes it. The result equals
  ``scipy.optimize.curve_fit`` on the same objective (tested).
* :func:`bootstrap_power_law`: refits on resampled evaluation windows (paired across models)
  and returns the replicates; :func:`percentile_interval` turns them into an interval.
* :func:`parabola_minimum`: the vertex of a least-squares parabola, for IsoFLOP profiles.
* :func:`loss_at_tokens`: a run's loss after ``D`` tokens, interpolated linearly in ``log D``
  between evaluations.
* :func:`compute_optimal_split` and :func:`chinchilla_loss`: ``N`` and ``D`` for a compute
  budget at a given tokens-per-parameter ratio, and Hoffmann et al.'s fitted loss.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lmcourse.validation import check_fraction, check_positive_float, check_positive_int

#: Kaplan et al. (2020), eq. 1.1 / §3.1: L(N) = (N_c / N)^α_N for non-embedding parameters.
KAPLAN_ALPHA_N = 0.076
#: Kaplan et al. (2020), eq. 1.2: L(D) = (D_c / D)^α_D.
KAPLAN_ALPHA_D = 0.095
#: Hoffmann et al. (2022) §3.3 (Approach 3), Appendix D.2: E, A, B, α, β of
#: L(N, D) = E + A/N^α + B/D^β.
CHINCHILLA_FIT = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
#: Hoffmann et al. (2022): about 20 training tokens per parameter at the compute optimum.
CHINCHILLA_TOKENS_PER_PARAM = 20.0


class PowerLawFit(NamedTuple):
    """A fitted ``L(N) = E + A·N^(−α)``.

    Attributes:
        E: the irreducible loss (same unit as the losses, e.g. nats per token).
        A: the scale (loss units times ``N^α``).
        alpha: the exponent ``α`` (dimensionless; > 0 when the loss falls with ``N``).
        rss: the residual sum of squares ``Σ (L_i − fit_i)²`` (loss units squared).
    """

    E: float
    A: float
    alpha: float
    rss: float


def power_law(n: np.ndarray | float, E: float, A: float, alpha: float) -> np.ndarray:
    """``E + A·n^(−alpha)`` element-wise, as float64 (``n`` > 0, any shape).

    Raises:
        ValueError: ``n`` holds a value that is not finite and > 0.
    """
    n = np.asarray(n, dtype=np.float64)
    if not np.all(np.isfinite(n) & (n > 0)):
        raise ValueError(f"n must hold finite sizes > 0, got {n.tolist()!r}")
    return E + A * n ** (-alpha)


def _check_points(n: object, loss: object, min_points: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``(n, loss)`` as float64 1-D arrays of equal length, checked."""
    n = np.asarray(n, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if n.ndim != 1 or loss.shape != n.shape:
        raise ValueError(f"n and loss must be 1-D arrays of the same length, got shapes "
                         f"{n.shape} and {loss.shape}")
    if len(n) < min_points:
        raise ValueError(f"fitting E + A·N^(-α) (3 parameters) needs at least {min_points} "
                         f"points, got {len(n)}; train more model sizes")
    if not np.all(np.isfinite(n) & (n > 0)):
        raise ValueError(f"n must hold finite sizes > 0, got {n.tolist()!r}")
    if not np.all(np.isfinite(loss)):
        raise ValueError(f"loss must be finite, got {loss.tolist()!r} (did a run diverge?)")
    if len(np.unique(n)) < 3:
        raise ValueError(f"n needs at least 3 distinct sizes, got {np.unique(n).tolist()!r}")
    return n, loss


def _log_linear_fit(x: np.ndarray, loss: np.ndarray, e: float) -> tuple[float, float, float]:
    """For a fixed ``E``: OLS of ``log(L − E)`` on ``x = log N`` → ``(log A, α, rss in L)``."""
    y = np.log(loss - e)
    slope, intercept = np.polyfit(x, y, 1)
    resid = loss - e - np.exp(intercept + slope * x)
    return float(intercept), float(-slope), float(resid @ resid)


def _levenberg_marquardt(x: np.ndarray, loss: np.ndarray, p: np.ndarray, iterations: int = 200
                         ) -> np.ndarray:
    """Minimise ``Σ (L − E − exp(logA − α·x))²`` over ``p = (E, logA, α)`` from ``p``."""
    def residual(q: np.ndarray) -> np.ndarray:
        return loss - q[0] - np.exp(q[1] - q[2] * x)

    lam, r = 1e-3, residual(p)
    cost = r @ r
    for _ in range(iterations):
        power = np.exp(p[1] - p[2] * x)
        jac = np.stack([np.ones_like(x), power, -power * x], axis=1)   # d model / d p
        jtj, jtr = jac.T @ jac, jac.T @ r
        improved = False
        for _ in range(30):
            step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-12), jtr)
            trial = p + step
            r_trial = residual(trial)
            cost_trial = r_trial @ r_trial
            if np.isfinite(cost_trial) and cost_trial <= cost:
                improved = cost - cost_trial > 1e-15 * max(cost, 1e-300)
                p, r, cost, lam = trial, r_trial, cost_trial, max(lam / 10, 1e-12)
                break
            lam *= 10
        if not improved:
            break
    return p


def fit_power_law(n: np.ndarray, loss: np.ndarray, *, grid: int = 400) -> PowerLawFit:
    """Least-squares fit of ``L(N) = E + A·N^(−α)`` to points ``(n_i, loss_i)``.

    Step 1 (a global start): for each ``E`` on a grid of ``grid`` values in ``[0, min L)``,
    ``log(L − E) = log A − α·log N`` is a straight line: ordinary least squares gives ``log A``
    and ``α``; keep the ``E`` whose fit has the smallest squared error *in loss units*.
    Step 2: Levenberg–Marquardt on ``(E, log A, α)`` from there, on the same objective
    ``Σ (L_i − E − A·N_i^(−α))²`` (the one ``scipy.optimize.curve_fit`` minimises).

    Args:
        n: float ``(k,)`` model sizes (e.g. non-embedding parameters), > 0, at least 3 distinct.
        loss: float ``(k,)`` held-out losses (e.g. nats per token), finite; ``k >= 4``.
        grid: number of ``E`` values tried in step 1 (>= 2).

    Returns:
        :class:`PowerLawFit` ``(E, A, alpha, rss)``.

    Raises:
        ValueError: shapes differ or are not 1-D, fewer than 4 points or 3 distinct sizes, a
            size not > 0, a loss not finite, or ``grid`` < 2.
    """
    n, loss = _check_points(n, loss)
    grid = check_positive_int("grid", grid)
    if grid < 2:
        raise ValueError(f"grid must be >= 2, got {grid}")
    x = np.log(n)
    low = float(loss.min())
    span = max(float(loss.max()) - low, 1e-12)
    top = low - 1e-6 * span
    es = np.linspace(min(0.0, top - span), top, grid)
    best = min((_log_linear_fit(x, loss, e) + (e,) for e in es), key=lambda t: t[2])
    log_a, alpha, _, e = best
    e, log_a, alpha = _levenberg_marquardt(x, loss, np.array([e, log_a, alpha]))
    resid = loss - power_law(n, e, np.exp(log_a), alpha)
    return PowerLawFit(float(e), float(np.exp(log_a)), float(alpha), float(resid @ resid))


def bootstrap_power_law(n: np.ndarray, window_losses: np.ndarray, *, n_boot: int = 200,
                        seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of :func:`fit_power_law`, resampling evaluation windows (paired).

    Each replicate draws ``w`` window indices with replacement (the *same* indices for every
    model: the models were scored on the same text, so their errors are correlated and the
    draw keeps that), averages each model's losses over the drawn windows and refits. Windows,
    not single tokens, are resampled because neighbouring tokens' losses are correlated (a
    block bootstrap). The spread measures the evaluation-text noise only; the training noise
    (seed, batch order) is not in it.

    Args:
        n: float ``(k,)`` model sizes.
        window_losses: float ``(k, w)``: model ``i``'s mean loss on evaluation window ``j``.
        n_boot: number of replicates (>= 1).
        seed: seed of the NumPy generator (the replicates are reproducible).

    Returns:
        float64 ``(n_boot, 3)``: ``(E, A, alpha)`` per replicate.

    Raises:
        ValueError: ``window_losses`` is not ``(k, w)`` with ``w >= 2``, or as
            :func:`fit_power_law`.
    """
    losses = np.asarray(window_losses, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if losses.ndim != 2 or losses.shape[0] != n.shape[0] or losses.shape[1] < 2:
        raise ValueError(f"window_losses must have shape (len(n), windows >= 2) = "
                         f"({n.shape[0]}, w), got {losses.shape}")
    _check_points(n, losses.mean(axis=1))
    rng = np.random.default_rng(seed)
    out = np.empty((check_positive_int("n_boot", n_boot), 3))
    for b in range(out.shape[0]):
        idx = rng.integers(0, losses.shape[1], size=losses.shape[1])
        fit = fit_power_law(n, losses[:, idx].mean(axis=1))
        out[b] = fit.E, fit.A, fit.alpha
    return out


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of 1-D bootstrap ``samples``.

    Raises:
        ValueError: ``samples`` is empty, not 1-D or not finite; ``level`` not in (0, 1).
    """
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)):
        raise ValueError(f"samples must be a non-empty 1-D array of finite numbers, got shape "
                         f"{s.shape}")
    level = check_fraction("level", level, open_low=True, open_high=True)
    lo, hi = np.percentile(s, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def parabola_minimum(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Vertex ``(x*, y*)`` of the least-squares parabola ``y = a·x² + b·x + c`` (a > 0).

    Hoffmann et al. (2022) §3.2 fit one to each IsoFLOP profile with ``x = log N``.

    Args:
        x, y: float ``(k,)``, ``k >= 3`` points, at least 3 distinct ``x``.

    Returns:
        ``(x*, y*)`` with ``x* = −b / 2a`` (may lie outside the range of ``x``: check it).

    Raises:
        ValueError: bad shapes, fewer than 3 distinct ``x``, values not finite, or a profile
            that is not convex (``a <= 0``: no minimum; widen the range of sizes).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.shape != x.shape or len(np.unique(x)) < 3:
        raise ValueError(f"x and y must be 1-D of equal length with >= 3 distinct x, got shapes "
                         f"{x.shape}, {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite")
    a, b, c = np.polyfit(x, y, 2)
    if a <= 0:
        raise ValueError(f"the fitted parabola opens downwards (a = {a:.3g}): no minimum; "
                         f"add sizes on both sides of the optimum")
    xm = -b / (2 * a)
    return float(xm), float(c - b * b / (4 * a))


def loss_at_tokens(tokens: np.ndarray, losses: np.ndarray, target: float) -> float:
    """A run's loss after ``target`` tokens, linear in ``log tokens`` between evaluations.

    Args:
        tokens: float ``(m,)`` strictly increasing token counts at which the run was evaluated.
        losses: float ``(m,)`` the evaluated losses.
        target: tokens, within ``[tokens[0], tokens[-1]]`` (no extrapolation).

    Returns:
        the interpolated loss (same unit as ``losses``).

    Raises:
        ValueError: shapes differ, ``tokens`` not strictly increasing and > 0, or ``target``
            outside the evaluated range.
    """
    t, v = np.asarray(tokens, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    if t.ndim != 1 or v.shape != t.shape or len(t) < 2:
        raise ValueError(f"tokens and losses must be 1-D of equal length >= 2, got {t.shape}, {v.shape}")
    if not (np.all(t > 0) and np.all(np.diff(t) > 0)):
        raise ValueError("tokens must be > 0 and strictly increasing")
    target = check_positive_float("target", target)
    if not t[0] * (1 - 1e-9) <= target <= t[-1] * (1 + 1e-9):
        raise ValueError(f"target={target:.4g} tokens is outside the evaluated range "
                         f"[{t[0]:.4g}, {t[-1]:.4g}]; train longer or evaluate earlier")
    return float(np.interp(np.log(target), np.log(t), v))


def compute_optimal_split(compute: float, tokens_per_param: float = CHINCHILLA_TOKENS_PER_PARAM
                          ) -> tuple[float, float]:
    """``(N, D)`` with ``6·N·D = compute`` and ``D = tokens_per_param · N``.

    ``N = sqrt(C / (6 r))``, ``D = r·N`` (Kaplan et al. 2020 §2.1 for ``C ≈ 6ND``; ``r ≈ 20``
    from Hoffmann et al. 2022).

    Args:
        compute: training FLOPs ``C`` > 0.
        tokens_per_param: ``r = D / N`` > 0.

    Returns:
        ``(N parameters, D tokens)`` as floats.

    Raises:
        ValueError: ``compute`` or ``tokens_per_param`` is not a finite number > 0.
    """
    c = check_positive_float("compute", compute)
    r = check_positive_float("tokens_per_param", tokens_per_param)
    n = float(np.sqrt(c / (6.0 * r)))
    return n, r * n


def chinchilla_loss(n: np.ndarray | float, d: np.ndarray | float) -> np.ndarray:
    """Hoffmann et al. (2022) §3.3 (Approach 3):
    ``1.69 + 406.4/N^0.34 + 410.7/D^0.28`` (nats per token
    of *their* tokenizer and data; not comparable with character losses).

    Raises:
        ValueError: ``n`` or ``d`` holds a value that is not finite and > 0.
    """
    f = CHINCHILLA_FIT
    n, d = np.asarray(n, dtype=np.float64), np.asarray(d, dtype=np.float64)
    if not (np.all(np.isfinite(n) & (n > 0)) and np.all(np.isfinite(d) & (d > 0))):
        raise ValueError("n and d must be finite and > 0")
    return f["E"] + f["A"] / n ** f["alpha"] + f["B"] / d ** f["beta"]
