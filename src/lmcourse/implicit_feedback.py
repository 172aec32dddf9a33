"""Implicit-feedback recommenders: ranking what a user will watch, not predicting stars.

Used in chapters: 09.

The data is a binary (or weighted) user × item matrix :math:`R` ``(n_users, n_items)``: a 1
where the user watched (rated) the item, 0 elsewhere. A 0 is not a dislike, only "not seen",
so every model here scores all items and is judged by its top-k list
(:func:`lmcourse.recsys.ranking_report`, training items excluded).

* :func:`fit_ease`: EASE, Steck, "Embarrassingly Shallow Autoencoders for Sparse Data",
  WWW 2019, eq. 8: :math:`B = I - P\\,\\mathrm{diagMat}(1/\\mathrm{diag}\\,P)`,
  :math:`P = (R^\\top R + \\lambda I)^{-1}`; :func:`ease_scores` computes :math:`RB` without
  forming :math:`B` (Woodbury: only an ``n_users × n_users`` system, exact);
* :func:`fit_wals`: weighted ALS, Hu, Koren & Volinsky, "Collaborative Filtering for Implicit
  Feedback Datasets", ICDM 2008, eqs. 3–5, confidence :math:`c_{ui} = 1 + \\alpha r_{ui}`,
  closed-form alternating updates in NumPy/SciPy (:func:`wals_loss` is the objective);
* :func:`fit_bpr`: BPR, Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit
  Feedback", UAI 2009, BPR-Opt (sec. 4.1) on sampled triples ``(u, i, j)``, Adam in JAX
  (:func:`bpr_loss` is the per-batch objective);
* :func:`fit_implicit`: the reference library ``implicit`` 0.7.3 (its CPU ALS and BPR) on the
  same matrix, BLAS limited to one thread as ``implicit`` asks;
* :func:`recommend` (top-k lists without seen items), :func:`interaction_matrix`,
  :func:`leave_last_out_within` (a validation split carved out of the training rows with
  :func:`lmcourse.data.movielens.leave_last_out`).

Bad input raises ``ValueError`` with what was wrong: ids outside the table (JAX would clamp
them silently), ``α < 0``, ``factors < 1``, ``λ ≤ 0`` where a system must stay invertible.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from lmcourse.recsys import check_pairs
from lmcourse.validation import (
    check_int,
    check_nonnegative_float,
    check_positive_float,
)

#: The two reference models of :func:`fit_implicit`.
IMPLICIT_MODELS = ("als", "bpr")


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
def interaction_matrix(user: Any, movie: Any, n_users: int, n_movies: int,
                       weight: Any = None) -> np.ndarray:
    """Dense ``(n_users, n_movies)`` float32 matrix :math:`R` of implicit feedback.

    Args:
        user, movie: ``(N,)`` integer indices in ``[0, n_users)`` and ``[0, n_movies)``.
        n_users, n_movies: table sizes (≥ 1).
        weight: ``(N,)`` non-negative weights :math:`r_{ui}` (e.g. a count); ``None``: 1 per
            pair. A repeated pair keeps the largest weight.

    Returns:
        float32 array, :math:`r_{ui}` where the pair occurs, 0 elsewhere.

    Raises:
        ValueError: sizes < 1, an index outside its table, shapes that differ, or a negative or
            non-finite weight.
    """
    n_users, n_movies = check_int("n_users", n_users, 1), check_int("n_movies", n_movies, 1)
    u, i = check_pairs(user, movie, n_users, n_movies)
    w = np.ones(u.shape, np.float32) if weight is None else np.asarray(weight, np.float32)
    if w.shape != u.shape:
        raise ValueError(f"weight must have the shape of user, {u.shape}, got {w.shape}")
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError("weight must be finite and >= 0 (implicit feedback counts or 1s)")
    r = np.zeros((n_users, n_movies), np.float32)
    np.maximum.at(r, (u, i), w)
    return r


def leave_last_out_within(data: Any, rows: Any, n_last: int = 1, seed: int = 0
                          ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`lmcourse.data.movielens.leave_last_out` applied to a subset of the ratings.

    Used to tune on validation: ``rows`` are the training rows of the test split; each user's
    ``n_last`` latest of them become the validation rows, the rest the fit rows.

    Args:
        data: a :class:`lmcourse.data.movielens.MovieLens`.
        rows: int row indices into ``data`` (e.g. the training rows), no repeats.
        n_last: validation ratings per user (≥ 1). seed: tie-breaking seed.

    Returns:
        ``(fit_rows, val_rows)``: sorted int64 indices into ``data``, disjoint, union ``rows``.

    Raises:
        ValueError: ``rows`` out of range or repeated, ``n_last < 1``, or a user with
            ``≤ n_last`` ratings among ``rows``.
    """
    from lmcourse.data.movielens import leave_last_out

    r = np.asarray(rows, np.int64)
    if r.ndim != 1 or ((r < 0) | (r >= len(data))).any() or len(np.unique(r)) != len(r):
        raise ValueError(f"rows must be distinct row indices in [0, {len(data) - 1}]")
    sub = dataclasses.replace(data, user=data.user[r], movie=data.movie[r],
                              rating=data.rating[r], timestamp=data.timestamp[r])
    fit, val = leave_last_out(sub, n_last=n_last, seed=seed)
    return np.sort(r[fit]), np.sort(r[val])


