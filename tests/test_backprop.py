"""Tests of lmcourse.backprop: the hand-written backward pass against central finite differences
and against ``jax.grad`` of the same loss written in ``jax.numpy``, all in float64."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmcourse import backprop
from lmcourse.backprop import (
    ForwardCache,
    init_mlp,
    loss_and_grads,
    max_relative_error,
    mlp_backward,
    mlp_forward,
    numerical_gradient,
    relative_error,
    softmax,
    softmax_cross_entropy,
)

TOLERANCE = 1e-6  # max relative error allowed between two gradients (float64)

# (layer_sizes, batch_size, seed): one hidden layer, none, several; batch of one; wide and narrow.
CASES = [
    ([4, 3], 5, 0),
    ([5, 7, 3], 4, 1),
    ([8, 16, 10], 1, 2),
    ([3, 4, 5, 6, 2], 3, 3),
    ([12, 2, 9, 4], 6, 4),
    ([6, 10, 10, 10, 5], 8, 5),
]


@pytest.fixture(scope="module", autouse=True)
def float64_jax():
    """Let JAX compute in float64 for this module, then restore the previous setting."""
    previous = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def random_problem(layer_sizes: list[int], batch_size: int, seed: int):
    """Glorot weights with random (non-zero) biases, Gaussian inputs and one-hot targets."""
    rng = np.random.default_rng(seed)
    params = [(w, rng.normal(0.0, 0.5, size=b.shape)) for w, b in init_mlp(layer_sizes, rng)]
    x = rng.normal(size=(batch_size, layer_sizes[0]))
    y_onehot = np.eye(layer_sizes[-1])[rng.integers(0, layer_sizes[-1], size=batch_size)]
    return params, x, y_onehot


def jax_loss(params, x, y_onehot):
    """The same network and loss written independently in jax.numpy."""
    activation = jnp.asarray(x)
    for weights, bias in params[:-1]:
        activation = jnp.tanh(activation @ weights.T + bias)
    weights_out, bias_out = params[-1]
    logits = activation @ weights_out.T + bias_out
    return -jnp.mean(jnp.sum(y_onehot * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def numpy_loss_fn(x, y_onehot):
    return lambda params: softmax_cross_entropy(mlp_forward(params, x)[0], y_onehot)


@pytest.mark.parametrize(("layer_sizes", "batch_size", "seed"), CASES)
def test_backward_matches_finite_differences(layer_sizes, batch_size, seed):
    params, x, y_onehot = random_problem(layer_sizes, batch_size, seed)
    _, grads = loss_and_grads(params, x, y_onehot)
    numeric = numerical_gradient(numpy_loss_fn(x, y_onehot), params)
    assert max_relative_error(grads, numeric) < TOLERANCE


@pytest.mark.parametrize(("layer_sizes", "batch_size", "seed"), CASES)
def test_loss_and_backward_match_jax_grad(layer_sizes, batch_size, seed):
    params, x, y_onehot = random_problem(layer_sizes, batch_size, seed)
    loss, grads = loss_and_grads(params, x, y_onehot)
    jax_value, jax_grads = jax.value_and_grad(jax_loss)(params, x, y_onehot)
    assert jax_grads[0][0].dtype == jnp.float64
    assert loss == pytest.approx(float(jax_value), rel=1e-12)
    assert max_relative_error(grads, jax_grads) < TOLERANCE
    # Two exact methods in float64 agree far more tightly than the finite-difference bound.
    assert max_relative_error(grads, jax_grads) < 1e-10


def test_gradients_have_the_shapes_and_dtype_of_params():
    params, x, y_onehot = random_problem([5, 7, 3], 4, 0)
    _, grads = loss_and_grads(params, x, y_onehot)
    assert len(grads) == len(params)
    for (w, b), (dw, db) in zip(params, grads, strict=True):
        assert dw.shape == w.shape and db.shape == b.shape
        assert dw.dtype == np.float64 and db.dtype == np.float64


def test_float32_inputs_are_computed_in_float64():
    params, x, y_onehot = random_problem([5, 7, 3], 4, 0)
    logits, _ = mlp_forward(params, x.astype(np.float32))
    assert logits.dtype == np.float64


def test_output_gradient_is_softmax_minus_target_over_batch():
    params, x, y_onehot = random_problem([5, 3], 4, 6)
    logits, cache = mlp_forward(params, x)
    (dw, db), = mlp_backward(params, cache, y_onehot)
    expected_delta = (softmax(logits) - y_onehot) / len(x)
    np.testing.assert_allclose(db, expected_delta.sum(axis=0), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dw, expected_delta.T @ x, rtol=1e-13, atol=1e-15)


def test_gradient_check_catches_a_wrong_sign():
    params, x, y_onehot = random_problem([5, 7, 3], 4, 1)
    _, grads = loss_and_grads(params, x, y_onehot)
    numeric = numerical_gradient(numpy_loss_fn(x, y_onehot), params)
    flipped = [(w, b) for w, b in grads]
    flipped[0] = (-grads[0][0], grads[0][1])
    assert max_relative_error(flipped, numeric) > 1.0  # |(-g) - g| / |g| = 2


def test_gradient_check_catches_a_wrong_activation_derivative(monkeypatch):
    """A backward pass that uses tanh' = 1 - a (instead of 1 - a**2) must fail the check."""

    def buggy_backward(params, cache, y_onehot):
        delta = (softmax(cache.logits) - y_onehot) / cache.logits.shape[0]
        grads = []
        for layer in reversed(range(len(params))):
            layer_input = cache.activations[layer]
            grads.append((delta.T @ layer_input, delta.sum(axis=0)))
            if layer > 0:
                delta = (delta @ params[layer][0]) * (1.0 - layer_input)
        return grads[::-1]

    monkeypatch.setattr(backprop, "mlp_backward", buggy_backward)
    params, x, y_onehot = random_problem([5, 7, 3], 4, 1)
    _, grads = backprop.loss_and_grads(params, x, y_onehot)
    numeric = numerical_gradient(numpy_loss_fn(x, y_onehot), params)
    assert max_relative_error(grads, numeric) > 1e-2


