"""Recommender models and their evaluation (chapter 09), on arrays of (user, movie, rating).

Used in chapters: 09; imported by ``lmcourse.data.catalog``, ``lmcourse.implicit_feedback``,
``lmcourse.models.neumf``.

Every model takes parallel arrays ``user`` ``(N,)`` int, ``movie`` ``(N,)`` int, ``rating``
``(N,)`` float (indices as returned by :func:`lmcourse.data.movielens.load_movielens`) and
predicts ratings for ``(user, movie)`` pairs:

* :func:`fit_biases`: global mean plus regularised movie and user biases (Irizarry's book;
  Koren, Bell & Volinsky 2009, eq. 3);
* :func:`train_mf`: biased matrix factorisation trained with Optax, one compiled epoch per call
  (Koren, Bell & Volinsky, "Matrix factorization techniques for recommender systems",
  IEEE Computer 42(8), 2009, eq. 5), minimising :func:`mf_loss`;
* :func:`train_neumf`: a small neural collaborative filtering model in Flax NNX
  (:class:`lmcourse.models.neumf.NeuMF`; He et al., "Neural Collaborative Filtering", WWW
  2017), here regressing ratings, trained by :func:`lmcourse.training.train_loop`;
* :class:`ContentModel`: content-based predictions from TF-IDF vectors of titles and genres,
  which also work for a movie nobody has rated (cold start);
* :func:`ranking_report`: precision@k, recall@k, NDCG@k, hit rate and catalogue coverage.

Bad input raises ``ValueError`` at the public boundary, where values are concrete: a user or
movie index outside its table (JAX would silently clamp it and return another user's rating),
a size ``k ≤ 0``, a penalty ``λ < 0`` or NaN, a learning rate ``≤ 0``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from lmcourse.metrics import ndcg_at_k, precision_at_k, recall_at_k, root_mean_squared_error
from lmcourse.progress import progress as progress_bar
from lmcourse.validation import (
    check_batch_size,
    check_float,
    check_ids,
    check_int,
    check_nonnegative_float,
    check_positive_float,
    is_traced,
)

#: The two ways of weighting the L2 penalty of matrix factorisation (see :func:`mf_loss`).
PENALTIES = ("per_rating", "per_parameter")


# ----------------------------------------------------------------------------------------------
# input validation (at the public boundary, where values are concrete)
# ----------------------------------------------------------------------------------------------
def _check_ids(name: str, ids: Any, size: int) -> np.ndarray:
    """``ids`` (``name`` is ``"user"`` or ``"movie"``) as int64 indices into a table of ``size``
    rows (:func:`lmcourse.validation.check_ids`, whole-number floats accepted)."""
    return check_ids(name, ids, size, size_name=f"n_{name}s", whole_floats=True, fix=(
        f"JAX would silently clamp it and answer for another {name}. Map raw ids to indices "
        f"with the data set's `{name}_ids` (np.searchsorted), and build the model with "
        f"n_{name}s covering them"))


def _check_penalty(penalty: str) -> str:
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
    return penalty


def _check_triples(user: Any, movie: Any, rating: Any, n_users: int, n_movies: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated training triples: equal lengths, ids in range, finite ratings, N ≥ 1."""
    n_users = check_int("n_users", n_users, 1)
    n_movies = check_int("n_movies", n_movies, 1)
    u = _check_ids("user", user, n_users)
    i = _check_ids("movie", movie, n_movies)
    r = np.asarray(rating, np.float64)
    if not (u.ndim == i.ndim == r.ndim == 1 and len(u) == len(i) == len(r)):
        raise ValueError(f"user, movie and rating must be 1-D arrays of the same length, got "
                         f"shapes {u.shape}, {i.shape}, {r.shape}")
    if len(r) == 0:
        raise ValueError("no ratings given: need at least one (user, movie, rating) triple")
    if not np.all(np.isfinite(r)):
        raise ValueError("rating contains NaN or infinite values")
    return u, i, r


def check_pairs(user: Any, movie: Any, n_users: int, n_movies: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(user, movie)`` index arrays of one shape as int64, every index inside its table.

    Args:
        user: user indices, any shape, in ``[0, n_users)`` (concrete, not traced).
        movie: movie indices, the same shape, in ``[0, n_movies)``.
        n_users, n_movies: the sizes of the model's user and movie tables.

    Raises:
        ValueError: an index outside its table (JAX would clamp it silently and answer for
            another user or movie), non-integer indices, or shapes that differ.
    """
    u = _check_ids("user", user, n_users)
    i = _check_ids("movie", movie, n_movies)
    if u.shape != i.shape:
        raise ValueError(f"user and movie must have the same shape, got {u.shape}, {i.shape}")
    return u, i


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error in stars (:func:`lmcourse.metrics.root_mean_squared_error`)."""
    return root_mean_squared_error(np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64))


# ----------------------------------------------------------------------------------------------
# baselines: global mean and biases
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Biases:
    r"""Baseline predictor :math:`\hat r_{ui} = \mu + b_u + b_i`.

    Attributes:
        mu: global mean rating (float).
        b_user: ``(n_users,)`` float64 user biases (zeros for a movie-only model).
        b_movie: ``(n_movies,)`` float64 movie biases (zeros for a mean-only model).
    """

    mu: float
    b_user: np.ndarray
    b_movie: np.ndarray

    def predict(self, user: Any, movie: Any, clip: tuple[float, float] | None = (0.5, 5.0)
                ) -> np.ndarray:
        """``(N,)`` float64 predicted stars, clipped to ``clip`` (``None``: no clipping).

        Raises:
            ValueError: a user index outside ``[0, len(b_user))`` or a movie index outside
                ``[0, len(b_movie))``.
        """
        u, i = check_pairs(user, movie, len(self.b_user), len(self.b_movie))
        pred = self.mu + self.b_user[u] + self.b_movie[i]
        return pred if clip is None else np.clip(pred, *clip)