def _check_matrix(r: Any) -> np.ndarray:
    x = np.asarray(r, np.float32)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"R must be a non-empty (n_users, n_items) matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or (x < 0).any():
        raise ValueError("R must hold finite, non-negative feedback (see interaction_matrix)")
    return x


# ----------------------------------------------------------------------------------------------
# EASE (Steck 2019)
# ----------------------------------------------------------------------------------------------
def fit_ease(r: Any, lam: float) -> np.ndarray:
    r"""EASE item–item weights :math:`B` ``(n_items, n_items)`` float64 (Steck 2019, eq. 8).

    .. math:: P = (R^\top R + \lambda I)^{-1},\qquad
              B = I - P\,\mathrm{diagMat}(1 / \mathrm{diag}\,P),

    the minimiser of :math:`\|R - RB\|_F^2 + \lambda\|B\|_F^2` subject to
    :math:`\mathrm{diag}\,B = 0`. It inverts an ``n_items × n_items`` matrix: for scores use
    :func:`ease_scores`, which needs only ``n_users × n_users``.

    Args:
        r: ``(n_users, n_items)`` feedback :math:`R` (≥ 0). lam: λ > 0.

    Returns:
        :math:`B`, zero diagonal.

    Raises:
        ValueError: ``R`` not a finite non-negative matrix, ``λ ≤ 0``.
    """
    x = _check_matrix(r).astype(np.float64)
    lam = check_positive_float("lam", lam)
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def ease_scores(r: Any, lam: float) -> np.ndarray:
    r"""EASE scores :math:`RB` ``(n_users, n_items)`` float32, without forming :math:`B`.

    With :math:`K = (RR^\top + \lambda I)^{-1}` (``n_users × n_users``), the Woodbury identity
    gives :math:`RP = KR` and :math:`P_{jj} = (1 - r_j^\top K r_j)/\lambda` (:math:`r_j` the
    column of item :math:`j`), so :math:`RB = R - KR\,\mathrm{diagMat}(1/\mathrm{diag}\,P)`:
    the same numbers as :func:`fit_ease`, in :math:`O(U^2 I)` instead of :math:`O(I^3)`.

    Args:
        r: ``(n_users, n_items)`` feedback :math:`R` (≥ 0). lam: λ > 0.

    Returns:
        float32 scores (higher = recommend first).

    Raises:
        ValueError: ``R`` not a finite non-negative matrix, ``λ ≤ 0``.
    """
    x = _check_matrix(r).astype(np.float64)
    lam = check_positive_float("lam", lam)
    kr = np.linalg.solve(x @ x.T + lam * np.eye(x.shape[0]), x)          # K R, (U, I)
    diag_p = (1.0 - np.einsum("ui,ui->i", x, kr)) / lam
    return (x - kr / diag_p[None, :]).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# weighted ALS (Hu, Koren & Volinsky 2008)
