"""DP-SGD, its accountant and the membership-inference attack (``lmcourse.privacy``, chapter 12).

References checked: ``optax.contrib.differentially_private_aggregate`` (optax 0.2.8) for the
clipped-and-noised update, Google's ``dp_accounting`` 0.6.0 ``RdpAccountant`` for ε.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmcourse import privacy as P

dp_accounting = pytest.importorskip("dp_accounting")


@pytest.fixture(scope="module")
def batch():
    """A small MLP and a batch with varied per-example gradient norms."""
    key = jax.random.key(0)
    params = P.init_mlp(key, (20, 16, 10))
    x = jax.random.normal(jax.random.key(1), (12, 20)) * jnp.linspace(0.1, 5.0, 12)[:, None]
    y = jnp.arange(12) % 10
    return params, x, y


def test_per_example_grads_match_one_at_a_time(batch):
    params, x, y = batch
    g = P.per_example_grads(P.example_loss, params, x, y)
    for i in (0, 7):
        gi = jax.jit(jax.grad(P.example_loss))(params, x[i], y[i])
        for k in params:
            np.testing.assert_allclose(g[k][i], gi[k], rtol=1e-5, atol=1e-6)


def test_clipping_bounds_each_norm_and_keeps_small_ones(batch):
    params, x, y = batch
    g = P.per_example_grads(P.example_loss, params, x, y)
    before = np.asarray(jax.vmap(optax.tree.norm)(g))
    clip = float(np.median(before))             # half the examples get clipped
    clipped, norms = P.clip_per_example(g, clip)
    after = np.asarray(jax.vmap(optax.tree.norm)(clipped))
    np.testing.assert_allclose(norms, before, rtol=1e-6)
    assert np.all(after <= clip * (1 + 1e-5))
    small = before < clip
    assert small.any() and (~small).any()
    np.testing.assert_allclose(after[small], before[small], rtol=1e-5)       # untouched
    np.testing.assert_allclose(after[~small], clip, rtol=1e-5)               # on the sphere
    # direction kept: each example's gradient is only rescaled, by after / before
    scale = after / before
    for k in params:
        want = g[k] * scale.reshape((-1,) + (1,) * (g[k].ndim - 1))
        np.testing.assert_allclose(clipped[k], want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sigma", [0.0, 1.3])
def test_dp_step_equals_optax_aggregate(batch, sigma):
    params, x, y = batch
    g = P.per_example_grads(P.example_loss, params, x, y)
    key = jax.random.key(42)
    ours = jax.jit(P.dp_aggregate, static_argnums=(1, 2))(g, 0.5, sigma, key)
    tx = optax.contrib.differentially_private_aggregate(0.5, sigma, key=key)
    ref, _ = jax.jit(tx.update)(g, tx.init(params))
    for k in params:
        np.testing.assert_allclose(ours[k], ref[k], atol=1e-6, rtol=1e-5)
    # and the noise matters: another key gives another update
    other = P.dp_aggregate(g, 0.5, sigma, jax.random.key(43))
    diff = max(float(jnp.max(jnp.abs(other[k] - ours[k]))) for k in params)
    assert (diff > 1e-3) == (sigma > 0)


def test_train_step_private_vs_plain(batch):
    params, x, y = batch
    tx = optax.sgd(0.1)
    plain = P.make_train_step(tx, private=False)
    noiseless = P.make_train_step(tx, private=True, clip_norm=1e6, noise_multiplier=0.0)
    p1, _ = plain(params, tx.init(params), x, y, jax.random.key(0))
    p2, _ = noiseless(params, tx.init(params), x, y, jax.random.key(0))
    for k in params:        # no clipping, no noise: DP-SGD is plain SGD on the mean loss
        np.testing.assert_allclose(p1[k], p2[k], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("q,sigma,steps", [(256 / 50_000, 1.1, 2_000), (0.01, 4.0, 10_000),
                                           (0.05, 2.0, 300), (1.0, 5.0, 10)])
def test_accountant_matches_dp_accounting(q, sigma, steps):
    ours = P.epsilon_scratch(q, sigma, steps, 1e-5)
    # same integer orders: the same formula, so equal to rounding
    same = P.epsilon_dp_accounting(q, sigma, steps, 1e-5, orders=P.INTEGER_ORDERS)
    assert ours == pytest.approx(same, rel=1e-9)
    # library defaults (fractional orders from 1.1, no 80 or 96): the grids differ, so close only
    lib = P.epsilon_dp_accounting(q, sigma, steps, 1e-5)
    assert ours == pytest.approx(lib, rel=0.05)
    # the classic conversion (Mironov 2017) is looser, never tighter
    assert P.epsilon_scratch(q, sigma, steps, 1e-5, "classic") > ours


def test_unsampled_gaussian_rdp_formula():
    orders = [2, 3, 10]
    np.testing.assert_allclose(P.rdp_sampled_gaussian(1.0, 2.0, orders),
                               [a / (2 * 4.0) for a in orders])
    # subsampling amplifies privacy, and more noise means less RDP
    assert np.all(P.rdp_sampled_gaussian(0.01, 2.0, orders) < P.rdp_sampled_gaussian(1, 2.0, orders))
    assert np.all(P.rdp_sampled_gaussian(0.01, 3.0, orders) < P.rdp_sampled_gaussian(0.01, 2.0,
                                                                                      orders))
    assert math.isinf(P.epsilon_scratch(0.01, 0.0, 10, 1e-5))


def test_noise_for_epsilon_hits_target():
    q, steps = 0.01, 1_000
    sigma = P.noise_for_epsilon(2.0, q, steps, 1e-5)
    assert P.epsilon_dp_accounting(q, sigma, steps, 1e-5) <= 2.0
    assert P.epsilon_dp_accounting(q, sigma * 0.98, steps, 1e-5) > 2.0


def test_loss_threshold_attack_auc():
    rng = np.random.default_rng(0)
    members, others = rng.exponential(0.1, 500), rng.exponential(1.0, 500)
    assert P.loss_threshold_attack_auc(members, others) > 0.8
    same = P.loss_threshold_attack_auc(rng.exponential(1, 2000), rng.exponential(1, 2000))
    assert abs(same - 0.5) < 0.05
    with pytest.raises(ValueError, match="finite"):
        P.loss_threshold_attack_auc([0.1, np.nan], [1.0])


@pytest.mark.parametrize("call,match", [
    (lambda: P.noise_for_epsilon(0.0, 0.01, 100, 1e-5), "epsilon"),
    (lambda: P.noise_for_epsilon(-1.0, 0.01, 100, 1e-5), "epsilon"),
    (lambda: P.epsilon_scratch(0.01, 1.0, 100, 0.0), "delta"),
    (lambda: P.epsilon_scratch(0.01, 1.0, 100, 1.0), "delta"),
    (lambda: P.epsilon_dp_accounting(0.01, 1.0, 100, -1e-5), "delta"),
    (lambda: P.make_train_step(optax.sgd(0.1), private=True, clip_norm=0.0), "clip_norm"),
    (lambda: P.clip_per_example({"w": jnp.ones((2, 3))}, -1.0), "clip_norm"),
    (lambda: P.make_train_step(optax.sgd(0.1), private=True, noise_multiplier=-0.1),
     "noise_multiplier"),
    (lambda: P.epsilon_scratch(0.0, 1.0, 100, 1e-5), "sampling_rate"),
    (lambda: P.epsilon_dp_accounting(1.5, 1.0, 100, 1e-5), "sampling_rate"),
    (lambda: P.rdp_to_epsilon([2, 3], [0.1, 0.2], 1e-5, "other"), "conversion"),
    (lambda: P.epsilon_scratch(0.01, 1.0, 0, 1e-5), "steps"),
])
def test_bad_input_gets_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