def fit_biases(user: Any, movie: Any, rating: Any, n_users: int, n_movies: int, *,
               lam_movie: float = 0.0, lam_user: float = 0.0, use_movie: bool = True,
               use_user: bool = True, n_sweeps: int = 1,
               penalty: str = "per_parameter") -> Biases:
    r"""Fit :math:`\mu`, movie and user biases in closed form, as in Irizarry's book.

    With ``penalty="per_parameter"`` (the book's, the default) each bias is penalised once,
    :math:`\sum (r_{ui} - \mu - b_u - b_i)^2 + \lambda_i \sum_i b_i^2 + \lambda_u \sum_u b_u^2`,
    and the coordinate minimisers are

    .. math:: b_i = \frac{\sum_{u \in R(i)} (r_{ui} - \mu - b_u)}{\lambda_i + n_i},\qquad
              b_u = \frac{\sum_{i \in R(u)} (r_{ui} - \mu - b_i)}{\lambda_u + n_u} .

    With ``penalty="per_rating"`` the penalty sits inside the sum over ratings (Koren, Bell &
    Volinsky 2009, eq. 5, as Surprise's SGD runs it), so bias ``b_i`` is penalised ``n_i`` times
    and the denominators become :math:`(1 + \lambda_i)\,n_i` and :math:`(1 + \lambda_u)\,n_u`
    (every bias shrinks by the same factor, whatever its number of ratings).

    One sweep (the default) is the book's procedure: movie effects first (with ``b_u = 0``),
    then user effects on the residuals. ``n_sweeps > 1`` alternates the two updates (coordinate
    descent, which converges to the joint minimiser). ``lam_* = 0`` gives plain means; a movie
    or user with no rating gets bias 0.

    Args:
        user, movie: ``(N,)`` integer indices in ``[0, n_users)`` and ``[0, n_movies)``;
            rating: ``(N,)`` stars.
        n_users, n_movies: sizes of the bias vectors (≥ 1).
        lam_movie, lam_user: shrinkage λ ≥ 0 (per parameter: "pseudo-ratings" at the mean).
        use_movie, use_user: switch each effect off (mean only: both ``False``).
        n_sweeps: number of alternating sweeps (≥ 1).
        penalty: ``"per_parameter"`` or ``"per_rating"`` (see above).

    Returns:
        :class:`Biases`.

    Raises:
        ValueError: ids out of range, arrays of different lengths or empty, NaN ratings,
            ``λ < 0`` or NaN, ``n_sweeps < 1``, an unknown ``penalty``.
    """
    user, movie, r = _check_triples(user, movie, rating, n_users, n_movies)
    lam_movie, lam_user = check_nonnegative_float("lam_movie", lam_movie), check_nonnegative_float("lam_user", lam_user)
    n_sweeps = check_int("n_sweeps", n_sweeps, 1)
    _check_penalty(penalty)
    mu = float(r.mean())
    b_user, b_movie = np.zeros(n_users), np.zeros(n_movies)
    n_u = np.bincount(user, minlength=n_users)
    n_i = np.bincount(movie, minlength=n_movies)
    if penalty == "per_parameter":
        den_i, den_u = n_i + lam_movie, n_u + lam_user
    else:
        den_i, den_u = n_i * (1.0 + lam_movie), n_u * (1.0 + lam_user)
    den_i, den_u = np.maximum(den_i, 1e-12), np.maximum(den_u, 1e-12)
    for _ in range(n_sweeps):
        if use_movie:
            b_movie = np.bincount(movie, r - mu - b_user[user], n_movies) / den_i
        if use_user:
            b_user = np.bincount(user, r - mu - b_movie[movie], n_users) / den_u
    return Biases(mu, b_user, b_movie)


# ----------------------------------------------------------------------------------------------
# biased matrix factorisation in JAX + Optax
# ----------------------------------------------------------------------------------------------
_MF_KEYS = ("mu", "b_user", "b_movie", "P", "Q")


def _mf_tables(params: dict) -> tuple[int, int]:
    missing = [k for k in _MF_KEYS if k not in params]
    if missing:
        raise ValueError(f"params lacks {missing}; expected keys {_MF_KEYS} (see train_mf)")
    return int(params["P"].shape[0]), int(params["Q"].shape[0])


def _mf_raw(params: dict, user: Any, movie: Any) -> Any:
    import jax.numpy as jnp

    return (params["mu"] + params["b_user"][user] + params["b_movie"][movie]
            + jnp.sum(params["P"][user] * params["Q"][movie], axis=-1))


def _mf_check(params: dict, user: Any, movie: Any) -> None:
    """Validate ids against the tables when they are concrete (skipped under ``jit``)."""
    n_users, n_movies = _mf_tables(params)
    if not (is_traced(user) or is_traced(movie)):
        check_pairs(user, movie, n_users, n_movies)


def mf_predict(params: dict, user: Any, movie: Any) -> Any:
    r""":math:`\hat r_{ui} = \mu + b_u + b_i + p_u^\top q_i`, ``(N,)`` (JAX, jit-able).

    ``params``: ``mu`` scalar, ``b_user`` ``(U,)``, ``b_movie`` ``(I,)``, ``P`` ``(U, k)``,
    ``Q`` ``(I, k)`` (float32, as returned by :func:`train_mf`). Predictions are in stars and
    not clipped.

    Raises:
        ValueError: a user index outside ``[0, U)`` or a movie index outside ``[0, I)``
            (checked when the indices are concrete; inside ``jit`` the caller must check, since
            JAX clamps out-of-range gathers silently), or ``params`` lacks a table.
    """
    _mf_check(params, user, movie)
    return _mf_raw(params, user, movie)


