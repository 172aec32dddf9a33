"""Recommender models and their evaluation (chapter 09), on arrays of (user, movie, rating).

Every model takes parallel arrays ``user`` ``(N,)`` int, ``movie`` ``(N,)`` int, ``rating``
``(N,)`` float (indices as returned by :func:`lmcourse.data.movielens.load_movielens`) and
predicts ratings for ``(user, movie)`` pairs:

* :func:`fit_biases`: global mean plus regularised movie and user biases (Irizarry's book;
  Koren, Bell & Volinsky 2009, eq. 3);
* :func:`train_mf`: biased matrix factorisation trained with Optax, one compiled epoch per call
  (Koren, Bell & Volinsky, "Matrix factorization techniques for recommender systems",
  IEEE Computer 42(8), 2009, eq. 5);
* :class:`NeuMF` / :func:`train_neumf`: a small neural collaborative filtering model in Flax NNX
  (He et al., "Neural Collaborative Filtering", WWW 2017), here regressing ratings;
* :class:`ContentModel`: content-based predictions from TF-IDF vectors of titles and genres,
  which also work for a movie nobody has rated (cold start);
* :func:`ranking_report`: precision@k, recall@k, NDCG@k, hit rate and catalogue coverage.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmcourse.metrics import ndcg_at_k, precision_at_k, recall_at_k, root_mean_squared_error


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

    def predict(self, user: Any, movie: Any, clip: tuple[float, float] = (0.5, 5.0)) -> np.ndarray:
        """``(N,)`` float64 predicted stars, clipped to ``clip`` (``None``: no clipping)."""
        pred = self.mu + self.b_user[np.asarray(user)] + self.b_movie[np.asarray(movie)]
        return pred if clip is None else np.clip(pred, *clip)


def fit_biases(user: Any, movie: Any, rating: Any, n_users: int, n_movies: int, *,
               lam_movie: float = 0.0, lam_user: float = 0.0, use_movie: bool = True,
               use_user: bool = True, n_sweeps: int = 1) -> Biases:
    r"""Fit :math:`\mu`, movie and user biases in closed form, as in Irizarry's book.

    .. math:: b_i = \frac{\sum_{u \in R(i)} (r_{ui} - \mu)}{\lambda_i + n_i},\qquad
              b_u = \frac{\sum_{i \in R(u)} (r_{ui} - \mu - b_i)}{\lambda_u + n_u}

    One sweep (the default) is the book's procedure: movie effects first, then user effects on
    the residuals. ``n_sweeps > 1`` alternates the two updates (coordinate descent on the
    regularised least-squares objective of Koren, Bell & Volinsky 2009, eq. 3).
    ``lam_* = 0`` gives plain means; a movie or user with no rating gets bias 0.

    Args:
        user, movie: ``(N,)`` integer indices; rating: ``(N,)`` stars.
        n_users, n_movies: sizes of the bias vectors.
        lam_movie, lam_user: shrinkage λ ≥ 0 (in "pseudo-ratings" at the mean).
        use_movie, use_user: switch each effect off (mean only: both ``False``).
        n_sweeps: number of alternating sweeps (≥ 1).

    Returns:
        :class:`Biases`.
    """
    user, movie = np.asarray(user), np.asarray(movie)
    r = np.asarray(rating, np.float64)
    mu = float(r.mean())
    b_user, b_movie = np.zeros(n_users), np.zeros(n_movies)
    n_u = np.bincount(user, minlength=n_users)
    n_i = np.bincount(movie, minlength=n_movies)
    for _ in range(max(1, n_sweeps)):
        if use_movie:
            resid = r - mu - b_user[user]
            b_movie = np.bincount(movie, resid, n_movies) / np.maximum(n_i + lam_movie, 1e-12)
        if use_user:
            resid = r - mu - b_movie[movie]
            b_user = np.bincount(user, resid, n_users) / np.maximum(n_u + lam_user, 1e-12)
    return Biases(mu, b_user, b_movie)


# ----------------------------------------------------------------------------------------------
# biased matrix factorisation in JAX + Optax
# ----------------------------------------------------------------------------------------------
def mf_predict(params: dict, user: Any, movie: Any) -> Any:
    r""":math:`\hat r_{ui} = \mu + b_u + b_i + p_u^\top q_i`, ``(N,)`` (JAX, jit-able).

    ``params``: ``mu`` scalar, ``b_user`` ``(U,)``, ``b_movie`` ``(I,)``, ``P`` ``(U, k)``,
    ``Q`` ``(I, k)``.
    """
    import jax.numpy as jnp

    return (params["mu"] + params["b_user"][user] + params["b_movie"][movie]
            + jnp.sum(params["P"][user] * params["Q"][movie], axis=-1))


def mf_loss(params: dict, user: Any, movie: Any, rating: Any, lam: float) -> Any:
    r"""Koren, Bell & Volinsky's objective divided by the number of ratings N:

    .. math:: \frac{1}{N}\Big[\sum_{(u,i)} (r_{ui} - \hat r_{ui})^2
              + \lambda\big(\|P\|_F^2 + \|Q\|_F^2 + \|b_u\|^2 + \|b_i\|^2\big)\Big]
    """
    import jax.numpy as jnp

    err = rating - mf_predict(params, user, movie)
    penalty = sum(jnp.sum(params[name] ** 2) for name in ("P", "Q", "b_user", "b_movie"))
    return (jnp.sum(err ** 2) + lam * penalty) / rating.shape[0]


def mf_batch_loss(params: dict, user: Any, movie: Any, rating: Any, lam: float,
                  n_total: int) -> Any:
    r"""Mini-batch estimate of :func:`mf_loss`: mean squared error on the batch plus
    :math:`\lambda \cdot \text{penalty} / N_\text{total}`.

    Its expectation over a uniformly drawn batch equals :func:`mf_loss` on all ``n_total``
    training ratings, so mini-batch steps follow the same objective.
    """
    import jax.numpy as jnp

    err = rating - mf_predict(params, user, movie)
    penalty = sum(jnp.sum(params[name] ** 2) for name in ("P", "Q", "b_user", "b_movie"))
    return jnp.mean(err ** 2) + lam * penalty / n_total


def train_mf(user: Any, movie: Any, rating: Any, n_users: int, n_movies: int, *, k: int = 32,
             lam: float = 12.0, learning_rate: float = 0.01, epochs: int = 10,
             batch_size: int = 4096, init_scale: float = 0.1, seed: int = 0,
             eval_fn: Any = None) -> tuple[dict, dict[str, Any]]:
    """Train biased matrix factorisation by mini-batch Adam (Optax), one compiled epoch at a time.

    Biases start at the closed-form regularised biases (λ = ``lam``), factors at
    ``init_scale · N(0, 1/k)``. Each epoch visits a seeded random permutation of the ratings in
    ``N // batch_size`` batches (the remainder is skipped that epoch); the whole epoch is one
    ``jax.lax.scan`` inside one ``jax.jit``, compiled once ahead of time, so Python is entered
    once per epoch, not once per step. The objective is :func:`mf_loss` (estimated per batch by
    :func:`mf_batch_loss`); μ stays the training mean. Same spirit as Funk's SGD that Surprise's
    ``SVD`` runs (Koren, Bell & Volinsky, *Matrix Factorization Techniques for Recommender
    Systems*, IEEE Computer 2009, eq. 5), with Adam instead of plain SGD.

    Args:
        user, movie, rating: ``(N,)`` training triples (ints, ints, float stars).
        n_users, n_movies: table sizes.
        k: number of latent factors; lam: L2 weight λ of :func:`mf_loss`;
        learning_rate: Adam step size; epochs: passes over the data; batch_size: ratings per step;
        seed: seed for the factors and the batch order.
        eval_fn: if set, ``eval_fn(params)`` (e.g. a test RMSE) is recorded after every epoch
            (outside the timed part).

    Returns:
        ``(params, history)``: NumPy parameter dict (see :func:`mf_predict`) and
        ``{"loss": per-step batch losses, "epoch": [...], "eval": [...], "compile_s": float,
        "train_s": float}`` (seconds of compilation and of the compiled epochs).

    Raises:
        ValueError: if ``batch_size`` is not in ``[1, N]`` or ``epochs < 1``.
    """
    import time

    import jax
    import jax.numpy as jnp
    import optax

    n = len(rating)
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and the {n:,} training ratings, "
                         f"got {batch_size}")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    b = fit_biases(user, movie, rating, n_users, n_movies, lam_movie=lam, lam_user=lam)
    kp, kq = jax.random.split(jax.random.key(seed))
    params = {
        "mu": jnp.float32(b.mu),
        "b_user": jnp.asarray(b.b_user, jnp.float32),
        "b_movie": jnp.asarray(b.b_movie, jnp.float32),
        "P": init_scale * jax.random.normal(kp, (n_users, k)) / np.sqrt(k),
        "Q": init_scale * jax.random.normal(kq, (n_movies, k)) / np.sqrt(k),
    }
    user, movie = np.asarray(user, np.int32), np.asarray(movie, np.int32)
    rating = np.asarray(rating, np.float32)
    tx = optax.adam(learning_rate)
    opt_state = tx.init(params)

    def step(carry, batch):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(mf_batch_loss)(params, *batch, lam, n)
        grads["mu"] = jnp.zeros_like(grads["mu"])            # μ stays the training mean
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def epoch(params, opt_state, u, i, r):                    # u, i, r: (n_batches, batch_size)
        return jax.lax.scan(step, (params, opt_state), (u, i, r))

    rng = np.random.default_rng(seed)
    n_batches = n // batch_size

    def epoch_batches():
        order = rng.permutation(n)[: n_batches * batch_size].reshape(n_batches, batch_size)
        return user[order], movie[order], rating[order]

    batches = epoch_batches()
    t0 = time.perf_counter()
    compiled = jax.jit(epoch).lower(params, opt_state, *batches).compile()
    history: dict[str, Any] = {"loss": [], "epoch": [], "eval": [],
                               "compile_s": time.perf_counter() - t0, "train_s": 0.0}
    for e in range(epochs):
        t0 = time.perf_counter()
        (params, opt_state), losses = compiled(params, opt_state, *batches)
        losses = np.asarray(losses)                           # waits for the epoch to finish
        history["train_s"] += time.perf_counter() - t0
        history["loss"].extend(losses.tolist())
        if eval_fn is not None:
            history["epoch"].append(e + 1)
            history["eval"].append(float(eval_fn(params)))
        if e + 1 < epochs:
            batches = epoch_batches()
    return {name: np.asarray(v) for name, v in params.items()}, history


def mf_scores(params: dict) -> np.ndarray:
    """``(n_users, n_movies)`` float32 predicted ratings for every pair (for ranking)."""
    return (params["mu"] + params["b_user"][:, None] + params["b_movie"][None, :]
            + params["P"] @ params["Q"].T).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# neural collaborative filtering (NeuMF) in Flax NNX
# ----------------------------------------------------------------------------------------------
@functools.cache
def _neumf_class():
    from flax import nnx

    class NeuMF(nnx.Module):
        """NeuMF (He et al. 2017, fig. 3): a GMF branch (element-wise product of embeddings)
        and an MLP branch (concatenated embeddings through ReLU layers), concatenated and mapped
        to one output. The original is trained on implicit feedback with log loss; here the
        output is a rating offset from the global mean, trained with squared error.

        Call: ``model(user (B,) int, movie (B,) int) -> (B,) float32`` rating offsets.
        """

        def __init__(self, n_users: int, n_movies: int, dim: int = 16,
                     hidden: tuple[int, ...] = (32, 16), *, rngs: nnx.Rngs):
            init = nnx.initializers.normal(0.01)
            self.gmf_user = nnx.Embed(n_users, dim, embedding_init=init, rngs=rngs)
            self.gmf_movie = nnx.Embed(n_movies, dim, embedding_init=init, rngs=rngs)
            self.mlp_user = nnx.Embed(n_users, dim, embedding_init=init, rngs=rngs)
            self.mlp_movie = nnx.Embed(n_movies, dim, embedding_init=init, rngs=rngs)
            self.b_user = nnx.Embed(n_users, 1, embedding_init=nnx.initializers.zeros, rngs=rngs)
            self.b_movie = nnx.Embed(n_movies, 1, embedding_init=nnx.initializers.zeros,
                                     rngs=rngs)
            sizes = (2 * dim, *hidden)
            self.n_layers = len(hidden)
            for n in range(len(hidden)):          # plain attributes work on every Flax NNX
                setattr(self, f"layer{n}", nnx.Linear(sizes[n], sizes[n + 1], rngs=rngs))
            self.out = nnx.Linear(dim + hidden[-1], 1, rngs=rngs)

        def __call__(self, user, movie):
            import jax
            import jax.numpy as jnp

            gmf = self.gmf_user(user) * self.gmf_movie(movie)
            h = jnp.concatenate([self.mlp_user(user), self.mlp_movie(movie)], axis=-1)
            for n in range(self.n_layers):
                h = jax.nn.relu(getattr(self, f"layer{n}")(h))
            out = self.out(jnp.concatenate([gmf, h], axis=-1))
            return (out + self.b_user(user) + self.b_movie(movie))[..., 0]

    return NeuMF


def __getattr__(name: str):  # lazy: `import lmcourse.recsys` must not import Flax
    if name == "NeuMF":
        return _neumf_class()
    raise AttributeError(name)


def train_neumf(user: Any, movie: Any, rating: Any, n_users: int, n_movies: int, *,
                dim: int = 16, hidden: tuple[int, ...] = (32, 16), epochs: int = 8,
                batch_size: int = 1024, lr: float = 3e-3, weight_decay: float = 1e-4,
                l2: float = 0.1, init_biases: Biases | None = None, seed: int = 0
                ) -> tuple[Any, float, list[float]]:
    """Train :class:`NeuMF` on ratings with AdamW and mini-batches (jitted NNX step).

    Loss per batch: mean over the batch of ``(r - mu - model(u, i))² + l2 · ‖e‖²``, where
    ``‖e‖²`` sums the squared embeddings and biases of that rating's user and movie (the
    per-rating form of the L2 penalty of matrix factorisation).

    ``init_biases`` (a fitted :class:`Biases`) sets the model's bias embeddings at the start.

    Returns:
        ``(model, mu, epoch_losses)``; predict with ``mu + model(user, movie)``.
    """
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from lmcourse.compat import apply_gradients, make_optimizer

    model = _neumf_class()(n_users, n_movies, dim, hidden, rngs=nnx.Rngs(seed))
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

    user = np.asarray(user, np.int32)
    movie = np.asarray(movie, np.int32)
    rating = np.asarray(rating, np.float32)
    rng = np.random.default_rng(seed)
    n = len(rating)
    n_batches = n // batch_size
    losses = []
    for _ in range(epochs):
        perm = rng.permutation(n)[: n_batches * batch_size].reshape(n_batches, batch_size)
        total = 0.0
        for idx in perm:
            total += float(step(model, optimizer, jnp.asarray(user[idx]), jnp.asarray(movie[idx]),
                                jnp.asarray(rating[idx])))
        losses.append(total / n_batches)
    return model, mu, losses


def neumf_predict(model: Any, mu: float, user: Any, movie: Any, batch_size: int = 65536,
                  clip: tuple[float, float] | None = (0.5, 5.0)) -> np.ndarray:
    """``(N,)`` float32 predicted stars ``mu + model(user, movie)``, in batches."""
    import jax.numpy as jnp

    user, movie = np.asarray(user, np.int32), np.asarray(movie, np.int32)
    out = np.concatenate([np.asarray(mu + model(jnp.asarray(user[s:s + batch_size]),
                                                jnp.asarray(movie[s:s + batch_size])))
                          for s in range(0, len(user), batch_size)])
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
    """

    def __init__(self, features: Any, baseline: Biases, user: Any, movie: Any, rating: Any,
                 n_users: int, *, alpha: float = 1.0, power: int = 1):
        from scipy import sparse

        self.x = (sparse.csr_matrix(features, dtype=np.float64) if sparse.issparse(features)
                  else np.asarray(features, np.float64))
        self.baseline, self.alpha, self.power = baseline, alpha, power
        user, movie = np.asarray(user), np.asarray(movie)
        resid = np.asarray(rating, np.float64) - baseline.predict(user, movie, clip=None)
        shape = (n_users, self.x.shape[0])
        self.resid = sparse.csr_matrix((resid, (user, movie)), shape=shape)
        self.rated = sparse.csr_matrix((np.ones_like(resid), (user, movie)), shape=shape)
        self.user_mean_resid = np.bincount(user, resid, n_users) / np.maximum(
            np.bincount(user, minlength=n_users), 1)

    def _similarity_sums(self, user: np.ndarray, movie: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
        num, den = np.zeros(len(user)), np.zeros(len(user))
        for u in np.unique(user):
            rows = np.flatnonzero(user == u)
            seen = self.rated[u].indices
            s = _dense(self.x[movie[rows]] @ self.x[seen].T)                  # (n_rows, n_seen)
            s = np.maximum(s, 0.0) ** self.power     # dissimilar movies get no weight
            num[rows] = s @ self.resid[u, seen].toarray()[0]
            den[rows] = s.sum(axis=1)
        return num, den

    def predict(self, user: Any, movie: Any, clip: tuple[float, float] = (0.5, 5.0)
                ) -> np.ndarray:
        """``(N,)`` float64 predicted stars for the pairs ``(user, movie)``."""
        user, movie = np.asarray(user), np.asarray(movie)
        num, den = self._similarity_sums(user, movie)
        pred = self.baseline.predict(user, movie, clip=None) + num / (self.alpha + den)
        return np.clip(pred, *clip)

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

    Encoding 9,066 movies takes about a minute on 2 CPU cores, so the result is cached in the
    data cache (``minilm-movies/<sha256 of the sentences and the model weights>.npy``, written
    atomically) and reused when the same sentences are asked for again.

    Raises:
        lmcourse.data.fetch.DataError: if the model files are missing or corrupt.
    """
    import hashlib
    import os
    import tempfile

    from lmcourse.data.fetch import cache_root
    from lmcourse.data.pretrained import MINILM_L6

    sentences = movie_sentences(titles, genres, years)
    key = hashlib.sha256("\n".join(sentences).encode()
                         + MINILM_L6.sha256["model.safetensors"].encode()).hexdigest()[:24]
    path = cache_root() / "minilm-movies" / f"{key}.npy"
    if cache and path.is_file():
        emb = np.load(path)
        if emb.shape == (len(sentences), 384) and np.all(np.isfinite(emb)):
            return emb
    from lmcourse.models.bert import encode, load_minilm

    model, tokenizer = load_minilm()
    emb = encode(model, tokenizer, sentences, batch_size=batch_size)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            np.save(f, emb)
        os.replace(tmp, path)
    return emb


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
    """
    s = np.array(scores, np.float64)
    n_users, n_movies = s.shape
    s[np.asarray(train_user), np.asarray(train_movie)] = s.min() - 1.0     # never re-recommend
    rel = np.zeros_like(s)
    rel[np.asarray(test_user), np.asarray(test_movie)] = 1.0
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