def test_numerical_gradient_leaves_params_unchanged():
    params, x, y_onehot = random_problem([4, 3, 2], 2, 7)
    before = [(w.copy(), b.copy()) for w, b in params]
    numerical_gradient(numpy_loss_fn(x, y_onehot), params)
    for (w0, b0), (w1, b1) in zip(before, params, strict=True):
        np.testing.assert_array_equal(w0, w1)
        np.testing.assert_array_equal(b0, b1)


def test_numerical_gradient_of_a_quadratic():
    params = [(np.array([[1.0, -2.0]]), np.array([3.0]))]
    numeric = numerical_gradient(lambda p: float((p[0][0] ** 2).sum() + p[0][1][0] ** 3), params)
    np.testing.assert_allclose(numeric[0][0], [[2.0, -4.0]], rtol=1e-9)
    np.testing.assert_allclose(numeric[0][1], [27.0], rtol=1e-9)


def test_softmax_cross_entropy_values():
    assert softmax_cross_entropy(np.zeros((3, 10)), np.eye(10)[:3]) == pytest.approx(math.log(10))
    # Huge logits must not overflow: a confident correct prediction costs ~0.
    logits = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    assert softmax_cross_entropy(logits, np.eye(2)) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(softmax(logits).sum(axis=1), 1.0)


def test_init_mlp_shapes_and_determinism():
    params = init_mlp([64, 32, 10], np.random.default_rng(0))
    assert [w.shape for w, _ in params] == [(32, 64), (10, 32)]
    assert [b.shape for _, b in params] == [(32,), (10,)]
    assert all(w.dtype == np.float64 for w, _ in params)
    again = init_mlp([64, 32, 10], np.random.default_rng(0))
    np.testing.assert_array_equal(params[0][0], again[0][0])
    assert params[0][0].std() == pytest.approx(math.sqrt(2 / 96), rel=0.05)


@pytest.mark.parametrize("layer_sizes", [[], [10], [4, 0, 2], [4, 2.5, 2]])
def test_init_mlp_rejects_bad_sizes(layer_sizes):
    with pytest.raises(ValueError):
        init_mlp(layer_sizes, np.random.default_rng(0))