def _penalty_terms(params: dict, user: Any, movie: Any, penalty: str) -> Any:
    """Per rating: ``‖p_u‖² + ‖q_i‖² + b_u² + b_i²`` ``(N,)``; per parameter: the scalar sum
    of all squared entries of P, Q, b_user, b_movie."""
    import jax.numpy as jnp

    if penalty == "per_rating":
        return (jnp.sum(params["P"][user] ** 2, axis=-1) + jnp.sum(params["Q"][movie] ** 2, axis=-1)
                + params["b_user"][user] ** 2 + params["b_movie"][movie] ** 2)
    return sum(jnp.sum(params[name] ** 2) for name in ("P", "Q", "b_user", "b_movie"))


def _mf_batch_loss(params: dict, user: Any, movie: Any, rating: Any, lam: Any, n_total: int,
                   penalty: str) -> Any:
    import jax.numpy as jnp

    err2 = (rating - _mf_raw(params, user, movie)) ** 2
    if penalty == "per_rating":
        return jnp.mean(err2 + lam * _penalty_terms(params, user, movie, penalty))
    return jnp.mean(err2) + lam * _penalty_terms(params, user, movie, penalty) / n_total


def mf_loss(params: dict, user: Any, movie: Any, rating: Any, lam: float,
            penalty: str = "per_rating") -> Any:
    r"""The training objective of :func:`train_mf`, divided by the number of ratings :math:`N`.

    ``penalty="per_rating"`` (Koren, Bell & Volinsky 2009, eq. 5, with λ inside the sum over
    the observed ratings :math:`K`, as their SGD and Surprise's ``SVD`` apply it):

    .. math:: L = \frac{1}{N}\sum_{(u,i) \in K} \Big[(r_{ui} - \hat r_{ui})^2
              + \lambda\big(\|p_u\|^2 + \|q_i\|^2 + b_u^2 + b_i^2\big)\Big]

    so a user with :math:`n_u` ratings pays :math:`\lambda n_u \|p_u\|^2`.
    ``penalty="per_parameter"`` penalises every parameter once (a Gaussian prior on each, the
    form of :func:`fit_biases`' default):

    .. math:: L = \frac{1}{N}\Big[\sum_{(u,i) \in K} (r_{ui} - \hat r_{ui})^2
              + \lambda\big(\|P\|_F^2 + \|Q\|_F^2 + \|b_u\|^2 + \|b_i\|^2\big)\Big]

    Args:
        params: see :func:`mf_predict`.
        user, movie, rating: ``(N,)`` the observed ratings :math:`K`.
        lam: λ ≥ 0. penalty: ``"per_rating"`` or ``"per_parameter"``.

    Returns:
        scalar float32 :math:`L` (JAX array).

    Raises:
        ValueError: ``λ < 0`` or NaN, an unknown ``penalty``, ids out of range (when concrete).
    """
    _check_penalty(penalty)
    if not is_traced(lam):
        check_nonnegative_float("lam", lam)
    _mf_check(params, user, movie)
    n = rating.shape[0] if hasattr(rating, "shape") else len(rating)
    return _mf_batch_loss(params, user, movie, rating, lam, n, penalty)


def mf_batch_loss(params: dict, user: Any, movie: Any, rating: Any, lam: float,
                  n_total: int, penalty: str = "per_rating") -> Any:
    r"""Mini-batch estimate of :func:`mf_loss` over ``n_total`` training ratings.

    Per rating: the batch mean of :math:`(r_{ui} - \hat r_{ui})^2 + \lambda(\|p_u\|^2 + \|q_i\|^2
    + b_u^2 + b_i^2)`. Per parameter: the batch mean squared error plus
    :math:`\lambda \cdot \text{penalty} / N_\text{total}`. Either way its expectation over a
    uniformly drawn batch equals :func:`mf_loss` on all ``n_total`` ratings, and the mean over
    the equal batches of a partition is exactly :func:`mf_loss`.

    Raises:
        ValueError: as :func:`mf_loss`, or ``n_total < 1``.
    """
    _check_penalty(penalty)
    check_int("n_total", n_total, 1)
    if not is_traced(lam):
        check_nonnegative_float("lam", lam)
    _mf_check(params, user, movie)
    return _mf_batch_loss(params, user, movie, rating, lam, n_total, penalty)


@functools.lru_cache(maxsize=16)
def _compiled_epoch(n_users: int, n_movies: int, k: int, n_batches: int, batch_size: int,
                    learning_rate: float, n_total: int, penalty: str) -> tuple[Any, float]:
    """One epoch (a ``lax.scan`` of Adam steps), compiled once per shape and setting; λ is an
    argument, so a λ grid reuses one compilation. Returns ``(compiled, compile_seconds)``."""
    import time

    import jax
    import jax.numpy as jnp
    import optax

    tx = optax.adam(learning_rate)

    def step(carry, batch):
        params, opt_state, lam = carry
        loss, grads = jax.value_and_grad(_mf_batch_loss)(params, *batch, lam, n_total, penalty)
        grads["mu"] = jnp.zeros_like(grads["mu"])            # μ stays the training mean
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, lam), loss

    def epoch(params, opt_state, lam, u, i, r):               # u, i, r: (n_batches, batch_size)
        (params, opt_state, _), losses = jax.lax.scan(step, (params, opt_state, lam), (u, i, r))
        return params, opt_state, losses

    f32 = jnp.float32
    params = {"mu": jax.ShapeDtypeStruct((), f32),
              "b_user": jax.ShapeDtypeStruct((n_users,), f32),
              "b_movie": jax.ShapeDtypeStruct((n_movies,), f32),
              "P": jax.ShapeDtypeStruct((n_users, k), f32),
              "Q": jax.ShapeDtypeStruct((n_movies, k), f32)}
    opt_state = jax.eval_shape(tx.init, params)
    ints = jax.ShapeDtypeStruct((n_batches, batch_size), jnp.int32)
    t0 = time.perf_counter()
    compiled = jax.jit(epoch).lower(params, opt_state, jax.ShapeDtypeStruct((), f32), ints, ints,
                                    jax.ShapeDtypeStruct((n_batches, batch_size), f32)).compile()
    return (compiled, tx), time.perf_counter() - t0


