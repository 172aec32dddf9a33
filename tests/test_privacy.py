"""DP-SGD, its accountant and the membership-inference attack (``lmcourse.privacy``, chapter 12).

References checked: ``optax.contrib.differentially_private_aggregate`` (optax 0.2.8) for the
clipped-and-noised update, Google's ``dp_accounting`` 0.6.0 ``RdpAccountant`` for ε, the
Binomial law (``scipy.stats.binom``) for Poisson-sampled lots. The model is
``lmcourse.models.mlp.MLP`` split with ``nnx.split(model, nnx.Param)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy.stats import binom

from lmcourse import privacy as P
from lmcourse.models.mlp import MLP

dp_accounting = pytest.importorskip("dp_accounting")


GRAPHDEF, PARAMS = nnx.split(MLP(nnx.Rngs(0), in_features=20, hidden=16, num_classes=10),
                             nnx.Param)
LOSS = P.make_example_loss(GRAPHDEF)


def assert_trees_close(a, b, **tol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, **tol)


@pytest.fixture(scope="module")
def batch():
    """A small MLP's parameters and a batch with varied per-example gradient norms."""
    x = jax.random.normal(jax.random.key(1), (12, 20)) * jnp.linspace(0.1, 5.0, 12)[:, None]
    y = jnp.arange(12) % 10
    return PARAMS, x, y


def test_example_loss_is_the_models_cross_entropy(batch):
    params, x, y = batch
    logits = MLP(nnx.Rngs(0), in_features=20, hidden=16, num_classes=10)(x)
    want = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    np.testing.assert_allclose(LOSS(params, x, y), want, rtol=1e-6)
    np.testing.assert_allclose(LOSS(params, x[3], y[3]), want[3], rtol=1e-6)   # one example
    with pytest.raises(ValueError, match="graphdef"):
        P.make_example_loss(MLP(nnx.Rngs(0)))


def test_per_example_grads_match_one_at_a_time(batch):
    params, x, y = batch
    g = P.per_example_grads(LOSS, params, x, y)
    for i in (0, 7):
        gi = jax.jit(jax.grad(LOSS))(params, x[i], y[i])
        assert_trees_close(jax.tree.map(lambda a, i=i: a[i], g), gi, rtol=1e-5, atol=1e-6)


def test_clipping_bounds_each_norm_and_keeps_small_ones(batch):
    params, x, y = batch
    g = P.per_example_grads(LOSS, params, x, y)
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
    want = jax.tree.map(lambda a: a * scale.reshape((-1,) + (1,) * (a.ndim - 1)), g)
    assert_trees_close(clipped, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("sigma", [0.0, 1.3])
def test_dp_step_equals_optax_aggregate(batch, sigma):
    params, x, y = batch
    g = P.per_example_grads(LOSS, params, x, y)
    key = jax.random.key(42)
    ours = jax.jit(P.dp_aggregate, static_argnums=(1, 2))(g, 0.5, sigma, key)
    tx = optax.contrib.differentially_private_aggregate(0.5, sigma, key=key)
    ref, _ = jax.jit(tx.update)(g, tx.init(params))
    assert_trees_close(ours, ref, atol=1e-6, rtol=1e-5)
    # and the noise matters: another key gives another update
    other = P.dp_aggregate(g, 0.5, sigma, jax.random.key(43))
    diff = max(float(jnp.max(jnp.abs(a - b)))
               for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(ours), strict=True))
    assert (diff > 1e-3) == (sigma > 0)


def test_train_step_private_vs_plain(batch):
    params, x, y = batch
    tx = optax.sgd(0.1)
    plain = P.make_train_step(GRAPHDEF, tx, private=False)
    noiseless = P.make_train_step(GRAPHDEF, tx, private=True, clip_norm=1e6, noise_multiplier=0.0)
    p1, _ = plain(params, tx.init(params), x, y, jax.random.key(0))
    p2, _ = noiseless(params, tx.init(params), x, y, jax.random.key(0))
    # no clipping, no noise: DP-SGD is plain SGD on the mean loss
    assert_trees_close(p1, p2, atol=1e-6, rtol=1e-5)
    moved = max(float(jnp.max(jnp.abs(a - b)))
                for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(params), strict=True))
    assert moved > 1e-4


