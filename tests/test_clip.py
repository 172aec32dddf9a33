"""CLIP-style contrastive loss, temperature clip and zero-shot prediction (lmcourse.models.clip).

No pretrained text encoder is loaded here: the functions take any embeddings, so small random
ones test them (chapter 08 runs them on MiniLM features).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lmcourse.models import clip as C

RNG = np.random.default_rng(0)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_loss_equals_a_hand_computation():
    img = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    txt = np.array([[2.0, 0.0], [1.0, 1.0], [1.0, 3.0]])
    t = math.log(2.0)                                            # logit scale 2
    s = 2.0 * _unit(img) @ _unit(txt).T                           # cosines × scale
    rows = np.mean([-(s[i, i] - np.log(np.exp(s[i]).sum())) for i in range(3)])
    cols = np.mean([-(s[j, j] - np.log(np.exp(s[:, j]).sum())) for j in range(3)])
    got = float(C.symmetric_info_nce(jnp.asarray(img), jnp.asarray(txt), t))
    assert got == pytest.approx((rows + cols) / 2, rel=1e-5)
    assert rows != pytest.approx(cols, rel=1e-3)                 # the two directions differ here
    ce = optax.softmax_cross_entropy_with_integer_labels
    labels = jnp.arange(3)
    assert got == pytest.approx(float((ce(s, labels).mean() + ce(s.T, labels).mean()) / 2), rel=1e-5)


def test_loss_is_symmetric_in_images_and_texts():
    a, b = RNG.normal(size=(2, 6, 5))
    assert float(C.symmetric_info_nce(a, b)) == pytest.approx(float(C.symmetric_info_nce(b, a)),
                                                               rel=1e-5)
    # but not invariant to breaking the pairing
    assert float(C.symmetric_info_nce(a, b)) != pytest.approx(
        float(C.symmetric_info_nce(a, b[::-1])), rel=1e-3)


def test_perfect_pairs_give_a_small_loss_and_random_ones_about_log_n():
    n = 8
    e = np.eye(n, 16)
    assert float(C.symmetric_info_nce(e, e, math.log(100))) < 1e-3
    same = float(C.symmetric_info_nce(np.ones((n, 4)), np.ones((n, 4))))
    assert same == pytest.approx(math.log(n), rel=1e-5)          # all logits equal: ln n


def test_pair_ids_all_different_is_the_papers_loss_and_repeats_spread_the_target():
    a, b = RNG.normal(size=(2, 6, 5))
    plain = float(C.symmetric_info_nce(a, b, 1.0))
    assert float(C.symmetric_info_nce(a, b, 1.0, np.arange(6))) == pytest.approx(plain, rel=1e-6)
    ids = np.array([0, 0, 1, 1, 2, 2])
    s = np.asarray(C.similarity_logits(a, b, 1.0))
    target = (ids[:, None] == ids[None, :]) / 2.0
    by_hand = (optax.softmax_cross_entropy(s, target).mean()
               + optax.softmax_cross_entropy(s.T, target).mean()) / 2
    assert float(C.symmetric_info_nce(a, b, 1.0, ids)) == pytest.approx(float(by_hand), rel=1e-5)
    with pytest.raises(ValueError, match="pair_ids"):
        C.symmetric_info_nce(a, b, 1.0, ids[:4])


def test_temperature_starts_at_0_07_and_is_clipped_at_100():
    assert float(C.logit_scale(C.INIT_LOG_SCALE)) == pytest.approx(1 / 0.07, rel=1e-6)
    assert float(C.logit_scale(10.0)) == pytest.approx(100.0, rel=1e-6)
    assert float(C.logit_scale(math.log(50.0))) == pytest.approx(50.0, rel=1e-6)
    assert float(jax.grad(lambda t: C.logit_scale(t))(10.0)) == 0.0     # no push past the clip
    model = C.ContrastiveModel(12, 8, rngs=nnx.Rngs(0))
    assert float(model.scale()) == pytest.approx(1 / 0.07, rel=1e-6)
    logits = C.similarity_logits(RNG.normal(size=(4, 3)), RNG.normal(size=(5, 3)), 50.0)
    assert np.abs(np.asarray(logits)).max() <= 100.0 + 1e-4
    with pytest.raises(ValueError, match="max_scale"):
        C.logit_scale(1.0, max_scale=0.0)


def test_mismatched_batches_are_rejected():
    a = RNG.normal(size=(4, 5))
    with pytest.raises(ValueError, match="same number of rows"):
        C.symmetric_info_nce(a, RNG.normal(size=(3, 5)))
    with pytest.raises(ValueError, match="same width"):
        C.symmetric_info_nce(a, RNG.normal(size=(4, 6)))
    with pytest.raises(ValueError, match="2-D"):
        C.symmetric_info_nce(a[0], a[0])


def test_zero_shot_picks_the_nearest_prototype():
    protos = _unit(RNG.normal(size=(5, 8)))
    images = protos[[3, 0, 4, 4]] + 0.05 * RNG.normal(size=(4, 8))
    assert C.zero_shot_predict(images, protos).tolist() == [3, 0, 4, 4]
    # only among candidates: image of class 3 must go to the nearest of {1, 2}
    cos = _unit(images) @ protos.T
    expect = [1, 2][int(cos[0, 2] > cos[0, 1])]
    assert C.zero_shot_predict(images[:1], protos, np.array([1, 2])).tolist() == [expect]
    # scale-free: long vectors do not win by length
    far = np.vstack([protos[0], 100 * protos[1]])
    assert C.zero_shot_predict(protos[:1], far).tolist() == [0]
    with pytest.raises(ValueError, match="candidates"):
        C.zero_shot_predict(images, protos, np.array([1, 5]))


def test_class_prototypes_average_the_wordings():
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, -1.0]])
    p = np.asarray(C.class_prototypes(emb, np.array([0, 0, 1]), 2))
    assert np.allclose(p, [[1 / math.sqrt(2), 1 / math.sqrt(2)], [0.0, -1.0]], atol=1e-6)
    with pytest.raises(ValueError, match="no description"):
        C.class_prototypes(emb, np.array([0, 0, 0]), 2)
    with pytest.raises(ValueError, match="class_of_text"):
        C.class_prototypes(emb, np.array([0, 1, 2]), 2)


def test_held_out_classes_are_seeded_and_ids_are_checked():
    a, b = C.held_out_classes(10, 2, 0), C.held_out_classes(10, 2, 0)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 2 and a.max() < 10
    labels = np.arange(10).repeat(3)
    mask = C.seen_mask(labels, a, 10)
    assert set(labels[mask].tolist()) == set(range(10)) - set(a.tolist())
    with pytest.raises(ValueError, match="held_out"):
        C.seen_mask(labels, np.array([3, 10]), 10)          # np.isin would hold out only 3
    with pytest.raises(ValueError, match="held_out"):
        C.seen_mask(labels, np.array([-1]), 10)
    with pytest.raises(ValueError, match="repeats"):
        C.seen_mask(labels, np.array([2, 2]), 10)
    with pytest.raises(ValueError, match="labels"):
        C.seen_mask(np.array([0, 11]), a, 10)
    with pytest.raises(ValueError, match="n_held_out"):
        C.held_out_classes(10, 10, 0)


def test_model_embeds_to_the_unit_sphere_and_checks_text_width():
    model = C.ContrastiveModel(12, 8, rngs=nnx.Rngs(0))
    img = model.encode_images(jnp.asarray(RNG.uniform(size=(3, 28, 28, 1)), jnp.float32))
    txt = model.encode_texts(jnp.asarray(RNG.normal(size=(4, 12)), jnp.float32))
    assert img.shape == (3, 8) and txt.shape == (4, 8)
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(M, 12\)"):
        model.encode_texts(jnp.ones((4, 13)))
