"""Evaluation metrics in NumPy, written to agree with scikit-learn (chapter 10 teaches them).

Used in chapters: 06, 07, 08, 09, 10; imported by ``lmcourse.data.scenes``, ``lmcourse.detection``,
``lmcourse.multitask``, ``lmcourse.privacy``, ``lmcourse.recsys``.

Classification from labels
    :func:`accuracy`, :func:`confusion_matrix`, :func:`confusion_counts` (TP, FP, FN, TN),
    :func:`precision_recall_f1` and its shortcuts :func:`precision`, :func:`recall`,
    :func:`f1_score` (binary, macro, micro, weighted or per class).
Classification from scores
    :func:`roc_curve`, :func:`roc_auc_score`, :func:`precision_recall_curve`,
    :func:`average_precision_score`, :func:`log_loss`, :func:`top_k_accuracy`.
Regression
    :func:`mean_squared_error`, :func:`root_mean_squared_error`, :func:`mean_absolute_error`,
    :func:`r2_score`, :func:`pearson_r`.
Ranking (recommendation, retrieval)
    :func:`precision_at_k`, :func:`recall_at_k`, :func:`ndcg_at_k`.
Text generation (chapter 07)
    :func:`exact_match`, :func:`exact_match_by_group`, :func:`corpus_bleu` (tokenizers
    :func:`tokenize_13a`, :func:`bleu_tokens`), :func:`corpus_chrf`; checked against sacrebleu
    2.6 in ``tests/test_text_metrics.py``.
Calibration and uncertainty (chapter 10)
    :func:`reliability_bins`, :func:`expected_calibration_error` (Guo et al. 2017, eq. 3),
    :func:`softmax_with_temperature`, :func:`temperature_nll`, :func:`fit_temperature`
    (temperature scaling); :func:`bootstrap_ci` and :func:`paired_bootstrap` (percentile
    bootstrap, Efron & Tibshirani 1993); tested in ``tests/test_calibration.py``.
Detection
    :func:`box_iou`; average precision as COCO computes it: :func:`match_detections`,
    :func:`detection_precision_recall`, :func:`interpolated_average_precision`,
    :func:`detection_average_precision` (per class), :func:`mean_average_precision` (mAP@0.5,
    mAP@[.5:.95]); checked against pycocotools in ``tests/test_map_reference.py``.

Conventions shared by every function:

* Inputs are array-likes (lists, NumPy or JAX arrays). Labels may be integers, booleans or
  strings; scores and targets are converted to ``float64``.
* Results are Python ``float`` (or ``float64``/``int64`` arrays where a function says so).
* Errors are ``ValueError`` with a message that says what is wrong and what to do: empty
  inputs, inputs of different lengths, NaN or infinite scores, a ``k`` that is not an integer
  in range, class ids outside the columns of a score matrix, a ``pos_label`` that is not one of
  the labels, IoU thresholds outside [0, 1], a metric that is undefined for the data (e.g. ROC
  AUC when ``y_true`` holds a single class, where scikit-learn instead warns and returns NaN).
* Where a ratio has a zero denominator (precision with no positive prediction, recall with no
  positive sample, ...), the result is ``zero_division``: ``0.0`` by default, or ``1.0`` or
  ``nan`` if asked. This is scikit-learn's ``zero_division`` (its default ``"warn"`` gives 0.0
  and a warning; we give 0.0 silently and document it here). With ``nan``, averages ignore the
  undefined classes, as scikit-learn does.

Reference: scikit-learn 1.9, ``sklearn.metrics`` (the tests in ``tests/test_metrics.py``
compare every function with it, or with SciPy, on random inputs to 1e-9).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from lmcourse.validation import check_float, check_int, check_positive_float

Average = Literal["binary", "macro", "micro", "weighted"] | None
_AVERAGES = ("binary", "macro", "micro", "weighted", None)
_LUT_MAX = 1 << 20  # integer labels spanning at most this many values are encoded with a table


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
def _labels(name: str, y: ArrayLike) -> np.ndarray:
    """A non-empty 1-D array of labels (ints, bools, strings; floats must be finite)."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of shape (n_samples,), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty: a metric needs at least one sample")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite labels; labels must be finite")
    if a.dtype.kind not in "biufUSO":
        raise ValueError(f"{name} has dtype {a.dtype}; labels must be integers, booleans or strings")
    return a


def _finite(name: str, a: np.ndarray) -> np.ndarray:
    """Raise a ValueError naming the first NaN/inf entry of ``a`` (float64), else return ``a``."""
    if not np.isfinite(a).all():
        flat = a.reshape(-1)
        bad = np.flatnonzero(~np.isfinite(flat))
        where = np.unravel_index(bad[0], a.shape)
        where = where[0] if a.ndim == 1 else tuple(int(i) for i in where)
        raise ValueError(
            f"{name} contains {bad.size} NaN or infinite value(s), the first {flat[bad[0]]} at "
            f"index {where}; metrics need finite numbers (check the model's output, e.g. a log "
            "of 0 or an overflowing exp, or drop those samples explicitly)")
    return a


def _numbers(name: str, x: ArrayLike, ndim: int | tuple[int, ...] = 1) -> np.ndarray:
    """A non-empty, finite float64 array with ``ndim`` dimensions (one of them if a tuple)."""
    a = np.asarray(x)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if a.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"{name} must be {want}, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty: a metric needs at least one sample")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers, got dtype {a.dtype}")
    return _finite(name, a.astype(np.float64, copy=False))


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"inputs must have the same number of samples: {described}")
    return next(iter(lengths.values()))