@pytest.mark.parametrize("private", [True, False])
def test_masked_step_equals_step_on_the_real_rows(batch, private):
    params, x, y = batch
    tx, real, key = optax.sgd(0.1), 8, jax.random.key(5)
    kw = {"private": private, "clip_norm": 0.5, "noise_multiplier": 1.3}
    ref, _ = P.make_train_step(GRAPHDEF, tx, **kw)(params, tx.init(params), x[:real], y[:real], key)
    masked = P.make_train_step(GRAPHDEF, tx, lot_size=real, **kw)
    # all-ones mask, divisor = batch size: the unmasked step
    ones, _ = masked(params, tx.init(params), x[:real], y[:real], key, jnp.ones(real))
    assert_trees_close(ones, ref, atol=1e-6, rtol=1e-5)
    # padding rows (here: the batch's 4 other examples) with mask 0 change nothing
    x_pad, y_pad = x, y
    mask = jnp.array([1.0] * real + [0.0] * 4)
    padded, _ = masked(params, tx.init(params), x_pad, y_pad, key, mask)
    assert_trees_close(padded, ref, atol=1e-6, rtol=1e-5)
    # ...while with mask 1 they do
    unmasked, _ = masked(params, tx.init(params), x_pad, y_pad, key, jnp.ones(real + 4))
    gap = max(float(jnp.max(jnp.abs(a - b)))
              for a, b in zip(jax.tree.leaves(unmasked), jax.tree.leaves(ref), strict=True))
    assert gap > 1e-3


def test_lot_size_divides_the_noisy_sum(batch):
    params, x, y = batch
    g = P.per_example_grads(LOSS, params, x, y)
    key = jax.random.key(3)
    by_b = P.dp_aggregate(g, 0.5, 1.0, key)                        # L = B = 12
    by_l = P.dp_aggregate(g, 0.5, 1.0, key, jnp.ones(12), lot_size=30.0)
    assert_trees_close(jax.tree.map(lambda a: a * 12 / 30, by_b), by_l, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="mask"):
        P.dp_aggregate(g, 0.5, 1.0, key, jnp.ones(5))


def test_poisson_lots_include_each_example_with_probability_q():
    n, q, steps = 200, 0.1, 2_000
    max_batch = P.poisson_max_batch(n, q, steps, failure_prob=1e-6)
    counts, sizes = np.zeros(n, int), []
    for idx, mask in P.poisson_batches(n, q, steps, np.random.default_rng(0), max_batch):
        assert idx.shape == mask.shape == (max_batch,) and idx.dtype == np.int32
        members = idx[mask == 1]
        assert len(np.unique(members)) == len(members)            # no example twice in a lot
        assert np.all(mask[:len(members)] == 1) and np.all(idx[len(members):] == 0)
        np.add.at(counts, members, 1)
        sizes.append(len(members))
    # each count is Binomial(steps, q); a union bound over the n examples at level 1e-6
    a = 1e-6 / n
    lo, hi = binom.ppf(a / 2, steps, q), binom.isf(a / 2, steps, q)
    assert np.all((counts >= lo) & (counts <= hi)), (counts.min(), counts.max(), lo, hi)
    # the lot size varies (Binomial(n, q)), it is not a fixed-size shuffle
    assert np.std(sizes) == pytest.approx(math.sqrt(n * q * (1 - q)), rel=0.1)


def test_poisson_overflow_says_how_to_fix():
    lots = P.poisson_batches(1_000, 0.5, 10, np.random.default_rng(0), max_batch=100)
    with pytest.raises(ValueError, match="raise max_batch"):
        next(lots)
    m = P.poisson_max_batch(50_000, 0.01, 300)
    assert 500 < m < 500 + 7 * math.sqrt(500)


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
    (lambda: P.make_train_step(GRAPHDEF, optax.sgd(0.1), private=True, clip_norm=0.0),
     "clip_norm"),
    (lambda: P.clip_per_example({"w": jnp.ones((2, 3))}, -1.0), "clip_norm"),
    (lambda: P.make_train_step(GRAPHDEF, optax.sgd(0.1), private=True, noise_multiplier=-0.1),
     "noise_multiplier"),
    (lambda: P.make_train_step(GRAPHDEF, optax.sgd(0.1), private=True, lot_size=0), "lot_size"),
    (lambda: P.poisson_batches(100, 0.0, 10, np.random.default_rng(0), 10), "sampling_rate"),
    (lambda: P.poisson_batches(100, 1.5, 10, np.random.default_rng(0), 10), "sampling_rate"),
    (lambda: P.poisson_batches(100, 0.1, 10, np.random.default_rng(0), 0), "max_batch"),
    (lambda: P.poisson_batches(0, 0.1, 10, np.random.default_rng(0), 10), "n"),
    (lambda: P.poisson_batches(100, 0.1, 10, 0, 10), "rng"),
    (lambda: P.poisson_max_batch(100, 0.1, 10, failure_prob=0.0), "failure_prob"),
    (lambda: P.epsilon_scratch(0.0, 1.0, 100, 1e-5), "sampling_rate"),
    (lambda: P.epsilon_dp_accounting(1.5, 1.0, 100, 1e-5), "sampling_rate"),
    (lambda: P.rdp_to_epsilon([2, 3], [0.1, 0.2], 1e-5, "other"), "conversion"),
    (lambda: P.epsilon_scratch(0.01, 1.0, 0, 1e-5), "steps"),
])
def test_bad_input_gets_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
