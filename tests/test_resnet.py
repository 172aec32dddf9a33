"""Tests of lmcourse.models.resnet: :func:`layer_geometry` (output sizes against the real Flax
layer shapes of the plain chapter-03 CNN and the ResNet, receptive fields against the nonzero
region of an input gradient), batch normalisation written by hand against ``nnx.BatchNorm``
(train-mode output and running-statistics update; running statistics frozen in eval mode), the
ResNet's parameter count against the formula, and bad input rejected with a ``ValueError``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse.models.cnn import CNN, max_pool_2x2
from lmcourse.models.common import count_params
from lmcourse.models.resnet import (
    PLAIN_CNN_LAYERS,
    LayerSpec,
    ResNet,
    layer_geometry,
    resnet_param_count,
)


def _cnn_maps(model: CNN, x: jax.Array) -> dict[str, jax.Array]:
    h1 = nnx.relu(model.conv1(x))
    p1 = max_pool_2x2(h1)
    h2 = nnx.relu(model.conv2(p1))
    p2 = max_pool_2x2(h2)
    return {"conv1": h1, "pool1": p1, "conv2": h2, "pool2": p2, "conv3": nnx.relu(model.conv3(p2))}


def _rows_seen(grad: jax.Array) -> tuple[int, int]:
    """First and last input row with a nonzero gradient (any image, column, channel)."""
    rows = np.flatnonzero(np.abs(np.asarray(grad)).sum(axis=(0, 2, 3)) > 0)
    return int(rows[0]), int(rows[-1])


def test_formula_by_hand():
    # 28 → conv3 VALID 26 → pool 13 → conv 11 → pool 5 → conv 3; r = 3, 4, 8, 10, 18
    geo = layer_geometry(28, PLAIN_CNN_LAYERS)
    assert [g.size for g in geo] == [26, 13, 11, 5, 3]
    assert [g.receptive_field for g in geo] == [3, 4, 8, 10, 18]
    assert [g.jump for g in geo] == [1, 2, 2, 4, 4]
    padded = layer_geometry(13, [LayerSpec("c", 3, 2, 1)])[0]    # ⌊(13 + 2 - 3)/2⌋ + 1 = 7
    assert (padded.size, padded.receptive_field, padded.start) == (7, 3, -1)


def test_sizes_match_flax_layers():
    x = jnp.zeros((2, 28, 28, 1))
    cnn_maps = _cnn_maps(CNN(nnx.Rngs(0)), x)
    for g in layer_geometry(28, PLAIN_CNN_LAYERS):
        assert cnn_maps[g.name].shape[1:3] == (g.size, g.size), g
    for blocks in (1, 2):
        model = ResNet(nnx.Rngs(0), blocks_per_stage=blocks)
        maps = model.feature_maps(x)
        geo = layer_geometry(28, model.layer_specs())
        assert len(geo) == len(maps) == 2 + 2 * 3 * blocks
        for g in geo:
            assert maps[g.name].shape[1:3] == (g.size, g.size), g
        assert geo[-1].size == 4 and model(x).shape == (2, 10)


@pytest.mark.parametrize("which", ["cnn", "resnet"])
def test_receptive_field_matches_gradient(which):
    # The union over random images of the input rows that move one output pixel is exactly
    # that pixel's receptive field (clipped to the image).
    x = jax.random.uniform(jax.random.key(0), (16, 28, 28, 1))
    if which == "cnn":
        model, name = CNN(nnx.Rngs(1)), "conv3"
        geo = {g.name: g for g in layer_geometry(28, PLAIN_CNN_LAYERS)}[name]

        def maps(v):
            return _cnn_maps(model, v)
    else:
        model, name = ResNet(nnx.Rngs(1)), "block2.conv2"
        model.eval()   # batch statistics would couple the images (and every pixel)
        geo = {g.name: g for g in layer_geometry(28, model.layer_specs())}[name]
        maps = model.feature_maps
    i = 1
    grad = jax.grad(lambda v: maps(v)[name][:, i, i, :].sum())(x)
    first = max(geo.start + i * geo.jump, 0)
    last = min(geo.start + i * geo.jump + geo.receptive_field - 1, 27)
    assert _rows_seen(grad) == (first, last)


def _bn_by_hand(x, gamma, beta, mean, var, momentum=0.99, eps=1e-5):
    mu = x.mean(axis=(0, 1, 2))
    sigma2 = ((x - mu) ** 2).mean(axis=(0, 1, 2))            # biased batch variance
    y = gamma * (x - mu) / jnp.sqrt(sigma2 + eps) + beta
    return y, momentum * mean + (1 - momentum) * mu, momentum * var + (1 - momentum) * sigma2


def test_batchnorm_by_hand_equals_flax_in_train_mode():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (8, 5, 5, 4))
    bn = nnx.BatchNorm(4, rngs=nnx.Rngs(0))
    bn.scale[...] = jnp.array([1.0, 2.0, 0.5, -1.0])
    bn.bias[...] = jnp.array([0.0, 1.0, -1.0, 0.3])
    expected, mean, var = _bn_by_hand(x, bn.scale[...], bn.bias[...], bn.mean[...],
                                      bn.var[...])
    np.testing.assert_allclose(bn(x), expected, atol=1e-4)
    np.testing.assert_allclose(bn.mean[...], mean, atol=1e-5)
    np.testing.assert_allclose(bn.var[...], var, atol=1e-4)
    assert not np.allclose(bn.mean[...], 0.0)               # the update did happen


def test_running_statistics_frozen_in_eval_mode_and_outputs_differ():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (8, 28, 28, 1))
    model = ResNet(nnx.Rngs(0))
    before = jax.tree.map(jnp.copy, nnx.state(model, nnx.BatchStat))
    model.eval()
    out_eval = model(x)
    after_eval = nnx.state(model, nnx.BatchStat)
    jax.tree.map(np.testing.assert_array_equal, before, after_eval)
    model.train()
    out_train = model(x)
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before,
                                           nnx.state(model, nnx.BatchStat)))
    assert all(changed)
    assert float(jnp.abs(out_train - out_eval).max()) > 1e-2


def test_param_count():
    assert resnet_param_count() == 77_754
    for kwargs in ({}, {"widths": (8, 16), "blocks_per_stage": 2}, {"in_channels": 3,
                                                                     "num_classes": 7}):
        model = nnx.eval_shape(lambda kw=kwargs: ResNet(nnx.Rngs(0), **kw))   # shapes only
        assert count_params(model) == resnet_param_count(**kwargs), kwargs


@pytest.mark.parametrize("shape, dtype, match", [
    ((2, 28, 28), jnp.float32, "shape"),
    ((2, 28, 28, 3), jnp.float32, "in_channels"),
    ((2, 32, 32, 1), jnp.float32, "image_size"),
    ((2, 28, 28, 1), jnp.uint8, "dtype"),
])
def test_bad_images_rejected(shape, dtype, match):
    with pytest.raises(ValueError, match=match):
        ResNet(nnx.Rngs(0))(jnp.zeros(shape, dtype))


@pytest.mark.parametrize("kwargs, match", [
    ({"in_channels": 0}, "in_channels"), ({"widths": ()}, "widths"),
    ({"widths": (16, 0)}, r"widths\[1\]"), ({"blocks_per_stage": 1.5}, "blocks_per_stage"),
    ({"image_size": 4}, "image_size"), ({"momentum": 1.5}, "momentum"),
])
def test_bad_sizes_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResNet(nnx.Rngs(0), **kwargs)


@pytest.mark.parametrize("size, layer, match", [
    (0, LayerSpec("c", 3), "input_size"), (28, LayerSpec("c", 0), "kernel"),
    (28, LayerSpec("c", 3, 0), "stride"), (28, LayerSpec("c", 3, 1, -1), "padding"),
    (2, LayerSpec("c", 3), "does not fit"),
])
def test_bad_geometry_rejected(size, layer, match):
    with pytest.raises(ValueError, match=match):
        layer_geometry(size, [layer])