def train_mf(user: Any, movie: Any, rating: Any, n_users: int, n_movies: int, *, k: int = 32,
             lam: float = 0.05, penalty: str = "per_rating", learning_rate: float = 0.01,
             epochs: int = 10, batch_size: int = 4096, init_scale: float = 0.1, seed: int = 0,
             eval_fn: Any = None, progress: bool = True) -> tuple[dict, dict[str, Any]]:
    """Train biased matrix factorisation by mini-batch Adam (Optax), one compiled epoch at a time.

    Minimises :func:`mf_loss` (``penalty`` selects where λ sits), estimated on each batch by
    :func:`mf_batch_loss`. Biases start at the closed-form minimisers of the same objective
    without factors (:func:`fit_biases` with the same λ and ``penalty``, 10 sweeps), factors at
    ``init_scale · N(0, 1/k)``; μ stays the training mean. Each epoch visits a seeded random
    permutation of the ratings in ``N // batch_size`` batches (the remainder is skipped that
    epoch); the whole epoch is one ``jax.lax.scan`` inside one ``jax.jit``, compiled ahead of
    time once per shape and setting (λ is an input, so a λ grid compiles once), so Python is
    entered once per epoch, not once per step. This is why it does not use the course's one
    loop (:func:`lmcourse.training.train_loop`, a Python loop over jitted steps): chapter 09
    teaches the whole epoch compiled as one ``lax.scan``, which for a model this small is many
    times faster than entering Python at every step. Koren, Bell & Volinsky (*Matrix Factorization
    Techniques for Recommender Systems*, IEEE Computer 2009, eq. 5) and Surprise's ``SVD`` run
    plain SGD one rating at a time; this runs Adam on batches.

    Args:
        user, movie, rating: ``(N,)`` training triples (ints in ``[0, n_users)`` and
            ``[0, n_movies)``, float stars).
        n_users, n_movies: table sizes (≥ 1).
        k: number of latent factors (≥ 1); lam: λ ≥ 0 of :func:`mf_loss`; penalty:
            ``"per_rating"`` (Koren's eq. 5) or ``"per_parameter"``;
        learning_rate: Adam step size (> 0); epochs: passes over the data (≥ 1); batch_size:
            ratings per step, in ``[1, N]``; init_scale: factor scale (≥ 0);
        seed: seed for the factors and the batch order.
        eval_fn: if set, ``eval_fn(params)`` (e.g. a validation RMSE) is recorded after every
            epoch (outside the timed part).
        progress: a progress bar (ratings/s, ETA, last epoch's loss and evaluation; see
            :mod:`lmcourse.progress`) and one summary line; False: silent.

    Returns:
        ``(params, history)``: NumPy parameter dict (see :func:`mf_predict`) and
        ``{"loss": per-step batch losses, "epoch": [...], "eval": [...], "compile_s": float,
        "train_s": float}`` (seconds of compilation, 0 when reused, and of the compiled epochs).

    Raises:
        ValueError: ids out of range, arrays of different lengths or empty, NaN ratings,
            ``k < 1``, ``λ < 0`` or NaN, ``learning_rate ≤ 0`` or NaN, ``epochs < 1``,
            ``batch_size`` outside ``[1, N]``, ``init_scale < 0``, an unknown ``penalty``.
    """
    import time

    import jax
    import jax.numpy as jnp

    user, movie, rating = _check_triples(user, movie, rating, n_users, n_movies)
    n_users, n_movies = int(n_users), int(n_movies)
    k = check_int("k", k, 1)
    lam = check_nonnegative_float("lam", lam)
    _check_penalty(penalty)
    learning_rate = check_positive_float("learning_rate", learning_rate)
    epochs = check_int("epochs", epochs, 1)
    init_scale = check_nonnegative_float("init_scale", init_scale)
    n = len(rating)
    batch_size = check_batch_size(batch_size, n, "training ratings")
    b = fit_biases(user, movie, rating, n_users, n_movies, lam_movie=lam, lam_user=lam,
                   n_sweeps=10, penalty=penalty)
    kp, kq = jax.random.split(jax.random.key(seed))
    params = {
        "mu": jnp.float32(b.mu),
        "b_user": jnp.asarray(b.b_user, jnp.float32),
        "b_movie": jnp.asarray(b.b_movie, jnp.float32),
        "P": (init_scale * jax.random.normal(kp, (n_users, k)) / np.sqrt(k)).astype(jnp.float32),
        "Q": (init_scale * jax.random.normal(kq, (n_movies, k)) / np.sqrt(k)).astype(jnp.float32),
    }
    user, movie = user.astype(np.int32), movie.astype(np.int32)
    rating = rating.astype(np.float32)
    n_batches = n // batch_size
    key = (n_users, n_movies, k, n_batches, batch_size, learning_rate, n, penalty)
    hits = _compiled_epoch.cache_info().hits
    (compiled, tx), compile_s = _compiled_epoch(*key)
    reused = _compiled_epoch.cache_info().hits > hits
    opt_state = tx.init(params)
    lam32 = jnp.float32(lam)
    rng = np.random.default_rng(seed)

    def epoch_batches():
        order = rng.permutation(n)[: n_batches * batch_size].reshape(n_batches, batch_size)
        return user[order], movie[order], rating[order]

    history: dict[str, Any] = {"loss": [], "epoch": [], "eval": [],
                               "compile_s": 0.0 if reused else compile_s, "train_s": 0.0}
    bar = progress_bar(total=epochs * n_batches * batch_size, desc="train MF", unit="ratings",
                       enabled=progress)
    with bar:
        for e in range(epochs):
            batches = epoch_batches()
            t0 = time.perf_counter()
            params, opt_state, losses = compiled(params, opt_state, lam32, *batches)
            losses = np.asarray(losses)                           # waits for the epoch to finish
            history["train_s"] += time.perf_counter() - t0
            history["loss"].extend(losses.tolist())
            bar.update(n_batches * batch_size, loss=float(losses.mean()))
            if eval_fn is not None:
                history["epoch"].append(e + 1)
                history["eval"].append(float(eval_fn(params)))
                bar.set(eval=history["eval"][-1])
    return {name: np.asarray(v) for name, v in params.items()}, history