# ----------------------------------------------------------------------------------------------
def wals_loss(r: Any, user_factors: Any, item_factors: Any, lam: float, alpha: float) -> float:
    r"""The weighted-ALS objective (Hu, Koren & Volinsky 2008, eq. 3), summed over all pairs:

    .. math:: \sum_{u,i} c_{ui}\,(p_{ui} - x_u^\top y_i)^2
              + \lambda\Big(\sum_u \|x_u\|^2 + \sum_i \|y_i\|^2\Big),\quad
              p_{ui} = [r_{ui} > 0],\; c_{ui} = 1 + \alpha r_{ui}.

    Args:
        r: ``(U, I)`` feedback. user_factors: ``(U, k)``. item_factors: ``(I, k)``.
        lam: λ ≥ 0. alpha: α ≥ 0.

    Returns:
        the objective (float).

    Raises:
        ValueError: bad ``R``, factor shapes that do not match ``R``, ``λ < 0``, ``α < 0``.
    """
    x = _check_matrix(r).astype(np.float64)
    lam, alpha = check_nonnegative_float("lam", lam), check_nonnegative_float("alpha", alpha)
    xu, yi = np.asarray(user_factors, np.float64), np.asarray(item_factors, np.float64)
    if xu.ndim != 2 or yi.ndim != 2 or xu.shape[0] != x.shape[0] or yi.shape[0] != x.shape[1] \
            or xu.shape[1] != yi.shape[1]:
        raise ValueError(f"factors must be (U, k) and (I, k) for R of shape {x.shape}, got "
                         f"{xu.shape} and {yi.shape}")
    err = (x > 0) - xu @ yi.T
    return float(np.sum((1 + alpha * x) * err**2) + lam * (np.sum(xu**2) + np.sum(yi**2)))


def _wals_half(r: Any, y: np.ndarray, lam: float, alpha: float) -> np.ndarray:
    r"""Closed-form rows of one side, Hu et al. eq. 4: :math:`x_u = (Y^\top C^u Y + \lambda I)
    ^{-1} Y^\top C^u p(u)`, with :math:`Y^\top C^u Y = Y^\top Y + Y^\top (C^u - I) Y` for all
    users at once as one sparse product ``(C - 1) @ [y_i y_iᵀ]`` (``(n, m) @ (m, k²)``, cost
    ``nnz · k²``: only seen pairs have :math:`c_{ui} \ne 1`)."""
    m, k = y.shape
    c1 = r.multiply(alpha).tocsr()                                   # c - 1, zero where unseen
    outer = (y[:, :, None] * y[:, None, :]).reshape(m, k * k)
    a = (y.T @ y)[None] + np.asarray(c1 @ outer).reshape(-1, k, k) + lam * np.eye(k, dtype=y.dtype)
    b = np.asarray((c1 + (r > 0)) @ y)                               # Yᵀ C^u p(u), p = [r > 0]
    return np.linalg.solve(a, b[..., None])[..., 0]


