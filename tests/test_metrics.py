"""Tests of lmcourse.metrics: property-based comparisons with scikit-learn (and SciPy for
Pearson r) on random inputs in float64 to 1e-9, the edge cases that break naive code, brute-force
references where no library has the metric (precision@k and recall@k with ties, IoU), and the
errors promised for bad input.

Hypothesis draws labels from small alphabets and scores from a small grid half of the time, so
that ties, absent classes and single-class inputs occur often."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.stats
import sklearn
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from lmcourse import metrics as m

TOL = 1e-9
EXAMPLES = 120
FEW = settings(max_examples=EXAMPLES, deadline=None)
SK_VERSION = tuple(int(x) for x in sklearn.__version__.split(".")[:2])
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning",
                                        "ignore:No positive class found:UserWarning",
                                        "ignore:A single label was found:UserWarning")

TRAPEZOID = getattr(np, "trapezoid", None) or np.trapz  # NumPy 2 renamed trapz
WORDS = ["ant", "bee", "cat", "dog", "eel", "fox"]
GRID = [-1.0, 0.0, 0.25, 0.5, 0.75, 1.0]


def close(ours, theirs, tol: float = TOL) -> None:
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64),
                               np.asarray(theirs, dtype=np.float64), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------------------------
# strategies
# ----------------------------------------------------------------------------------------------
@st.composite
def label_pairs(draw, max_classes: int = 5, min_size: int = 1, max_size: int = 40):
    """(y_true, y_pred): ints in [0, K) or strings, same length."""
    n = draw(st.integers(min_size, max_size))
    k = draw(st.integers(1, max_classes))
    if draw(st.booleans()):
        elements = st.sampled_from(WORDS[:k])
        dtype = "U3"
    else:
        elements = st.integers(0, k - 1)
        dtype = np.int64
    y_true = draw(hnp.arrays(dtype, n, elements=elements))
    y_pred = draw(hnp.arrays(dtype, n, elements=elements))
    return y_true, y_pred


def score_elements(draw):
    if draw(st.booleans()):
        return st.sampled_from(GRID)                      # many ties
    return st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def binary_scores(draw, min_size: int = 2, max_size: int = 60, both_classes: bool = True):
    """(y_true in {0, 1}, y_score float64)."""
    n = draw(st.integers(min_size, max_size))
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    if both_classes:
        assume(0 < y.sum() < n)
    s = draw(hnp.arrays(np.float64, n, elements=score_elements(draw)))
    return y, s


@st.composite
def regression_pairs(draw, min_size: int = 1, max_size: int = 50):
    n = draw(st.integers(min_size, max_size))
    elements = score_elements(draw)
    return (draw(hnp.arrays(np.float64, n, elements=elements)),
            draw(hnp.arrays(np.float64, n, elements=elements)))


@st.composite
def rankings(draw, max_queries: int = 4, max_items: int = 7, graded: bool = True):
    """(relevance (q, n) ≥ 0, scores (q, n)) with ties in the scores half of the time."""
    q = draw(st.integers(1, max_queries))
    n = draw(st.integers(2, max_items))
    rel_max = 3 if graded else 1
    rel = draw(hnp.arrays(np.float64, (q, n), elements=st.integers(0, rel_max).map(float)))
    s = draw(hnp.arrays(np.float64, (q, n), elements=score_elements(draw)))
    return rel, s


# ----------------------------------------------------------------------------------------------
# classification from labels
# ----------------------------------------------------------------------------------------------
@FEW
@given(label_pairs())
def test_accuracy_and_confusion_matrix_match_sklearn(pair):
    y_true, y_pred = pair
    assert m.accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=TOL)
    ours = m.confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(ours, skm.confusion_matrix(y_true, y_pred))
    assert ours.sum() == len(y_true) and ours.dtype == np.int64


@FEW
@given(label_pairs(), st.data())
def test_confusion_matrix_with_labels_matches_sklearn(pair, data):
    """Given labels (in any order, possibly with classes absent from the data, possibly leaving
    some samples out) behave as in scikit-learn."""
    y_true, y_pred = pair
    pool = WORDS if y_true.dtype.kind == "U" else list(range(6))
    labels = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True))
    assume(np.isin(labels, y_true).any())
    np.testing.assert_array_equal(m.confusion_matrix(y_true, y_pred, labels=labels),
                                  skm.confusion_matrix(y_true, y_pred, labels=labels))


@FEW
@given(label_pairs(), st.sampled_from(["macro", "micro", "weighted", None]),
       st.sampled_from([0.0, 1.0, np.nan]))
def test_precision_recall_f1_averages_match_sklearn(pair, average, zero_division):
    y_true, y_pred = pair
    ours = m.precision_recall_f1(y_true, y_pred, average=average, zero_division=zero_division)
    theirs = skm.precision_recall_fscore_support(y_true, y_pred, average=average,
                                                 zero_division=zero_division)
    for o, t in zip(ours[:3], theirs[:3], strict=True):
        close(o, t)
    if average is None:
        np.testing.assert_array_equal(ours.support, theirs[3])
    assert m.f1_score(y_true, y_pred, average=average, zero_division=zero_division) \
        == pytest.approx(ours.f1, nan_ok=True)


@FEW
@given(label_pairs(), st.data(), st.sampled_from(["macro", "micro", "weighted", None]))
def test_precision_recall_f1_with_labels_match_sklearn(pair, data, average):
    """labels may name classes absent from both y_true and y_pred, or leave classes out."""
    y_true, y_pred = pair
    pool = WORDS if y_true.dtype.kind == "U" else list(range(7))
    labels = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True))
    ours = m.precision_recall_f1(y_true, y_pred, average=average, labels=labels)
    theirs = skm.precision_recall_fscore_support(y_true, y_pred, average=average, labels=labels,
                                                 zero_division=0.0)
    for o, t in zip(ours[:3], theirs[:3], strict=True):
        close(o, t)


@FEW
@given(label_pairs(max_classes=2), st.sampled_from([0.0, 1.0, np.nan]), st.data())
def test_binary_precision_recall_f1_match_sklearn(pair, zero_division, data):
    y_true, y_pred = pair
    present = np.union1d(y_true, y_pred)
    pos_label = data.draw(st.sampled_from(present.tolist()))
    kw = {"average": "binary", "pos_label": pos_label, "zero_division": zero_division}
    close(m.precision(y_true, y_pred, **kw), skm.precision_score(y_true, y_pred, **kw))
    close(m.recall(y_true, y_pred, **kw), skm.recall_score(y_true, y_pred, **kw))
    close(m.f1_score(y_true, y_pred, **kw), skm.f1_score(y_true, y_pred, **kw))
    c = m.confusion_counts(y_true, y_pred, pos_label=pos_label)
    assert sum(c) == len(y_true)
    assert c.tp == np.sum((y_true == pos_label) & (y_pred == pos_label))


@FEW
@given(label_pairs(max_classes=5))
def test_micro_average_equals_accuracy_for_single_label_data(pair):
    y_true, y_pred = pair
    micro = m.precision_recall_f1(y_true, y_pred, average="micro")
    acc = m.accuracy(y_true, y_pred)
    close([micro.precision, micro.recall, micro.f1], [acc, acc, acc])


def test_edge_cases_for_labels():
    # no positive predictions: precision 0/0 → zero_division; F1 = 2·0/(0+0+FN) = 0 is defined
    y_true, y_pred = [0, 1, 1, 0], [0, 0, 0, 0]
    assert m.precision(y_true, y_pred) == 0.0 == skm.precision_score(y_true, y_pred, zero_division=0)
    assert m.precision(y_true, y_pred, zero_division=1.0) == 1.0
    assert math.isnan(m.precision(y_true, y_pred, zero_division=np.nan))
    assert m.f1_score(y_true, y_pred, zero_division=1.0) == 0.0 == skm.f1_score(y_true, y_pred, zero_division=1.0)
    # no positives at all: F1 is 0/0 too
    assert m.f1_score([0, 0], [0, 0], zero_division=1.0) == 1.0 == skm.f1_score([0, 0], [0, 0], zero_division=1.0)
    # one sample
    assert m.accuracy(["cat"], ["dog"]) == 0.0
    np.testing.assert_array_equal(m.confusion_matrix([3], [3]), [[1]])
    assert m.f1_score([1], [1]) == 1.0
    # a class absent from the predictions, another absent from the truth
    y_true, y_pred = [0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 3]
    for average in ("macro", "weighted", "micro"):
        close(m.f1_score(y_true, y_pred, average=average),
              skm.f1_score(y_true, y_pred, average=average, zero_division=0))
    per_class = m.precision_recall_f1(y_true, y_pred, average=None)
    np.testing.assert_array_equal(per_class.support, [2, 2, 2, 0])
    assert per_class.recall[2] == 0.0 and per_class.precision[3] == 0.0
    # macro with nan skips the undefined class 3 (never true, predicted once: precision 0/1 = 0
    # is defined, recall 0/0 is not)
    nan_macro_recall = m.recall(y_true, y_pred, average="macro", zero_division=np.nan)
    close(nan_macro_recall, np.mean([1.0, 0.5, 0.0]))
    # string labels and the one-vs-rest counts
    assert m.confusion_counts(["a", "b", "c", "b"], ["b", "b", "a", "c"], pos_label="b") == (1, 1, 1, 1)


# ----------------------------------------------------------------------------------------------
# classification from scores
# ----------------------------------------------------------------------------------------------
@FEW
@given(binary_scores(), st.booleans())
def test_roc_curve_matches_sklearn(data, drop):
    y, s = data
    for ours, theirs in zip(m.roc_curve(y, s, drop_intermediate=drop),
                            skm.roc_curve(y, s, drop_intermediate=drop), strict=True):
        assert ours.shape == theirs.shape
        close(ours, theirs)


@FEW
@given(binary_scores())
def test_roc_auc_matches_sklearn_and_the_trapezoid(data):
    y, s = data
    ours = m.roc_auc_score(y, s)
    close(ours, skm.roc_auc_score(y, s))
    fpr, tpr, _ = m.roc_curve(y, s, drop_intermediate=False)
    close(ours, TRAPEZOID(tpr, fpr))
    # the probabilistic definition, by brute force over all (positive, negative) pairs
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    close(ours, brute)


@FEW
@given(binary_scores(), st.booleans())
def test_precision_recall_curve_and_ap_match_sklearn(data, drop):
    y, s = data
    for ours, theirs in zip(m.precision_recall_curve(y, s, drop_intermediate=drop),
                            skm.precision_recall_curve(y, s, drop_intermediate=drop), strict=True):
        assert ours.shape == theirs.shape
        close(ours, theirs)
    ap = m.average_precision_score(y, s)
    close(ap, skm.average_precision_score(y, s))
    # AP = Σ (R_n − R_{n−1}) P_n, written out from the curve
    p, r, _ = m.precision_recall_curve(y, s)
    close(ap, -np.sum(np.diff(r) * p[:-1]))


@FEW
@given(label_pairs(max_classes=4, min_size=2), st.data())
def test_score_metrics_one_vs_rest_with_string_or_multiclass_labels(pair, data):
    """pos_label picks one class; all other labels are negatives (also for strings)."""
    y, _ = pair
    pos_label = data.draw(st.sampled_from(np.unique(y).tolist()))
    assume(0 < np.sum(y == pos_label) < len(y))
    s = data.draw(hnp.arrays(np.float64, len(y), elements=score_elements(data.draw)))
    binary = (y == pos_label).astype(int)
    close(m.roc_auc_score(y, s, pos_label=pos_label), skm.roc_auc_score(binary, s))
    close(m.average_precision_score(y, s, pos_label=pos_label),
          skm.average_precision_score(binary, s))
    for ours, theirs in zip(m.roc_curve(y, s, pos_label=pos_label),
                            skm.roc_curve(y, s, pos_label=pos_label), strict=True):
        close(ours, theirs)


def test_tied_scores_single_class_and_one_sample():
    y = np.array([0, 1, 0, 1, 1])
    tied = np.full(5, 0.3)
    assert m.roc_auc_score(y, tied) == 0.5 == skm.roc_auc_score(y, tied)
    close(m.average_precision_score(y, tied), skm.average_precision_score(y, tied))  # = 3/5
    assert m.average_precision_score(y, tied) == pytest.approx(0.6)
    fpr, tpr, thr = m.roc_curve(y, tied)
    np.testing.assert_array_equal(fpr, [0, 1])
    np.testing.assert_array_equal(tpr, [0, 1])
    assert thr[0] == np.inf and thr[1] == 0.3
    # a single class in y_true: scikit-learn warns and returns NaN (older versions raise); we raise
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        with pytest.raises((UndefinedMetricWarning, ValueError)):
            skm.roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="no negative sample"):
        m.roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="no positive sample"):
        m.roc_curve([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="no positive sample"):
        m.average_precision_score([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="no positive sample"):
        m.precision_recall_curve([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="single class"):
        m.roc_auc_score([1], [0.5])                     # one sample is one class
    # all positives: AP is defined (= 1) as in scikit-learn
    assert m.average_precision_score([1, 1], [0.2, 0.1]) == 1.0 == skm.average_precision_score([1, 1], [0.2, 0.1])
    # {-1, 1} labels and booleans with pos_label=None
    close(m.roc_auc_score([-1, -1, 1, 1], [0.1, 0.4, 0.35, 0.8]), 0.75)
    close(m.roc_auc_score([False, False, True, True], [0.1, 0.4, 0.35, 0.8]), 0.75)


@FEW
@given(st.data(), st.integers(2, 5))
def test_log_loss_matches_sklearn(data, k):
    n = data.draw(st.integers(1, 30))
    y = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, k - 1)))
    raw = data.draw(hnp.arrays(np.float64, (n, k), elements=st.sampled_from([0.0, 0.01, 0.3, 1.0, 5.0])))
    raw[:, 0] += 0.1                                      # rows must not be all zero
    prob = raw / raw.sum(axis=1, keepdims=True)           # includes exact 0 and 1: clipping
    close(m.log_loss(y, prob, labels=list(range(k))), skm.log_loss(y, prob, labels=list(range(k))))
    if k == 2:                                            # (n,) probabilities of class 1
        close(m.log_loss(y, prob[:, 1], labels=[0, 1]), skm.log_loss(y, prob[:, 1], labels=[0, 1]))
    if len(np.unique(y)) == k:                            # labels inferred from y_true
        close(m.log_loss(y, prob), skm.log_loss(y, prob))


@FEW
@given(st.data(), st.integers(3, 6))
def test_top_k_accuracy_matches_sklearn(data, n_classes):
    n = data.draw(st.integers(1, 30))
    y = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_classes - 1)))
    s = data.draw(hnp.arrays(np.float64, (n, n_classes), elements=score_elements(data.draw)))
    for k in range(1, n_classes + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = skm.top_k_accuracy_score(y, s, k=k, labels=list(range(n_classes)))
        close(m.top_k_accuracy(y, s, k), theirs)
    assert m.top_k_accuracy(y, s, n_classes) == 1.0
    words = np.array(WORDS[:n_classes])
    close(m.top_k_accuracy(words[y], s, 2, labels=words), m.top_k_accuracy(y, s, 2))


def test_top_k_accuracy_two_classes_and_ties():
    # k = 1 with ties: the higher class index wins, as with scikit-learn's sort
    s = np.array([[0.5, 0.5, 0.0], [0.2, 0.2, 0.2]])
    assert m.top_k_accuracy([0, 2], s, 1) == 0.5
    assert skm.top_k_accuracy_score([0, 2], s, k=1, labels=[0, 1, 2]) == 0.5
    # two classes: k = 1 is the accuracy of the arg-max
    s2 = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]])
    assert m.top_k_accuracy([0, 0, 1], s2, 1) == m.accuracy([0, 0, 1], s2.argmax(1)) == 2 / 3


# ----------------------------------------------------------------------------------------------
# regression
# ----------------------------------------------------------------------------------------------
@FEW
@given(regression_pairs())
def test_regression_metrics_match_sklearn_and_scipy(pair):
    y, p = pair
    close(m.mean_squared_error(y, p), skm.mean_squared_error(y, p))
    close(m.root_mean_squared_error(y, p), math.sqrt(skm.mean_squared_error(y, p)))
    close(m.mean_absolute_error(y, p), skm.mean_absolute_error(y, p))
    if len(y) >= 2:
        close(m.r2_score(y, p), skm.r2_score(y, p))      # incl. constant y_true (force_finite)
    if len(y) >= 2 and np.ptp(y) > 0 and np.ptp(p) > 0:
        close(m.pearson_r(y, p), scipy.stats.pearsonr(y, p).statistic)


def test_regression_edge_cases():
    assert m.r2_score([2.0, 2.0], [2.0, 2.0]) == 1.0          # constant, perfect
    assert m.r2_score([2.0, 2.0], [2.0, 3.0]) == 0.0          # constant, not perfect
    with pytest.raises(ValueError, match="at least two"):
        m.r2_score([1.0], [1.0])
    with pytest.raises(ValueError, match="constant"):
        m.pearson_r([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    y = np.array([1.0, 2.0, 4.0, 7.0])
    assert m.pearson_r(y, 2 * y + 5) == pytest.approx(1.0)     # r ignores scale and offset …
    assert m.r2_score(y, 2 * y + 5) < 0                        # … R² does not


# ----------------------------------------------------------------------------------------------
# ranking
# ----------------------------------------------------------------------------------------------
@FEW
@given(rankings(), st.sampled_from([None, 1, 2, 3, 10]))
def test_ndcg_matches_sklearn_linear_and_exponential(data, k):
    rel, s = data
    close(m.ndcg_at_k(rel, s, k), skm.ndcg_score(rel, s, k=k))
    close(m.ndcg_at_k(rel, s, k, gain="exponential"), skm.ndcg_score(2.0 ** rel - 1.0, s, k=k))


def _brute_force_at_k(rel: np.ndarray, s: np.ndarray, k: int) -> tuple[float, float]:
    """Mean precision@k and recall@k (0 for no relevant item) over every ordering of the items
    that is consistent with the scores (ties in any order)."""
    precisions, recalls = [], []
    for r, sc in zip(rel, s, strict=True):
        hits = []
        for perm in itertools.permutations(range(len(sc))):
            if all(sc[perm[i]] >= sc[perm[i + 1]] for i in range(len(sc) - 1)):
                hits.append(sum(r[j] > 0 for j in perm[:k]))
        expected = float(np.mean(hits))
        n_rel = int(np.sum(r > 0))
        precisions.append(expected / k)
        recalls.append(expected / n_rel if n_rel else 0.0)
    return float(np.mean(precisions)), float(np.mean(recalls))


@settings(max_examples=60, deadline=None)
@given(rankings(max_queries=3, max_items=5), st.integers(1, 5))
def test_precision_and_recall_at_k_average_ties_over_orderings(data, k):
    rel, s = data
    assume(k <= s.shape[1])
    p_brute, r_brute = _brute_force_at_k(rel, s, k)
    close(m.precision_at_k(rel, s, k), p_brute)
    close(m.recall_at_k(rel, s, k), r_brute)


def test_ranking_hand_cases():
    rel = np.array([3, 2, 0, 0, 1])
    s = np.array([0.9, 0.1, 0.8, 0.3, 0.5])          # ranking: items 0, 2, 4, 3, 1
    assert m.precision_at_k(rel, s, 2) == 0.5         # items 0 (relevant) and 2 (not)
    assert m.recall_at_k(rel, s, 3) == pytest.approx(2 / 3)
    dcg = 3 / np.log2(2) + 0 / np.log2(3) + 1 / np.log2(4) + 0 + 2 / np.log2(6)
    idcg = 3 / np.log2(2) + 2 / np.log2(3) + 1 / np.log2(4)
    assert m.ndcg_at_k(rel, s) == pytest.approx(dcg / idcg)
    # a query without relevant items: recall uses zero_division; with nan it is left out
    rel2 = np.array([[1, 0, 0], [0, 0, 0]])
    s2 = np.array([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    assert m.recall_at_k(rel2, s2, 1) == 0.5
    assert m.recall_at_k(rel2, s2, 1, zero_division=np.nan) == 1.0
    assert m.ndcg_at_k(rel2, s2) == 0.5                # the empty query scores 0, as in sklearn


# ----------------------------------------------------------------------------------------------
# detection: IoU
# ----------------------------------------------------------------------------------------------
def test_box_iou_hand_computed():
    # A = [0,2]×[0,2] (area 4), B = [1,3]×[1,4] (area 6): overlap [1,2]×[1,2] = 1, union 9
    assert m.box_iou([0, 0, 2, 2], [1, 1, 3, 4]) == pytest.approx(1 / 9)
    assert m.box_iou([0, 0, 2, 2], [0, 0, 2, 2]) == 1.0
    assert m.box_iou([0, 0, 1, 1], [1, 0, 2, 1]) == 0.0          # touching edges: no area
    assert m.box_iou([0, 0, 4, 4], [1, 1, 3, 3]) == 0.25         # nested: 4 / 16
    assert m.box_iou([1, 1, 1, 1], [1, 1, 1, 1]) == 0.0          # degenerate: union 0 → 0
    assert m.box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


@FEW
@given(hnp.arrays(np.float64, (5, 4), elements=st.integers(-20, 20).map(float)),
       hnp.arrays(np.float64, (3, 4), elements=st.integers(-20, 20).map(float)),
       st.floats(0.5, 4.0), st.integers(-50, 50))
def test_box_iou_properties_against_a_pixel_count(raw_a, raw_b, scale, shift):
    """Boxes with integer corners: IoU equals the ratio of unit cells counted one by one; it is
    symmetric, in [0, 1], and unchanged by a common scaling and translation."""
    def order(r):
        return np.stack([np.minimum(r[:, 0], r[:, 2]), np.minimum(r[:, 1], r[:, 3]),
                         np.maximum(r[:, 0], r[:, 2]), np.maximum(r[:, 1], r[:, 3])], axis=1)
    a, b = order(raw_a), order(raw_b)
    iou = m.box_iou(a, b)
    assert iou.shape == (5, 3) and (iou >= 0).all() and (iou <= 1 + 1e-12).all()
    close(iou.T, m.box_iou(b, a))
    close(m.box_iou(a * scale + shift, b * scale + shift), iou)
    grid = np.arange(-20, 20) + 0.5                       # centres of the unit cells
    gx, gy = np.meshgrid(grid, grid, indexing="ij")
    def cells(box):
        return (gx > box[0]) & (gx < box[2]) & (gy > box[1]) & (gy < box[3])
    for i, j in itertools.product(range(5), range(3)):
        ca, cb = cells(a[i]), cells(b[j])
        union = np.count_nonzero(ca | cb)
        expected = np.count_nonzero(ca & cb) / union if union else 0.0
        close(iou[i, j], expected)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
SCORE_FUNCTIONS = [m.roc_curve, m.roc_auc_score, m.precision_recall_curve, m.average_precision_score]


@pytest.mark.parametrize("func", SCORE_FUNCTIONS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_raise(func, bad):
    with pytest.raises(ValueError, match=r"NaN or infinite value\(s\), the first .* at index 2"):
        func([0, 1, 0, 1], [0.1, 0.2, bad, 0.4])


@pytest.mark.parametrize("func, args", [
    (m.log_loss, ([0, 1], [[0.5, 0.5], [np.nan, 0.5]])),
    (m.top_k_accuracy, ([0, 1], [[0.1, 0.2, 0.3], [np.inf, 0, 0]])),
    (m.mean_squared_error, ([1.0, np.nan], [1.0, 2.0])),
    (m.r2_score, ([1.0, 2.0], [1.0, np.inf])),
    (m.pearson_r, ([1.0, 2.0, 3.0], [1.0, np.nan, 2.0])),
    (m.ndcg_at_k, ([[1, 0, 2]], [[0.1, np.nan, 0.3]])),
    (m.precision_at_k, ([[1, 0, 2]], [[0.1, np.inf, 0.3]], 1)),
    (m.box_iou, ([0, 0, np.nan, 1], [0, 0, 1, 1])),
    (m.accuracy, (np.array([0.0, np.nan]), [0, 1])),
])
def test_non_finite_inputs_raise_everywhere(func, args):
    with pytest.raises(ValueError, match="NaN or infinite"):
        func(*args)


@pytest.mark.parametrize("func, args", [
    (m.accuracy, ([0, 1, 1], [0, 1])),
    (m.confusion_matrix, ([0, 1], [0])),
    (m.f1_score, ([0, 1], [0, 1, 1])),
    (m.roc_auc_score, ([0, 1, 1], [0.1, 0.2])),
    (m.precision_recall_curve, ([0, 1], [0.1, 0.2, 0.3])),
    (m.log_loss, ([0, 1, 1], [0.1, 0.2])),
    (m.top_k_accuracy, ([0, 1], [[0.1, 0.2, 0.3]])),
    (m.mean_absolute_error, ([1.0, 2.0], [1.0])),
    (m.pearson_r, ([1.0, 2.0], [1.0, 2.0, 3.0])),
])
def test_mismatched_lengths_raise(func, args):
    with pytest.raises(ValueError, match="same number of samples"):
        func(*args)


@pytest.mark.parametrize("func, args", [
    (m.accuracy, ([], [])),
    (m.confusion_matrix, ([], [])),
    (m.f1_score, ([], [])),
    (m.roc_auc_score, ([], [])),
    (m.average_precision_score, ([], [])),
    (m.mean_squared_error, ([], [])),
    (m.ndcg_at_k, ([], [])),
])
def test_empty_inputs_raise(func, args):
    with pytest.raises(ValueError, match="empty"):
        func(*args)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3", None])
def test_bad_k_raises(k):
    rel, s = [[1, 0, 1, 0]], [[0.4, 0.3, 0.2, 0.1]]
    for func in (m.precision_at_k, m.recall_at_k):
        with pytest.raises(ValueError, match="positive integer"):
            func(rel, s, k)
    if k is not None:                                   # None means "all items" for NDCG
        with pytest.raises(ValueError, match="positive integer"):
            m.ndcg_at_k(rel, s, k)
        with pytest.raises(ValueError, match="positive integer"):
            m.top_k_accuracy([0], [[0.2, 0.5, 0.3]], k)


def test_k_larger_than_the_data_raises():
    with pytest.raises(ValueError, match="larger than the number of items"):
        m.precision_at_k([[1, 0, 1]], [[0.3, 0.2, 0.1]], 4)
    with pytest.raises(ValueError, match="larger than the number of classes"):
        m.top_k_accuracy([0], [[0.2, 0.5, 0.3]], 4)
    # NDCG follows scikit-learn: k beyond the list means the whole list
    assert m.ndcg_at_k([[1, 0, 1]], [[0.3, 0.2, 0.1]], 10) == m.ndcg_at_k([[1, 0, 1]], [[0.3, 0.2, 0.1]])


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="at most two distinct labels, found 3"):
        m.f1_score([0, 1, 2], [0, 1, 1])
    with pytest.raises(ValueError, match="pos_label=1 is not one of the labels"):
        m.f1_score(["a", "b"], ["a", "a"])
    with pytest.raises(ValueError, match="average must be one of"):
        m.f1_score([0, 1], [0, 1], average="samples")
    with pytest.raises(ValueError, match="zero_division"):
        m.f1_score([0, 1], [0, 1], zero_division="warn")
    with pytest.raises(ValueError, match="mix strings and numbers"):
        m.accuracy(["0", "1"], [0, 1])
    with pytest.raises(ValueError, match="pos_label"):
        m.roc_auc_score(["a", "b"], [0.1, 0.9])
    with pytest.raises(ValueError, match=r"\{0, 1\} or \{-1, 1\}"):
        m.roc_curve([0, 2, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="1-D"):
        m.accuracy([[0, 1]], [[0, 1]])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        m.log_loss([0, 1], [-0.1, 0.7])
    with pytest.raises(ValueError, match="sum to 1"):
        m.log_loss([0, 1], [[0.5, 0.6], [0.5, 0.5]])
    with pytest.raises(ValueError, match="at least two classes"):
        m.log_loss([1, 1], [0.3, 0.4])
    with pytest.raises(ValueError, match="x2 < x1"):
        m.box_iou([2, 0, 1, 1], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="negative|≥ 0"):
        m.ndcg_at_k([[-1, 0, 1]], [[0.3, 0.2, 0.1]])
    with pytest.raises(ValueError, match="same shape"):
        m.ndcg_at_k([[1, 0, 1]], [[0.3, 0.2]])


def test_large_input_stays_exact():
    """10^5 samples with heavy ties: the counting formula and sklearn's trapezoid agree."""
    rng = np.random.default_rng(0)
    y = rng.random(100_000) < 0.1
    s = np.round(rng.normal(y * 1.0, 1.0), 2)
    close(m.roc_auc_score(y, s), skm.roc_auc_score(y, s))
    close(m.average_precision_score(y, s), skm.average_precision_score(y, s))
    y_pred = s > 0.5
    close(m.f1_score(y, y_pred), skm.f1_score(y, y_pred))


