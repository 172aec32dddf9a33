"""Tests of lmcourse.regularization on real Fashion-MNIST images (the cached official files):
augmentation, L1/L2 penalties, dropout, decoupled weight decay, early stopping, k-fold splits and
the vmapped k-fold training (checked against a Python loop over the folds)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse import regularization as R
from lmcourse.data import load_fashion_mnist
from lmcourse.training import to_float_images


@pytest.fixture(scope="module")
def fashion():
    data = load_fashion_mnist()
    return to_float_images(data.x_train[:600]), data.y_train[:600].astype(np.int32)


@pytest.fixture(scope="module")
def small_model():
    """A small MLP (32 hidden units) split into its graph definition and parameters."""
    return nnx.split(R.MLP(nnx.Rngs(0), hidden=32))


# --- augmentation -----------------------------------------------------------------------------


def test_augment_keeps_shape_dtype_range_and_labels(fashion):
    x, y = jnp.asarray(fashion[0][:64]), jnp.asarray(fashion[1][:64])
    augment = jax.jit(R.augment, static_argnames="pad")
    for max_shift, flip in [(0, 0.0), (2, 0.0), (0, 0.5), (3, 1.0)]:
        xa, ya = augment(jax.random.key(1), x, y, max_shift=max_shift, flip_probability=flip, pad=3)
        assert xa.shape == x.shape and xa.dtype == x.dtype == jnp.float32
        assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
        assert ya.dtype == y.dtype and np.array_equal(ya, y)
        # a shift only moves pixels out of the frame or in as zeros: the total ink cannot grow
        assert np.all(np.asarray(xa.sum((1, 2, 3))) <= np.asarray(x.sum((1, 2, 3))) + 1e-3)
        assert np.array_equal(xa, x) == (max_shift == 0 and flip == 0.0)
    same, _ = R.augment(jax.random.key(1), x, y)
    assert np.array_equal(same, x)                               # no shift, no flip: identity
    # a traced shift bound (as inside the training step) draws the same shifts as a static one
    traced = jax.jit(lambda m: R.random_shift(jax.random.key(2), x, m, pad=2))(2)
    assert np.array_equal(traced, R.random_shift(jax.random.key(2), x, 2))


def test_flips_are_exact(fashion):
    x = jnp.asarray(fashion[0][:16])
    assert np.array_equal(R.flip_left_right(R.flip_left_right(x)), x)
    assert np.array_equal(R.flip_left_right(x)[:, 5, 3], x[:, 5, 27 - 3])
    key = jax.random.key(0)
    assert np.array_equal(R.random_flip(key, x, 1.0), R.flip_left_right(x))
    assert np.array_equal(R.random_flip(key, x, 0.0), x)
    flipped = np.asarray(R.random_flip(key, x, 0.5))
    each = [np.array_equal(f, m) for f, m in zip(flipped, np.asarray(R.flip_left_right(x)), strict=True)]
    kept = [np.array_equal(f, o) for f, o in zip(flipped, np.asarray(x), strict=True)]
    assert all(a or b for a, b in zip(each, kept, strict=True)) and any(each) and any(kept)


def test_shift_moves_a_real_image_by_the_right_number_of_pixels(fashion):
    x = fashion[0]
    # Fashion-MNIST garments often touch the frame, so put 4 real images on a 34×34 canvas with
    # a 3-pixel empty border: a shift of up to 3 pixels then loses no ink.
    images = jnp.asarray(np.pad(x[:4], ((0, 0), (3, 3), (3, 3), (0, 0))))
    dy, dx = jnp.array([2, -3, 0, 1]), jnp.array([-1, 3, 2, 0])
    shifted = np.asarray(R.shift_images(images, dy, dx, pad=3))
    for n in range(4):
        expected = np.roll(np.asarray(images[n]), (int(dy[n]), int(dx[n])), axis=(0, 1))
        assert np.array_equal(shifted[n], expected)          # the image moved, nothing lost
        ink = shifted[n, :, :, 0]
        rows, cols = np.indices(ink.shape)
        before = np.asarray(images[n, :, :, 0])
        centre_shift = ((rows * ink).sum() / ink.sum() - (rows * before).sum() / before.sum(),
                        (cols * ink).sum() / ink.sum() - (cols * before).sum() / before.sum())
        assert np.allclose(centre_shift, (int(dy[n]), int(dx[n])), atol=1e-4)
    # a shift that pushes ink out of the frame fills with zeros (a crop after zero padding)
    one = jnp.asarray(x[:1])   # the real 28×28 image, which touches the frame
    out = np.asarray(R.shift_images(one, jnp.array([2]), jnp.array([-2]), pad=2))
    assert np.array_equal(out[0, 2:, :-2], x[0, :-2, 2:]) and not out[0, :2].any() and not out[0, :, -2:].any()


def test_random_shift_draws_shifts_within_the_bound(fashion):
    images = jnp.asarray(fashion[0][:8])
    out = np.asarray(R.random_shift(jax.random.key(3), images, 2))
    seen = set()
    for n in range(8):
        matches = [(a, b) for a in range(-2, 3) for b in range(-2, 3) if np.array_equal(
            out[n], np.asarray(R.shift_images(images[n:n + 1], jnp.array([a]), jnp.array([b]), 2))[0])]
        assert matches, f"image {n} is not a shift within ±2 of its input"
        seen.add(matches[0])
    assert len(seen) > 1
    assert R.random_shift(jax.random.key(3), images, 0) is images


# --- penalties, dropout, weight decay ---------------------------------------------------------


def test_l1_l2_penalties_and_gradients_match_hand_computation(small_model):
    _, params = small_model
    w1, b1 = np.asarray(params["hidden"]["kernel"][...]), np.asarray(params["hidden"]["bias"][...])
    w2 = np.asarray(params["out"]["kernel"][...])
    assert float(R.l1_penalty(params)) == pytest.approx(np.abs(w1).sum() + np.abs(w2).sum(), rel=1e-5)
    assert float(R.l2_penalty(params)) == pytest.approx(0.5 * ((w1 ** 2).sum() + (w2 ** 2).sum()), rel=1e-5)
    g1, g2 = jax.grad(R.l1_penalty)(params), jax.grad(R.l2_penalty)(params)
    assert np.array_equal(g1["hidden"]["kernel"][...], np.sign(w1))
    assert np.allclose(g2["out"]["kernel"][...], w2)
    assert not np.any(g1["hidden"]["bias"][...]) and not np.any(g2["hidden"]["bias"][...])
    assert b1.shape == (32,)
    mask = R.penalty_mask(params)
    assert mask["hidden"]["kernel"].get_value() is True and mask["hidden"]["bias"].get_value() is False


def test_dropout_zeroes_the_rate_and_keeps_the_mean():
    x = jnp.ones((200, 500))
    out = np.asarray(R.dropout(jax.random.key(0), x, 0.3))
    assert abs((out == 0).mean() - 0.3) < 0.01
    assert np.allclose(out[out != 0], 1 / 0.7)
    assert abs(out.mean() - 1.0) < 0.02
    assert np.array_equal(R.dropout(jax.random.key(0), x, 0.0), x)


def test_l2_penalty_is_weight_decay_for_sgd_but_adamw_decouples_it(fashion, small_model):
    graphdef, params = small_model
    x, y = jnp.asarray(fashion[0][:100]), jnp.asarray(fashion[1][:100])
    lr, lam = 0.1, 0.01
    sgd = optax.sgd(lr)
    key = jax.random.key(0)
    penalised, *_ = R.make_train_step(graphdef, sgd)(params, sgd.init(params), x, y, key, R.Hyper(l2=lam))
    plain, *_ = R.make_train_step(graphdef, sgd)(params, sgd.init(params), x, y, key, R.Hyper())
    mask = R.penalty_mask(params)
    by_hand = jax.tree.map(lambda p, w, m: p - lr * lam * w * m, plain, params, mask)
    for a, b in zip(jax.tree.leaves(penalised), jax.tree.leaves(by_hand), strict=True):
        assert np.allclose(a, b, atol=1e-6)
    # AdamW: Adam's step on the plain gradient, then w -= lr · wd · w (kernels only)
    wd = 0.5
    adamw = optax.adamw(lr, weight_decay=wd, mask=R.penalty_mask)
    adam = optax.adam(lr)
    after_adamw, *_ = R.make_train_step(graphdef, adamw)(params, adamw.init(params), x, y, key, R.Hyper())
    after_adam, *_ = R.make_train_step(graphdef, adam)(params, adam.init(params), x, y, key, R.Hyper())
    by_hand = jax.tree.map(lambda p, w, m: p - lr * wd * w * m, after_adam, params, mask)
    decoupled, *_ = R.make_train_step(graphdef, adam)(params, adam.init(params), x, y, key,
                                                       R.Hyper(decoupled_decay=lr * wd))
    for a, b, c in zip(jax.tree.leaves(after_adamw), jax.tree.leaves(by_hand),
                       jax.tree.leaves(decoupled), strict=True):
        assert np.allclose(a, b, atol=1e-6) and np.allclose(c, a, atol=1e-6)
    assert not np.allclose(after_adamw["hidden"]["kernel"][...], after_adam["hidden"]["kernel"][...])


# --- early stopping and k-fold splits ---------------------------------------------------------


def test_early_stopping_picks_the_epoch_of_best_validation_loss():
    curve = [1.0, 0.8, 0.7, 0.72, 0.69, 0.75, 0.8, 0.9, 0.95]
    assert R.early_stopping(curve, patience=2) == R.EarlyStop(best_epoch=4, stop_epoch=6)
    assert R.early_stopping(curve, patience=1) == R.EarlyStop(2, 3)
    assert R.early_stopping(curve, patience=100) == R.EarlyStop(int(np.argmin(curve)), len(curve) - 1)
    assert R.early_stopping([0.5, 0.5, 0.5], patience=1) == R.EarlyStop(0, 1)   # ties keep the first
    with pytest.raises(ValueError):
        R.early_stopping([], 3)
    with pytest.raises(ValueError):
        R.early_stopping(curve, 0)


def test_kfold_splits_partition_the_indices():
    train, val = R.kfold_indices(100, 5, seed=1)
    assert train.shape == (5, 80) and val.shape == (5, 20) and val.dtype == np.int32
    assert np.array_equal(np.sort(val.ravel()), np.arange(100))           # folds partition 0..99
    for f in range(5):
        assert not set(train[f]) & set(val[f])
        assert np.array_equal(np.sort(np.concatenate([train[f], val[f]])), np.arange(100))
    assert not np.array_equal(val, R.kfold_indices(100, 5, seed=2)[1])
    with pytest.raises(ValueError, match="does not divide"):
        R.kfold_indices(101, 5)
    with pytest.raises(ValueError):
        R.kfold_indices(10, 1)


# --- whole runs -------------------------------------------------------------------------------

ADAM = optax.adam(2e-3)   # one object: the compiled runs are cached per optimizer object


def test_run_overfits_and_its_early_stopping_matches_the_rule(fashion, small_model):
    """200 real images, 12 epochs: the clean training loss falls; the in-jit early stopping keeps
    the parameters of the epoch that :func:`early_stopping` picks from the same curve."""
    graphdef, params = small_model
    x, y = jnp.asarray(fashion[0]), jnp.asarray(fashion[1])
    config = R.TrainConfig(epochs=12, batch_size=50, patience=3)
    run = jax.jit(R.make_run(graphdef, ADAM, config))
    result = run(params, jax.random.key(0), R.Hyper(), x, y, jnp.arange(200), jnp.arange(200, 600))
    train_loss, val_loss = np.asarray(result.train_loss), np.asarray(result.val_loss)
    assert train_loss[-1] < 0.5 * train_loss[0]
    rule = R.early_stopping(val_loss, patience=3)
    assert (int(result.best_epoch), int(result.stop_epoch)) == rule
    best_loss, _ = R.evaluate_params(graphdef, result.best_params, np.asarray(x[200:]), np.asarray(y[200:]))
    assert best_loss == pytest.approx(val_loss[rule.best_epoch], abs=1e-5)


def test_vmapped_kfold_training_equals_a_python_loop(fashion, small_model):
    graphdef, params = small_model
    x, y = jnp.asarray(fashion[0][:500]), jnp.asarray(fashion[1][:500])
    train_idx, val_idx = R.kfold_indices(500, 5)
    k = 5
    stacked = R.stack_params([params] * k)
    keys = jax.random.split(jax.random.key(1), k)
    config = R.TrainConfig(epochs=3, batch_size=50)
    hyper = R.Hyper(l2=1e-3, dropout_rate=0.2)
    vmapped = R.train_folds(graphdef, ADAM, config, stacked, keys, hyper, x, y, train_idx, val_idx)
    looped = R.train_folds_loop(graphdef, ADAM, config, stacked, keys, hyper, x, y, train_idx, val_idx)
    assert vmapped.val_loss.shape == (k, 3)
    assert np.allclose(vmapped.val_loss, looped.val_loss, atol=1e-5)
    assert np.allclose(vmapped.train_loss, looped.train_loss, atol=1e-5)
    for a, b in zip(jax.tree.leaves(vmapped.params), jax.tree.leaves(looped.params), strict=True):
        assert np.allclose(a, b, atol=5e-5)   # Adam divides by √v: rounding in tiny gradients shows
    # the folds really differ (different data), and stacked evaluation agrees with one-by-one
    assert np.ptp(np.asarray(vmapped.val_loss[:, -1])) > 1e-3
    losses, accs = R.evaluate_params(graphdef, vmapped.params, np.asarray(x), np.asarray(y), model_axes=1)
    one, _ = R.evaluate_params(graphdef, R.unstack_params(vmapped.params, 2), np.asarray(x), np.asarray(y))
    assert losses.shape == accs.shape == (k,) and losses[2] == pytest.approx(one, abs=1e-5)


# --- bad input and the edges of the valid ranges (issue 10 §5) --------------------------------

BAD_PROBABILITIES = [-0.5, 1.5, float("nan")]


@pytest.mark.parametrize("bad", BAD_PROBABILITIES)
def test_rates_and_probabilities_outside_0_1_raise(bad, fashion):
    x = jnp.asarray(fashion[0][:4])
    y = jnp.asarray(fashion[1][:4])
    key = jax.random.key(0)
    model = R.MLP(nnx.Rngs(0), hidden=8)
    attempts = {
        "dropout": lambda: R.dropout(key, jnp.ones((4, 8)), bad),
        "MLP, training": lambda: model(x, key=key, dropout_rate=bad),
        "MLP, evaluation": lambda: model(x, dropout_rate=bad),
        "random_flip": lambda: R.random_flip(key, x, bad),
        "augment": lambda: R.augment(key, x, y, flip_probability=bad),
        "Hyper.dropout_rate": lambda: R.Hyper(dropout_rate=bad),
        "Hyper.flip_probability": lambda: R.Hyper(flip_probability=bad),
        "Hyper.decoupled_decay": lambda: R.Hyper(decoupled_decay=bad),
        "Hyper._replace": lambda: R.Hyper()._replace(dropout_rate=bad),
        "Hyper, vmapped values": lambda: R.Hyper(dropout_rate=jnp.array([0.2, bad])),
    }
    for what, attempt in attempts.items():
        with pytest.raises(ValueError, match=r"must be in \[0, 1\], got"):
            attempt()
            pytest.fail(f"{what} accepted {bad}")


@pytest.mark.parametrize("field, value", [("l1", -1e-4), ("l2", float("nan")), ("l2", float("inf")),
                                          ("max_shift", -1), ("max_shift", 1.5)])
def test_bad_penalties_and_shifts_raise(field, value):
    with pytest.raises(ValueError, match=f"Hyper.{field}"):
        R.Hyper(**{field: value})


def test_bad_shift_settings_and_sizes_raise(fashion, small_model):
    x, y = jnp.asarray(fashion[0][:4]), jnp.asarray(fashion[1][:4])
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"max_shift must be in \[0, 2\]"):
        R.augment(key, x, y, max_shift=3, pad=2)           # would be clipped to 2 silently
    with pytest.raises(ValueError, match="max_shift"):
        R.augment(key, x, y, max_shift=-1)
    with pytest.raises(ValueError, match="whole number"):
        R.random_shift(key, x, 1.5)
    with pytest.raises(ValueError, match="pad must be an integer"):
        R.shift_images(x, jnp.zeros(4, jnp.int32), jnp.zeros(4, jnp.int32), pad=1.5)
    with pytest.raises(ValueError, match="pad must be an integer >= 0"):
        R.shift_images(x, jnp.zeros(4, jnp.int32), jnp.zeros(4, jnp.int32), pad=-1)
    for kwargs in ({"epochs": 0}, {"epochs": 2.5}, {"epochs": True}, {"epochs": 2, "batch_size": 0},
                   {"epochs": 2, "patience": 0}, {"epochs": 2, "shift_pad": -1}):
        with pytest.raises(ValueError, match="TrainConfig"):
            R.TrainConfig(**kwargs)
    with pytest.raises(ValueError, match="k must be an integer"):
        R.kfold_indices(10, 2.5)
    with pytest.raises(ValueError, match="patience must be an integer"):
        R.early_stopping([1.0, 0.5], patience=1.5)
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        R.MLP(nnx.Rngs(0), hidden=0)
    with pytest.raises(ValueError, match="784 values per example"):
        R.MLP(nnx.Rngs(0))(jnp.ones((2, 27, 27, 1)))
    # a concrete shift above the step's padding is refused when the step is called
    graphdef, params = small_model
    step = R.make_train_step(graphdef, ADAM, shift_pad=1)
    with pytest.raises(ValueError, match=r"Hyper.max_shift must be in \[0, 1\]"):
        step(params, ADAM.init(params), x, y, key, R.Hyper(max_shift=2))


def test_row_indices_and_labels_outside_the_data_raise(fashion, small_model):
    """JAX clamps an out-of-range gather: the run would silently train on the wrong rows."""
    graphdef, params = small_model
    x, y = jnp.asarray(fashion[0][:200]), jnp.asarray(fashion[1][:200])
    stacked, keys = R.stack_params([params]), jax.random.split(jax.random.key(0), 1)
    config = R.TrainConfig(epochs=1, batch_size=50)
    good_train, good_val = jnp.arange(100), jnp.arange(100, 200)
    cases = [
        (x, y, good_train, jnp.arange(100, 201), r"val_idx must index rows 0\.\.199"),
        (x, y, jnp.arange(-1, 99), good_val, r"train_idx must index rows 0\.\.199"),
        (x, y.at[3].set(10), good_train, good_val, r"class ids 0\.\.9 \(the model has 10 outputs\)"),
        (x, y[:150], good_train, good_val, "x has 200 examples but y has 150"),
        (x, y, jnp.arange(40), good_val, "40 training examples < batch size 50"),
    ]
    for xs, ys, tr, va, message in cases:
        with pytest.raises(ValueError, match=message):
            R.train_seeds(graphdef, ADAM, config, stacked, keys, R.Hyper(), xs, ys, tr, va)
    with pytest.raises(ValueError, match=r"class ids 0\.\.9"):
        R.evaluate_params(graphdef, params, np.asarray(x[:5]), np.array([0, 1, 2, 3, -1]))
    with pytest.raises(ValueError, match="equal length"):
        R.evaluate_params(graphdef, params, np.asarray(x[:5]), np.array([0, 1]))


@pytest.mark.parametrize("rate", [0.0, 1.0])
@pytest.mark.parametrize("traced", [False, True])
def test_dropout_at_rate_0_and_1_has_finite_outputs_and_gradients(rate, traced):
    x = jax.random.normal(jax.random.key(1), (16, 32))
    key = jax.random.key(2)

    def total(x, rate):
        return (R.dropout(key, x, rate) * jnp.arange(32.0)).sum()

    fn = jax.jit(R.dropout) if traced else R.dropout
    grad = jax.jit(jax.grad(total)) if traced else jax.grad(total)
    out, g = np.asarray(fn(key, x, rate)), np.asarray(grad(x, rate))
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(g))
    if rate == 0.0:
        assert np.array_equal(out, np.asarray(x))                       # nothing dropped
        assert np.array_equal(g, np.broadcast_to(np.arange(32.0), g.shape))
    else:
        assert not out.any() and not g.any()                            # all dropped, gradient 0


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_flips_at_probability_0_and_1_have_finite_outputs_and_gradients(fashion, probability):
    x = jnp.asarray(fashion[0][:8])
    key = jax.random.key(3)
    weights = jax.random.normal(jax.random.key(4), x.shape)
    out = R.random_flip(key, x, probability)
    g = jax.grad(lambda im: (R.random_flip(key, im, probability) * weights).sum())(x)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(g))
    expected = R.flip_left_right(x) if probability == 1.0 else x
    assert np.array_equal(out, expected)
    # the gradient is the incoming one sent back through the same mirror
    assert np.array_equal(g, R.flip_left_right(weights) if probability == 1.0 else weights)


@pytest.mark.parametrize("dropout_rate, flip_probability", [(0.0, 0.0), (1.0, 1.0)])
def test_training_step_at_the_edges_gives_finite_loss_and_gradients(fashion, small_model,
                                                                    dropout_rate, flip_probability):
    """The real path: hyper-parameters traced inside the jitted step, on real images."""
    graphdef, params = small_model
    x, y = jnp.asarray(fashion[0][:100]), jnp.asarray(fashion[1][:100])
    hyper = R.Hyper(dropout_rate=dropout_rate, flip_probability=flip_probability, max_shift=2)
    loss_fn = jax.jit(R.make_loss_fn(graphdef))
    grads = jax.jit(jax.grad(lambda p, k, h: loss_fn(p, x, y, k, h)[0]))(params, jax.random.key(0), hyper)
    leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]
    assert all(np.all(np.isfinite(g)) for g in leaves)
    step = jax.jit(R.make_train_step(graphdef, ADAM))
    new_params, _, ce = step(params, ADAM.init(params), x, y, jax.random.key(0), hyper)
    assert np.isfinite(float(ce))
    assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(new_params))
    if dropout_rate == 1.0:
        # every hidden unit dropped: the logits are the output bias, the first layer gets no gradient
        assert not np.asarray(grads["hidden"]["kernel"][...]).any()
        assert float(ce) == pytest.approx(np.log(10), abs=1e-5)
