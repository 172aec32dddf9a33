"""Multi-task heads, joint loss, training steps and few-shot helpers of chapter 06."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy import stats

from lmcourse.metrics import pearson_r
from lmcourse.multitask import (
    LENGTH_STEP,
    EncoderWithHeads,
    MultiTaskHeads,
    _cut,
    adamw_warmup,
    few_shot_indices,
    joint_loss,
    length_batches,
    predict_encoder,
    predict_heads,
    scores,
    scratch_encoder,
    train_encoder,
    train_heads,
)


def _targets(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"intensity": rng.uniform(-1, 1, n).astype(np.float32),
            "polarity": rng.integers(0, 3, n).astype(np.int32),
            "domain": rng.integers(0, 4, n).astype(np.int32)}


@pytest.mark.parametrize("hidden", [0, 16])
def test_heads_shapes(hidden):
    heads = MultiTaskHeads(8, hidden=hidden, rngs=nnx.Rngs(0))
    out = heads(jnp.ones((5, 8)))
    assert out["intensity"].shape == (5,)
    assert out["polarity"].shape == (5, 3)
    assert out["domain"].shape == (5, 4)


def test_joint_loss_matches_formula():
    rng = np.random.default_rng(1)
    out = {"intensity": jnp.asarray(rng.normal(size=6), jnp.float32),
           "polarity": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32),
           "domain": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)}
    t = _targets(6)
    total, parts = joint_loss(out, t, (0.5, 2.0, 0.25))

    def ce(z, y):
        z = np.asarray(z, np.float64)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return -logp[np.arange(len(y)), y].mean()

    mse = np.mean((np.asarray(out["intensity"]) - t["intensity"]) ** 2)
    expected = 0.5 * mse + 2.0 * ce(out["polarity"], t["polarity"]) + 0.25 * ce(out["domain"], t["domain"])
    assert float(total) == pytest.approx(expected, rel=1e-5)
    assert float(parts["intensity"]) == pytest.approx(mse, rel=1e-5)
    zero, _ = joint_loss(out, t, (0.0, 0.0, 0.0))
    assert float(zero) == 0.0


def test_single_task_weight_gives_no_gradient_to_other_heads():
    heads = MultiTaskHeads(8, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(10, 8)), jnp.float32)
    t = _targets(10)

    def loss(h):
        return joint_loss(h(x), t, (0.0, 1.0, 0.0))[0]

    grads = nnx.grad(loss)(heads)
    assert float(jnp.abs(grads.polarity.kernel[...]).sum()) > 0
    assert float(jnp.abs(grads.intensity.kernel[...]).sum()) == 0
    assert float(jnp.abs(grads.domain.kernel[...]).sum()) == 0


def test_gradient_matches_finite_differences():
    heads = MultiTaskHeads(4, hidden=3, rngs=nnx.Rngs(2))
    x = jnp.asarray(np.random.default_rng(3).normal(size=(7, 4)), jnp.float32)
    t = _targets(7, seed=4)
    w = (1.0, 1.0, 0.5)

    def loss(h):
        return joint_loss(h(x), t, w)[0]

    grads = nnx.grad(loss)(heads)
    kernel = heads.hidden.kernel
    eps = 1e-2
    for idx in [(0, 0), (2, 1), (3, 2)]:
        base = kernel[...]
        kernel[...] = base.at[idx].add(eps)
        up = float(loss(heads))
        kernel[...] = base.at[idx].add(-eps)
        down = float(loss(heads))
        kernel[...] = base
        assert (up - down) / (2 * eps) == pytest.approx(float(grads.hidden.kernel[...][idx]), rel=2e-2, abs=1e-4)


def test_train_heads_learns_a_separable_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    s = np.tanh(x[:, 0] - x[:, 1]).astype(np.float32)
    t = {"intensity": s, "polarity": np.digitize(s, [-0.3, 0.3]).astype(np.int32),
         "domain": (x[:, 2] > 0).astype(np.int32)}
    heads, losses = train_heads(x, t, steps=300, batch_size=64, learning_rate=1e-2, hidden=16)
    assert losses[-1] < 0.3 * losses[0]
    out = predict_heads(heads, x)
    assert np.mean(out["polarity"].argmax(1) == t["polarity"]) > 0.85
    assert np.mean(out["domain"].argmax(1) == t["domain"]) > 0.9
    assert pearson_r(out["intensity"], s) > 0.9


def test_adamw_warmup_schedule_starts_at_zero():
    tx = adamw_warmup(1e-3, total_steps=100, warmup_fraction=0.1)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    updates, state = tx.update({"w": jnp.ones(3)}, state, params)
    assert float(jnp.abs(updates["w"]).max()) == 0.0        # learning rate 0 at step 0
    updates, state = tx.update({"w": jnp.ones(3)}, state, params)
    assert float(jnp.abs(updates["w"]).max()) > 0.0
    assert isinstance(tx, optax.GradientTransformation)


def test_length_batches_and_cut():
    mask = np.zeros((100, 96), np.int32)
    lengths = np.random.default_rng(0).integers(1, 96, 100)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    batches = length_batches(mask, 16, np.random.default_rng(1))
    assert len(batches) == 100 // 16
    flat = np.concatenate(batches)
    assert len(np.unique(flat)) == len(flat)               # no row twice
    ids, m = _cut(mask[batches[0]] * 7, mask[batches[0]])
    assert m.shape[1] % LENGTH_STEP == 0 or m.shape[1] == 96
    assert m.sum() == mask[batches[0]].sum()                # no real token cut off


def test_encoder_training_step_reduces_the_loss_and_predict_keeps_order():
    enc = scratch_encoder(1, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                          vocab_size=50, seed=0)
    model = EncoderWithHeads(enc, MultiTaskHeads(32, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    n = 64
    ids = np.zeros((n, 40), np.int32)
    mask = np.zeros((n, 40), np.int32)
    for i in range(n):
        k = rng.integers(3, 40)
        ids[i, :k] = rng.integers(1, 50, k)
        mask[i, :k] = 1
    t = {"intensity": (ids[:, 0] / 50.0).astype(np.float32), "polarity": (ids[:, 0] % 3).astype(np.int32),
         "domain": (ids[:, 0] % 4).astype(np.int32)}
    losses = train_encoder(model, ids, mask, t, steps=60, batch_size=16, learning_rate=3e-3)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    out = predict_encoder(model, ids, mask, batch_size=16)
    direct = jax.device_get(model(jnp.asarray(ids[:5]), jnp.asarray(mask[:5])))
    np.testing.assert_allclose(out["polarity"][:5], direct["polarity"], atol=1e-4)
    assert out["intensity"].shape == (n,)


def test_scratch_encoder_has_minilm_shape():
    enc = scratch_encoder(6)
    c = enc.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (384, 6, 12, 1536)


def test_scores_and_pearson_against_scipy():
    rng = np.random.default_rng(0)
    rating = rng.uniform(-4, 4, 200)
    pred = rating + rng.normal(size=200)
    y = np.digitize(rating / 4, [-0.05, 0.05 - 1e-12])
    s = scores(rating, y, pred, y)
    assert s["r"] == pytest.approx(stats.pearsonr(pred, rating).statistic, abs=1e-12)
    assert s["r"] == pytest.approx(np.corrcoef(pred, rating)[0, 1], abs=1e-12)
    assert s["F1"] == 1.0 and s["macro_F1"] == 1.0
    s0 = scores(rating, y, None, np.zeros_like(y))
    assert np.isnan(s0["r"]) and s0["F1"] < 1.0


def test_few_shot_indices():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 20)
    rng = np.random.default_rng(0)
    idx = few_shot_indices(labels, 4, rng)
    assert np.bincount(labels[idx]).tolist() == [4, 3, 4]   # a class with fewer gives all it has
    assert len(np.unique(idx)) == len(idx)
    assert len(few_shot_indices(labels, None, rng)) == len(labels)
    a = few_shot_indices(labels, 2, np.random.default_rng(5))
    b = few_shot_indices(labels, 2, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