def test_shape_mismatches_raise_value_error():
    params, x, y_onehot = random_problem([5, 7, 3], 4, 0)
    with pytest.raises(ValueError, match="x must have shape"):
        mlp_forward(params, x[:, :4])
    with pytest.raises(ValueError, match="x must have shape"):
        mlp_forward(params, x[0])
    broken_chain = [params[0], (np.zeros((3, 6)), np.zeros(3))]
    with pytest.raises(ValueError, match="expects 6 inputs"):
        mlp_forward(broken_chain, x)
    wrong_bias = [params[0], (params[1][0], np.zeros(4))]
    with pytest.raises(ValueError, match="b has shape"):
        mlp_forward(wrong_bias, x)
    with pytest.raises(ValueError):
        mlp_forward([], x)
    logits, cache = mlp_forward(params, x)
    with pytest.raises(ValueError, match="y_onehot has shape"):
        mlp_backward(params, cache, y_onehot[:, :2])
    with pytest.raises(ValueError, match="cache holds"):
        mlp_backward(params, ForwardCache(cache.activations[:1], cache.logits), y_onehot)
    with pytest.raises(ValueError, match="logits and y_onehot"):
        softmax_cross_entropy(logits, y_onehot[:2])
    with pytest.raises(ValueError, match="shapes"):
        relative_error(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="layers"):
        max_relative_error(params, params[:1])
    with pytest.raises(ValueError, match="eps"):
        numerical_gradient(numpy_loss_fn(x, y_onehot), params, eps=0.0)


def test_relative_error_definition():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([2.0, 0.0]), np.array([2.0, 1e-3])) == pytest.approx(5e-4)


# ---------------------------------------------------------------------------------------------
# Bad input: a clear ValueError, never a silent NaN or a wrong row
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer_sizes", [[4, float("nan"), 2], [4, True, 2], [4, -3, 2], [4, "8", 2]])
def test_init_mlp_rejects_nan_bool_negative_and_strings(layer_sizes):
    with pytest.raises(ValueError, match=r"layer_sizes\[1\] must be a positive integer"):
        init_mlp(layer_sizes, np.random.default_rng(0))


def test_init_mlp_rejects_a_seed_in_place_of_a_generator():
    with pytest.raises(ValueError, match="np.random.Generator"):
        init_mlp([4, 2], 0)  # type: ignore[arg-type]


