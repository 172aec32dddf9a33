"""Multi-task heads, joint loss, ensembles, comparisons, few-shot helpers and bad input (chapter 06)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy import stats

from lmcourse.metrics import pearson_r, precision_recall_f1
from lmcourse.multitask import (
    LENGTH_STEP,
    EncoderWithHeads,
    MultiTaskHeads,
    _cut,
    adamw_warmup,
    batch_indices,
    compare_over_seeds,
    embed_cached,
    f1_weighted,
    few_shot_indices,
    init_ensemble,
    joint_loss,
    length_batches,
    paired_bootstrap,
    predict_encoder,
    predict_ensemble,
    predict_heads,
    scores,
    scratch_encoder,
    stack_models,
    tokenize_all,
    train_encoder,
    train_ensemble,
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
    idx = few_shot_indices(labels, 3, rng)                 # k = the smallest class: the upper edge
    assert np.bincount(labels[idx]).tolist() == [3, 3, 3]
    assert len(np.unique(idx)) == len(idx)
    assert np.bincount(labels[few_shot_indices(labels, 1, rng)]).tolist() == [1, 1, 1]   # lower edge
    assert len(few_shot_indices(labels, None, rng)) == len(labels)
    a = few_shot_indices(labels, 2, np.random.default_rng(5))
    b = few_shot_indices(labels, 2, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("k", [-1, 0, 4, 1.5, True])
def test_few_shot_indices_rejects_bad_k(k):
    labels = np.array([0] * 10 + [1] * 3 + [2] * 20)
    with pytest.raises(ValueError, match="k"):
        few_shot_indices(labels, k, np.random.default_rng(0))


def test_few_shot_indices_names_the_short_class():
    with pytest.raises(ValueError, match="class 1 has only 3"):
        few_shot_indices(np.array([0] * 10 + [1] * 3), 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="non-empty"):
        few_shot_indices(np.array([], np.int32), 1, np.random.default_rng(0))


# --- joint training without a shared layer = independent training --------------------------

def _moved(heads, x, t, weights):
    grads = nnx.grad(lambda h: joint_loss(h(x), t, weights)[0])(heads)
    return {str(path[0].key) for path, g in jax.tree_util.tree_leaves_with_path(nnx.state(grads))
            if float(jnp.abs(g).sum()) > 0}


def test_without_a_shared_layer_tasks_touch_disjoint_parameters():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(12, 8)), jnp.float32)
    t = _targets(12)
    one = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    linear = MultiTaskHeads(8, rngs=nnx.Rngs(0))
    moved = [_moved(linear, x, t, w) for w in one]
    assert moved == [{"intensity"}, {"polarity"}, {"domain"}]
    # the joint gradient of one head equals its single-task gradient (times its weight)
    g_joint = nnx.grad(lambda h: joint_loss(h(x), t, (1.0, 2.0, 0.5))[0])(linear)
    g_alone = nnx.grad(lambda h: joint_loss(h(x), t, (0.0, 1.0, 0.0))[0])(linear)
    np.testing.assert_allclose(g_joint.polarity.kernel[...], 2.0 * g_alone.polarity.kernel[...],
                               rtol=1e-5, atol=1e-7)
    trunk = MultiTaskHeads(8, hidden=4, rngs=nnx.Rngs(0))
    assert all("hidden" in _moved(trunk, x, t, w) for w in one)   # the trunk is shared


# --- ensembles -------------------------------------------------------------------------------

def _separable(n=200, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    s = np.tanh(x[:, 0] - x[:, 1]).astype(np.float32)
    t = {"intensity": s, "polarity": np.digitize(s, [-0.3, 0.3]).astype(np.int32),
         "domain": (x[:, 2] > 0).astype(np.int32)}
    return x, t


def test_batch_indices_epochs_and_replacement():
    rng = np.random.default_rng(0)
    b = batch_indices(10, 6, 5, rng)
    assert b.shape == (6, 5) and b.dtype == np.int32
    for e in range(3):                                      # every row once per epoch
        assert sorted(b[2 * e:2 * e + 2].reshape(-1).tolist()) == list(range(10))
    small = batch_indices(3, 4, 8, rng)                     # n < batch: with replacement, full batches
    assert small.shape == (4, 8) and small.min() >= 0 and small.max() <= 2
    for bad in [(0, 4, 8), (3, 0, 8), (3, 4, 0)]:
        with pytest.raises(ValueError):
            batch_indices(*bad, rng)


def test_ensemble_members_train_independently():
    x, t = _separable()
    models = [MultiTaskHeads(6, hidden=8, rngs=nnx.Rngs(i)) for i in range(3)]
    batches = np.stack([batch_indices(len(x), 40, 32, np.random.default_rng(i)) for i in range(3)])
    weights = np.array([(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (1.0, 1.0, 0.5)])
    together, losses = train_ensemble(stack_models(models), (x,), t, batches, weights, learning_rate=1e-2)
    assert losses.shape == (3, 40) and np.all(np.isfinite(losses))
    for i in range(3):                                      # the same member trained alone
        alone, alone_losses = train_ensemble(stack_models([models[i]]), (x,), t, batches[i:i + 1],
                                             weights[i], learning_rate=1e-2)
        np.testing.assert_allclose(losses[i], alone_losses[0], rtol=1e-4, atol=1e-6)
        a = predict_heads(together.member(i), x)["polarity"]
        np.testing.assert_allclose(a, predict_ensemble(alone, x)["polarity"][0], rtol=1e-4, atol=1e-5)
    out = predict_ensemble(together, x)
    assert out["polarity"].shape == (3, len(x), 3) and out["domain"].shape == (3, len(x), 4)


def test_init_ensemble_equals_stacking_eager_models():
    def make(seed):
        return EncoderWithHeads(scratch_encoder(1, hidden_size=16, num_attention_heads=2,
                                                intermediate_size=32, vocab_size=30, seed=seed),
                                MultiTaskHeads(16, hidden=4, rngs=nnx.Rngs(seed)))

    fast = init_ensemble(make, [3, 7])
    slow = stack_models([make(3), make(7)])
    assert len(fast) == 2
    for a, b in zip(jax.tree.leaves(fast.params), jax.tree.leaves(slow.params), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="at least one seed"):
        init_ensemble(make, [])


def test_train_heads_is_an_ensemble_of_one():
    x, t = _separable()
    heads, losses = train_heads(x, t, steps=30, batch_size=32, learning_rate=1e-2, hidden=4, seed=3)
    ens = stack_models([MultiTaskHeads(6, hidden=4, rngs=nnx.Rngs(3))])
    batches = batch_indices(len(x), 30, 32, np.random.default_rng(3))[None]
    _, ens_losses = train_ensemble(ens, (x,), t, batches, (1.0, 1.0, 1.0), learning_rate=1e-2)
    np.testing.assert_allclose(losses, ens_losses[0], rtol=1e-5)


def test_ensemble_of_encoders_and_token_predictions_in_order():
    rng = np.random.default_rng(0)
    n, vocab = 40, 30
    ids = np.zeros((n, 12), np.int32)
    mask = np.zeros((n, 12), np.int32)
    for i in range(n):
        k = rng.integers(2, 12)
        ids[i, :k], mask[i, :k] = rng.integers(1, vocab, k), 1
    t = {"intensity": (ids[:, 0] / vocab).astype(np.float32), "polarity": (ids[:, 0] % 3).astype(np.int32),
         "domain": (ids[:, 0] % 4).astype(np.int32)}
    models = [EncoderWithHeads(scratch_encoder(1, hidden_size=16, num_attention_heads=2,
                                               intermediate_size=32, vocab_size=vocab, seed=i),
                               MultiTaskHeads(16, rngs=nnx.Rngs(i))) for i in range(2)]
    batches = np.stack([batch_indices(n, 30, 8, np.random.default_rng(i)) for i in range(2)])
    trained, losses = train_ensemble(stack_models(models), (ids, mask), t, batches, (1.0, 1.0, 1.0),
                                     learning_rate=3e-3, vocab_size=vocab)
    assert np.mean(losses[:, -5:]) < np.mean(losses[:, :5])
    out = predict_ensemble(trained, ids, mask, batch_size=16)
    direct = trained.member(1)(jnp.asarray(ids[:5]), jnp.asarray(mask[:5]))
    np.testing.assert_allclose(out["polarity"][1, :5], np.asarray(direct["polarity"]), atol=1e-4)
    bad = ids.copy()
    bad[3, 0] = vocab                                       # one id outside the vocabulary
    with pytest.raises(ValueError, match=r"outside \[0, 29\]"):
        train_ensemble(stack_models(models), (bad, mask), t, batches, (1.0, 1.0, 1.0),
                       learning_rate=3e-3, vocab_size=vocab)


def test_ensemble_bad_input():
    x, t = _separable(20)
    ens = stack_models([MultiTaskHeads(6, rngs=nnx.Rngs(i)) for i in range(2)])
    good = np.zeros((2, 3, 4), np.int32)
    with pytest.raises(ValueError, match="R=2"):
        train_ensemble(ens, (x,), t, good[:1], (1, 1, 1), learning_rate=1e-2)
    with pytest.raises(ValueError, match="outside"):
        train_ensemble(ens, (x,), t, good + 20, (1, 1, 1), learning_rate=1e-2)
    with pytest.raises(ValueError, match="all task weights are 0"):
        train_ensemble(ens, (x,), t, good, (0, 0, 0), learning_rate=1e-2)
    with pytest.raises(ValueError, match="weights"):
        train_ensemble(ens, (x,), t, good, np.ones((3, 3)), learning_rate=1e-2)
    with pytest.raises(ValueError, match="member index"):
        ens.member(2)
    with pytest.raises(ValueError):
        stack_models([])
    with pytest.raises(ValueError, match="differ"):
        stack_models([MultiTaskHeads(6, rngs=nnx.Rngs(0)), MultiTaskHeads(7, rngs=nnx.Rngs(0))])


# --- comparisons -----------------------------------------------------------------------------

def test_compare_over_seeds():
    assert compare_over_seeds([0.80, 0.81, 0.79], [0.70, 0.71, 0.69])["verdict"] == "A higher"
    assert compare_over_seeds([0.70, 0.71, 0.69], [0.80, 0.81, 0.79])["verdict"] == "B higher"
    r = compare_over_seeds([0.72, 0.80, 0.76], [0.70, 0.78, 0.74])
    assert r["verdict"] == "within noise"
    assert r["diff"] == pytest.approx(0.02) and r["pooled_sd"] == pytest.approx(0.04)
    assert compare_over_seeds([1.0, 1.0], [1.0, 1.0])["verdict"] == "within noise"
    with pytest.raises(ValueError, match="≥ 2"):
        compare_over_seeds([0.5], [0.4, 0.5])
    with pytest.raises(ValueError, match="finite"):
        compare_over_seeds([0.5, np.nan], [0.4, 0.5])
    with pytest.raises(ValueError, match="factor"):
        compare_over_seeds([0.5, 0.6], [0.4, 0.5], factor=np.nan)


def test_f1_weighted_matches_metrics():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    ref = precision_recall_f1(y, p, average="weighted", labels=[0, 1, 2]).f1
    assert f1_weighted(y, p) == pytest.approx(ref, abs=1e-12)
    assert f1_weighted(y, y) == 1.0
    with pytest.raises(ValueError, match=r"outside \[0, 2\]"):
        f1_weighted(y, np.full(300, 3))


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    same = paired_bootstrap(f1_weighted, y, y, y, n_boot=50)
    assert same["diff"] == 0.0 and same["sd"] == 0.0
    noisy = np.where(rng.random(400) < 0.5, y, (y + 1) % 3)
    b = paired_bootstrap(f1_weighted, y, y, noisy, n_boot=200)
    assert b["lo"] > 0 and b["hi"] <= 1.0 and b["sd"] > 0
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap(f1_weighted, y, y, y, n_boot=0)
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(f1_weighted, y, y, y[:-1])


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("weights", [(-1.0, 1.0, 1.0), (1.0, np.nan, 1.0), (1.0, 1.0, np.inf),
                                     (1.0, 1.0), (1.0, 1.0, 1.0, 1.0)])
def test_bad_task_weights_are_rejected(weights):
    x, t = _separable(20)
    heads = MultiTaskHeads(6, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="weights"):
        joint_loss(heads(jnp.asarray(x)), t, weights)
    with pytest.raises(ValueError, match="weights"):
        train_heads(x, t, weights=weights, steps=2)


def test_all_zero_weights_train_nothing():
    x, t = _separable(20)
    with pytest.raises(ValueError, match="all task weights are 0"):
        train_heads(x, t, weights=(0.0, 0.0, 0.0), steps=2)


@pytest.mark.parametrize("weights", [(0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (1.0, 1.0, 1.0)])
def test_weight_edges_give_finite_loss_and_gradients(weights):
    x, t = _separable(20)
    t["intensity"][:2] = [-1.0, 1.0]                        # the edges of the intensity range
    heads = MultiTaskHeads(6, hidden=4, rngs=nnx.Rngs(0))
    loss, grads = nnx.value_and_grad(lambda h: joint_loss(h(jnp.asarray(x)), t, weights)[0])(heads)
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(nnx.state(grads)))
    _, losses = train_heads(x, t, weights=weights, steps=3, batch_size=8)
    assert np.all(np.isfinite(losses))


@pytest.mark.parametrize("key,value,match", [
    ("polarity", 3, r"outside \[0, 2\]"), ("polarity", -1, r"outside \[0, 2\]"),
    ("domain", 4, r"outside \[0, 3\]"), ("intensity", 1.5, r"\[-1, 1\]"),
    ("intensity", np.nan, "NaN"),
])
def test_targets_out_of_range_are_rejected(key, value, match):
    x, t = _separable(20)
    t[key] = t[key].copy()
    t[key][5] = value
    with pytest.raises(ValueError, match=match):
        train_heads(x, t, steps=2)
    if key != "intensity":
        heads = MultiTaskHeads(6, rngs=nnx.Rngs(0))
        with pytest.raises(ValueError, match=match):
            joint_loss(heads(jnp.asarray(x)), t, (1.0, 1.0, 1.0))


def test_scores_rejects_labels_out_of_range():
    r = np.array([1.0, -1.0, 0.0])
    with pytest.raises(ValueError, match=r"outside \[0, 2\]"):
        scores(r, np.array([0, 1, 3]), None, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="one length"):
        scores(r, np.array([0, 1]), None, np.array([0, 1]))


def test_hyper_parameters_are_validated():
    x, t = _separable(20)
    for kwargs in [{"steps": 0}, {"batch_size": 0}, {"learning_rate": 0.0},
                   {"learning_rate": np.nan}, {"weight_decay": -0.1}, {"hidden": -1}]:
        with pytest.raises(ValueError):
            train_heads(x, t, **kwargs)
    with pytest.raises(ValueError, match="features"):
        train_heads(np.zeros((0, 6), np.float32), t)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_heads(bad, t)
    with pytest.raises(ValueError, match="d_in"):
        MultiTaskHeads(0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="multiple"):
        scratch_encoder(1, hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="num_hidden_layers"):
        scratch_encoder(0)


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_warmup_fraction_edges_give_finite_updates(fraction):
    tx = adamw_warmup(1e-3, total_steps=10, warmup_fraction=fraction)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update({"w": jnp.ones(3)}, state, params)
        assert np.all(np.isfinite(updates["w"]))


@pytest.mark.parametrize("kwargs", [{"warmup_fraction": -0.1}, {"warmup_fraction": 1.5},
                                    {"warmup_fraction": np.nan}, {"learning_rate": -1.0},
                                    {"total_steps": 0}, {"weight_decay": np.inf}])
def test_adamw_warmup_rejects_bad_values(kwargs):
    args = {"learning_rate": 1e-3, "total_steps": 10, **kwargs}
    with pytest.raises(ValueError):
        adamw_warmup(**args)


class _FakeEncoding:
    def __init__(self, ids):
        self.ids, self.attention_mask = ids, [1] * len(ids)


class _FakeTokenizer:
    """Splits on spaces: [CLS]=1, one id per word, [SEP]=2."""

    def encode_batch(self, texts):
        return [_FakeEncoding([1] + [10 + len(w) for w in t.split()] + [2]) for t in texts]


def test_tokenize_all_edges_and_bad_input():
    tok = _FakeTokenizer()
    ids, mask = tokenize_all(tok, ["a bb ccc", "dd"], max_length=2)     # the smallest valid length
    assert ids.tolist() == [[1, 2], [1, 2]] and mask.tolist() == [[1, 1], [1, 1]]
    ids, mask = tokenize_all(tok, ["a bb ccc"], max_length=4)
    assert ids.tolist() == [[1, 11, 12, 2]]                              # cut, final [SEP] kept
    for bad in (0, -3, 1, 2.0):
        with pytest.raises(ValueError, match="max_length"):
            tokenize_all(tok, ["a"], max_length=bad)
    with pytest.raises(ValueError, match="no texts"):
        tokenize_all(tok, [], max_length=8)
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        tokenize_all(tok, ["a", None], max_length=8)


def test_encoder_functions_reject_bad_tokens():
    enc = scratch_encoder(1, hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=20)
    model = EncoderWithHeads(enc, MultiTaskHeads(16, rngs=nnx.Rngs(0)))
    ids = np.ones((4, 8), np.int32)
    mask = np.ones((4, 8), np.int32)
    t = _targets(4)
    with pytest.raises(ValueError, match=r"outside \[0, 19\]"):
        predict_encoder(model, ids * 20, mask)
    with pytest.raises(ValueError, match=r"outside \[0, 19\]"):
        train_encoder(model, ids * 20, mask, t, steps=1)
    with pytest.raises(ValueError, match="mask"):
        predict_encoder(model, ids, mask * 2)
    with pytest.raises(ValueError, match="non-empty"):
        embed_cached(enc, ids[:0], mask[:0])
    with pytest.raises(ValueError, match="weights"):
        train_encoder(model, ids, mask, t, steps=1, weights=(1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="steps"):
        train_encoder(model, ids, mask, t, steps=0)


def test_embed_cached_reuses_its_file_and_keys_on_the_encoder_weights(tmp_path):
    enc = scratch_encoder(1, hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=20)
    ids = np.arange(24, dtype=np.int32).reshape(3, 8) % 20
    mask = np.ones((3, 8), np.int32)
    first = embed_cached(enc, ids, mask, cache_dir=tmp_path)
    (path,) = tmp_path.glob("emb-minilm-*.npz")
    np.testing.assert_array_equal(embed_cached(enc, ids, mask, cache_dir=tmp_path), first)
    np.testing.assert_allclose(embed_cached(enc, ids, mask), first, rtol=1e-6, atol=1e-6)
    assert first.shape == (3, 16) and first.dtype == np.float32
    assert len(list(tmp_path.glob("*.npz"))) == 1
    embed_cached(enc, ids[:2], mask[:2], cache_dir=tmp_path)             # other inputs: new file
    noise = np.random.default_rng(0).normal(size=enc.word_embeddings.embedding.shape)
    enc.word_embeddings.embedding[...] = enc.word_embeddings.embedding[...] + noise
    changed = embed_cached(enc, ids, mask, cache_dir=tmp_path)           # other weights: new file
    assert len(list(tmp_path.glob("*.npz"))) == 3
    assert not np.allclose(changed, first)