def mf_scores(params: dict) -> np.ndarray:
    """``(n_users, n_movies)`` float32 predicted ratings for every pair (for ranking).

    Raises:
        ValueError: ``params`` lacks a table.
    """
    _mf_tables(params)
    return (params["mu"] + params["b_user"][:, None] + params["b_movie"][None, :]
            + params["P"] @ params["Q"].T).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# neural collaborative filtering (NeuMF) in Flax NNX
# ----------------------------------------------------------------------------------------------
def train_neumf(user: Any, movie: Any, rating: Any, n_users: int, n_movies: int, *,
                dim: int = 16, hidden: tuple[int, ...] = (32, 16), epochs: int = 8,
                batch_size: int = 1024, lr: float = 3e-3, weight_decay: float = 1e-4,
                l2: float = 0.1, init_biases: Biases | None = None, seed: int = 0,
                eval_fn: Any = None, progress: bool = True, checkpoint_dir: Any = None,
                checkpoint_every: int = 0, resume: bool = True) -> tuple[Any, float, list[float]]:
    r"""Train :class:`lmcourse.models.neumf.NeuMF` on ratings with AdamW and mini-batches.

    Runs :func:`lmcourse.training.train_loop` (a jitted NNX step; batches from
    :func:`lmcourse.training.batches`, reshuffled every epoch from ``seed``, the remainder of
    ``N // batch_size`` skipped).

    Loss per batch: mean over the batch of :math:`(r - \mu - f(u, i))^2 + l_2\,\|e_{ui}\|^2`,
    where :math:`\|e_{ui}\|^2` sums the squared embeddings and biases of that rating's user and
    movie: the per-rating penalty of :func:`mf_loss` (λ inside the sum over ratings).

    ``init_biases`` (a fitted :class:`Biases`) sets the model's bias embeddings at the start.

    Args:
        user, movie, rating: ``(N,)`` training triples; n_users, n_movies: table sizes (≥ 1).
        dim: embedding size (≥ 1); hidden: MLP widths (each ≥ 1); epochs: passes (≥ 0; 0
            returns the initial model); batch_size: in ``[1, N]``; lr: AdamW step (> 0);
            weight_decay, l2: penalties (≥ 0); seed: initialisation and batch order.
        eval_fn: if set, ``eval_fn(model, mu)`` is called after every epoch (e.g. to record a
            validation RMSE per epoch); its return value is ignored.
        progress: a progress bar (ratings/s, ETA, loss) and one summary line; False: silent.
        checkpoint_dir, checkpoint_every, resume: checkpoints, as in
            :func:`lmcourse.training.fit` (model, optimizer, generator, step).

    Returns:
        ``(model, mu, epoch_losses)``; predict with :func:`neumf_predict`.

    Raises:
        ValueError: ids out of range, arrays of different lengths or empty, NaN ratings, a size
            or ``epochs`` out of range, ``lr ≤ 0``, ``l2`` or ``weight_decay`` < 0 or NaN,
            ``init_biases`` of the wrong sizes, or a checkpoint of another model or settings.
        NonFiniteLossError: the loss became NaN or infinite (the message names the step).
    """
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from lmcourse.compat import apply_gradients, make_optimizer
    from lmcourse.models.neumf import NeuMF
    from lmcourse.training import epoch_batches, train_loop

    user, movie, rating = _check_triples(user, movie, rating, n_users, n_movies)
    epochs = check_int("epochs", epochs, 0)
    lr = check_positive_float("lr", lr)
    weight_decay = check_nonnegative_float("weight_decay", weight_decay)
    l2 = check_nonnegative_float("l2", l2)
    n = len(rating)
    batch_size = check_batch_size(batch_size, n, "training ratings")
    if init_biases is not None and (len(init_biases.b_user), len(init_biases.b_movie)) != (
            n_users, n_movies):
        raise ValueError(f"init_biases has {len(init_biases.b_user)} users and "
                         f"{len(init_biases.b_movie)} movies, the model {n_users} and {n_movies}")
    model = NeuMF(n_users, n_movies, dim, hidden, rngs=nnx.Rngs(seed))
    if init_biases is not None:                       # start from the closed-form biases
        model.b_user.embedding[...] = jnp.asarray(init_biases.b_user[:, None], jnp.float32)
        model.b_movie.embedding[...] = jnp.asarray(init_biases.b_movie[:, None], jnp.float32)
    optimizer = make_optimizer(model, optax.adamw(lr, weight_decay=weight_decay))
    mu = float(np.mean(rating)) if init_biases is None else init_biases.mu

    def loss_fn(model, u, i, r):
        pred = mu + model(u, i)
        emb = sum(jnp.sum(e ** 2, axis=-1) for e in (
            model.gmf_user(u), model.gmf_movie(i), model.mlp_user(u), model.mlp_movie(i),
            model.b_user(u), model.b_movie(i)))
        return jnp.mean((r - pred) ** 2 + l2 * emb)

    @nnx.jit
    def step(model, optimizer, u, i, r):
        loss, grads = nnx.value_and_grad(loss_fn)(model, u, i, r)
        apply_gradients(optimizer, model, grads)
        return loss

    user, movie = user.astype(np.int32), movie.astype(np.int32)
    rating = rating.astype(np.float32)
    n_batches = n // batch_size
    checkpoint = None
    if checkpoint_dir is not None:
        from lmcourse.checkpoint import Checkpoint

        checkpoint = Checkpoint(checkpoint_dir, {"model": model, "optimizer": optimizer},
                                every=checkpoint_every, resume=resume, config={
                                    "n": n, "epochs": epochs, "batch_size": int(batch_size),
                                    "lr": lr, "weight_decay": weight_decay, "l2": l2,
                                    "seed": seed})
    history = train_loop(
        lambda idx: step(model, optimizer, jnp.asarray(user[idx]), jnp.asarray(movie[idx]),
                         jnp.asarray(rating[idx])),
        epoch_batches(n, int(batch_size), seed), steps=epochs * n_batches,
        check_every=n_batches, epoch_steps=n_batches,
        eval_fn=None if eval_fn is None else (lambda: eval_fn(model, mu) and None),
        checkpoint=checkpoint, progress=progress, desc="train NeuMF", unit="ratings",
        batch_size=int(batch_size))
    losses = [sum(history.step_loss[e * n_batches:(e + 1) * n_batches]) / n_batches
              for e in range(epochs)]
    return model, mu, losses