def test_one_hot_checks_the_label_range():
    np.testing.assert_array_equal(backprop.one_hot(np.array([0, 2, 1]), 3),
                                  [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    # both edges of [0, n_classes) are valid
    assert backprop.one_hot(np.array([0, 9]), 10).sum() == 2
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\).*labels\[1\] = 10"):
        backprop.one_hot(np.array([3, 10]), 10)
    with pytest.raises(ValueError, match=r"labels\[0\] = -1"):  # np.eye(10)[-1] would be class 9
        backprop.one_hot(np.array([-1, 3]), 10)
    with pytest.raises(ValueError, match="integers"):
        backprop.one_hot(np.array([0.0, 1.5]), 3)
    with pytest.raises(ValueError, match="1-D"):
        backprop.one_hot(np.array([[0, 1]]), 3)
    with pytest.raises(ValueError, match="n_classes must be a positive integer"):
        backprop.one_hot(np.array([0]), 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_and_weights_are_refused(bad):
    params, x, y_onehot = random_problem([5, 7, 3], 4, 0)
    x_bad = x.copy()
    x_bad[2, 1] = bad
    with pytest.raises(ValueError, match=r"x contains 1 NaN or infinite value\(s\) \(first at index \(2, 1\)\)"):
        mlp_forward(params, x_bad)
    w_bad = params[1][0].copy()
    w_bad[0, 0] = bad
    with pytest.raises(ValueError, match="W of layer 1 contains"):
        mlp_forward([params[0], (w_bad, params[1][1])], x)
    logits, cache = mlp_forward(params, x)
    logits_bad = logits.copy()
    logits_bad[0, 0] = bad
    with pytest.raises(ValueError, match="logits contains"):
        softmax_cross_entropy(logits_bad, y_onehot)
    with pytest.raises(ValueError, match="logits contains"):
        softmax(logits_bad)
    y_bad = y_onehot.copy()
    y_bad[0, 0] = bad
    with pytest.raises(ValueError, match="y_onehot contains"):
        mlp_backward(params, cache, y_bad)


def test_targets_must_be_probability_rows():
    params, x, y_onehot = random_problem([5, 7, 3], 4, 0)
    logits, cache = mlp_forward(params, x)
    labels_as_numbers = np.tile(np.array([[0.0, 2.0, 0.0]]), (4, 1))  # a class id, not one-hot
    with pytest.raises(ValueError, match="probability vector"):
        softmax_cross_entropy(logits, labels_as_numbers)
    with pytest.raises(ValueError, match="probability vector"):
        mlp_backward(params, cache, -y_onehot)
    with pytest.raises(ValueError, match="empty"):
        softmax_cross_entropy(np.zeros((0, 3)), np.zeros((0, 3)))


def test_probability_edges_give_finite_loss_and_gradients():
    # Targets at the edges of [0, 1] (one-hot), uniform targets, a batch of one and the smallest
    # network [1, 1]: loss and every gradient are finite.
    for layer_sizes, batch_size in [([1, 1], 1), ([3, 2], 1), ([4, 3, 5], 2)]:
        params, x, _ = random_problem(layer_sizes, batch_size, 3)
        n_classes = layer_sizes[-1]
        for y in (backprop.one_hot(np.zeros(batch_size, dtype=int), n_classes),
                  np.full((batch_size, n_classes), 1.0 / n_classes)):
            loss, grads = loss_and_grads(params, x, y)
            assert math.isfinite(loss)
            assert all(np.isfinite(g).all() for pair in grads for g in pair)
    # saturated logits (probabilities 0 and 1 to float64 precision) stay finite as well
    params = [(np.array([[1e3], [-1e3]]), np.zeros(2))]
    loss, grads = loss_and_grads(params, np.ones((1, 1)), backprop.one_hot(np.array([1]), 2))
    assert loss == pytest.approx(2e3) and all(np.isfinite(g).all() for pair in grads for g in pair)


def test_cache_from_other_params_is_refused():
    params, x, y_onehot = random_problem([5, 7, 3], 4, 0)
    other, _, _ = random_problem([5, 6, 3], 4, 1)
    _, cache = mlp_forward(other, x)
    with pytest.raises(ValueError, match="the input of layer 1 has shape"):
        mlp_backward(params, cache, y_onehot)


@pytest.mark.parametrize("eps", [np.inf, np.nan, -1e-5, 0, "1e-5", True])
def test_numerical_gradient_rejects_bad_steps(eps):
    params, x, y_onehot = random_problem([3, 2], 2, 0)
    with pytest.raises(ValueError, match="eps must be"):
        numerical_gradient(numpy_loss_fn(x, y_onehot), params, eps=eps)


def test_numerical_gradient_refuses_a_function_that_returns_nan():
    params, _, _ = random_problem([3, 2], 2, 0)
    with pytest.raises(ValueError, match="non-finite"):
        numerical_gradient(lambda p: float("nan"), params)


def test_relative_error_refuses_nan_and_empty_lists():
    with pytest.raises(ValueError, match="NaN or infinite"):
        relative_error(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="empty"):
        max_relative_error([], [])


# ---------------------------------------------------------------------------------------------
# What a gradient costs: the matmul FLOP formula against XLA's own count
# ---------------------------------------------------------------------------------------------
def _xla_flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


@pytest.mark.parametrize(("layer_sizes", "batch_size"), [([64, 32, 10], 32), ([64, 256, 256, 256, 10], 16)])
def test_mlp_flops_matches_xla_cost_analysis(layer_sizes, batch_size):
    params, x, y_onehot = random_problem(layer_sizes, batch_size, 0)
    flops = backprop.mlp_flops(layer_sizes, batch_size)
    forward = _xla_flops(jax_loss, params, x, y_onehot)
    both = _xla_flops(jax.value_and_grad(jax_loss), params, x, y_onehot)
    # XLA also counts the elementwise work (bias, tanh, softmax): a few percent on top.
    assert flops.forward <= forward < 1.05 * flops.forward
    assert flops.forward + flops.backward <= both < 1.05 * (flops.forward + flops.backward)
    with_input = backprop.mlp_flops(layer_sizes, batch_size, input_gradient=True)
    both_and_x = _xla_flops(jax.value_and_grad(jax_loss, argnums=(0, 1)), params, x, y_onehot)
    assert with_input.forward + with_input.backward <= both_and_x < 1.05 * (with_input.forward + with_input.backward)
    assert with_input.ratio == 3.0


def test_mlp_flops_formula_and_the_six_n_d_rule():
    flops = backprop.mlp_flops([64, 32, 10], 32)
    n_weights = 64 * 32 + 32 * 10
    assert flops.forward == 2 * 32 * n_weights                 # 2 N per example
    assert flops.backward == 4 * 32 * n_weights - 2 * 32 * 64 * 32  # 4 N minus layer 1's input grad
    assert flops.ratio == pytest.approx(3 - 64 * 32 / n_weights)
    deep = backprop.mlp_flops([64] + [512] * 4 + [10], 8)
    assert 2.5 < deep.ratio < 3.0
    for bad in ([64], [64, 0], [64, 2.5]):
        with pytest.raises(ValueError):
            backprop.mlp_flops(bad, 8)
    with pytest.raises(ValueError, match="batch_size"):
        backprop.mlp_flops([4, 2], 0)


# ---------------------------------------------------------------------------------------------
# lmcourse.data.load_digits_split (the data of chapters 01 and 02)
# ---------------------------------------------------------------------------------------------
def test_load_digits_split_edges_and_bad_input():
    from lmcourse.data import load_digits_split

    x_train, x_test, y_train, y_test = load_digits_split(0.25, seed=0)
    assert x_train.shape == (1347, 64) and x_test.shape == (450, 64)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0 and y_train.dtype == np.int32
    assert np.array_equal(np.bincount(y_test), np.bincount(load_digits_split(0.25, seed=1)[3]))
    # the extreme fractions that still leave one image per class on each side are accepted
    assert load_digits_split(10 / 1797)[1].shape == (10, 64)
    assert load_digits_split(1787 / 1797)[0].shape == (10, 64)
    for bad in (0.0, 1.0, float("nan"), -0.1, 9 / 1797, 0.9999, True, "0.25"):
        with pytest.raises(ValueError, match="test_fraction"):
            load_digits_split(bad)
    for bad_seed in (-1, 1.5, None):
        with pytest.raises(ValueError, match="seed"):
            load_digits_split(0.25, seed=bad_seed)


# ---------------------------------------------------------------------------------------------
# initialisation scales and per-layer statistics through depth (chapter 02, section 8)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "initializer", "shape"), [
    ("glorot", jax.nn.initializers.glorot_normal(), (300, 500)),
    ("he", jax.nn.initializers.he_normal(), (400, 300)),
    ("lecun", jax.nn.initializers.lecun_normal(), (250, 400)),
])
def test_init_scale_is_the_variance_of_jax_initializers(kind, initializer, shape):
    # JAX kernels are (fan_in, fan_out); draw 120,000-200,000 weights and compare variances.
    draws = np.asarray(initializer(jax.random.key(0), shape, jnp.float64))
    expected = backprop.init_scale(kind, fan_in=shape[0], fan_out=shape[1]) ** 2
    assert draws.var() == pytest.approx(expected, rel=0.02)
    assert abs(draws.mean()) < 0.01 * math.sqrt(expected)