def fit_wals(r: Any, *, factors: int = 64, lam: float = 1.0, alpha: float = 10.0,
             iterations: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""Weighted ALS for implicit feedback (Hu, Koren & Volinsky 2008, eqs. 3–5).

    Alternates the exact minimisers of :func:`wals_loss`: every user vector
    :math:`x_u = (Y^\top C^u Y + \lambda I)^{-1} Y^\top C^u p(u)` (eq. 4), then every item
    vector the same way with the roles swapped (eq. 5). Each half-step lowers the objective.
    NumPy/SciPy, float32: the ``k × k`` matrices of all users come from one sparse product,
    so a half-step costs ``nnz · k²`` (seen pairs only), not ``U · I · k²``.

    Args:
        r: ``(U, I)`` feedback :math:`r_{ui}` (≥ 0; 1 for "watched").
        factors: k ≥ 1. lam: λ ≥ 0. alpha: α ≥ 0 (:math:`c_{ui} = 1 + \alpha r_{ui}`).
        iterations: alternations ≥ 1 (users then items). seed: initial factors
            :math:`0.01\,\mathcal N(0, 1)` (NumPy).

    Returns:
        ``(user_factors (U, k), item_factors (I, k))`` float32; scores are
        ``user_factors @ item_factors.T``.

    Raises:
        ValueError: bad ``R``, ``factors < 1``, ``λ < 0``, ``α < 0``, ``iterations < 1``.
    """
    from scipy.sparse import csr_matrix

    x = csr_matrix(_check_matrix(r))
    factors = check_int("factors", factors, 1)
    lam, alpha = check_nonnegative_float("lam", lam), check_nonnegative_float("alpha", alpha)
    iterations = check_int("iterations", iterations, 1)
    rng = np.random.default_rng(seed)
    xu = (0.01 * rng.standard_normal((x.shape[0], factors))).astype(np.float32)
    yi = (0.01 * rng.standard_normal((x.shape[1], factors))).astype(np.float32)
    xt = x.T.tocsr()
    with threadpool_limits(1, "blas"):                    # many small solves: one BLAS thread
        for _ in range(iterations):
            xu = _wals_half(x, yi, lam, alpha).astype(np.float32)
            yi = _wals_half(xt, xu, lam, alpha).astype(np.float32)
    return xu, yi


# ----------------------------------------------------------------------------------------------
# BPR (Rendle et al. 2009)
# ----------------------------------------------------------------------------------------------
def bpr_loss(params: dict, user: Any, pos: Any, neg: Any, lam: float) -> Any:
    r"""Mean negative BPR-Opt over a batch of triples (Rendle et al. 2009, sec. 4.1).

    .. math:: \hat x_{uij} = p_u^\top q_i + b_i - p_u^\top q_j - b_j,\qquad
              \ell = -\ln\sigma(\hat x_{uij}) + \lambda\big(\|p_u\|^2 + \|q_i\|^2 + \|q_j\|^2
              + b_i^2 + b_j^2\big),

    averaged over the batch (the penalty on the parameters each triple touches, as LearnBPR's
    per-triple update applies it, sec. 4.2). JAX, jit-able.

    Args:
        params: ``{"P": (U, k), "Q": (I, k), "b": (I,)}`` float32.
        user, pos, neg: ``(B,)`` int user, seen item :math:`i`, unseen item :math:`j` (checked
            against the tables when concrete; under ``jit`` the caller checks).
        lam: λ ≥ 0.

    Returns:
        scalar float32 (JAX array).

    Raises:
        ValueError: an index outside its table (when concrete), ``λ < 0`` (when concrete).
    """
    import jax
    import jax.numpy as jnp

    from lmcourse.validation import is_traced

    n_users, n_items = params["P"].shape[0], params["Q"].shape[0]
    if not any(is_traced(a) for a in (user, pos, neg, lam)):
        check_nonnegative_float("lam", lam)
        check_pairs(user, pos, n_users, n_items)
        check_pairs(user, neg, n_users, n_items)
    p, qi, qj = params["P"][user], params["Q"][pos], params["Q"][neg]
    bi, bj = params["b"][pos], params["b"][neg]
    x_uij = jnp.sum(p * (qi - qj), axis=-1) + bi - bj
    penalty = (jnp.sum(p**2, -1) + jnp.sum(qi**2, -1) + jnp.sum(qj**2, -1) + bi**2 + bj**2)
    return jnp.mean(-jax.nn.log_sigmoid(x_uij) + lam * penalty)


def sample_triples(r: np.ndarray, n: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` BPR triples ``(u, i, j)``: a seen pair drawn uniformly, ``j`` uniform among the
    user's unseen items (rejection sampling; Rendle et al. 2009, sec. 4.2, bootstrap sampling).

    Args:
        r: ``(U, I)`` feedback (> 0 = seen). n: number of triples (≥ 1). rng: NumPy generator.

    Returns:
        three ``(n,)`` int32 arrays.

    Raises:
        ValueError: ``n < 1``, no seen pair, or a user who has seen every item.
    """
    n = check_int("n", n, 1)
    seen = r > 0
    users, items = np.nonzero(seen)
    if len(users) == 0:
        raise ValueError("R has no positive entry: BPR needs seen (user, item) pairs")
    if seen.all(axis=1).any():
        raise ValueError("a user has seen every item: no negative item to sample")
    pick = rng.integers(len(users), size=n)
    u, i = users[pick], items[pick]
    j = rng.integers(r.shape[1], size=n)
    bad = seen[u, j]
    while bad.any():
        j[bad] = rng.integers(r.shape[1], size=int(bad.sum()))
        bad = seen[u, j]
    return u.astype(np.int32), i.astype(np.int32), j.astype(np.int32)


@functools.lru_cache(maxsize=8)
def _bpr_epoch(learning_rate: float) -> tuple[Any, Any]:
    import jax
    import optax

    tx = optax.adam(learning_rate)

    def step(carry, batch):
        params, state, lam = carry
        loss, grads = jax.value_and_grad(bpr_loss)(params, *batch, lam)
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state, lam), loss

    def epoch(params, state, lam, u, i, j):                  # u, i, j: (n_batches, batch)
        (params, state, _), losses = jax.lax.scan(step, (params, state, lam), (u, i, j))
        return params, state, losses

    return jax.jit(epoch), tx