def neumf_predict(model: Any, mu: float, user: Any, movie: Any, batch_size: int = 65536,
                  clip: tuple[float, float] | None = (0.5, 5.0)) -> np.ndarray:
    """``(N,)`` float32 predicted stars ``mu + model(user, movie)``, in batches.

    Raises:
        ValueError: a user index outside ``[0, model.n_users)``, a movie index outside
            ``[0, model.n_movies)``, or ``batch_size < 1``.
    """
    import jax.numpy as jnp

    user, movie = check_pairs(user, movie, model.n_users, model.n_movies)
    batch_size = check_int("batch_size", batch_size, 1)
    user, movie = user.astype(np.int32), movie.astype(np.int32)
    out = np.concatenate([np.asarray(mu + model(jnp.asarray(user[s:s + batch_size]),
                                                jnp.asarray(movie[s:s + batch_size])))
                          for s in range(0, len(user), batch_size)] or [np.zeros(0, np.float32)])
    return out if clip is None else np.clip(out, *clip)


# ----------------------------------------------------------------------------------------------
# content-based: TF-IDF of titles and genres
# ----------------------------------------------------------------------------------------------
def movie_text(titles: Any, genres: Any, years: Any = None) -> list[str]:
    """One document per movie: title words, release year/decade and genre tokens.

    ``"Toy Story", "Animation|Children", 1995`` → ``"Toy Story year1995 decade1990
    genre_animation genre_children"``. A year may also end the title, ``"Toy Story (1995)"``.
    """
    docs = []
    years = [None] * len(titles) if years is None else years
    for title, genre, year in zip(titles, genres, years, strict=True):
        title = str(title)
        found = re.search(r"\((\d{4})\)\s*$", title)
        words = re.sub(r"\(\d{4}\)\s*$", "", title)
        if found:
            year = int(found.group(1))
        ok = year is not None and np.isfinite(year)
        extra = f" year{int(year)} decade{int(year) // 10}0" if ok else ""
        tokens = " ".join("genre_" + re.sub(r"\W", "", g).lower()
                          for g in str(genre).split("|") if g and g != "(no genres listed)")
        docs.append(f"{words}{extra} {tokens}")
    return docs


def _dense(m: Any) -> np.ndarray:
    """A SciPy sparse matrix or array-like as a dense NumPy array."""
    return m.toarray() if hasattr(m, "toarray") else np.asarray(m)