def _check_k(k: Any, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer, got {k!r}")
    if k < 1:
        raise ValueError(f"{name} must be a positive integer (≥ 1), got {k}")
    return int(k)


def _check_zero_division(zero_division: float) -> float:
    if isinstance(zero_division, str) or not (
            zero_division in (0, 1) or (isinstance(zero_division, float) and math.isnan(zero_division))):
        raise ValueError(f"zero_division must be 0.0, 1.0 or nan, got {zero_division!r}")
    return float(zero_division)


def _check_mix(a: np.ndarray, b: np.ndarray) -> None:
    text = {a.dtype.kind in "US", b.dtype.kind in "US"}
    if len(text) > 1 and "O" not in (a.dtype.kind, b.dtype.kind):
        raise ValueError(f"labels mix strings and numbers ({a.dtype} and {b.dtype}); use one type")


def _small_int_offsets(a: np.ndarray, b: np.ndarray
                       ) -> tuple[int, int, np.ndarray, np.ndarray] | None:
    """For integer (or bool) labels spanning fewer than ``_LUT_MAX`` values: ``(lo, span, a - lo,
    b - lo)`` as ``intp`` arrays, ready for ``bincount``; ``None`` for any other labels."""
    if not (a.dtype.kind in "biu" and b.dtype.kind in "biu"):
        return None
    lo = min(int(a.min()), int(b.min()))
    hi = max(int(a.max()), int(b.max()))
    if hi - lo >= _LUT_MAX or abs(lo) >= 2**62 or abs(hi) >= 2**62:
        return None
    ia = a.astype(np.intp, copy=False) - lo if lo else a.astype(np.intp, copy=False)
    ib = b.astype(np.intp, copy=False) - lo if lo else b.astype(np.intp, copy=False)
    return lo, hi - lo + 1, ia, ib


def _encode(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted union of the labels of ``a`` and ``b`` and both arrays as indices into it.

    Integer labels spanning a small range use a lookup table (linear time); others ``np.unique``.
    """
    _check_mix(a, b)
    small = _small_int_offsets(a, b)
    if small is not None:
        lo, span, ia, ib = small
        present = (np.bincount(ia, minlength=span) + np.bincount(ib, minlength=span)) > 0
        lut = np.cumsum(present) - 1
        classes = np.flatnonzero(present) + lo
        if a.dtype.kind == "b" and b.dtype.kind == "b":
            classes = classes.astype(bool)
        return classes, lut[ia], lut[ib]
    classes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    return classes, inverse[: len(a)], inverse[len(a):]


def _class_counts(a: np.ndarray, b: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sorted union of the labels and, for each, how often ``a == b == label``, ``a == label``
    and ``b == label``. Integer labels in a small range are counted in place with ``bincount``
    (no sort, no encoded copies); others are encoded with :func:`_encode` first."""
    _check_mix(a, b)
    small = _small_int_offsets(a, b)
    if small is not None:
        lo, span, ia, ib = small
        true_raw = np.bincount(ia, minlength=span)
        pred_raw = np.bincount(ib, minlength=span)
        tp_raw = np.bincount(ia[ia == ib], minlength=span)
        present = np.flatnonzero(true_raw + pred_raw)
        classes = present + lo
        if a.dtype.kind == "b" and b.dtype.kind == "b":
            classes = classes.astype(bool)
        return classes, tp_raw[present], true_raw[present], pred_raw[present]
    classes, ti, pi = _encode(a, b)
    k = len(classes)
    return (classes, np.bincount(ti[ti == pi], minlength=k), np.bincount(ti, minlength=k),
            np.bincount(pi, minlength=k))


def _positions(classes: np.ndarray, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` as a 1-D array and, for each, its index in ``classes`` (``-1`` if absent)."""
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D list of labels, got shape {lab.shape}")
    if len(np.unique(lab)) != len(lab):
        raise ValueError(f"labels must not repeat a label, got {lab.tolist()}")
    _check_mix(lab, classes)
    idx = np.searchsorted(classes, lab)
    idx = np.clip(idx, 0, len(classes) - 1)
    found = classes[idx] == lab
    return lab, np.where(found, idx, -1)


# ----------------------------------------------------------------------------------------------
# classification from labels
# ----------------------------------------------------------------------------------------------
def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    r"""Fraction of samples whose predicted label equals the true label (准确率).

    .. math:: \mathrm{Acc} = \frac{1}{n}\sum_{i=1}^{n} [\hat y_i = y_i]
              = \frac{TP + TN}{TP + TN + FP + FN}\ \text{(binary case)}

    Args:
        y_true, y_pred: ``(n,)`` labels (ints, bools or strings).

    Returns:
        float in [0, 1]. Same as ``sklearn.metrics.accuracy_score``.

    Raises:
        ValueError: empty inputs, different lengths, NaN labels, strings mixed with numbers.
    """
    t, p = _labels("y_true", y_true), _labels("y_pred", y_pred)
    _same_length(y_true=t, y_pred=p)
    _check_mix(t, p)
    return float(np.count_nonzero(t == p) / len(t))


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, *, labels: ArrayLike | None = None
                     ) -> np.ndarray:
    r"""Confusion matrix 混淆矩阵 ``C`` with ``C[i, j]`` = number of samples of true class ``i``
    predicted as class ``j`` (rows: truth, columns: prediction, as in scikit-learn).

    For two classes ordered (negative, positive): ``[[TN, FP], [FN, TP]]``.

    Args:
        y_true, y_pred: ``(n,)`` labels.
        labels: the classes, in the order of the rows/columns; default: the sorted union of the
            labels in ``y_true`` and ``y_pred``. A listed class that never occurs gets a row and
            a column of zeros; a sample whose true or predicted label is not listed is left out
            (scikit-learn's behaviour).

    Returns:
        ``(K, K)`` int64 array.

    Raises:
        ValueError: bad inputs (see :func:`accuracy`); ``labels`` repeated or containing no
            label of ``y_true``.
    """
    t, p = _labels("y_true", y_true), _labels("y_pred", y_pred)
    _same_length(y_true=t, y_pred=p)
    classes, ti, pi = _encode(t, p)
    k = len(classes)
    full = np.bincount(ti * k + pi, minlength=k * k).reshape(k, k)
    if labels is None:
        return full.astype(np.int64)
    lab, pos = _positions(classes, labels)
    if not np.isin(lab, t).any():
        raise ValueError("none of the given labels occurs in y_true: check labels")
    padded = np.zeros((k + 1, k + 1), dtype=np.int64)   # row/column -1 is all zeros
    padded[:k, :k] = full
    return padded[np.ix_(pos, pos)]


class Counts(NamedTuple):
    """The four cells of a binary confusion matrix: true/false positives/negatives."""

    tp: int
    fp: int
    fn: int
    tn: int


def confusion_counts(y_true: ArrayLike, y_pred: ArrayLike, *, pos_label: Any = 1) -> Counts:
    """TP, FP, FN, TN for the class ``pos_label`` against all others (one-vs-rest).

    Args:
        y_true, y_pred: ``(n,)`` labels, two or more classes (all but ``pos_label`` are negative).
        pos_label: the positive class.

    Returns:
        :class:`Counts` of Python ints; ``tp + fp + fn + tn == n``.

    Raises:
        ValueError: bad inputs (see :func:`accuracy`); ``pos_label`` of another type than the
            labels (a string against numbers); ``pos_label`` absent from both ``y_true`` and
            ``y_pred`` while they hold two or more labels (it would silently give TP = FP =
            FN = 0, e.g. the default ``1`` with labels ``"Shirt"``/``"other"``). A single-label
            input may lack the positive class (a batch with no positive is legitimate).
    """
    t, p = _labels("y_true", y_true), _labels("y_pred", y_pred)
    n = _same_length(y_true=t, y_pred=p)
    _check_mix(t, p)
    pos = np.asarray([pos_label])
    _check_mix(pos, t)
    tpos, ppos = t == pos_label, p == pos_label
    if not (tpos.any() or ppos.any()):
        seen = np.union1d(t, p)
        if len(seen) >= 2:
            raise ValueError(
                f"pos_label={pos_label!r} occurs in neither y_true nor y_pred, whose labels are "
                f"{seen[:10].tolist()}{' ...' if len(seen) > 10 else ''}: every count would be "
                "0 except TN. Pass pos_label=<the positive class>.")
    tp = int(np.count_nonzero(tpos & ppos))
    fp = int(np.count_nonzero(ppos)) - tp
    fn = int(np.count_nonzero(tpos)) - tp
    return Counts(tp, fp, fn, n - tp - fp - fn)


class PRF(NamedTuple):
    """Result of :func:`precision_recall_f1`: floats when averaged, ``(K,)`` arrays when not.

    ``support`` is the number of true samples of each class (``(K,)`` int64) or, when averaged,
    their total over the classes that were averaged (an int).
    """

    precision: Any
    recall: Any
    f1: Any
    support: Any


def _divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    out = np.full(num.shape, zero_division, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _nanaverage(values: np.ndarray, weights: np.ndarray | None) -> float:
    """Mean of ``values`` ignoring NaNs, weighted if ``weights`` sum to more than 0 (sklearn's
    ``_nanaverage``: all-zero weights fall back to the plain mean; all-NaN gives NaN)."""
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    values = values[keep]
    if weights is not None:
        w = weights[keep].astype(np.float64)
        if w.sum() > 0:
            return float(np.sum(values * w) / w.sum())
    return float(values.mean())


def precision_recall_f1(y_true: ArrayLike, y_pred: ArrayLike, *, average: Average = "binary",
                        pos_label: Any = 1, labels: ArrayLike | None = None,
                        zero_division: float = 0.0) -> PRF:
    r"""Precision 精确率, recall 召回率 and F1 值 of predicted labels, per class or averaged.

    For one class ``c`` treated as positive (one-vs-rest):

    .. math::
        P = \frac{TP}{TP + FP},\qquad R = \frac{TP}{TP + FN},\qquad
        F_1 = \frac{2PR}{P + R} = \frac{2\,TP}{2\,TP + FP + FN}.

    F1 is computed with the last form, so it is defined whenever ``TP + FP + FN > 0`` even if
    ``P`` or ``R`` alone is not (scikit-learn does the same).

    Averages over the classes (``labels``, default the sorted union of the labels seen):

    * ``"binary"``: only ``pos_label`` (needs at most two distinct labels in the data);
    * ``"macro"``: unweighted mean of the per-class values (every class counts the same);
    * ``"weighted"``: mean weighted by each class's support (number of true samples);
    * ``"micro"``: sum TP, FP and FN over the classes first, then apply the formulas. For
      single-label data with all classes included, micro P = micro R = micro F1 = accuracy;
    * ``None``: the per-class values as ``(K,)`` arrays, in the order of ``labels``.

    Zero denominators give ``zero_division`` (see the module docstring): precision when a
    class is never predicted, recall when it never occurs, F1 when both. With ``nan`` the
    averages skip those classes.

    Args:
        y_true, y_pred: ``(n,)`` labels (ints, bools or strings).
        average: see above.
        pos_label: positive class for ``average="binary"`` (must be one of the labels when two
            distinct labels occur); ignored otherwise.
        labels: classes to report or average over (ignored for ``"binary"``); may include
            classes absent from the data (their counts are zero).
        zero_division: 0.0 (default), 1.0 or nan.

    Returns:
        :class:`PRF` (precision, recall, f1, support). Matches
        ``sklearn.metrics.precision_recall_fscore_support`` (source of the conventions).

    Raises:
        ValueError: bad inputs; an unknown ``average``; ``"binary"`` with more than two labels
            or with a ``pos_label`` that is not one of the two.
    """
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    zero_division = _check_zero_division(zero_division)
    t, p = _labels("y_true", y_true), _labels("y_pred", y_pred)
    _same_length(y_true=t, y_pred=p)
    classes, tp_all, true_all, pred_all = _class_counts(t, p)
    k = len(classes)

    if average == "binary":
        if k > 2:
            raise ValueError(
                f"average='binary' needs at most two distinct labels, found {k}: "
                f"{classes[:10].tolist()}{' ...' if k > 10 else ''}. Use average='macro', "
                "'micro', 'weighted' or None, or binarise the labels first (one-vs-rest).")
        if k == 2 and not np.isin(np.asarray([pos_label]), classes).all():
            raise ValueError(f"pos_label={pos_label!r} is not one of the labels "
                             f"{classes.tolist()}; pass pos_label=<the positive class>")
        labels = [pos_label]
    lab, pos = (classes, np.arange(k)) if labels is None else _positions(classes, labels)
    pad = np.zeros(1, dtype=np.int64)
    tp = np.concatenate([tp_all, pad])[pos]        # index -1 (absent label) reads the 0 pad
    true_sum = np.concatenate([true_all, pad])[pos]
    pred_sum = np.concatenate([pred_all, pad])[pos]
    if average == "micro":
        tp, true_sum, pred_sum = tp.sum(keepdims=True), true_sum.sum(keepdims=True), pred_sum.sum(keepdims=True)

    prec = _divide(tp.astype(np.float64), pred_sum, zero_division)
    rec = _divide(tp.astype(np.float64), true_sum, zero_division)
    f1 = _divide(2.0 * tp, (true_sum + pred_sum).astype(np.float64), zero_division)
    if average is None:
        return PRF(prec, rec, f1, true_sum.astype(np.int64))
    weights = true_sum if average == "weighted" else None
    return PRF(_nanaverage(prec, weights), _nanaverage(rec, weights), _nanaverage(f1, weights),
               int(true_sum.sum()))


def precision(y_true: ArrayLike, y_pred: ArrayLike, **kwargs: Any) -> Any:
    r"""Precision 精确率 :math:`TP/(TP+FP)`; keywords and conventions of :func:`precision_recall_f1`.

    Raises:
        ValueError: as :func:`precision_recall_f1`.
    """
    return precision_recall_f1(y_true, y_pred, **kwargs).precision


def recall(y_true: ArrayLike, y_pred: ArrayLike, **kwargs: Any) -> Any:
    r"""Recall 召回率 :math:`TP/(TP+FN)`; keywords and conventions of :func:`precision_recall_f1`.

    The share of the positive samples that are found, in [0, 1]. Not "correctly classified /
    all positives", :math:`(TP+TN)/(TP+FN)`, which counts the true negatives too and exceeds 1
    whenever ``TN > FN`` (chapter 10 and ``tests/test_lessons.py`` show that error on a real
    classifier).

    Raises:
        ValueError: as :func:`precision_recall_f1`.
    """
    return precision_recall_f1(y_true, y_pred, **kwargs).recall


def f1_score(y_true: ArrayLike, y_pred: ArrayLike, **kwargs: Any) -> Any:
    r"""F1 值 :math:`2PR/(P+R) = 2TP/(2TP+FP+FN)`; keywords of :func:`precision_recall_f1`.

    The harmonic mean of precision and recall; with accuracy in place of precision,
    :math:`2\cdot\mathrm{Acc}\cdot R/(\mathrm{Acc} + R)` is not F1 (chapter 10).

    Raises:
        ValueError: as :func:`precision_recall_f1`.
    """
    return precision_recall_f1(y_true, y_pred, **kwargs).f1


# ----------------------------------------------------------------------------------------------
# classification from scores
# ----------------------------------------------------------------------------------------------
def _binary_target(y_true: ArrayLike, pos_label: Any) -> np.ndarray:
    """``y_true == pos_label`` as bools; with ``pos_label=None`` the labels must be {0, 1} or
    {-1, 1} (or booleans) and 1 is positive (scikit-learn's rule)."""
    t = _labels("y_true", y_true)
    if pos_label is None:
        if t.dtype.kind == "b":
            return t
        if t.dtype.kind not in "iuf":
            raise ValueError(f"y_true holds {t.dtype} labels: say which is positive with "
                             "pos_label=..., e.g. pos_label='spam'")
        is_pos = t == 1
        rest = t[~is_pos]
        if rest.size and not ((rest == 0).all() or (rest == -1).all()):
            raise ValueError(
                "with pos_label=None, y_true must hold labels {0, 1} or {-1, 1}; found "
                f"{np.unique(t)[:10].tolist()}. Pass pos_label=<positive class> (the other "
                "classes then count as negative).")
        return is_pos
    return t == pos_label


def _scores_and_target(y_true: ArrayLike, y_score: ArrayLike, pos_label: Any
                       ) -> tuple[np.ndarray, np.ndarray]:
    pos = _binary_target(y_true, pos_label)
    s = _numbers("y_score", y_score)
    _same_length(y_true=pos, y_score=s)
    return pos, s


def _counts_at_thresholds(pos: np.ndarray, s: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive counts (float64) when predicting positive for ``score >= t``,
    for every distinct score ``t`` in decreasing order, and those thresholds.

    Equivalent to a stable arg-sort of the scores followed by cumulative sums at the last index
    of each run of tied scores (scikit-learn's method), but faster: one value sort finds the
    distinct scores and their multiplicities, and only the positives are located among them.
    """
    n = len(s)
    s_sorted = np.sort(s)
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(s_sorted[1:], s_sorted[:-1], out=starts[1:])
    first = np.flatnonzero(starts)                             # first index of each distinct score
    values = s_sorted[first]                                   # distinct scores, increasing
    del s_sorted, starts                                       # (memory: 10^7 scores are 80 MB)
    positives = np.sort(s[pos])
    pos_per_value = np.bincount(np.searchsorted(values, positives), minlength=len(values))
    tps = np.cumsum(pos_per_value)
    tps -= pos_per_value                                       # positives scored below each value
    del pos_per_value
    np.subtract(len(positives), tps, out=tps)                  # positives scored >= each value
    fps = n - first
    del first
    fps -= tps
    return fps[::-1].astype(np.float64), tps[::-1].astype(np.float64), values[::-1].copy()


def _need_both_classes(n_pos: float, n_neg: float, what: str) -> None:
    if n_pos == 0 or n_neg == 0:
        missing = "positive" if n_pos == 0 else "negative"
        raise ValueError(
            f"{what} is undefined: y_true has no {missing} sample (a single class). "
            "scikit-learn warns and returns NaN here; evaluate on data that contains both "
            "classes, or check pos_label.")


def roc_curve(y_true: ArrayLike, y_score: ArrayLike, *, pos_label: Any = None,
              drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Receiver operating characteristic (ROC 曲线): false and true positive rates when a sample
    is called positive if its score is ``>= threshold``, for every distinct score.

    .. math:: \mathrm{TPR}(t) = \frac{TP(t)}{P},\qquad \mathrm{FPR}(t) = \frac{FP(t)}{N}

    Tied scores form one threshold (one point), so a tie between a positive and a negative
    gives a diagonal segment. The first point is ``(0, 0)`` at threshold ``+inf``.
    ``drop_intermediate=True`` (default, as in scikit-learn) drops points that are collinear
    with their neighbours (where neither FP nor TP changes slope); this never changes the curve
    drawn nor its area.

    Args:
        y_true: ``(n,)`` labels; see ``pos_label``.
        y_score: ``(n,)`` finite scores, higher = more likely positive.
        pos_label: the positive class; ``None`` accepts labels {0, 1} or {-1, 1} (positive 1).
            With another class given, every other label is negative (one-vs-rest).
        drop_intermediate: see above.

    Returns:
        ``fpr``, ``tpr``, ``thresholds``: float64 arrays of equal length, thresholds decreasing.
        Same values as ``sklearn.metrics.roc_curve`` (Fawcett 2006, *An introduction to ROC
        analysis*, Pattern Recognition Letters 27(8)).

    Raises:
        ValueError: bad inputs; NaN/inf scores; only one class in ``y_true``.
    """
    pos, s = _scores_and_target(y_true, y_score, pos_label)
    fps, tps, thr = _counts_at_thresholds(pos, s)
    _need_both_classes(tps[-1], fps[-1], "the ROC curve")
    if drop_intermediate and len(fps) > 2:
        corner = np.logical_or(np.diff(fps, 2), np.diff(tps, 2))
        keep = np.flatnonzero(np.concatenate([[True], corner, [True]]))
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps = np.concatenate([[0.0], fps])
    tps = np.concatenate([[0.0], tps])
    thr = np.concatenate([[np.inf], thr])
    return fps / fps[-1], tps / tps[-1], thr


def roc_auc_score(y_true: ArrayLike, y_score: ArrayLike, *, pos_label: Any = None) -> float:
    r"""Area under the ROC curve: the probability that a random positive scores higher than a
    random negative, ties counting one half (Hanley & McNeil 1982; Mann–Whitney U / (P·N)).

    .. math:: \mathrm{AUC} = \frac{1}{PN}\sum_{i:\,y_i=1}\ \sum_{j:\,y_j=0}
              \Big([s_i > s_j] + \tfrac12 [s_i = s_j]\Big)

    This is exactly the trapezoidal area under :func:`roc_curve` with tied scores as one
    threshold (a tie block of ``a`` positives and ``b`` negatives adds the triangle
    ``a·b/2``), i.e. ``sklearn.metrics.roc_auc_score`` for binary ``y_true``. It is computed
    by sorting positives and negatives separately and counting with ``searchsorted`` in exact
    integer arithmetic, so it needs no per-threshold curve.

    Args:
        y_true, y_score, pos_label: as in :func:`roc_curve`. (scikit-learn's ``roc_auc_score``
            has no ``pos_label``: it takes the larger of the two labels as positive.)

    Returns:
        float in [0, 1].

    Raises:
        ValueError: bad inputs; NaN/inf scores; only one class in ``y_true`` (scikit-learn
            warns and returns NaN instead).
    """
    pos, s = _scores_and_target(y_true, y_score, pos_label)
    s_pos, s_neg = np.sort(s[pos]), np.sort(s[~pos])
    n_pos, n_neg = len(s_pos), len(s_neg)
    _need_both_classes(n_pos, n_neg, "ROC AUC")
    below = np.searchsorted(s_neg, s_pos, side="left")       # negatives strictly below
    below_or_tied = np.searchsorted(s_neg, s_pos, side="right")
    twice_u = int(below.sum(dtype=np.int64)) + int(below_or_tied.sum(dtype=np.int64))
    return twice_u / (2.0 * n_pos * n_neg)


def precision_recall_curve(y_true: ArrayLike, y_score: ArrayLike, *, pos_label: Any = None,
                           drop_intermediate: bool = False
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Precision and recall when a sample is called positive if its score is ``>= t``, for
    every distinct score ``t`` (tied scores form one threshold).

    .. math:: P(t) = \frac{TP(t)}{TP(t) + FP(t)},\qquad R(t) = \frac{TP(t)}{TP + FN}

    Ordered as scikit-learn orders them: thresholds increasing, recall decreasing, and a last
    point ``(P, R) = (1, 0)`` without a threshold. ``drop_intermediate=True`` keeps only the
    first and last point of each run of equal TP (scikit-learn's option, default off).

    Args:
        y_true, y_score, pos_label: as in :func:`roc_curve`.
        drop_intermediate: see above.

    Returns:
        ``precision``, ``recall`` (``(m + 1,)`` float64) and ``thresholds`` (``(m,)``), equal to
        ``sklearn.metrics.precision_recall_curve``.

    Raises:
        ValueError: bad inputs; NaN/inf scores; no positive sample in ``y_true`` (recall is
            undefined; scikit-learn warns and sets it to 1).
    """
    pos, s = _scores_and_target(y_true, y_score, pos_label)
    fps, tps, thr = _counts_at_thresholds(pos, s)
    if tps[-1] == 0:
        raise ValueError("the precision-recall curve is undefined: y_true has no positive "
                         "sample, so recall is 0/0. Check pos_label or the evaluation data.")
    if drop_intermediate and len(fps) > 2:
        changes = np.logical_or(np.diff(tps[:-1]), np.diff(tps[1:]))
        keep = np.flatnonzero(np.concatenate([[True], changes, [True]]))
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    prec = tps / (tps + fps)
    rec = tps / tps[-1]
    return (np.concatenate([prec[::-1], [1.0]]), np.concatenate([rec[::-1], [0.0]]),
            thr[::-1].copy())


def average_precision_score(y_true: ArrayLike, y_score: ArrayLike, *, pos_label: Any = None
                            ) -> float:
    r"""Average precision: the step-wise area under the precision-recall curve,

    .. math:: \mathrm{AP} = \sum_n (R_n - R_{n-1})\, P_n ,

    over the distinct-score thresholds in decreasing order (``R_0 = 0``), i.e. the mean of the
    precision at the rank of each positive (ties: one threshold). No interpolation: this is
    ``sklearn.metrics.average_precision_score`` (since 0.19) and the IR definition (Manning,
    Raghavan & Schütze, *Introduction to Information Retrieval*, 2008, §8.4), not the
    trapezoidal area, which is optimistic.

    Args:
        y_true, y_score, pos_label: as in :func:`roc_curve` (scikit-learn's default
            ``pos_label`` is 1; ``None`` here means the same for {0, 1} or {-1, 1} labels).

    Returns:
        float in [0, 1]; a random ranking scores about the positive rate ``P / n``.

    Raises:
        ValueError: bad inputs; NaN/inf scores; no positive sample (scikit-learn warns and
            returns 0).
    """
    pos, s = _scores_and_target(y_true, y_score, pos_label)
    fps, tps, _ = _counts_at_thresholds(pos, s)
    if tps[-1] == 0:
        raise ValueError("average precision is undefined: y_true has no positive sample. "
                         "Check pos_label or the evaluation data.")
    precision_at = tps + fps
    np.divide(tps, precision_at, out=precision_at)
    gained = np.diff(tps, prepend=0.0)           # positives gained at each threshold
    gained *= precision_at
    return float(gained.sum() / tps[-1])


def log_loss(y_true: ArrayLike, y_prob: ArrayLike, *, labels: ArrayLike | None = None) -> float:
    r"""Mean negative log-likelihood (cross-entropy 交叉熵) of the true classes,

    .. math:: \mathcal{L} = -\frac1n \sum_{i=1}^n \log p_{i, y_i},

    with probabilities clipped to ``[eps, 1 - eps]``, ``eps`` the machine epsilon of
    ``y_prob``'s float dtype (float64 for integer input), as ``sklearn.metrics.log_loss`` does.
    Natural logarithm (nats).

    Args:
        y_true: ``(n,)`` labels.
        y_prob: ``(n, K)`` probabilities whose columns follow the sorted classes, or ``(n,)``
            probabilities of the larger of two classes.
        labels: all classes (sorted into column order); default the sorted labels of ``y_true``,
            which must then contain every class (pass ``labels`` if some never occur).

    Returns:
        float ≥ 0.

    Raises:
        ValueError: bad inputs; NaN/inf or values outside [0, 1]; fewer than two classes;
            columns ≠ classes; ``y_true`` labels not in ``labels``; rows that do not sum to 1
            within ``sqrt(eps)`` (scikit-learn only warns); integer ``y_true`` with ``(n, K)``
            probabilities and no ``labels`` whose ids are outside ``0 .. K-1`` (scikit-learn
            would map the sorted ids to the columns silently, so ids ``{0, 3, 10}`` would read
            columns 0, 1, 2; pass ``labels`` to map them on purpose).
    """
    t = _labels("y_true", y_true)
    raw = np.asarray(y_prob)
    dtype = raw.dtype if raw.dtype.kind == "f" else np.dtype(np.float64)
    eps = float(np.finfo(dtype).eps)
    prob = _numbers("y_prob", raw, ndim=(1, 2))
    _same_length(y_true=t, y_prob=prob)
    if prob.min() < 0 or prob.max() > 1:
        raise ValueError(f"y_prob must be probabilities in [0, 1], found values in "
                         f"[{prob.min()}, {prob.max()}] (pass softmax/sigmoid outputs, not logits)")
    classes = np.unique(t) if labels is None else np.unique(np.asarray(labels))
    if len(classes) < 2:
        raise ValueError(f"log loss needs at least two classes, found {classes.tolist()}; pass "
                         "labels=[...] with every class")
    if labels is not None and not np.isin(t, classes).all():
        raise ValueError("y_true contains labels that are not in labels")
    if labels is None and prob.ndim == 2 and t.dtype.kind in "iu" and (
            t.min() < 0 or t.max() >= prob.shape[1]):
        raise ValueError(
            f"y_true holds class ids in [{t.min()}, {t.max()}] but y_prob has {prob.shape[1]} "
            f"columns, so ids must be 0..{prob.shape[1] - 1}; pass labels=[class of each column] "
            "if your ids are not column indices")
    if prob.ndim == 1:
        prob = np.stack([1.0 - prob, prob], axis=1)
    if prob.shape[1] != len(classes):
        raise ValueError(f"y_prob has {prob.shape[1]} columns but there are {len(classes)} "
                         f"classes {classes[:10].tolist()}; pass labels=[all classes]")
    if not np.allclose(prob.sum(axis=1), 1.0, rtol=math.sqrt(eps), atol=0.0):
        raise ValueError("the rows of y_prob do not sum to 1: pass probabilities (softmax)")
    col = np.searchsorted(classes, t)
    p_true = np.clip(prob[np.arange(len(t)), col], eps, 1 - eps)
    return float(-np.mean(np.log(p_true)))


def top_k_accuracy(y_true: ArrayLike, y_score: ArrayLike, k: int = 1, *,
                   labels: ArrayLike | None = None) -> float:
    r"""Fraction of samples whose true class is among the ``k`` highest-scored classes.

    .. math:: \frac1n \sum_i \big[\mathrm{rank}_i(y_i) < k\big],\quad
              \mathrm{rank}_i(c) = \#\{j : s_{ij} > s_{ic}\} + \#\{j > c : s_{ij} = s_{ic}\}

    Ties are broken towards the *higher* class index (as in scikit-learn, which ranks with a
    stable ascending sort reversed), so results equal ``sklearn.metrics.top_k_accuracy_score``
    for three or more classes.

    Args:
        y_true: ``(n,)`` class indices ``0 .. K-1``, or labels when ``labels`` is given.
        y_score: ``(n, K)`` finite scores (logits or probabilities).
        k: 1 ≤ k ≤ K (k = K is always 1.0).
        labels: ``(K,)`` the class of each column (to map ``y_true``).

    Returns:
        float in [0, 1]; ``k = 1`` is the accuracy of the arg-max prediction.

    Raises:
        ValueError: bad inputs; ``k`` not an integer in [1, K]; labels outside the columns.
    """
    t = _labels("y_true", y_true)
    s = _numbers("y_score", y_score, ndim=2)
    n, n_classes = s.shape
    _same_length(y_true=t, y_score=s)
    k = _check_k(k)
    if k > n_classes:
        raise ValueError(f"k={k} is larger than the number of classes {n_classes}")
    if labels is None:
        if t.dtype.kind not in "biu" or t.min() < 0 or t.max() >= n_classes:
            raise ValueError(f"y_true must hold class indices 0..{n_classes - 1} (the columns of "
                             "y_score), or pass labels=[class of each column]")
        y = t.astype(np.intp)
    else:
        lab = np.asarray(labels)
        if lab.shape != (n_classes,):
            raise ValueError(f"labels must have one entry per column ({n_classes}), got {lab.shape}")
        order = np.argsort(lab, kind="stable")
        where = np.clip(np.searchsorted(lab[order], t), 0, n_classes - 1)
        if not (lab[order][where] == t).all():
            raise ValueError("y_true contains labels that are not in labels")
        y = order[where]
    own = s[np.arange(n), y][:, None]
    higher_index = np.arange(n_classes)[None, :] > y[:, None]
    rank = np.count_nonzero(s > own, axis=1) + np.count_nonzero((s == own) & higher_index, axis=1)
    return float(np.mean(rank < k))


# ----------------------------------------------------------------------------------------------
# regression
# ----------------------------------------------------------------------------------------------
def _regression(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = _numbers("y_true", y_true), _numbers("y_pred", y_pred)
    _same_length(y_true=t, y_pred=p)
    return t, p


def mean_squared_error(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    r"""MSE :math:`\frac1n\sum_i (y_i - \hat y_i)^2` of ``(n,)`` float arrays (squared units).

    Raises:
        ValueError: empty, NaN/inf, not 1-D, or of different lengths.
    """
    t, p = _regression(y_true, y_pred)
    return float(np.mean((t - p) ** 2))


def root_mean_squared_error(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    r"""RMSE :math:`\sqrt{\mathrm{MSE}}`, in the units of ``y`` (chapter 09's rating error).

    Raises:
        ValueError: as :func:`mean_squared_error`.
    """
    return math.sqrt(mean_squared_error(y_true, y_pred))


def mean_absolute_error(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    r"""MAE :math:`\frac1n\sum_i |y_i - \hat y_i|` of ``(n,)`` float arrays.

    Raises:
        ValueError: as :func:`mean_squared_error`.
    """
    t, p = _regression(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def r2_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    r"""Coefficient of determination

    .. math:: R^2 = 1 - \frac{\sum_i (y_i - \hat y_i)^2}{\sum_i (y_i - \bar y)^2} ,

    1 for a perfect prediction, 0 for predicting the mean, negative when worse. When ``y_true``
    is constant (zero denominator) the result is 1.0 for a perfect prediction and 0.0
    otherwise, scikit-learn's ``force_finite=True`` convention.

    Args:
        y_true, y_pred: ``(n,)`` numbers, n ≥ 2.

    Returns:
        float ≤ 1 (``sklearn.metrics.r2_score``).

    Raises:
        ValueError: bad inputs; fewer than two samples (scikit-learn warns and returns NaN).
    """
    t, p = _regression(y_true, y_pred)
    if len(t) < 2:
        raise ValueError("R² needs at least two samples (it compares with the mean of y_true)")
    ss_res = float(np.sum((t - p) ** 2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot


def pearson_r(x: ArrayLike, y: ArrayLike) -> float:
    r"""Pearson correlation coefficient

    .. math:: r = \frac{\sum_i (x_i - \bar x)(y_i - \bar y)}
                       {\sqrt{\sum_i (x_i - \bar x)^2}\,\sqrt{\sum_i (y_i - \bar y)^2}} .

    Unlike :func:`r2_score` it ignores scale and offset: ``r(y, 2y + 5) = 1`` although that
    prediction is badly off. (The VADER paper of chapter 06 reports r.)

    Args:
        x, y: ``(n,)`` numbers, n ≥ 2, neither constant.

    Returns:
        float in [-1, 1] (``scipy.stats.pearsonr(x, y).statistic``).

    Raises:
        ValueError: bad inputs; fewer than two samples; a constant input (r is 0/0).
    """
    a, b = _numbers("x", x), _numbers("y", y)
    _same_length(x=a, y=b)
    if len(a) < 2:
        raise ValueError("Pearson r needs at least two samples")
    units = []
    for d in (a - a.mean(), b - b.mean()):
        largest = np.abs(d).max()
        if largest == 0:
            raise ValueError("Pearson r is undefined when an input is constant (zero variance)")
        d = d / largest                   # scale first: squares of tiny deviations underflow
        units.append(d / np.linalg.norm(d))
    r = float(np.dot(units[0], units[1]))
    return max(-1.0, min(1.0, r))


# ----------------------------------------------------------------------------------------------
# ranking
# ----------------------------------------------------------------------------------------------
def _ranking(relevance: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    rel = _numbers("relevance", relevance, ndim=(1, 2))
    s = _numbers("scores", scores, ndim=(1, 2))
    if rel.shape != s.shape:
        raise ValueError(f"relevance and scores must have the same shape, got {rel.shape} and {s.shape}")
    if rel.min() < 0:
        raise ValueError("relevance must be ≥ 0 (0 = not relevant)")
    return np.atleast_2d(rel), np.atleast_2d(s)


def _relevant_in_top_k(rel: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    """Expected number of relevant items (``rel > 0``) among the ``k`` best-scored ones per row,
    ties at the cut-off averaged over their orderings."""
    n_items = s.shape[1]
    if k > n_items:
        raise ValueError(f"k={k} is larger than the number of items per query ({n_items})")
    kth = -np.partition(-s, k - 1, axis=1)[:, k - 1:k]        # k-th largest score per row
    relevant = rel > 0
    above, tied = s > kth, s == kth
    n_above = np.count_nonzero(above, axis=1)
    slots = k - n_above                                       # places left for the tied group
    return (np.count_nonzero(above & relevant, axis=1)
            + np.count_nonzero(tied & relevant, axis=1) * slots / np.count_nonzero(tied, axis=1))


def precision_at_k(relevance: ArrayLike, scores: ArrayLike, k: int) -> float:
    r"""Precision@k: the fraction of the ``k`` highest-scored items that are relevant, averaged
    over queries (users).

    .. math:: \mathrm{P@}k = \frac{1}{k}\,\#\{\text{relevant items among the top } k\}

    An item is relevant when its ``relevance > 0``. Items tied with the k-th score are credited
    with the *expected* count over all orderings of the tie (the convention of McSherry &
    Najork 2008, also used by scikit-learn's ``ndcg_score``), so the result does not depend on
    the order of the input. Source: Manning, Raghavan & Schütze 2008, §8.4.

    Args:
        relevance: ``(n_queries, n_items)`` or ``(n_items,)`` relevance ≥ 0 (binary or graded).
        scores: same shape, the model's scores (higher = ranked first).
        k: 1 ≤ k ≤ n_items.

    Returns:
        float in [0, 1], the mean over queries.

    Raises:
        ValueError: bad inputs; shapes differ; negative relevance; ``k`` not in [1, n_items].
    """
    rel, s = _ranking(relevance, scores)
    k = _check_k(k)
    return float(np.mean(_relevant_in_top_k(rel, s, k) / k))


def recall_at_k(relevance: ArrayLike, scores: ArrayLike, k: int, *, zero_division: float = 0.0
                ) -> float:
    r"""Recall@k: the fraction of a query's relevant items found among its top ``k``, averaged
    over queries.

    .. math:: \mathrm{R@}k = \frac{\#\{\text{relevant items among the top } k\}}
                                  {\#\{\text{relevant items}\}}

    Conventions as in :func:`precision_at_k` (relevant = ``relevance > 0``; ties averaged).
    A query with no relevant item gives ``zero_division`` (0.0 default, 1.0, or nan to leave
    such queries out of the mean).

    Returns:
        float in [0, 1] (nan if every query is undefined and ``zero_division`` is nan).

    Raises:
        ValueError: as :func:`precision_at_k`; a bad ``zero_division``.
    """
    rel, s = _ranking(relevance, scores)
    k = _check_k(k)
    zero_division = _check_zero_division(zero_division)
    per_query = _divide(_relevant_in_top_k(rel, s, k), np.count_nonzero(rel > 0, axis=1),
                        zero_division)
    return _nanaverage(per_query, None)


def ndcg_at_k(relevance: ArrayLike, scores: ArrayLike, k: int | None = None, *,
              gain: Literal["linear", "exponential"] = "linear") -> float:
    r"""Normalised discounted cumulative gain at ``k``, averaged over queries.

    .. math:: \mathrm{DCG@}k = \sum_{i=1}^{k} \frac{g(\mathrm{rel}_{(i)})}{\log_2(i + 1)},\qquad
              \mathrm{NDCG@}k = \frac{\mathrm{DCG@}k}{\mathrm{IDCG@}k}

    where ``rel_(i)`` is the relevance of the item ranked ``i``-th by score and IDCG the DCG of
    the ideal ordering (by relevance). Graded relevance: ``g(r) = r`` (``"linear"``, what
    ``sklearn.metrics.ndcg_score`` uses) or ``g(r) = 2^r - 1`` (``"exponential"``, Burges et al.
    2005, common in web search). Ties in ``scores`` are averaged over their orderings (McSherry
    & Najork 2008, as scikit-learn). A query with no relevant item scores 0 (as scikit-learn).

    Source: K. Järvelin and J. Kekäläinen, "Cumulated gain-based evaluation of IR techniques",
    ACM TOIS 20(4), 2002. Their original discount leaves ranks below the log base undiscounted
    (rank 2 is divided by log2 2 = 1); we use today's ``1 / log2(i + 1)`` for every rank, as
    scikit-learn and most libraries do.

    Args:
        relevance: ``(n_queries, n_items)`` or ``(n_items,)`` relevance ≥ 0.
        scores: same shape, the model's scores.
        k: cut-off ≥ 1, or ``None`` for all items (k larger than n_items means all items).
        gain: ``"linear"`` or ``"exponential"``.

    Returns:
        float in [0, 1], the mean over queries.

    Raises:
        ValueError: bad inputs; shapes differ; negative relevance; ``k`` not a positive integer.
    """
    rel, s = _ranking(relevance, scores)
    n_queries, n_items = s.shape
    k = n_items if k is None else min(_check_k(k), n_items)
    if gain == "exponential":
        rel = np.expm1(rel * math.log(2.0))
    elif gain != "linear":
        raise ValueError(f"gain must be 'linear' or 'exponential', got {gain!r}")
    discount = np.zeros(n_items)
    discount[:k] = 1.0 / np.log2(np.arange(2, k + 2))

    order = np.argsort(-s, axis=1, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=1)
    rel_sorted = np.take_along_axis(rel, order, axis=1)
    new_group = np.ones_like(s_sorted, dtype=bool)
    new_group[:, 1:] = s_sorted[:, 1:] != s_sorted[:, :-1]
    group = np.cumsum(new_group.ravel()) - 1                  # tie groups, numbered across rows
    n_groups = group[-1] + 1
    size = np.bincount(group, minlength=n_groups)
    mean_gain = np.bincount(group, weights=rel_sorted.ravel(), minlength=n_groups) / size
    disc = np.bincount(group, weights=np.tile(discount, n_queries), minlength=n_groups)
    row_of_group = np.repeat(np.arange(n_queries), np.count_nonzero(new_group, axis=1))
    dcg = np.bincount(row_of_group, weights=mean_gain * disc, minlength=n_queries)
    ideal = -np.sort(-rel, axis=1) @ discount
    ndcg = _divide(dcg, ideal, 0.0)
    return float(np.mean(ndcg))


# ----------------------------------------------------------------------------------------------
# detection
# ----------------------------------------------------------------------------------------------
def _boxes(name: str, boxes: ArrayLike) -> np.ndarray:
    """``(N, 4)`` float64 boxes (N may be 0), checked finite and well ordered."""
    box = np.asarray(boxes)
    if box.ndim == 1:
        box = box[None, :]
    if box.ndim != 2 or box.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) or (4,) as (x1, y1, x2, y2), got "
                         f"{np.shape(boxes)}")
    if box.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers, got dtype {box.dtype}")
    box = _finite(name, box.astype(np.float64, copy=False))
    if (box[:, 2] < box[:, 0]).any() or (box[:, 3] < box[:, 1]).any():
        raise ValueError(f"{name} has a box with x2 < x1 or y2 < y1; boxes are (x1, y1, x2, y2)")
    return box


def box_iou(boxes_a: ArrayLike, boxes_b: ArrayLike) -> Any:
    r"""Intersection over union (IoU, Jaccard index) of axis-aligned boxes ``(x1, y1, x2, y2)``.

    .. math:: \mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A \cup B|}
              = \frac{|A \cap B|}{|A| + |B| - |A \cap B|}

    Coordinates are continuous (a box ``(0, 0, 2, 2)`` has area 4; no "+1 pixel" convention as
    in the old PASCAL VOC code). Two boxes whose union has zero area (both degenerate) get 0.

    Args:
        boxes_a: ``(N, 4)`` or ``(4,)``; ``boxes_b``: ``(M, 4)`` or ``(4,)``; finite,
            ``x2 >= x1`` and ``y2 >= y1``. ``N`` or ``M`` may be 0 (no boxes).

    Returns:
        ``(N, M)`` float64 matrix of pairwise IoUs; a float if both inputs are single boxes.
        (Same as ``torchvision.ops.box_iou`` for non-degenerate boxes.)

    Raises:
        ValueError: wrong shape, NaN/inf coordinates, or ``x2 < x1`` / ``y2 < y1``.
    """
    single = np.ndim(boxes_a) == 1 and np.ndim(boxes_b) == 1
    a, b = _boxes("boxes_a", boxes_a), _boxes("boxes_b", boxes_b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    iou = _divide(inter, area_a[:, None] + area_b[None, :] - inter, 0.0)
    return float(iou[0, 0]) if single else iou


# ----------------------------------------------------------------------------------------------
# detection: average precision (PASCAL VOC / COCO)
# ----------------------------------------------------------------------------------------------
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)   # IoU = .50:.05:.95, as pycocotools builds it
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)


class DetectionMatches(NamedTuple):
    """Detections of one class matched to the ground truth, at several IoU thresholds.

    Attributes:
        scores: ``(D,)`` float64 detection scores, sorted descending (ties: image order, then
            input order).
        true_positive: ``(T, D)`` bool, detection ``d`` matched a ground-truth box at threshold ``t``.
        n_ground_truth: number of ground-truth boxes of the class.
    """

    scores: np.ndarray
    true_positive: np.ndarray
    n_ground_truth: int


def _per_image_detections(name: str, seq: Any, n_images: int) -> list[np.ndarray]:
    if len(seq) != n_images:
        raise ValueError(f"{name} has {len(seq)} images but gt_boxes has {n_images}; give one "
                         "entry (possibly empty) per image")
    return [np.asarray(a).reshape(-1) for a in seq]


def _iou_thresholds(iou_thresholds: float | ArrayLike) -> np.ndarray:
    """``(T,)`` float64 IoU thresholds, each finite and in [0, 1] (NaN would match nothing)."""
    thr = np.atleast_1d(np.asarray(iou_thresholds, np.float64)).reshape(-1)
    if thr.size == 0 or not np.all((thr >= 0) & (thr <= 1)):   # NaN fails both comparisons
        raise ValueError(f"iou_thresholds must be one or more numbers in [0, 1], got "
                         f"{np.asarray(iou_thresholds).tolist()}")
    return thr


def match_detections(gt_boxes: Any, gt_labels: Any, pred_boxes: Any, pred_scores: Any,
                     pred_labels: Any, label: Any, *,
                     iou_thresholds: ArrayLike = COCO_IOU_THRESHOLDS,
                     max_detections: int = 100) -> DetectionMatches:
    """Match the detections of class ``label`` to its ground truth, greedily by score (COCO).

    Per image, the ``max_detections`` highest-scoring detections of the class are kept (stable
    sort). Then, at each IoU threshold ``t`` and in order of decreasing score, each detection is
    matched to the still unmatched ground-truth box of the same image with the highest IoU, if
    that IoU is ≥ ``t`` (exact ties in IoU go to the later box, as in pycocotools); a matched
    detection is a true positive, any other a false positive (a second detection of an
    already found object is a false positive). This is ``COCOeval.evaluateImg`` for one category,
    the ``"all"`` area range and no crowd boxes.

    Args:
        gt_boxes: per image an ``(G_i, 4)`` array of ``(x1, y1, x2, y2)`` boxes (``G_i`` may be 0).
        gt_labels: per image a ``(G_i,)`` array of classes.
        pred_boxes, pred_scores, pred_labels: per image ``(D_i, 4)``, ``(D_i,)``, ``(D_i,)``.
        label: the class to evaluate.
        iou_thresholds: ``(T,)`` thresholds in [0, 1].
        max_detections: per image and class, ≥ 1.

    Returns:
        :class:`DetectionMatches`.

    Raises:
        ValueError: different numbers of images, mismatched lengths within an image, bad boxes,
            NaN scores, IoU thresholds that are empty, NaN or outside [0, 1].
    """
    n_images = len(gt_boxes)
    gl = _per_image_detections("gt_labels", gt_labels, n_images)
    ps = _per_image_detections("pred_scores", pred_scores, n_images)
    pl = _per_image_detections("pred_labels", pred_labels, n_images)
    if len(pred_boxes) != n_images:
        raise ValueError(f"pred_boxes has {len(pred_boxes)} images but gt_boxes has {n_images}")
    max_detections = _check_k(max_detections, "max_detections")
    thr = _iou_thresholds(iou_thresholds)
    # pycocotools compares with min(t, 1 - 1e-10), so that t = 1 still matches perfect boxes
    thr_eff = np.minimum(thr, 1 - 1e-10)
    scores_all, tp_all, n_gt = [], [], 0
    for i in range(n_images):
        gb = _boxes(f"gt_boxes[{i}]", np.asarray(gt_boxes[i]).reshape(-1, 4))
        pb = _boxes(f"pred_boxes[{i}]", np.asarray(pred_boxes[i]).reshape(-1, 4))
        if len(gb) != len(gl[i]) or not (len(pb) == len(ps[i]) == len(pl[i])):
            raise ValueError(f"image {i}: boxes, labels and scores must have the same length")
        g = gb[gl[i] == label]
        sel = pl[i] == label
        d, s = pb[sel], _finite(f"pred_scores[{i}]", ps[i][sel].astype(np.float64))
        order = np.argsort(-s, kind="stable")[:max_detections]
        d, s = d[order], s[order]
        n_gt += len(g)
        tp = np.zeros((len(thr), len(d)), bool)
        if len(g) and len(d):
            iou = box_iou(d, g)
            taken = np.zeros((len(thr), len(g)), bool)
            for k in range(len(d)):
                # best still-free box with IoU ≥ t; reversed argmax gives ties to the later box
                cand = np.where(~taken & (iou[k][None, :] >= thr_eff[:, None]), iou[k][None, :], -1.0)
                best = len(g) - 1 - np.argmax(cand[:, ::-1], axis=1)
                hit = cand[np.arange(len(thr)), best] >= 0
                tp[hit, k] = True
                taken[np.flatnonzero(hit), best[hit]] = True
        scores_all.append(s)
        tp_all.append(tp)
    scores = np.concatenate(scores_all) if scores_all else np.zeros(0)
    tp = np.concatenate(tp_all, axis=1) if tp_all else np.zeros((len(thr), 0), bool)
    order = np.argsort(-scores, kind="stable")
    return DetectionMatches(scores[order], tp[:, order], n_gt)


def detection_precision_recall(matches: DetectionMatches) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each detection (ranked by score), one row per IoU threshold.

    .. math:: P_d = \\frac{TP_d}{TP_d + FP_d},\\qquad R_d = \\frac{TP_d}{N_{gt}}

    Returns:
        ``(precision, recall)``, each ``(T, D)`` float64 (recall is 0 when there is no ground
        truth).

    Raises:
        Nothing: ``matches`` comes from :func:`match_detections`, which checks the inputs.
    """
    tp = np.cumsum(matches.true_positive, axis=1, dtype=np.float64)
    fp = np.cumsum(~matches.true_positive, axis=1, dtype=np.float64)
    # pycocotools adds np.spacing(1) to the denominator; tp + fp ≥ 1 here, so the result differs
    # from the plain ratio by at most ~2e-16
    precision = tp / (tp + fp + np.spacing(1))
    recall = tp / matches.n_ground_truth if matches.n_ground_truth else np.zeros_like(tp)
    return precision, recall


def interpolated_average_precision(matches: DetectionMatches,
                                   recall_thresholds: ArrayLike = COCO_RECALL_THRESHOLDS
                                   ) -> np.ndarray:
    r"""COCO's interpolated AP, one value per IoU threshold of ``matches``.

    The precision–recall curve is made monotone (:math:`p_{\text{interp}}(r) = \max_{r' \ge r}
    p(r')`), read at each recall threshold :math:`r_j` (the first detection whose recall is
    ≥ :math:`r_j`; 0 if no detection reaches it) and averaged:

    .. math:: \mathrm{AP} = \frac{1}{101}\sum_{j=0}^{100} p_{\text{interp}}(j / 100)

    (101-point interpolation, ``COCOeval.accumulate``; PASCAL VOC 2007 used 11 points,
    Everingham et al. 2010, IJCV 88(2), §4.2).

    Returns:
        ``(T,)`` float64 in [0, 1]; NaN rows where the class has no ground truth (COCO leaves such
        classes out of the mean).

    Raises:
        ValueError: recall thresholds that are empty, NaN or outside [0, 1].
    """
    rec_thr = np.atleast_1d(np.asarray(recall_thresholds, np.float64)).reshape(-1)
    if rec_thr.size == 0 or not np.all((rec_thr >= 0) & (rec_thr <= 1)):
        raise ValueError(f"recall_thresholds must be numbers in [0, 1], got {rec_thr.tolist()[:10]}")
    t = matches.true_positive.shape[0]
    if matches.n_ground_truth == 0:
        return np.full(t, np.nan)
    precision, recall = detection_precision_recall(matches)
    ap = np.zeros(t)
    for k in range(t):
        envelope = np.maximum.accumulate(precision[k][::-1])[::-1]
        idx = np.searchsorted(recall[k], rec_thr, side="left")
        ok = idx < len(envelope)
        ap[k] = np.sum(envelope[idx[ok]]) / len(rec_thr)
    return ap


def detection_average_precision(gt_boxes: Any, gt_labels: Any, pred_boxes: Any, pred_scores: Any,
                                pred_labels: Any, *, iou_threshold: float = 0.5,
                                max_detections: int = 100) -> dict[Any, float]:
    """Average precision (AP) per class at one IoU threshold (COCO's 101-point interpolation).

    Inputs are lists with one entry per image (see :func:`match_detections`). Classes are those
    present in the ground truth; a class that is only predicted (no ground-truth box anywhere)
    is left out, as in pycocotools.

    Sources: COCO detection evaluation (``pycocotools.cocoeval.COCOeval``,
    https://cocodataset.org/#detection-eval); Everingham et al. (2010), *The PASCAL Visual Object
    Classes (VOC) Challenge*, IJCV 88(2).

    Returns:
        ``{label: AP}`` with floats in [0, 1].

    Raises:
        ValueError: see :func:`match_detections`; no ground-truth box at all.
    """
    labels = _gt_classes(gt_labels)
    return {lab: float(interpolated_average_precision(match_detections(
        gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels, lab,
        iou_thresholds=[iou_threshold], max_detections=max_detections))[0]) for lab in labels}


def _gt_classes(gt_labels: Any) -> list:
    parts = [np.asarray(g).reshape(-1) for g in gt_labels]
    labels = np.unique(np.concatenate(parts)) if parts else np.zeros(0)
    if labels.size == 0:
        raise ValueError("there is no ground-truth box: average precision is undefined")
    return [lab.item() for lab in labels]


def mean_average_precision(gt_boxes: Any, gt_labels: Any, pred_boxes: Any, pred_scores: Any,
                           pred_labels: Any, *, iou_thresholds: float | ArrayLike = 0.5,
                           max_detections: int = 100) -> float:
    r"""Mean average precision (mAP): AP averaged over classes and IoU thresholds.

    ``iou_thresholds=0.5`` gives mAP@0.5 (PASCAL VOC's threshold, COCO's ``AP50``);
    ``iou_thresholds=COCO_IOU_THRESHOLDS`` gives COCO's primary metric mAP@[.5:.95],

    .. math:: \mathrm{mAP} = \frac{1}{|T|\,|C|}\sum_{t\in T}\sum_{c\in C}\mathrm{AP}_c(t),
              \qquad T = \{0.50, 0.55, \dots, 0.95\}.

    Same number as ``COCOeval.stats[0]`` (or ``stats[1]`` for 0.5) with ``maxDets=100`` and the
    ``"all"`` area range when no box is marked crowd (checked in
    ``tests/test_map_reference.py``). Sources as in :func:`detection_average_precision`.

    Args:
        gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels: one entry per image, see
            :func:`match_detections`.
        iou_thresholds: one threshold or a sequence.
        max_detections: per image and class (COCO: 100).

    Returns:
        float in [0, 1].

    Raises:
        ValueError: see :func:`match_detections`; no ground-truth box at all.
    """
    thr = _iou_thresholds(iou_thresholds)
    ap = [interpolated_average_precision(match_detections(
        gt_boxes, gt_labels, pred_boxes, pred_scores, pred_labels, lab, iou_thresholds=thr,
        max_detections=max_detections)) for lab in _gt_classes(gt_labels)]
    return float(np.mean(ap))


# ----------------------------------------------------------------------------------------------
# text generation: exact match, BLEU, chrF (chapter 07; checked against sacrebleu 2.6)
# ----------------------------------------------------------------------------------------------
# mteval-v13a's language-dependent part, as sacrebleu's TokenizerRegexp (sacrebleu 2.6)
_RE_13A = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),   # punctuation and symbols
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),                # period/comma unless after a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),                # … unless before a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),                     # dash after a digit
)
BLEU_TOKENIZERS = ("13a", "char", "none")


def tokenize_13a(line: str) -> list[str]:
    """The tokens of ``line`` under mteval-v13a (WMT's standard, sacrebleu's default ``"13a"``).

    Unescapes ``&quot; &amp; &lt; &gt;``, drops ``<skipped>`` and end-of-line hyphenation, splits
    off punctuation and symbols (not ``.``/``,`` between digits, and a ``-`` only after a digit),
    then splits on whitespace. ``"1987-03-09"`` → ``["1987", "-", "03", "-", "09"]``; a Chinese
    date ``"1987年3月9日"`` stays one token (13a knows no CJK: use ``"char"``).
    """
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        for escaped, char in (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
            line = line.replace(escaped, char)
    line = f" {line} "
    for pattern, repl in _RE_13A:
        line = pattern.sub(repl, line)
    return line.split()


def bleu_tokens(line: str, tokenize: str = "13a") -> list[str]:
    """``line`` (trailing whitespace stripped, as sacrebleu does) split into BLEU's tokens.

    ``"13a"``: :func:`tokenize_13a`; ``"char"``: every non-space character is a token
    (sacrebleu's ``char``: for Chinese, Japanese, and dates); ``"none"``: whitespace split.

    Raises:
        ValueError: an unknown ``tokenize``.
    """
    line = line.rstrip()
    if tokenize == "13a":
        return tokenize_13a(line)
    if tokenize == "char":
        return [c for c in line if not c.isspace()]
    if tokenize == "none":
        return line.split()
    raise ValueError(f"tokenize must be one of {', '.join(BLEU_TOKENIZERS)}; got {tokenize!r}")


def _text_corpus(hypotheses: Any, references: Any) -> tuple[list[str], list[list[str]]]:
    """Check a corpus: one hypothesis string per segment, and per segment one reference string
    or a non-empty sequence of them."""
    if isinstance(hypotheses, str):
        raise ValueError("hypotheses must be a sequence of strings (one per segment), got one "
                         "string; wrap it: [hypothesis]")
    if isinstance(references, str):
        raise ValueError("references must be a sequence (one entry per segment), got one string; "
                         "wrap it: [reference]")
    hyps, refs = list(hypotheses), list(references)
    if not hyps:
        raise ValueError("the corpus is empty: give at least one hypothesis")
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references; give one reference "
                         "(or a list of references) per hypothesis")
    out = []
    for i, (h, r) in enumerate(zip(hyps, refs, strict=True)):
        if not isinstance(h, str):
            raise ValueError(f"hypotheses[{i}] is {type(h).__name__}, expected str")
        rs = [r] if isinstance(r, str) else list(r)
        if not rs or not all(isinstance(x, str) for x in rs):
            raise ValueError(f"references[{i}] must be a string or a non-empty list of strings, "
                             f"got {r!r}")
        out.append(rs)
    return hyps, out


def exact_match(hypotheses: Any, references: Any) -> float:
    """Fraction of segments whose hypothesis equals (one of) its reference(s), character for
    character. Raises ``ValueError`` as :func:`corpus_bleu` for a bad corpus."""
    hyps, refs = _text_corpus(hypotheses, references)
    return float(np.mean([h in r for h, r in zip(hyps, refs, strict=True)]))


def exact_match_by_group(hypotheses: Any, references: Any, groups: ArrayLike) -> dict[Any, float]:
    """:func:`exact_match` per group (e.g. per source language), groups in sorted order.

    Raises:
        ValueError: a bad corpus, or ``groups`` not one label per segment.
    """
    hyps, refs = _text_corpus(hypotheses, references)
    g = _labels("groups", groups)
    if len(g) != len(hyps):
        raise ValueError(f"groups has {len(g)} labels for {len(hyps)} segments; give one each")
    hit = np.asarray([h in r for h, r in zip(hyps, refs, strict=True)])
    return {k.item() if hasattr(k, "item") else k: float(hit[g == k].mean()) for k in np.unique(g)}


class BleuScore(NamedTuple):
    """Corpus BLEU and its parts.

    Attributes:
        score: BLEU in [0, 100] (sacrebleu's scale).
        precisions: modified n-gram precisions p_1 … p_N in percent (smoothed where a count is 0).
        brevity_penalty: BP in [0, 1].
        hyp_len, ref_len: total hypothesis tokens and total closest-reference tokens.
    """

    score: float
    precisions: list[float]
    brevity_penalty: float
    hyp_len: int
    ref_len: int


def _ngrams(tokens: list[str], max_order: int) -> dict[tuple[str, ...], int]:
    counts: dict[tuple[str, ...], int] = {}
    for n in range(1, max_order + 1):
        for i in range(len(tokens) - n + 1):
            key = tuple(tokens[i:i + n])
            counts[key] = counts.get(key, 0) + 1
    return counts


def corpus_bleu(hypotheses: Any, references: Any, *, tokenize: str = "13a", max_order: int = 4,
                smooth: str = "exp") -> BleuScore:
    r"""Corpus-level BLEU (Papineni et al. 2002), computed as sacrebleu 2.6 computes it.

    .. math:: \mathrm{BLEU} = \mathrm{BP}\cdot\exp\Big(\tfrac1N\sum_{n=1}^{N}\log p_n\Big),\quad
              \mathrm{BP} = \min\big(1, e^{1 - r/c}\big)

    where ``p_n`` is the modified n-gram precision over the whole corpus (each hypothesis n-gram
    counted at most as often as in the reference that has it most), ``c`` the total hypothesis
    length and ``r`` the sum over segments of the reference length closest to the hypothesis
    length (ties: the shorter). Statistics are summed over segments first (a corpus score, not
    a mean of sentence scores). ``smooth="exp"`` (sacrebleu's default, mteval-v13a's): the k-th
    order with no match gets precision 1 / (2^k · total n-grams of that order); ``"none"``: a
    zero precision makes BLEU 0. No match at all gives 0.

    Args:
        hypotheses: one string per segment.
        references: per segment one reference string, or a list of references.
        tokenize: ``"13a"`` (sacrebleu's default), ``"char"`` or ``"none"`` (:func:`bleu_tokens`).
        max_order: ``N`` (4 by default).
        smooth: ``"exp"`` or ``"none"``.

    Returns:
        :class:`BleuScore` (``.score`` in [0, 100]).

    Raises:
        ValueError: an empty corpus, different numbers of hypotheses and references, a
            non-string entry, an unknown ``tokenize`` or ``smooth``, ``max_order`` < 1.

    Source: Papineni et al. (2002), *BLEU*, ACL; Post (2018), *A Call for Clarity in Reporting
    BLEU Scores* (sacrebleu); Chen & Cherry (2014) for the smoothing.
    """
    hyps, refs = _text_corpus(hypotheses, references)
    max_order = _check_k(max_order, "max_order")
    if smooth not in ("exp", "none"):
        raise ValueError(f"smooth must be 'exp' or 'none'; got {smooth!r}")
    correct, total = [0] * max_order, [0] * max_order
    hyp_len = ref_len = 0
    for hyp, rs in zip(hyps, refs, strict=True):
        h = bleu_tokens(hyp, tokenize)
        ref_counts: dict[tuple[str, ...], int] = {}
        lens = []
        for r in rs:
            toks = bleu_tokens(r, tokenize)
            lens.append(len(toks))
            for gram, c in _ngrams(toks, max_order).items():
                ref_counts[gram] = max(ref_counts.get(gram, 0), c)
        hyp_len += len(h)
        ref_len += min(lens, key=lambda n: (abs(n - len(h)), n))
        for gram, c in _ngrams(h, max_order).items():
            total[len(gram) - 1] += c
            correct[len(gram) - 1] += min(c, ref_counts.get(gram, 0))
    bp = 1.0 if hyp_len >= ref_len else (math.exp(1 - ref_len / hyp_len) if hyp_len else 0.0)
    precisions = [0.0] * max_order
    if not any(correct):
        return BleuScore(0.0, precisions, bp, hyp_len, ref_len)
    doubling = 1.0
    for n in range(max_order):
        if total[n] == 0:
            break
        if correct[n] == 0:
            if smooth == "exp":
                doubling *= 2
                precisions[n] = 100.0 / (doubling * total[n])
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    if min(precisions) == 0.0:
        return BleuScore(0.0, precisions, bp, hyp_len, ref_len)
    score = bp * math.exp(sum(math.log(p) for p in precisions) / max_order)
    return BleuScore(score, precisions, bp, hyp_len, ref_len)


_PUNCTUATION = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _chrf_words(line: str) -> list[str]:
    """chrF++'s words: whitespace split, one leading or trailing punctuation mark split off."""
    words = []
    for w in line.split():
        if len(w) > 1 and w[-1] in _PUNCTUATION:
            words += [w[:-1], w[-1]]
        elif len(w) > 1 and w[0] in _PUNCTUATION:
            words += [w[0], w[1:]]
        else:
            words.append(w)
    return words


def _chrf_grams(line: str, char_order: int, word_order: int) -> list[dict[Any, int]]:
    chars = "".join(line.split())                      # whitespace is not part of chrF's n-grams
    grams: list[dict[Any, int]] = []
    for n in range(1, char_order + 1):
        counts: dict[Any, int] = {}
        for i in range(len(chars) - n + 1):
            counts[chars[i:i + n]] = counts.get(chars[i:i + n], 0) + 1
        grams.append(counts)
    words = _chrf_words(line) if word_order else []
    for n in range(1, word_order + 1):
        counts = {}
        for i in range(len(words) - n + 1):
            key = " ".join(words[i:i + n])
            counts[key] = counts.get(key, 0) + 1
        grams.append(counts)
    return grams


def _chrf_f(stats: list[int], beta: float) -> float:
    """chrF from summed ``[hyp, ref, match]`` counts per order: the F_β of the precision and
    recall averaged over the orders where both sides have n-grams (sacrebleu ≥ 2.0's
    "effective order"); 0 when there is none or nothing matches."""
    b2 = beta ** 2
    prec = rec = 0.0
    effective = 0
    for i in range(0, len(stats), 3):
        n_hyp, n_ref, n_match = stats[i:i + 3]
        if n_hyp > 0 and n_ref > 0:
            prec += n_match / n_hyp
            rec += n_match / n_ref
            effective += 1
    if effective:
        prec, rec = prec / effective, rec / effective
    if prec + rec == 0:
        return 0.0
    return 100 * (1 + b2) * prec * rec / (b2 * prec + rec)


def corpus_chrf(hypotheses: Any, references: Any, *, char_order: int = 6, word_order: int = 0,
                beta: float = 2.0) -> float:
    r"""Corpus chrF (Popović 2015; chrF++ with ``word_order=2``, Popović 2017), as sacrebleu 2.6.

    Character n-grams (n = 1 … ``char_order``) of each segment with whitespace removed; per
    order the matched counts (clipped), the hypothesis and reference counts are summed over the
    corpus; the character n-gram precision P and recall R are the averages over the orders,
    and

    .. math:: \mathrm{chrF}_\beta = 100\cdot\frac{(1+\beta^2)\,P\,R}{\beta^2 P + R}

    (β = 2: recall weighs twice as much as precision). With several references a segment uses
    the one giving it the best F. An order where the reference has no n-gram does not count the
    hypothesis's ones, and orders with no n-gram on either side are left out of the averages.

    Args:
        hypotheses, references: as :func:`corpus_bleu`.
        char_order: largest character n-gram (6); word_order: largest word n-gram (0; 2 = chrF++);
        beta: β > 0.

    Returns:
        float in [0, 100].

    Raises:
        ValueError: a bad corpus (see :func:`corpus_bleu`), ``char_order`` < 1,
            ``word_order`` < 0, ``beta`` not finite and > 0.

    Source: Popović (2015), *chrF: character n-gram F-score for automatic MT evaluation*, WMT;
    sacrebleu 2.6 ``CHRF`` (its default, ``eps_smoothing=False``).
    """
    from lmcourse.validation import check_int, check_positive_float

    hyps, refs = _text_corpus(hypotheses, references)
    char_order = _check_k(char_order, "char_order")
    word_order = check_int("word_order", word_order, 0)
    beta = check_positive_float("beta", beta)
    totals = [0] * (3 * (char_order + word_order))
    for hyp, rs in zip(hyps, refs, strict=True):
        h = _chrf_grams(hyp, char_order, word_order)
        best, best_f = None, -1.0
        for r in rs:
            stats = []
            for hg, rg in zip(h, _chrf_grams(r, char_order, word_order), strict=True):
                match = sum(min(c, rg[g]) for g, c in hg.items() if g in rg)
                stats += [sum(hg.values()) if rg else 0, sum(rg.values()), match]
            f = _chrf_f(stats, beta)
            if f > best_f:
                best, best_f = stats, f
        totals = [a + b for a, b in zip(totals, best, strict=True)]
    return _chrf_f(totals, beta)


# ----------------------------------------------------------------------------------------------
# calibration (chapter 10, section 11)
# ----------------------------------------------------------------------------------------------
def _class_ids_and_probs(y_true: ArrayLike, y_prob: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(n,)`` int64 class ids and ``(n, K)`` float64 probability rows, checked."""
    prob = _numbers("y_prob", y_prob, ndim=2)
    if prob.shape[1] < 2:
        raise ValueError(f"y_prob must have K >= 2 columns (one per class), got shape {prob.shape}")
    if prob.min() < 0 or prob.max() > 1:
        raise ValueError(f"y_prob must be probabilities in [0, 1], found values in "
                         f"[{prob.min()}, {prob.max()}] (pass softmax outputs, not logits)")
    if not np.allclose(prob.sum(axis=1), 1.0, rtol=0.0, atol=1e-6):
        raise ValueError("the rows of y_prob do not sum to 1: pass probabilities (softmax)")
    t = _labels("y_true", y_true)
    _same_length(y_true=t, y_prob=prob)
    if t.dtype.kind not in "iu" or t.min() < 0 or t.max() >= prob.shape[1]:
        raise ValueError(f"y_true must hold integer class ids 0..{prob.shape[1] - 1} (the columns "
                         f"of y_prob), got dtype {t.dtype} with values in [{t.min()}, {t.max()}]")
    return t.astype(np.int64), prob


class Reliability(NamedTuple):
    """Equal-width confidence bins of a classifier (see :func:`reliability_bins`).

    Attributes:
        edges: float64 ``(n_bins + 1,)``, ``0, 1/M, ..., 1``; bin ``m`` holds the confidences in
            ``(edges[m], edges[m + 1]]`` (the first bin also holds 0).
        confidence: float64 ``(n_bins,)``, mean confidence of each bin (NaN where empty).
        accuracy: float64 ``(n_bins,)``, share of correct predictions in each bin (NaN where empty).
        count: int64 ``(n_bins,)``, samples in each bin.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def reliability_bins(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 15) -> Reliability:
    """Bin the predictions by confidence: what a reliability diagram plots.

    The confidence of a prediction is its top probability ``max_k p_ik``; it is correct when the
    top class (``argmax``, the first on ties) is ``y_true``. Bins are equal-width intervals
    ``I_m = ((m - 1)/M, m/M]``, as in Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern
    Neural Networks", ICML 2017, §2 (they use ``M = 15``).

    Args:
        y_true: ``(n,)`` integer class ids in ``0 .. K-1``.
        y_prob: ``(n, K)`` probabilities (rows sum to 1).
        n_bins: ``M``, a positive integer.

    Returns:
        A :class:`Reliability`.

    Raises:
        ValueError: ``n_bins`` not a positive integer; ``y_prob`` not a 2-D finite array of
            probabilities with rows summing to 1 (within 1e-6) and at least two columns;
            ``y_true`` not integer ids in range or of another length.
    """
    n_bins = _check_k(n_bins, "n_bins")
    t, prob = _class_ids_and_probs(y_true, y_prob)
    confidence = prob.max(axis=1)
    correct = (prob.argmax(axis=1) == t).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=n_bins) / count
        mean_acc = np.bincount(which, weights=correct, minlength=n_bins) / count
    return Reliability(edges=edges, confidence=mean_conf, accuracy=mean_acc, count=count)


def expected_calibration_error(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 15) -> float:
    r"""Expected calibration error with equal-width bins (Guo et al. 2017, eq. 3):

    .. math:: \mathrm{ECE} = \sum_{m=1}^{M} \frac{|B_m|}{n}\,\big|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\big|,

    the gap between accuracy and mean confidence in each bin of :func:`reliability_bins`,
    weighted by the share of samples in the bin (empty bins count 0). 0 for a perfectly
    calibrated classifier (up to sampling noise, which grows with ``M`` and shrinks with ``n``);
    at most 1.

    Args:
        y_true: ``(n,)`` integer class ids in ``0 .. K-1``.
        y_prob: ``(n, K)`` probabilities.
        n_bins: ``M``, a positive integer (15 as in Guo et al.).

    Returns:
        float in ``[0, 1]`` (a fraction, not a percentage).

    Raises:
        ValueError: as :func:`reliability_bins`.
    """
    bins = reliability_bins(y_true, y_prob, n_bins)
    filled = bins.count > 0
    gaps = np.abs(bins.accuracy[filled] - bins.confidence[filled])
    return float(np.sum(bins.count[filled] * gaps) / bins.count.sum())


def softmax_with_temperature(logits: ArrayLike, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / T)`` row by row, in float64, computed stably.

    ``T > 1`` flattens the probabilities (less confident), ``T < 1`` sharpens them; the arg-max,
    and so the accuracy, never changes. Log-probabilities work as logits too: ``softmax(log p)``
    is ``p``.

    Args:
        logits: ``(n, K)`` finite scores.
        temperature: ``T``, a finite positive number.

    Returns:
        float64 ``(n, K)`` probabilities; rows sum to 1.

    Raises:
        ValueError: ``logits`` not a finite non-empty 2-D array, or ``T`` not finite and > 0.
    """
    t = check_positive_float("temperature", temperature)
    z = _numbers("logits", logits, ndim=2) / t
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def temperature_nll(logits: ArrayLike, y_true: ArrayLike, temperature: float) -> float:
    """Mean negative log-likelihood (nats) of ``softmax(logits / T)`` at the true classes.

    Args:
        logits: ``(n, K)`` finite scores.
        y_true: ``(n,)`` integer class ids in ``0 .. K-1``.
        temperature: ``T``, a finite positive number.

    Returns:
        float ≥ 0 (unclipped: ``log softmax`` is computed as ``z - logsumexp(z)``).

    Raises:
        ValueError: bad ``logits``, ``T`` or ``y_true`` (not integer ids in range, other length).
    """
    t = check_positive_float("temperature", temperature)
    z = _numbers("logits", logits, ndim=2) / t
    ids = _labels("y_true", y_true)
    _same_length(y_true=ids, logits=z)
    if ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= z.shape[1]:
        raise ValueError(f"y_true must hold integer class ids 0..{z.shape[1] - 1}, got dtype "
                         f"{ids.dtype} with values in [{ids.min()}, {ids.max()}]")
    top = z.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(ids)), ids]))


def fit_temperature(logits: ArrayLike, y_true: ArrayLike, *, low: float = 0.05,
                    high: float = 20.0, tol: float = 1e-7) -> float:
    """The temperature ``T`` that minimises :func:`temperature_nll` on held-out data.

    Temperature scaling (Guo et al. 2017, §4.2) divides all logits by one scalar ``T`` fitted on
    the **validation** split, never on test. The NLL is convex in ``1/T`` (a log-sum-exp of
    linear functions minus a linear one), so it has one minimum along ``log T``, which a golden-
    section search finds to ``tol`` (relative, in ``T``). If the minimum lies at an end of
    ``[low, high]`` that end is returned: widen the range.

    Args:
        logits: ``(n, K)`` validation logits (or log-probabilities).
        y_true: ``(n,)`` integer class ids of the same samples.
        low, high: the search range, ``0 < low < high`` (finite).
        tol: relative tolerance on ``T``, a positive number.

    Returns:
        ``T`` as a Python float.

    Raises:
        ValueError: bad inputs (see :func:`temperature_nll`), or ``low``/``high``/``tol`` not
            finite positive numbers with ``low < high``.
    """
    lo = math.log(check_positive_float("low", low))
    hi = math.log(check_positive_float("high", high))
    check_positive_float("tol", tol)
    if not lo < hi:
        raise ValueError(f"need low < high, got low={low}, high={high}")
    temperature_nll(logits, y_true, 1.0)          # validate once; the loop below reuses the arrays
    z = np.asarray(logits, dtype=np.float64)
    ids = np.asarray(y_true).astype(np.int64)

    def nll(log_t: float) -> float:
        scaled = z / math.exp(log_t)
        top = scaled.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
        return float(np.mean(log_norm - scaled[np.arange(len(ids)), ids]))

    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    best = min((lo, nll(lo)), (hi, nll(hi)), ((a + b) / 2, nll((a + b) / 2)), key=lambda p: p[1])
    return math.exp(best[0])


# ----------------------------------------------------------------------------------------------
# bootstrap confidence intervals (chapter 10, section 12)
# ----------------------------------------------------------------------------------------------
class BootstrapInterval(NamedTuple):
    """A percentile bootstrap interval (see :func:`bootstrap_ci`, :func:`paired_bootstrap`).

    Attributes:
        estimate: the statistic on the full sample (for a paired bootstrap, metric(a) - metric(b)).
        low, high: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the
            resampled statistics.
        samples: float64 ``(n_resamples,)``, the statistic on every resample.
    """

    estimate: float
    low: float
    high: float
    samples: np.ndarray


def _bootstrap_setup(n_resamples: Any, confidence: Any, seed: Any) -> tuple[int, float, int]:
    return (_check_k(n_resamples, "n_resamples"),
            check_float("confidence", confidence, 0.0, 1.0, low_open=True, high_open=True),
            check_int("seed", seed, 0))


def _percentile_interval(estimate: float, samples: np.ndarray, confidence: float) -> BootstrapInterval:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return BootstrapInterval(float(estimate), float(low), float(high), samples)


def bootstrap_ci(metric: Any, y_true: ArrayLike, y_pred: ArrayLike, *, n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> BootstrapInterval:
    """Percentile bootstrap confidence interval of ``metric(y_true, y_pred)``.

    Draw ``n`` indices with replacement ``n_resamples`` times, recompute the metric on each
    resample, and report the ``(1 ± confidence) / 2`` percentiles (Efron & Tibshirani, *An
    Introduction to the Bootstrap*, Chapman & Hall 1993, ch. 13, the percentile method). It
    measures the test set's sampling noise only: another training seed would add its own spread.

    Args:
        metric: a function ``(y_true, y_pred) -> float`` (``y_pred`` may be labels or scores,
            e.g. :func:`accuracy`, :func:`f1_score`, :func:`roc_auc_score`).
        y_true: ``(n,)`` labels.
        y_pred: ``(n, ...)`` predictions or scores, row ``i`` for sample ``i``.
        n_resamples: number of bootstrap resamples, a positive integer.
        confidence: the interval's coverage, in ``(0, 1)``.
        seed: seed of ``np.random.default_rng``, an integer >= 0.

    Returns:
        A :class:`BootstrapInterval`.

    Raises:
        ValueError: bad ``n_resamples``, ``confidence`` or ``seed``; ``y_true`` and ``y_pred``
            empty or of different lengths; or whatever ``metric`` raises on a resample (e.g. ROC
            AUC on a resample with one class: use more samples or a stratified scheme).
    """
    n_resamples, confidence, seed = _bootstrap_setup(n_resamples, confidence, seed)
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"y_true must be a non-empty 1-D array, got shape {t.shape}")
    if p.ndim == 0:
        raise ValueError("y_pred must have one row per sample")
    n = _same_length(y_true=t, y_pred=p)
    rng = np.random.default_rng(seed)
    samples = np.empty(n_resamples)
    for r in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        samples[r] = metric(t[idx], p[idx])
    return _percentile_interval(metric(t, p), samples, confidence)


def paired_bootstrap(metric: Any, y_true: ArrayLike, pred_a: ArrayLike, pred_b: ArrayLike, *,
                     n_resamples: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> BootstrapInterval:
    """Percentile bootstrap interval of the difference ``metric(a) - metric(b)`` on one test set.

    Both models are scored on the *same* resampled indices, so the interval reflects how the
    two differ on the same samples (their errors are correlated), not two independent noises:
    it is much narrower than comparing two separate intervals. An interval that contains 0 does
    not show a difference (Efron & Tibshirani 1993, ch. 13; for NLP, Koehn, EMNLP 2004, uses the
    same paired resampling for BLEU).

    Args:
        metric: a function ``(y_true, y_pred) -> float``.
        y_true: ``(n,)`` labels.
        pred_a, pred_b: ``(n, ...)`` predictions or scores of models A and B on the same samples.
        n_resamples, confidence, seed: as in :func:`bootstrap_ci`.

    Returns:
        A :class:`BootstrapInterval` of ``metric(y_true, pred_a) - metric(y_true, pred_b)``.

    Raises:
        ValueError: as :func:`bootstrap_ci`; also when ``pred_a`` and ``pred_b`` have different
            lengths.
    """
    n_resamples, confidence, seed = _bootstrap_setup(n_resamples, confidence, seed)
    t, a, b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"y_true must be a non-empty 1-D array, got shape {t.shape}")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("pred_a and pred_b must have one row per sample")
    n = _same_length(y_true=t, pred_a=a, pred_b=b)
    rng = np.random.default_rng(seed)
    samples = np.empty(n_resamples)
    for r in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        samples[r] = metric(t[idx], a[idx]) - metric(t[idx], b[idx])
    return _percentile_interval(metric(t, a) - metric(t, b), samples, confidence)