def test_init_scale_formulas_and_bad_input():
    assert backprop.init_scale("he", 50) == pytest.approx(math.sqrt(2 / 50))
    assert backprop.init_scale("lecun", 50, 7) == pytest.approx(math.sqrt(1 / 50))
    assert backprop.init_scale("glorot", 30, 70) == pytest.approx(math.sqrt(2 / 100))
    for kind, fan_in, fan_out in [("xavier", 10, 10), ("HE", 10, 10), ("he", 0, 10),
                                  ("he", 2.5, 10), ("glorot", 10, None), ("glorot", 10, -1)]:
        with pytest.raises(ValueError):
            backprop.init_scale(kind, fan_in, fan_out)


def test_init_deep_mlp_shapes_scales_and_errors():
    params = backprop.init_deep_mlp([64, 512, 512, 10], np.random.default_rng(0), "he")
    assert [w.shape for w, _ in params] == [(512, 64), (512, 512), (10, 512)]
    assert params[1][0].std() == pytest.approx(math.sqrt(2 / 512), rel=0.01)
    assert all(np.all(b == 0) for _, b in params)
    fixed = backprop.init_deep_mlp([64, 512, 10], np.random.default_rng(0), 0.01)
    assert fixed[0][0].std() == pytest.approx(0.01, rel=0.02)
    for std in ("kaiming", 0.0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            backprop.init_deep_mlp([4, 4], np.random.default_rng(0), std)


def _jax_deep_loss(params, x, y_onehot, activation):
    fn = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid,
          "linear": lambda z: z}[activation]
    a = x
    for w, b in params[:-1]:
        a = fn(a @ w.T + b)
    logits = a @ params[-1][0].T + params[-1][1]
    return -jnp.mean(jnp.sum(y_onehot * jax.nn.log_softmax(logits), axis=-1))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "linear"])
