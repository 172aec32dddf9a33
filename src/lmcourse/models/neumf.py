"""NeuMF, neural collaborative filtering in Flax NNX (chapter 09), regressing ratings.

Used in chapters: none directly; imported by ``lmcourse.recsys``.

Source: X. He, L. Liao, H. Zhang, L. Nie, X. Hu, T.-S. Chua, *Neural Collaborative Filtering*,
WWW 2017 (fig. 3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lmcourse.recsys import check_pairs
from lmcourse.validation import check_int, is_traced


class NeuMF(nnx.Module):
    """NeuMF (He et al. 2017, fig. 3): a GMF branch (element-wise product of embeddings)
    and an MLP branch (concatenated embeddings through ReLU layers), concatenated and mapped
    to one output. The original is trained on implicit feedback with log loss; here the
    output is a rating offset from the global mean, trained with squared error.

    Call: ``model(user (B,) int, movie (B,) int) -> (B,) float32`` rating offsets.

    Raises:
        ValueError: sizes ``n_users``, ``n_movies``, ``dim`` or a hidden width < 1 (at
            construction); a user index outside ``[0, n_users)`` or a movie index outside
            ``[0, n_movies)`` when called with concrete indices (inside ``jit`` the caller
            must check: JAX clamps out-of-range lookups silently).
    """

    def __init__(self, n_users: int, n_movies: int, dim: int = 16,
                 hidden: tuple[int, ...] = (32, 16), *, rngs: nnx.Rngs):
        self.n_users = check_int("n_users", n_users, 1)
        self.n_movies = check_int("n_movies", n_movies, 1)
        dim = check_int("dim", dim, 1)
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("hidden must list at least one layer width, e.g. (32, 16)")
        for width in hidden:
            check_int("hidden layer width", width, 1)
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

    def __call__(self, user: jax.Array, movie: jax.Array) -> jax.Array:
        if not (is_traced(user) or is_traced(movie)):
            check_pairs(user, movie, self.n_users, self.n_movies)
        gmf = self.gmf_user(user) * self.gmf_movie(movie)
        h = jnp.concatenate([self.mlp_user(user), self.mlp_movie(movie)], axis=-1)
        for n in range(self.n_layers):
            h = jax.nn.relu(getattr(self, f"layer{n}")(h))
        out = self.out(jnp.concatenate([gmf, h], axis=-1))
        return (out + self.b_user(user) + self.b_movie(movie))[..., 0]
