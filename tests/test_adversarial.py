"""Tests of lmcourse.adversarial: FGSM against a hand computation, PGD's constraints, PGD against
foolbox's LinfPGD on a small trained chapter-03 CNN, adversarial training's step, and the errors
raised for bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lmcourse import adversarial as adv
from lmcourse import training
from lmcourse.compat import make_optimizer


class TinyLinear(nnx.Module):
    """Softmax regression on flattened images: logits = flatten(x) @ W + b."""

    def __init__(self, pixels: int, classes: int, seed: int = 0):
        self.linear = nnx.Linear(pixels, classes, rngs=nnx.Rngs(seed))

    def __call__(self, x):
        return self.linear(x.reshape(x.shape[0], -1))


def _images(n: int, seed: int = 0, side: int = 2) -> np.ndarray:
    """Images in [0, 1] with some pixels exactly at 0 and 1 (where clipping matters)."""
    x = np.random.default_rng(seed).uniform(size=(n, side, side, 1)).astype(np.float32)
    x[:, 0, 0, 0] = 0.0
    x[:, -1, -1, 0] = 1.0
    return x


def test_fgsm_equals_a_hand_computation_on_a_linear_model():
    model = TinyLinear(4, 3)
    x, y, eps = _images(5), np.array([0, 1, 2, 1, 0], np.int32), 0.1
    w = np.asarray(model.linear.kernel[...], np.float64)        # (4, 3)
    b = np.asarray(model.linear.bias[...], np.float64)
    flat = x.reshape(5, 4).astype(np.float64)
    z = flat @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.eye(3)[y]) @ w.T                              # ∂CE/∂x of softmax regression
    expected = np.clip(flat + eps * np.sign(grad), 0, 1).reshape(x.shape)
    got = np.asarray(adv.fgsm(model, x, y, eps))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    wrong_way = np.clip(flat - eps * np.sign(grad), 0, 1).reshape(x.shape)
    assert np.abs(got - wrong_way).max() > eps                   # the sign matters: test can fail
    # One PGD step of size ε from x is FGSM.
    np.testing.assert_allclose(adv.pgd(model, x, y, eps, eps, 1), got, atol=1e-6)


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_stays_inside_the_ball_and_the_box(random_start):
    model = TinyLinear(16, 4)
    x, y, eps = _images(32, seed=1, side=4), np.arange(32, dtype=np.int32) % 4, 0.2
    x_adv = np.asarray(adv.pgd(model, x, y, eps, 0.07, 9, random_start=random_start, seed=3))
    assert np.abs(x_adv - x).max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.abs(x_adv - x).max() > eps - 1e-6                 # it did move to the ball's edge
    # ... and it raised the loss above the clean loss.
    def loss(images):
        return float(optax.softmax_cross_entropy_with_integer_labels(model(images), y).mean())
    assert loss(jnp.asarray(x_adv)) > loss(jnp.asarray(x))


def test_project_linf_and_sign_noise():
    x = jnp.asarray(_images(3, seed=2))
    far = x + jnp.asarray(np.random.default_rng(0).normal(0, 1, x.shape), jnp.float32)
    p = adv.project_linf(far, x, 0.05)
    assert float(jnp.abs(p - x).max()) <= 0.05 + 1e-7 and float(p.min()) >= 0 and float(p.max()) <= 1
    noisy = np.asarray(adv.sign_noise(x, 0.05, seed=1))
    inside = (np.asarray(x) >= 0.05) & (np.asarray(x) <= 0.95)   # where clipping cannot act
    np.testing.assert_allclose(np.abs(noisy - np.asarray(x))[inside], 0.05, atol=1e-6)


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_python_loop_equals_one_fori_loop(random_start):
    """The course runs PGD as a Python loop of compiled steps (faster on CPU); the images are
    bit-identical to the same steps in one jax.lax.fori_loop inside one program."""
    model = TinyLinear(16, 4)
    x, y = jnp.asarray(_images(8, seed=5, side=4)), jnp.asarray(np.arange(8) % 4, jnp.int32)
    key = jax.random.key(3) if random_start else None

    @nnx.jit(static_argnames=("steps",))
    def fori(model, x, y, steps):
        start = x if key is None else adv._random_start(x, key, 0.1)
        return jax.lax.fori_loop(
            0, steps, lambda _, xa: adv._pgd_step(model, xa, x, y, 0.1, 0.03), start)

    for steps in (1, 4):
        ours = adv._pgd(model, x, y, 0.1, 0.03, steps, key)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(fori(model, x, y, steps)))
    assert float(jnp.abs(ours - x).max()) > 0


def test_adversarial_step_trains_on_the_pgd_images():
    model, twin = TinyLinear(16, 4), TinyLinear(16, 4)
    x, y = _images(16, seed=4, side=4), np.arange(16, dtype=np.int32) % 4
    eps, alpha, steps, seed = 0.1, 0.04, 3, 7
    key = jax.random.fold_in(jax.random.key(seed), 0)               # the first call's key
    x_adv = adv._pgd(twin, jnp.asarray(x), jnp.asarray(y), eps, alpha, steps, key)
    expected = optax.softmax_cross_entropy_with_integer_labels(twin(x_adv), y).mean()
    clean = optax.softmax_cross_entropy_with_integer_labels(twin(jnp.asarray(x)), y).mean()
    before = np.asarray(model.linear.kernel[...]).copy()
    step = adv.make_adversarial_step(eps, alpha, steps, seed=seed)
    loss = step(model, make_optimizer(model, optax.sgd(0.1)), x, y)
    assert np.isclose(float(loss), float(expected), atol=1e-6) and float(loss) > float(clean)
    assert not np.allclose(np.asarray(model.linear.kernel[...]), before)


@pytest.fixture(scope="module")
def trained_cnn():
    """The chapter-03 CNN after one pass over 2,560 MNIST training digits (≈ 10 s on 2 cores)."""
    from lmcourse.data import load_mnist
    from lmcourse.models.cnn import CNN

    data = load_mnist()
    x = training.to_float_images(data.x_train[:2560])
    model = CNN(nnx.Rngs(0))
    training.fit(model, make_optimizer(model, optax.adam(3e-3)), x, data.y_train[:2560],
                 epochs=1, progress=False)
    return model, training.to_float_images(data.x_test[:64]), data.y_test[:64]


def test_our_pgd_is_at_least_as_strong_as_foolbox(trained_cnn):
    fb = pytest.importorskip("foolbox")
    model, x, y = trained_cnn
    # jit only compiles the model function (the weights are constants); the attack is foolbox's.
    fmodel = fb.JAXModel(jax.jit(lambda images: model(images)), bounds=(0.0, 1.0))
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    eps, alpha, steps = 0.1, 0.025, 10
    clean = adv.attack_accuracy(model, x, y, "none")
    # Same start (x itself), same ε, step and steps: the same algorithm, so the same images.
    ours = adv.pgd(model, x, y, eps, alpha, steps)
    attack = fb.attacks.LinfPGD(abs_stepsize=alpha, steps=steps, random_start=False)
    _, theirs, success = attack(fmodel, xj, yj, epsilons=eps)
    ours_acc = float(jnp.mean(jnp.argmax(model(ours), -1) == yj))
    fb_acc = 1.0 - float(jnp.mean(success))
    assert fb_acc < clean - 0.2, "foolbox's attack should work on this model (else no comparison)"
    assert ours_acc <= fb_acc
    assert float(jnp.mean(jnp.abs(ours - theirs) < 1e-4)) > 0.99
    # Random starts (different random numbers): ours within one image of theirs, or stronger.
    ours_rs = adv.pgd(model, x, y, eps, alpha, steps, random_start=True, seed=1)
    _, _, success_rs = fb.attacks.LinfPGD(abs_stepsize=alpha, steps=steps)(fmodel, xj, yj,
                                                                           epsilons=eps)
    ours_rs_acc = float(jnp.mean(jnp.argmax(model(ours_rs), -1) == yj))
    assert ours_rs_acc <= 1.0 - float(jnp.mean(success_rs)) + 1 / len(y) + 1e-9
    # FGSM: the same images as foolbox's FGSM (= LinfFastGradientAttack).
    _, fb_fgsm, _ = fb.attacks.FGSM()(fmodel, xj, yj, epsilons=eps)
    assert float(jnp.mean(jnp.abs(adv.fgsm(model, x, y, eps) - fb_fgsm) < 1e-4)) > 0.99


BAD_ATTACKS = [
    ({"epsilon": -0.1}, "epsilon"), ({"epsilon": float("nan")}, "epsilon"),
    ({"epsilon": 1.5}, "at most 1"), ({"step_size": 0.0}, "step_size"),
    ({"step_size": -0.01}, "step_size"), ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"),
]


@pytest.mark.parametrize(("change", "match"), BAD_ATTACKS)
def test_bad_attack_settings_are_refused(change, match):
    model, x, y = TinyLinear(4, 3), _images(2), np.array([0, 1], np.int32)
    kwargs = {"epsilon": 0.1, "step_size": 0.01, "steps": 3} | change
    with pytest.raises(ValueError, match=match):
        adv.pgd(model, x, y, **kwargs)
    with pytest.raises(ValueError, match=match):
        adv.make_adversarial_step(**kwargs)


BAD_IMAGES = [
    (lambda x: x * 2.0, r"\[0, 1\]"), (lambda x: x - 0.5, r"\[0, 1\]"),
    (lambda x: (x * 255).astype(np.uint8), "dtype"), (lambda x: x[..., 0], "NHWC"),
    (lambda x: np.where(x > 0.5, np.nan, x).astype(np.float32), "NaN"), (lambda x: x[:0], "empty"),
]


@pytest.mark.parametrize(("spoil", "match"), BAD_IMAGES)
def test_bad_images_are_refused(spoil, match):
    model, x, y = TinyLinear(4, 3), _images(2), np.array([0, 1], np.int32)
    with pytest.raises(ValueError, match=match):
        adv.fgsm(model, spoil(x), y, 0.1)
    with pytest.raises(ValueError, match=match):
        adv.check_images(spoil(x))


def test_bad_labels_and_options_are_refused():
    model, x = TinyLinear(4, 3), _images(2)
    with pytest.raises(ValueError, match="one label per image"):
        adv.fgsm(model, x, np.array([0, 1, 2], np.int32), 0.1)
    with pytest.raises(ValueError, match="outside the valid range"):
        adv.fgsm(model, x, np.array([0, 3], np.int32), 0.1)   # 3 classes: labels 0..2
    y = np.array([0, 1], np.int32)
    with pytest.raises(ValueError, match="attack must be one of"):
        adv.attack_accuracy(model, x, y, "pgdd", 0.1)
    with pytest.raises(ValueError, match="restarts"):
        adv.attack_accuracy(model, x, y, "pgd", 0.1, restarts=0)
    with pytest.raises(ValueError, match="random_start"):
        adv.pgd(model, x, y, 0.1, 0.01, 2, random_start=1)
    assert adv.attack_accuracy(model, x, y, "pgd", 0.0) == adv.attack_accuracy(model, x, y, "none")
