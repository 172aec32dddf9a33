"""The JAX behaviour that chapter 00's primer (section 2) teaches and chapters 01-02 rely on.

The notebook asserts each point too; these tests fail fast, without running a notebook, when a
JAX or Flax upgrade changes one of them (for example the clamping of out-of-range indices, or the
format of ``cost_analysis()``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx


def test_arrays_are_immutable_and_at_set_returns_a_copy():
    x = jnp.arange(5.0)
    with pytest.raises(TypeError):
        x[0] = 10.0
    y = x.at[0].set(10.0)
    assert float(x[0]) == 0.0 and float(y[0]) == 10.0
    assert jnp.array_equal(x.at[1:3].add(100.0), jnp.array([0.0, 101.0, 102.0, 3.0, 4.0]))
    assert x.dtype == jnp.float32  # the default float type, unlike NumPy's float64


def test_out_of_range_indices_are_clamped_or_dropped_silently():
    # Why the course validates ids before JAX sees them.
    x = jnp.arange(5.0)
    assert float(x[10]) == float(x[4])
    assert jnp.array_equal(x.at[10].set(99.0), x)


def test_a_global_is_read_once_at_trace_time():
    state = {"scale": 2.0}

    @jax.jit
    def scaled(v):
        return state["scale"] * v

    assert float(scaled(jnp.ones(2))[0]) == 2.0
    state["scale"] = 3.0
    assert float(scaled(jnp.ones(2))[0]) == 2.0


def test_grad_matches_the_hand_derivatives():
    df = jax.grad(lambda x: x**3 + 2 * x)
    for x0 in (-1.5, 0.0, 2.0):
        assert float(df(x0)) == pytest.approx(3 * x0**2 + 2, abs=1e-5)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    X, y, w = jax.random.normal(k1, (6, 3)), jax.random.normal(k2, (6,)), jax.random.normal(k3, (3,))
    grad = jax.grad(lambda w: jnp.sum((X @ w - y) ** 2))(w)
    np.testing.assert_allclose(grad, 2 * X.T @ (X @ w - y), rtol=1e-5, atol=1e-5)


def test_jit_traces_once_per_shape_and_once_per_static_value():
    traces = []

    @jax.jit
    def standardise(v):
        traces.append(v.shape)
        return (v - v.mean()) / v.std()

    for v in (jnp.arange(4.0), jnp.arange(4.0) + 7, jnp.arange(8.0), jnp.arange(4.0) * 2):
        standardise(v)
    assert traces == [(4,), (8,)]

    power_traces = []

    @partial(jax.jit, static_argnames="n")
    def power(v, n):
        power_traces.append(n)
        return v**n

    for v, n in ((2.0, 3), (3.0, 3), (2.0, 5)):
        power(jnp.array(v), n=n)
    assert power_traces == [3, 5]


def test_branching_on_a_traced_value_raises_tracer_bool_conversion_error():
    @jax.jit
    def branch(v):
        return v if v.sum() > 0 else -v

    with pytest.raises(jax.errors.TracerBoolConversionError):
        branch(jnp.ones(3))
    assert issubclass(jax.errors.TracerBoolConversionError, TypeError)


def test_results_can_be_waited_for():
    out = jax.jit(lambda m: m @ m)(jnp.ones((64, 64)))
    assert out.block_until_ready() is out
    assert float(out[0, 0]) == 64.0


def test_vmap_equals_a_loop_and_composes_with_grad():
    def example_loss(w, x, y):
        return (x @ w - y) ** 2

    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    X, y, w = jax.random.normal(k1, (7, 3)), jax.random.normal(k2, (7,)), jax.random.normal(k3, (3,))
    batched = jax.vmap(example_loss, in_axes=(None, 0, 0))(w, X, y)
    loop = jnp.stack([example_loss(w, X[i], y[i]) for i in range(7)])
    assert batched.shape == (7,)
    np.testing.assert_allclose(batched, loop, rtol=1e-6)
    per_example = jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0))(w, X, y)
    total = jax.grad(lambda w: jnp.sum(jax.vmap(example_loss, in_axes=(None, 0, 0))(w, X, y)))(w)
    np.testing.assert_allclose(per_example.sum(axis=0), total, rtol=1e-5, atol=1e-5)


def test_random_keys_are_explicit_and_reproducible():
    key = jax.random.key(42)
    a, b = jax.random.split(key)
    assert jnp.array_equal(jax.random.normal(a, (3,)), jax.random.normal(a, (3,)))
    assert not jnp.allclose(jax.random.normal(a, (3,)), jax.random.normal(b, (3,)))
    a_again, _ = jax.random.split(jax.random.key(42))
    assert jnp.array_equal(jax.random.normal(a_again, (3,)), jax.random.normal(a, (3,)))


def test_debug_key_reuse_catches_a_reused_key_and_accepts_a_split():
    # chapter 00's Exercise 2 runs its check inside jax.debug_key_reuse(True)
    def split_then_draw(seed):
        k1, k2 = jax.random.split(jax.random.key(seed))
        return jax.random.normal(k1, (5,)), jax.random.normal(k2, (5,))

    def draw_then_split(seed):  # uses the parent key twice: once to draw, once to split
        key = jax.random.key(seed)
        first = jax.random.normal(key, (5,))
        _, k2 = jax.random.split(key)
        return first, jax.random.normal(k2, (5,))

    with jax.debug_key_reuse(True):
        first, second = split_then_draw(7)
        assert not jnp.allclose(first, second)
        with pytest.raises(jax.errors.KeyReuseError):
            draw_then_split(7)


@pytest.mark.parametrize(("m", "k", "n"), [(64, 32, 16), (3, 5, 7), (128, 64, 2)])
def test_xla_counts_two_m_k_n_flops_for_a_matmul(m, k, n):
    # Chapter 00's exercise 1 and chapter 02's FLOP table compare with this count.
    cost = jax.jit(lambda a, b: a @ b).lower(jnp.ones((m, k)), jnp.ones((k, n))).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert int(cost["flops"]) == 2 * m * k * n


def test_flax_linear_stores_the_kernel_as_n_in_by_n_out():
    # Chapter 01's convention: y = x W + b with W of shape (n_in, n_out), like nnx.Linear.
    layer = nnx.Linear(3, 5, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 3))
    assert layer.kernel[...].shape == (3, 5) and layer.bias[...].shape == (5,)
    np.testing.assert_allclose(layer(x), x @ layer.kernel[...] + layer.bias[...], rtol=1e-6)