def test_accepts_lists_and_jax_arrays():
    import jax.numpy as jnp

    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert m.roc_auc_score(jnp.asarray(y), jnp.asarray(s)) == m.roc_auc_score(y, s) == 0.75
    assert m.f1_score(jnp.asarray(y), jnp.asarray([0, 1, 1, 1])) == pytest.approx(0.8)
    assert m.top_k_accuracy(jnp.asarray([1]), jnp.asarray([[0.1, 0.7, 0.2]]), 1) == 1.0


# ----------------------------------------------------------------------------------------------
# bad input: class ids, pos_label, thresholds (issue 10 §5: a clear error, never a silent answer)
# ----------------------------------------------------------------------------------------------
def test_confusion_counts_rejects_a_positive_class_that_is_not_there():
    # the default pos_label=1 against string labels: would count nothing
    with pytest.raises(ValueError, match="mix strings and numbers"):
        m.confusion_counts(["Shirt", "other"], ["other", "other"])
    # an integer class that occurs nowhere while other classes do: a typo, not a batch
    with pytest.raises(ValueError, match=r"pos_label=1 occurs in neither .* \[0, 2\]"):
        m.confusion_counts([0, 2, 2], [0, 0, 2], pos_label=1)
    # a batch with a single label may lack the positive class: that is data, not a mistake
    assert m.confusion_counts([0, 0, 0], [0, 0, 0], pos_label=1) == (0, 0, 0, 3)
    assert m.confusion_counts(["a", "b"], ["b", "b"], pos_label="a") == (0, 0, 1, 1)


