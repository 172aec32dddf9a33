"""Tests of the calibration and bootstrap functions of lmcourse.metrics (chapter 10, §11-12):
ECE against a hand computation and on synthetic predictors whose calibration is known,
temperature scaling against SciPy's scalar minimiser and a known temperature, and bootstrap
intervals against the binomial normal approximation and scikit-learn's ``resample``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
from sklearn.utils import resample

from lmcourse import metrics as m

# A tiny example worked by hand (2 classes). Confidence = top probability; arg-max takes the
# first class on a tie, so sample 3 ([0.5, 0.5], true class 1) is a wrong answer at confidence 0.5.
HAND_PROB = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.5, 0.5], [0.4, 0.6]])
HAND_TRUE = np.array([0, 1, 1, 1, 0])   # correct, wrong, correct, wrong, wrong


def test_ece_by_hand_two_bins():
    # bin (0, 0.5]: sample 3 alone, confidence 0.5, accuracy 0   -> weight 1/5, gap 0.5
    # bin (0.5, 1]: samples 0, 1, 2, 4, confidence (0.9 + 0.8 + 0.7 + 0.6) / 4 = 0.75,
    #               accuracy 2/4 = 0.5                             -> weight 4/5, gap 0.25
    # ECE = 0.2 * 0.5 + 0.8 * 0.25 = 0.3
    bins = m.reliability_bins(HAND_TRUE, HAND_PROB, n_bins=2)
    np.testing.assert_array_equal(bins.count, [1, 4])
    np.testing.assert_allclose(bins.confidence, [0.5, 0.75])
    np.testing.assert_allclose(bins.accuracy, [0.0, 0.5])
    assert m.expected_calibration_error(HAND_TRUE, HAND_PROB, n_bins=2) == pytest.approx(0.3)


def test_ece_by_hand_ten_bins():
    # every sample alone in its bin: mean of |correct - confidence| =
    # (0.1 + 0.8 + 0.3 + 0.5 + 0.6) / 5 = 0.46; empty bins give NaN and count 0
    bins = m.reliability_bins(HAND_TRUE, HAND_PROB, n_bins=10)
    assert bins.count.sum() == 5 and np.isnan(bins.accuracy[0]) and bins.count[0] == 0
    assert m.expected_calibration_error(HAND_TRUE, HAND_PROB, n_bins=10) == pytest.approx(0.46)


def _binary_predictor(n, seed, sharpen=1.0):
    """p(class 1) = u ~ U(0, 1) and the label drawn with that probability: calibrated when
    ``sharpen == 1``; the returned probabilities are softmax(logit / sharpen)."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.01, 0.99, n)
    y = (rng.uniform(size=n) < u).astype(int)
    logits = np.stack([np.zeros(n), np.log(u / (1 - u))], axis=1)
    return y, m.softmax_with_temperature(logits, sharpen), logits


def test_ece_of_a_calibrated_predictor_is_near_zero_and_of_an_overconfident_one_is_not():
    y, prob, _ = _binary_predictor(200_000, 0)
    assert m.expected_calibration_error(y, prob) < 0.005
    y, sharp, _ = _binary_predictor(200_000, 0, sharpen=0.4)   # logits x 2.5: overconfident
    assert m.expected_calibration_error(y, sharp) > 0.05


def test_fit_temperature_recovers_a_known_temperature_and_matches_scipy():
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 2.0, size=(20_000, 5))
    probs = m.softmax_with_temperature(logits)
    y = (probs.cumsum(axis=1) < rng.uniform(size=(20_000, 1))).sum(axis=1)   # y ~ softmax(logits)
    t = m.fit_temperature(3.0 * logits, y)            # the model's logits are 3x too large
    assert t == pytest.approx(3.0, rel=0.05)
    reference = scipy.optimize.minimize_scalar(lambda s: m.temperature_nll(3.0 * logits, y, s),
                                               bounds=(0.05, 20.0), method="bounded",
                                               options={"xatol": 1e-8})
    assert t == pytest.approx(reference.x, rel=1e-4)
    assert m.temperature_nll(3 * logits, y, t) <= m.temperature_nll(3 * logits, y, 1.0)
    before = m.expected_calibration_error(y, m.softmax_with_temperature(3 * logits))
    after = m.expected_calibration_error(y, m.softmax_with_temperature(3 * logits, t))
    assert after < 0.02 < before
    # the arg-max (and so the accuracy) does not move
    np.testing.assert_array_equal(m.softmax_with_temperature(logits, 7.0).argmax(1), logits.argmax(1))