class ContentModel:
    r"""Content-based recommender on unit feature vectors :math:`x_i` of titles, years and genres
    (TF-IDF, :func:`tfidf_features`, or sentence embeddings, :func:`embedding_features`).

    With cosine similarities :math:`s_{ij} = \max(x_i^\top x_j, 0)` (rows L2-normalised; negative
    similarities count as 0) and a baseline
    :math:`b_{ui} = \mu + b_u + b_i` (:class:`Biases`), the predicted rating is

    .. math:: \hat r_{ui} = b_{ui} + \frac{\sum_{j \in R(u)} s_{ij}^{\,p}\,(r_{uj} - b_{uj})}
                                          {\alpha + \sum_{j \in R(u)} s_{ij}^{\,p}}

    i.e. the baseline corrected by the user's residuals on movies *that look like* ``i``. It
    needs no rating of ``i`` itself, so it can score a brand-new movie (cold start), where
    collaborative models only have :math:`\mu + b_u`. For ranking, :meth:`scores` uses the user
    profile :math:`\sum_j (r_{uj} - \bar r_u) x_j` and cosine similarity (Pazzani & Billsus,
    "Content-based recommendation systems", The Adaptive Web, 2007).

    Args:
        features: ``(n_movies, d)`` matrix with unit rows, sparse or dense
            (:func:`tfidf_features`, :func:`embedding_features`).
        baseline: fitted :class:`Biases` on the training ratings.
        user, movie, rating: ``(N,)`` training triples; n_users: number of users.
        alpha: shrinkage α ≥ 0 of the correction; power: exponent p ≥ 1 sharpening similarity.

    Raises:
        ValueError: ids out of range (users ``[0, n_users)``, movies ``[0, n_features_rows)``),
            arrays of different lengths or empty, NaN ratings, ``alpha < 0`` or NaN,
            ``power < 1``, or a baseline whose tables do not match ``n_users`` and the features.
    """

    def __init__(self, features: Any, baseline: Biases, user: Any, movie: Any, rating: Any,
                 n_users: int, *, alpha: float = 1.0, power: int = 1):
        from scipy import sparse

        self.x = (sparse.csr_matrix(features, dtype=np.float64) if sparse.issparse(features)
                  else np.asarray(features, np.float64))
        if self.x.ndim != 2:
            raise ValueError(f"features must be 2-D (n_movies, d), got shape {self.x.shape}")
        n_movies = self.x.shape[0]
        user, movie, rating = _check_triples(user, movie, rating, n_users, n_movies)
        if (len(baseline.b_user), len(baseline.b_movie)) != (n_users, n_movies):
            raise ValueError(f"baseline has {len(baseline.b_user)} users and "
                             f"{len(baseline.b_movie)} movies; expected {n_users} users and the "
                             f"{n_movies} feature rows")
        alpha = check_nonnegative_float("alpha", alpha)
        check_float("power", power, 1.0)
        self.n_users, self.n_movies = int(n_users), n_movies
        self.baseline, self.alpha, self.power = baseline, alpha, power
        resid = rating - baseline.predict(user, movie, clip=None)
        shape = (n_users, n_movies)
        self.resid = sparse.csr_matrix((resid, (user, movie)), shape=shape)
        self.resid.sum_duplicates()
        self.rated = sparse.csr_matrix((np.ones_like(resid), (user, movie)), shape=shape)
        self.user_mean_resid = np.bincount(user, resid, n_users) / np.maximum(
            np.bincount(user, minlength=n_users), 1)

    def _similarity_sums(self, user: np.ndarray, movie: np.ndarray,
                         powers: tuple[float, ...] | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Per pair and power p: ``num = Σ_j s_ij^p (r_uj − b_uj)``, ``den = Σ_j s_ij^p`` over
        ``j ∈ R(u)``; arrays ``(n_powers, N)`` (``(N,)`` when ``powers`` is ``None``)."""
        ps = (self.power,) if powers is None else tuple(powers)
        num, den = np.zeros((len(ps), len(user))), np.zeros((len(ps), len(user)))
        order = np.argsort(user, kind="stable")
        bounds = np.flatnonzero(np.diff(user[order])) + 1
        ptr, seen_all, res_all = self.resid.indptr, self.resid.indices, self.resid.data
        # many tiny products: one BLAS thread is faster (by 40x on a busy 2-core machine)
        with threadpool_limits(1, user_api="blas"):
            for rows in np.split(order, bounds):
                if rows.size == 0:
                    continue
                u = user[rows[0]]
                seen = seen_all[ptr[u]:ptr[u + 1]]
                sim = _dense(self.x[movie[rows]] @ self.x[seen].T)            # (n_rows, n_seen)
                sim = np.maximum(sim, 0.0)               # dissimilar movies get no weight
                for n, p in enumerate(ps):
                    w = sim ** p
                    num[n, rows] = w @ res_all[ptr[u]:ptr[u + 1]]
                    den[n, rows] = w.sum(axis=1)
        return (num[0], den[0]) if powers is None else (num, den)

    def predict(self, user: Any, movie: Any, clip: tuple[float, float] | None = (0.5, 5.0)
                ) -> np.ndarray:
        """``(N,)`` float64 predicted stars for the pairs ``(user, movie)``, clipped to ``clip``.

        Raises:
            ValueError: a user index outside ``[0, n_users)`` or a movie index outside
                ``[0, n_movies)``.
        """
        return self.predict_grid(user, movie, [self.alpha], [self.power], clip=clip)[
            (self.power, self.alpha)]

    def predict_grid(self, user: Any, movie: Any, alphas: Any, powers: Any,
                     clip: tuple[float, float] | None = (0.5, 5.0)
                     ) -> dict[tuple[float, float], np.ndarray]:
        """Predictions for every ``(power, alpha)`` of a hyper-parameter grid in one pass.

        The similarities are computed once per user and reused for every setting, so a grid
        on a validation split costs about one :meth:`predict`.

        Returns:
            ``{(power, alpha): (N,) float64 stars}``.

        Raises:
            ValueError: ids out of range (see :meth:`predict`), an ``alpha < 0`` or NaN, a
                ``power < 1`` or NaN.
        """
        user, movie = check_pairs(user, movie, self.n_users, self.n_movies)
        alphas = [check_nonnegative_float("alpha", a) for a in alphas]
        for p in powers:
            check_float("power", p, 1.0)
        nums, dens = self._similarity_sums(user, movie, tuple(powers))
        base = self.baseline.predict(user, movie, clip=None)
        out = {}
        for p, num, den in zip(powers, nums, dens, strict=True):
            for a in alphas:
                # no similar rated movie and α = 0: no correction (not 0/0)
                corr = np.divide(num, a + den, out=np.zeros_like(num), where=(a + den) > 0)
                pred = base + corr
                out[(p, a)] = pred if clip is None else np.clip(pred, *clip)
        return out

    def scores(self) -> np.ndarray:
        """``(n_users, n_movies)`` float32 cosine similarity of each movie to the user profile."""
        centred = self.resid - self.rated.multiply(self.user_mean_resid[:, None])
        profile = _dense(centred @ self.x)
        profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
        return _dense(self.x @ profile.T).T.astype(np.float32)


def tfidf_features(titles: Any, genres: Any, years: Any = None) -> Any:
    """``(n_movies, vocab)`` sparse float64 TF-IDF matrix of :func:`movie_text`, rows L2-normed
    (scikit-learn ``TfidfVectorizer``, English stop words removed)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(stop_words="english", sublinear_tf=True).fit_transform(
        movie_text(titles, genres, years))


def movie_sentences(titles: Any, genres: Any, years: Any = None) -> list[str]:
    """One plain-English sentence per movie for a sentence encoder.

    ``"Toy Story", "Adventure|Animation", 1995`` → ``"Toy Story (1995). Genres: Adventure,
    Animation."`` (no year part when it is unknown, no genre part for "(no genres listed)").
    """
    years = [None] * len(titles) if years is None else years
    out = []
    for title, genre, year in zip(titles, genres, years, strict=True):
        text = str(title).strip()
        if year is not None and np.isfinite(year) and not re.search(r"\(\d{4}\)\s*$", text):
            text += f" ({int(year)})"
        names = [g for g in str(genre).split("|") if g and g != "(no genres listed)"]
        out.append(f"{text}. Genres: {', '.join(names)}." if names else f"{text}.")
    return out


def movie_embeddings(titles: Any, genres: Any, years: Any = None, *, batch_size: int = 256,
                     cache: bool = True) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings of :func:`movie_sentences`: float32 ``(n_movies, 384)``,
    unit rows (our Flax encoder, :func:`lmcourse.models.bert.encode`).

    Encoding 9,066 movies takes about 50-65 s on 2 CPU cores (length-sorted batches, 9 padded
    widths to compile), so the result is cached in the data cache
    (``minilm-movies/emb-<key>.npz``, the key a hash of the model files, the sentences and the
    settings; :func:`lmcourse.embedding_cache.cached_embeddings`) and reused when the same
    sentences are asked for again.

    Raises:
        lmcourse.data.fetch.DataError: if the model files are missing or corrupt.
    """
    from lmcourse.data.fetch import cache_root
    from lmcourse.data.pretrained import MINILM_L6
    from lmcourse.embedding_cache import cached_embeddings, files_digest

    sentences = movie_sentences(titles, genres, years)

    def compute() -> np.ndarray:
        from lmcourse.models.bert import encode, load_minilm

        model, tokenizer = load_minilm()
        return encode(model, tokenizer, sentences, batch_size=batch_size)

    return cached_embeddings(compute, directory=cache_root() / "minilm-movies" if cache else None,
                             prefix="emb", model=files_digest(MINILM_L6.sha256),
                             inputs=["\n".join(sentences)],
                             settings={"encode": "mean pooling, L2-normalised", "max_length": 256},
                             n_rows=len(sentences))


def embedding_features(embeddings: Any) -> np.ndarray:
    """Centre sentence embeddings and renormalise: ``(n, d)`` float32 unit rows.

    Sentence embeddings of short, similar texts all point roughly the same way (cosine 0.3–0.8
    between unrelated movies), which flattens every similarity; subtracting the mean vector
    first spreads them around 0, so that only truly similar movies get weight (the same idea as
    "all-but-the-top", Mu & Viswanath, ICLR 2018).
    """
    x = np.asarray(embeddings, np.float32)
    x = x - x.mean(axis=0, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------------------------
# ranking evaluation
# ----------------------------------------------------------------------------------------------
def ranking_report(scores: Any, train_user: Any, train_movie: Any, test_user: Any,
                   test_movie: Any, k: int = 10) -> dict[str, float]:
    """Top-k metrics of a full score matrix, training items excluded from each user's list.

    Args:
        scores: ``(n_users, n_movies)`` model scores (higher = recommend first).
        train_user, train_movie: ``(N_train,)`` pairs to exclude (already seen).
        test_user, test_movie: ``(N_test,)`` held-out pairs, the relevant items.
        k: list length.

    Returns:
        dict with ``precision@k``, ``recall@k``, ``ndcg@k``, ``hit_rate@k`` (fraction of users
        with at least one relevant item in their top k) and ``coverage@k`` (fraction of the
        catalogue appearing in at least one top-k list), means over users with a test item.
        Metrics from :mod:`lmcourse.metrics` (ties at the cut-off averaged).

    Raises:
        ValueError: ``scores`` not 2-D or with NaN, a user index outside ``[0, n_users)`` or a
            movie index outside ``[0, n_movies)`` (the shape of ``scores``), pairs of different
            lengths, no test pair, or ``k`` not an integer in ``[1, n_movies]``.
    """
    s = np.array(scores, np.float64)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"scores must be a non-empty (n_users, n_movies) matrix, got {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN: a NaN score cannot be ranked")
    n_users, n_movies = s.shape
    k = check_int("k", k, 1)
    if k > n_movies:
        raise ValueError(f"k must be in [1, {n_movies}] (the number of movies), got {k}")
    tr_u, tr_i = check_pairs(train_user, train_movie, n_users, n_movies)
    te_u, te_i = check_pairs(test_user, test_movie, n_users, n_movies)
    if te_u.size == 0:
        raise ValueError("no test pairs: ranking metrics need at least one held-out rating")
    s[tr_u, tr_i] = s[np.isfinite(s)].min() - 1.0 if np.isfinite(s).any() else -np.inf
    rel = np.zeros_like(s)
    rel[te_u, te_i] = 1.0
    users = np.flatnonzero(rel.sum(axis=1) > 0)
    s, rel = s[users], rel[users]
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    hits = np.take_along_axis(rel, top, axis=1).sum(axis=1)
    return {
        f"precision@{k}": precision_at_k(rel, s, k),
        f"recall@{k}": recall_at_k(rel, s, k),
        f"ndcg@{k}": ndcg_at_k(rel, s, k),
        f"hit_rate@{k}": float(np.mean(hits > 0)),
        f"coverage@{k}": float(len(np.unique(top)) / n_movies),
    }