def fit_bpr(r: Any, *, factors: int = 64, lam: float = 1e-4, learning_rate: float = 0.01,
            epochs: int = 20, batch_size: int = 1024, seed: int = 0, eval_fn: Any = None,
            eval_every: int = 5) -> tuple[dict, dict[str, list]]:
    r"""BPR matrix factorisation (Rendle et al. 2009) trained with Adam (Optax) in JAX.

    Each epoch draws as many triples as there are seen pairs (:func:`sample_triples`) and runs
    one jitted ``lax.scan`` of Adam steps on :func:`bpr_loss`. Factors start at
    :math:`\mathcal N(0, 0.1^2)` (Rendle's choice), item biases at 0.

    Args:
        r: ``(U, I)`` feedback (> 0 = seen).
        factors: k ≥ 1. lam: λ ≥ 0. learning_rate: Adam step (> 0). epochs: ≥ 1.
        batch_size: triples per step (≥ 1). seed: initial factors and sampling.
        eval_fn: if set, ``eval_fn(params)`` (a validation NDCG) every ``eval_every`` epochs
            and after the last.
        eval_every: ≥ 1.

    Returns:
        ``(params, history)``: NumPy ``{"P", "Q", "b"}`` and ``{"loss": per-epoch mean,
        "epoch": [...], "eval": [...]}``.

    Raises:
        ValueError: bad ``R``, ``factors < 1``, ``λ < 0``, ``learning_rate ≤ 0``, ``epochs < 1``,
            ``batch_size < 1``, ``eval_every < 1``.
    """
    import jax
    import jax.numpy as jnp

    x = _check_matrix(r)
    factors = check_int("factors", factors, 1)
    lam = check_nonnegative_float("lam", lam)
    learning_rate = check_positive_float("learning_rate", learning_rate)
    epochs, batch_size = check_int("epochs", epochs, 1), check_int("batch_size", batch_size, 1)
    eval_every = check_int("eval_every", eval_every, 1)
    n_batches = max(1, int((x > 0).sum()) // batch_size)
    kp, kq = jax.random.split(jax.random.key(seed))
    params = {"P": 0.1 * jax.random.normal(kp, (x.shape[0], factors), jnp.float32),
              "Q": 0.1 * jax.random.normal(kq, (x.shape[1], factors), jnp.float32),
              "b": jnp.zeros(x.shape[1], jnp.float32)}
    epoch, tx = _bpr_epoch(learning_rate)
    state, rng = tx.init(params), np.random.default_rng(seed)
    history: dict[str, list] = {"loss": [], "epoch": [], "eval": []}
    for e in range(1, epochs + 1):
        batches = [a.reshape(n_batches, batch_size)
                   for a in sample_triples(x, n_batches * batch_size, rng)]
        params, state, losses = epoch(params, state, jnp.float32(lam), *batches)
        history["loss"].append(float(np.mean(losses)))
        if eval_fn is not None and (e % eval_every == 0 or e == epochs):
            history["epoch"].append(e)
            history["eval"].append(float(eval_fn({k: np.asarray(v) for k, v in params.items()})))
    return {k: np.asarray(v) for k, v in params.items()}, history


def bpr_scores(params: dict) -> np.ndarray:
    """``(U, I)`` float32 BPR scores :math:`p_u^\\top q_i + b_i` (for ranking).

    Raises:
        ValueError: ``params`` lacks ``P``, ``Q`` or ``b``.
    """
    missing = [k for k in ("P", "Q", "b") if k not in params]
    if missing:
        raise ValueError(f"params lacks {missing}; expected the dict returned by fit_bpr")
    return (np.asarray(params["P"]) @ np.asarray(params["Q"]).T
            + np.asarray(params["b"])[None, :]).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# the reference library and top-k lists
# ----------------------------------------------------------------------------------------------
def fit_implicit(model: str, r: Any, *, factors: int = 64, seed: int = 0, **kwargs: Any
                 ) -> np.ndarray:
    """Fit ``implicit`` 0.7.3's CPU ALS or BPR on ``R`` and return its ``(U, I)`` scores.

    ``"als"`` is :class:`implicit.cpu.als.AlternatingLeastSquares` (Hu et al. 2008 with
    conjugate-gradient steps; its confidence is ``alpha · r`` on seen pairs, 1 elsewhere);
    ``"bpr"`` is :class:`implicit.cpu.bpr.BayesianPersonalizedRanking` (Rendle et al. 2009,
    Hogwild SGD; one of its factors holds the item bias). BLAS is held to one thread
    (``threadpoolctl``), as ``implicit`` recommends.

    Args:
        model: ``"als"`` or ``"bpr"``. r: ``(U, I)`` feedback. factors: ≥ 1. seed: its
            ``random_state``. **kwargs: other constructor arguments (``regularization``,
            ``alpha``, ``iterations``, ``learning_rate`` …).

    Returns:
        float32 scores ``user_factors @ item_factors.T``.

    Raises:
        ValueError: an unknown ``model``, bad ``R``, ``factors < 1``.
    """
    from scipy.sparse import csr_matrix

    if model not in IMPLICIT_MODELS:
        raise ValueError(f"model must be one of {IMPLICIT_MODELS}, got {model!r}")
    x = _check_matrix(r)
    factors = check_int("factors", factors, 1)
    if model == "als":        # imported before the limit, so that it covers every BLAS loaded
        from implicit.cpu.als import AlternatingLeastSquares as Model
    else:
        from implicit.cpu.bpr import BayesianPersonalizedRanking as Model
    with threadpool_limits(1, "blas"):
        m = Model(factors=factors, random_state=seed, **kwargs)
        m.fit(csr_matrix(x), show_progress=False)
    return (m.user_factors @ m.item_factors.T).astype(np.float32)


def recommend(scores: Any, train_user: Any, train_movie: Any, k: int = 10) -> np.ndarray:
    """Each user's top-``k`` items, best first, training (already seen) items excluded.

    Args:
        scores: ``(U, I)`` scores. train_user, train_movie: ``(N,)`` seen pairs. k: 1 ≤ k ≤ I.

    Returns:
        ``(U, k)`` int64 item indices.

    Raises:
        ValueError: ``scores`` not 2-D or with NaN, pairs out of range, ``k`` out of range, or a
            user with fewer than ``k`` unseen items.
    """
    s = np.array(scores, np.float64)
    if s.ndim != 2 or np.isnan(s).any():
        raise ValueError(f"scores must be a (n_users, n_items) matrix without NaN, got {s.shape}")
    k = check_int("k", k, 1)
    if k > s.shape[1]:
        raise ValueError(f"k must be <= {s.shape[1]} (the number of items), got {k}")
    u, i = check_pairs(train_user, train_movie, *s.shape)
    s[u, i] = -np.inf
    if (np.isfinite(s).sum(axis=1) < k).any():
        raise ValueError(f"a user has fewer than k={k} unseen items")
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)