def test_temperature_nll_equals_log_loss():
    _, prob, logits = _binary_predictor(500, 2)
    y = (prob[:, 1] > 0.3).astype(int)
    assert m.temperature_nll(logits, y, 1.0) == pytest.approx(m.log_loss(y, prob), rel=1e-9)


def test_bootstrap_accuracy_matches_the_normal_approximation_and_sklearn_resample():
    rng = np.random.default_rng(3)
    n, p = 2_000, 0.8
    y = rng.integers(0, 10, n)
    pred = np.where(rng.uniform(size=n) < p, y, (y + 1) % 10)
    acc = m.accuracy(y, pred)
    ci = m.bootstrap_ci(m.accuracy, y, pred, n_resamples=2_000, seed=0)
    se = math.sqrt(acc * (1 - acc) / n)
    assert ci.estimate == acc and ci.low < acc < ci.high
    assert ci.samples.std() == pytest.approx(se, rel=0.1)
    assert ci.low == pytest.approx(acc - 1.96 * se, abs=0.004)
    assert ci.high == pytest.approx(acc + 1.96 * se, abs=0.004)
    sk = [m.accuracy(*resample(y, pred, random_state=i)) for i in range(500)]
    assert ci.samples.std() == pytest.approx(np.std(sk), rel=0.15)


def test_paired_bootstrap_is_zero_for_equal_models_and_sees_a_real_difference():
    rng = np.random.default_rng(4)
    n = 3_000
    y = rng.integers(0, 2, n)
    a = np.where(rng.uniform(size=n) < 0.85, y, 1 - y)
    same = m.paired_bootstrap(m.accuracy, y, a, a.copy(), n_resamples=200)
    assert same.estimate == same.low == same.high == 0.0
    b = a.copy()
    flip = np.flatnonzero(a == y)[:150]                # B is wrong on 150 samples where A is right
    b[flip] = 1 - y[flip]
    diff = m.paired_bootstrap(m.accuracy, y, a, b, n_resamples=500)
    assert diff.estimate == pytest.approx(150 / n) and diff.low > 0
    # pairing matters: the paired interval is narrower than the two separate ones combined
    ci_a, ci_b = (m.bootstrap_ci(m.accuracy, y, p, n_resamples=500) for p in (a, b))
    assert diff.high - diff.low < 0.5 * math.hypot(ci_a.high - ci_a.low, ci_b.high - ci_b.low)
    again = m.paired_bootstrap(m.accuracy, y, a, b, n_resamples=500)
    np.testing.assert_array_equal(again.samples, diff.samples)   # seeded


def test_bootstrap_works_for_scores():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 800)
    scores = y + rng.normal(0, 1.0, 800)
    ci = m.bootstrap_ci(m.roc_auc_score, y, scores, n_resamples=300)
    assert 0.5 < ci.low < ci.estimate < ci.high < 1.0


@pytest.mark.parametrize(("call", "match"), [
    (lambda: m.expected_calibration_error(HAND_TRUE, HAND_PROB, n_bins=0), "n_bins"),
    (lambda: m.expected_calibration_error(HAND_TRUE, HAND_PROB * 2), "probabilities"),
    (lambda: m.expected_calibration_error(HAND_TRUE, HAND_PROB * 0.9), "sum to 1"),
    (lambda: m.expected_calibration_error(HAND_TRUE + 1, HAND_PROB), "class ids"),
    (lambda: m.expected_calibration_error(HAND_TRUE[:4], HAND_PROB), "same number"),
    (lambda: m.reliability_bins(HAND_TRUE, HAND_PROB[:, 0]), "2-D"),
    (lambda: m.softmax_with_temperature(HAND_PROB, 0.0), "temperature"),
    (lambda: m.temperature_nll(HAND_PROB, HAND_TRUE, -1.0), "temperature"),
    (lambda: m.fit_temperature(HAND_PROB, HAND_TRUE, low=2.0, high=1.0), "low < high"),
    (lambda: m.fit_temperature(HAND_PROB, HAND_TRUE + 2), "class ids"),
    (lambda: m.bootstrap_ci(m.accuracy, HAND_TRUE, HAND_TRUE, n_resamples=0), "n_resamples"),
    (lambda: m.bootstrap_ci(m.accuracy, HAND_TRUE, HAND_TRUE, confidence=1.0), "confidence"),
    (lambda: m.bootstrap_ci(m.accuracy, HAND_TRUE, HAND_TRUE[:3]), "same number"),
    (lambda: m.paired_bootstrap(m.accuracy, HAND_TRUE, HAND_TRUE, HAND_TRUE[:2]), "same number"),
    (lambda: m.bootstrap_ci(m.accuracy, HAND_TRUE, HAND_TRUE, seed=-1), "seed"),
])
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
