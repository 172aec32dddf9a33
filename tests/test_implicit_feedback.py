"""Tests of lmcourse.implicit_feedback (chapter 09, implicit feedback): closed forms on tiny
matrices, the BPR loss by hand, top-k lists without seen items, and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmcourse import implicit_feedback as imf

R_TINY = np.array([[1, 1, 0, 0, 1],
                   [0, 1, 1, 0, 0],
                   [1, 0, 1, 1, 0],
                   [0, 0, 0, 1, 1]], np.float32)


def test_ease_matches_paper_closed_form():
    lam = 0.7
    p = np.linalg.inv(R_TINY.T.astype(np.float64) @ R_TINY + lam * np.eye(5))
    b_paper = np.eye(5) - p @ np.diag(1.0 / np.diag(p))               # Steck 2019, eq. 8
    b = imf.fit_ease(R_TINY, lam)
    np.testing.assert_allclose(b, b_paper, atol=1e-10)
    assert np.allclose(np.diag(b), 0.0)
    # the dual (Woodbury) form gives the same scores R B
    np.testing.assert_allclose(imf.ease_scores(R_TINY, lam), R_TINY @ b_paper, atol=1e-5)


def test_ease_is_the_constrained_least_squares_minimiser():
    """Column j of B minimises ‖r_j − R_{-j} b‖² + λ‖b‖² over the other items (ridge)."""
    lam, j = 0.7, 2
    b = imf.fit_ease(R_TINY, lam)
    others = [c for c in range(5) if c != j]
    a = R_TINY[:, others].astype(np.float64)
    ridge = np.linalg.solve(a.T @ a + lam * np.eye(4), a.T @ R_TINY[:, j])
    np.testing.assert_allclose(b[others, j], ridge, atol=1e-10)


def _wals_user_step_by_hand(r, y, lam, alpha):
    """Hu, Koren & Volinsky 2008, eq. 4, one user at a time with the explicit C^u."""
    out = []
    for row in r:
        c = np.diag(1.0 + alpha * row)
        p = (row > 0).astype(np.float64)
        out.append(np.linalg.solve(y.T @ c @ y + lam * np.eye(y.shape[1]), y.T @ c @ p))
    return np.array(out)


def test_wals_one_iteration_matches_the_paper_updates():
    lam, alpha = 0.5, 3.0
    xu, yi = imf.fit_wals(R_TINY, factors=2, lam=lam, alpha=alpha, iterations=1, seed=0)
    # after one iteration (users, then items) the items are eq. 5's update given the users
    np.testing.assert_allclose(yi, _wals_user_step_by_hand(R_TINY.T, xu.astype(np.float64),
                                                           lam, alpha), atol=1e-4)


def test_wals_loss_decreases_and_user_step_matches_the_paper():
    lam, alpha = 0.5, 3.0
    losses = [imf.wals_loss(R_TINY, *imf.fit_wals(R_TINY, factors=2, lam=lam, alpha=alpha,
                                                   iterations=n, seed=0), lam, alpha)
              for n in (1, 2, 5, 20)]
    assert (np.diff(losses) <= 1e-5).all(), losses
    _, yi_1 = imf.fit_wals(R_TINY, factors=2, lam=lam, alpha=alpha, iterations=1, seed=0)
    xu_2, _ = imf.fit_wals(R_TINY, factors=2, lam=lam, alpha=alpha, iterations=2, seed=0)
    np.testing.assert_allclose(xu_2, _wals_user_step_by_hand(R_TINY, yi_1.astype(np.float64),
                                                             lam, alpha), atol=1e-4)


def test_bpr_loss_equals_hand_computation():
    params = {"P": np.array([[0.5, -1.0], [1.0, 2.0]], np.float32),
              "Q": np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32),
              "b": np.array([0.1, -0.2, 0.3], np.float32)}
    lam = 0.01
    # triple 1: u=0, i=0, j=1: x = 0.5 - (-1.0) + 0.1 - (-0.2) = 1.8
    # triple 2: u=1, i=2, j=0: x = 3 - 1 + 0.3 - 0.1 = 2.2
    pen1 = (0.25 + 1) + 1 + 1 + 0.01 + 0.04
    pen2 = (1 + 4) + 2 + 1 + 0.09 + 0.01
    want = np.mean([math.log1p(math.exp(-1.8)) + lam * pen1,
                    math.log1p(math.exp(-2.2)) + lam * pen2])
    got = float(imf.bpr_loss(params, np.array([0, 1]), np.array([0, 2]), np.array([1, 0]), lam))
    assert got == pytest.approx(want, rel=1e-5)


def test_bpr_learns_to_rank_seen_above_unseen():
    params, hist = imf.fit_bpr(R_TINY, factors=3, lam=1e-4, learning_rate=0.05, epochs=200,
                               batch_size=4, seed=0)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    s = imf.bpr_scores(params)
    auc = np.mean([(s[u, R_TINY[u] > 0][:, None] > s[u, R_TINY[u] == 0][None, :]).mean()
                   for u in range(4)])
    assert auc > 0.9


def test_sample_triples_never_picks_a_seen_negative():
    u, i, j = imf.sample_triples(R_TINY, 500, np.random.default_rng(0))
    assert (R_TINY[u, i] > 0).all() and (R_TINY[u, j] == 0).all()


def test_recommend_excludes_training_items_and_sorts():
    scores = np.tile(np.arange(5, 0, -1, dtype=np.float32), (4, 1))  # item 0 best for everyone
    u, i = np.nonzero(R_TINY)
    top = imf.recommend(scores, u, i, k=2)
    assert top.shape == (4, 2)
    assert not R_TINY[np.arange(4)[:, None], top].any()              # no seen item recommended
    np.testing.assert_array_equal(top[1], [0, 3])                     # best unseen first
    with pytest.raises(ValueError, match="fewer than k"):
        imf.recommend(scores, u, i, k=4)


def test_interaction_matrix_and_validation_split():
    r = imf.interaction_matrix([0, 0, 1], [2, 2, 0], 2, 3)
    np.testing.assert_array_equal(r, [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="outside"):
        imf.interaction_matrix([0, 2], [0, 0], 2, 3)                  # user 2 of 2
    with pytest.raises(ValueError, match="outside"):
        imf.interaction_matrix([0, 1], [0, -1], 2, 3)


@pytest.mark.parametrize("call, match", [
    (lambda: imf.fit_wals(R_TINY, alpha=-1.0), "alpha"),
    (lambda: imf.fit_wals(R_TINY, factors=0), "factors"),
    (lambda: imf.fit_bpr(R_TINY, factors=0), "factors"),
    (lambda: imf.fit_bpr(R_TINY, learning_rate=0.0), "learning_rate"),
    (lambda: imf.fit_ease(R_TINY, 0.0), "lam"),
    (lambda: imf.ease_scores(-R_TINY, 1.0), "non-negative"),
    (lambda: imf.wals_loss(R_TINY, np.zeros((3, 2)), np.zeros((5, 2)), 1.0, 1.0), "factors"),
    (lambda: imf.bpr_loss({"P": np.zeros((4, 2)), "Q": np.zeros((5, 2)), "b": np.zeros(5)},
                          np.array([4]), np.array([0]), np.array([1]), 0.1), "outside"),
    (lambda: imf.fit_implicit("svd", R_TINY), "model"),
])
def test_bad_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_implicit_reference_runs_on_the_same_matrix():
    pytest.importorskip("implicit")
    s = imf.fit_implicit("als", R_TINY, factors=2, regularization=0.1, iterations=5)
    assert s.shape == R_TINY.shape and np.isfinite(s).all()