def test_class_ids_out_of_range_of_the_score_columns_raise():
    prob = np.array([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
    # ids {0, 3, 10} with 3 columns: scikit-learn would read columns 0, 1, 2 silently
    with pytest.raises(ValueError, match=r"class ids in \[0, 10\] .* must be 0\.\.2"):
        m.log_loss([0, 3, 10], prob)
    with pytest.raises(ValueError, match=r"class ids in \[-1, 2\]"):
        m.log_loss([-1, 1, 2], prob)
    # mapped on purpose, it is accepted and equals scikit-learn
    close(m.log_loss([0, 3, 10], prob, labels=[0, 3, 10]), skm.log_loss([0, 3, 10], prob, labels=[0, 3, 10]))
    # ids in range but one class absent from y_true: columns ≠ classes seen, say so
    with pytest.raises(ValueError, match="3 columns but there are 2 classes"):
        m.log_loss([0, 2, 2], prob)
    for bad in ([0, 3, 1], [-1, 0, 1]):
        with pytest.raises(ValueError, match=r"class indices 0\.\.2"):
            m.top_k_accuracy(bad, prob, 1)
    with pytest.raises(ValueError, match="one entry per column"):
        m.top_k_accuracy([0, 1, 2], prob, 1, labels=[0, 1])
    with pytest.raises(ValueError, match="not in labels"):
        m.top_k_accuracy(["a", "b", "z"], prob, 1, labels=["a", "b", "c"])


@pytest.mark.parametrize("thresholds", [np.nan, 1.5, -0.1, [], [0.5, np.nan]])
def test_bad_iou_thresholds_raise(thresholds):
    gt_boxes, gt_labels = [np.array([[0, 0, 2, 2]])], [np.array([1])]
    pred = ([np.array([[0, 0, 2, 2]])], [np.array([0.9])], [np.array([1])])
    with pytest.raises(ValueError, match=r"iou_thresholds must be .* in \[0, 1\]"):
        m.mean_average_precision(gt_boxes, gt_labels, *pred, iou_thresholds=thresholds)
    with pytest.raises(ValueError, match=r"iou_thresholds must be .* in \[0, 1\]"):
        m.match_detections(gt_boxes, gt_labels, *pred, 1, iou_thresholds=thresholds)
    if np.ndim(thresholds) == 0:
        with pytest.raises(ValueError, match=r"iou_thresholds must be .* in \[0, 1\]"):
            m.detection_average_precision(gt_boxes, gt_labels, *pred, iou_threshold=thresholds)
    # both edges of the range are valid: a perfect box matches at 0 and at 1
    assert m.mean_average_precision(gt_boxes, gt_labels, *pred, iou_thresholds=[0.0, 1.0]) == pytest.approx(1.0)


def test_nan_detection_scores_and_bad_recall_thresholds_raise():
    gt_boxes, gt_labels = [np.array([[0, 0, 2, 2]])], [np.array([1])]
    with pytest.raises(ValueError, match="NaN or infinite"):
        m.detection_average_precision(gt_boxes, gt_labels, [np.array([[0, 0, 2, 2]])],
                                      [np.array([np.nan])], [np.array([1])])
    matches = m.match_detections(gt_boxes, gt_labels, [np.array([[0, 0, 2, 2]])],
                                 [np.array([0.9])], [np.array([1])], 1)
    for bad in ([], [np.nan], [0.0, 1.5]):
        with pytest.raises(ValueError, match="recall_thresholds"):
            m.interpolated_average_precision(matches, bad)


@pytest.mark.parametrize("func, args", [
    (m.log_loss, ([], [])),
    (m.top_k_accuracy, ([], np.zeros((0, 3)), 1)),
    (m.precision_recall_curve, ([], [])),
    (m.confusion_counts, ([], [])),
    (m.r2_score, ([], [])),
    (m.pearson_r, ([], [])),
    (m.precision_at_k, ([[]], [[]], 1)),
    (m.recall_at_k, ([], [], 1)),
])
def test_more_empty_inputs_raise(func, args):
    with pytest.raises(ValueError, match="empty"):
        func(*args)


@pytest.mark.parametrize("func, args", [
    (m.confusion_counts, ([0, 1, 1], [0, 1])),
    (m.precision, ([0, 1], [1])),
    (m.recall, ([0, 1], [1, 1, 1])),
    (m.average_precision_score, ([0, 1, 1], [0.1, 0.2])),
    (m.roc_curve, ([0, 1], [0.1])),
    (m.mean_squared_error, ([1.0], [1.0, 2.0])),
    (m.r2_score, ([1.0, 2.0, 3.0], [1.0, 2.0])),
])
def test_more_mismatched_lengths_raise(func, args):
    with pytest.raises(ValueError, match="same number of samples"):
        func(*args)


@pytest.mark.parametrize("func", [m.mean_absolute_error, m.root_mean_squared_error])
def test_nan_regression_inputs_raise(func):
    with pytest.raises(ValueError, match="NaN or infinite"):
        func([1.0, 2.0], [np.nan, 2.0])