def test_depth_statistics_gradients_match_jax_grad(activation):
    rng = np.random.default_rng(1)
    params = [(w, rng.normal(0, 0.1, b.shape))
              for w, b in backprop.init_deep_mlp([6, 9, 9, 9, 4], rng, "he")]
    x = rng.normal(size=(7, 6))
    y = backprop.one_hot(rng.integers(0, 4, 7), 4)
    stats = backprop.depth_statistics(params, x, y, activation)
    grads = jax.grad(_jax_deep_loss)(params, x, y, activation)
    np.testing.assert_allclose(stats.gradient_norm, [float(jnp.linalg.norm(g[0])) for g in grads],
                               rtol=1e-10)
    assert stats.loss == pytest.approx(float(_jax_deep_loss(params, x, y, activation)), rel=1e-12)
    assert stats.activation_variance.shape == (3,) and stats.gradient_norm.shape == (4,)
    if activation == "tanh":   # the same network as mlp_forward / mlp_backward
        _, tanh_grads = loss_and_grads(params, x, y)
        np.testing.assert_allclose(stats.gradient_norm, [np.linalg.norm(g) for g, _ in tanh_grads],
                                   rtol=1e-12)


def test_he_keeps_the_relu_variance_and_glorot_does_not():
    # 20 ReLU layers of width 256, averaged over 4 networks: He within a factor of 2, Glorot
    # halves the variance per layer (2**-19 after 20 layers), 0.01 shrinks it by ~78 per layer.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 32))
    y = backprop.one_hot(rng.integers(0, 10, 64), 10)
    sizes = [32] + [256] * 20 + [10]

    def variance(init):
        return np.mean([backprop.depth_statistics(
            backprop.init_deep_mlp(sizes, np.random.default_rng(s), init), x, y, "relu"
        ).activation_variance for s in range(4)], axis=0)

    he, glorot, small = variance("he"), variance("glorot"), variance(0.01)
    assert he.max() / he.min() < 2.0
    assert glorot[-1] / glorot[0] < 1e-3 and small[-1] / small[0] < 1e-20


def test_depth_statistics_bad_input():
    params = backprop.init_deep_mlp([3, 5, 2], np.random.default_rng(0), "he")
    x, y = np.ones((4, 3)), backprop.one_hot(np.array([0, 1, 0, 1]), 2)
    with pytest.raises(ValueError, match="activation"):
        backprop.depth_statistics(params, x, y, "gelu")
    with pytest.raises(ValueError):
        backprop.depth_statistics(params, np.ones((4, 2)), y, "relu")
    huge = backprop.init_deep_mlp([3] + [64] * 200 + [2], np.random.default_rng(0), 100.0)
    with pytest.raises(ValueError, match="overflow"):
        backprop.depth_statistics(huge, x, y, "linear")
