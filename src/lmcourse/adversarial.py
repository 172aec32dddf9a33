"""Adversarial examples (对抗样本) and adversarial training (对抗训练) under an L∞ budget.

Used in chapters: 12.

An adversarial example is an input :math:`x' = x + \\delta` with a small perturbation,
:math:`\\|\\delta\\|_\\infty \\le \\varepsilon` (no pixel moves by more than ε), that the model
misclassifies. Everything here works on float images in ``[0, 1]`` (NHWC) and any Flax NNX
classifier that maps them to logits, and is written from scratch with ``jax.grad``:

* :func:`fgsm`, the fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, "Explaining
  and Harnessing Adversarial Examples", ICLR 2015, section 3):
  :math:`x' = \\mathrm{clip}_{[0,1]}(x + \\varepsilon\\,\\mathrm{sign}(\\nabla_x L(x, y)))`;
* :func:`pgd`, projected gradient descent (Madry et al. 2018, "Towards Deep Learning Models
  Resistant to Adversarial Attacks", ICLR 2018, section 2.1, eq. (2.1)):
  :math:`x^{t+1} = \\Pi_{B_\\infty(x, \\varepsilon) \\cap [0,1]^d}
  (x^t + \\alpha\\,\\mathrm{sign}(\\nabla_x L(x^t, y)))`, optionally from a uniformly random
  start in the ball (their section 5), with :func:`project_linf` as :math:`\\Pi`;
* :func:`sign_noise`, the gradient-free control: every pixel moved by ±ε at random;
* :func:`attack_accuracy`, accuracy under an attack (with random restarts: an image counts as
  correct only if it survives every restart), the quantity plotted against ε;
* :func:`make_adversarial_step`, Madry et al.'s adversarial training: the PGD inner maximisation
  runs against the current weights at every training step and the model is trained on the
  adversarial images
  (their eq. (2.1), :math:`\\min_\\theta \\mathbb{E}\\,\\max_{\\|\\delta\\|_\\infty \\le
  \\varepsilon} L(\\theta, x + \\delta, y)`); its step function plugs into
  :func:`lmcourse.training.fit`.

The loss attacked is the summed softmax cross-entropy, so each image's gradient is its own (the
sign, hence the attack, is the same as with the mean). :func:`check_images` and
:func:`check_attack` validate arguments at the public boundaries.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmcourse.compat import get_modes, set_modes
from lmcourse.models.cnn import check_labels
from lmcourse.training import batches, train_step
from lmcourse.validation import (
    check_bool,
    check_int,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    concrete,
)

ATTACKS = ("none", "fgsm", "pgd", "noise")
"""Attack names accepted by :func:`attack_accuracy` (``"none"``: clean accuracy)."""


# --- validation ---------------------------------------------------------------------------------

def check_images(x: np.ndarray | jax.Array, name: str = "x") -> np.ndarray | jax.Array:
    """Check that ``x`` is a batch of float images in ``[0, 1]``, NHWC, and return it unchanged.

    Under ``jit`` (traced values) only the shape and dtype can be checked; the value checks run
    on concrete arrays.

    Args:
        x: ``(N, H, W, C)`` floating-point images with pixel values in ``[0, 1]``.
        name: the argument's name, used in the messages.

    Returns:
        ``x`` itself.

    Raises:
        ValueError: ``x`` is not 4-D, is empty, is not floating point (uint8 pixels: divide by
            255), holds NaN/inf, or has a value outside ``[0, 1]`` (the message gives the range).
    """
    shape = tuple(np.shape(x))
    if len(shape) != 4:
        raise ValueError(f"{name} must be a batch of images (N, H, W, C) (NHWC), got shape {shape}; "
                         "add the batch axis with x[None] and the channel axis with x[..., None]")
    if shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {shape}); give at least one image")
    dtype = np.dtype(getattr(x, "dtype", np.asarray(x).dtype))
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"{name} must hold float pixels in [0, 1], got dtype {dtype}; convert "
                         "uint8 images with lmcourse.training.to_float_images (x / 255)")
    values = concrete(x)
    if values is not None:
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} holds {int((~np.isfinite(values)).sum())} NaN or infinite "
                             "pixel(s); the attacks need images in [0, 1]")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(f"{name} must lie in [0, 1] (the attacks clip to that box), got values "
                             f"in [{low:.4g}, {high:.4g}]; scale uint8 images by 1/255 and do not "
                             "normalise them by a mean and standard deviation before attacking")
    return x


def check_attack(epsilon: float, step_size: float | None = None, steps: int | None = None
                 ) -> tuple[float, float | None, int | None]:
    """Validate an L∞ attack budget and, when given, the PGD step size and number of steps.

    Args:
        epsilon: the L∞ radius ε (pixel units on the ``[0, 1]`` scale), ``>= 0`` (0: no attack).
        step_size: the PGD step α, ``> 0`` (``None``: not checked).
        steps: the number of PGD steps, an integer ``>= 1`` (``None``: not checked).

    Returns:
        ``(epsilon, step_size, steps)`` as ``float``, ``float``, ``int`` (``None`` kept).

    Raises:
        ValueError: ε negative, above 1 or not finite; α not a finite number ``> 0``; ``steps``
            not an integer ``>= 1``.
    """
    epsilon = check_nonnegative_float("epsilon", epsilon)
    if epsilon > 1.0:
        raise ValueError(f"epsilon must be at most 1 (pixels lie in [0, 1]), got {epsilon}")
    if step_size is not None:
        step_size = check_positive_float("step_size", step_size)
    if steps is not None:
        steps = check_int("steps", steps, 1)
    return epsilon, step_size, steps


def _check_batch(model: nnx.Module, x: np.ndarray | jax.Array, y: np.ndarray | jax.Array
                 ) -> tuple[np.ndarray | jax.Array, np.ndarray | jax.Array]:
    """Images and labels checked together; labels against the model's number of classes."""
    check_images(x)
    if concrete(y) is None:
        return x, y
    y = np.asarray(y)
    if y.shape != (np.shape(x)[0],):
        raise ValueError(f"y must hold one label per image: shape ({np.shape(x)[0]},), got "
                         f"{y.shape}")
    return x, check_labels(y, int(model(jnp.asarray(x[:1])).shape[-1]))


# --- the attacks (traceable cores, jitted wrappers, validated public functions) -----------------

def project_linf(x_adv: jax.Array, x: jax.Array, epsilon: float | jax.Array) -> jax.Array:
    """Project ``x_adv`` onto the L∞ ball of radius ε around ``x``, intersected with ``[0, 1]``.

    :math:`\\Pi(x') = \\mathrm{clip}_{[0,1]}(\\mathrm{clip}_{[x-\\varepsilon, x+\\varepsilon]}(x'))`.
    The L∞ ball is a box, so the Euclidean projection onto it is a per-pixel clip, and the
    intersection of two boxes is a box: clipping to one then the other is the exact projection
    (Madry et al. 2018, section 2.1, the projection Π_{x+S} of PGD). Traceable (no checks).

    Args:
        x_adv: ``(N, H, W, C)`` perturbed images; x: the clean images, same shape, in ``[0, 1]``.
        epsilon: the radius ε ``>= 0``.

    Returns:
        ``(N, H, W, C)``, every pixel within ε of ``x`` and inside ``[0, 1]``.
    """
    return jnp.clip(jnp.clip(x_adv, x - epsilon, x + epsilon), 0.0, 1.0)


def _input_gradient(model: nnx.Module, x: jax.Array, y: jax.Array) -> jax.Array:
    """∇ₓ of the summed cross-entropy of ``model(x)`` against ``y``: ``(N, H, W, C)``."""
    def loss(images):
        return optax.softmax_cross_entropy_with_integer_labels(model(images), y).sum()
    return jax.grad(loss)(x)


def _fgsm(model: nnx.Module, x: jax.Array, y: jax.Array, epsilon) -> jax.Array:
    return jnp.clip(x + epsilon * jnp.sign(_input_gradient(model, x, y)), 0.0, 1.0)


def _random_start(x: jax.Array, key: jax.Array, epsilon) -> jax.Array:
    """A uniformly random point of the ε-ball around ``x`` inside ``[0, 1]`` (Madry et al.
    section 5)."""
    return project_linf(x + jax.random.uniform(key, x.shape, x.dtype, -epsilon, epsilon), x,
                        epsilon)


def _pgd_step(model: nnx.Module, x_adv: jax.Array, x: jax.Array, y: jax.Array, epsilon,
              step_size) -> jax.Array:
    """One PGD step: a signed gradient step of size α, then the projection."""
    step = step_size * jnp.sign(_input_gradient(model, x_adv, y))
    return project_linf(x_adv + step, x, epsilon)


_fgsm_jit = nnx.jit(_fgsm)
_random_start_jit = jax.jit(_random_start)
_pgd_step_jit = nnx.jit(_pgd_step)


def _pgd(model: nnx.Module, x: jax.Array, y: jax.Array, epsilon, step_size, steps: int,
         key: jax.Array | None) -> jax.Array:
    """PGD as a Python loop over one compiled step (not inside ``jax.jit``).

    Why a Python loop and not ``jax.lax.fori_loop``: inside a loop's compiled body, XLA:CPU
    (jaxlib 0.10.2) ran the convolutions of the gradient down to the pixels as a generic kernel,
    where a program of their own uses the fast convolution library (``python benchmarks/
    pgd_loop_speed.py --profile`` shows it). One compiled program per PGD step made PGD and the
    adversarial training step 1.8x as fast on 2 CPU cores, with bit-identical PGD images
    (``benchmarks/pgd_loop_speed.py``, the ``fori_loop`` kept there as the control;
    ``tests/test_adversarial.py`` checks the images against the loop). Unrolling the loop inside
    one program was no way out either (a probe, not committed: XLA fused each step's input chain
    into the next step's convolutions and recomputed it). The Python loop costs one dispatch per
    step, and its steps still run back to back (nothing waits for the host).
    """
    x_adv = x if key is None else _random_start_jit(x, key, epsilon)
    for _ in range(steps):
        x_adv = _pgd_step_jit(model, x_adv, x, y, epsilon, step_size)
    return x_adv


def fgsm(model: nnx.Module, x: np.ndarray | jax.Array, y: np.ndarray | jax.Array,
         epsilon: float) -> jax.Array:
    """Fast gradient sign method: one step of size ε along the sign of the input gradient.

    :math:`x' = \\mathrm{clip}_{[0,1]}(x + \\varepsilon\\,\\mathrm{sign}(\\nabla_x L(x, y)))`,
    ``L`` the softmax cross-entropy (Goodfellow, Shlens & Szegedy 2015, ICLR, section 3, the
    equation :math:`\\eta = \\varepsilon\\,\\mathrm{sign}(\\nabla_x J(\\theta, x, y))`).
    Call it in evaluation mode (``model.eval()``) when the model has dropout or batch norm.

    Args:
        model: a classifier mapping ``(N, H, W, C)`` float images to ``(N, K)`` logits.
        x: ``(N, H, W, C)`` float32 images in ``[0, 1]``.
        y: ``(N,)`` integer labels in ``[0, K)``.
        epsilon: the L∞ budget ε in ``[0, 1]``.

    Returns:
        ``(N, H, W, C)`` float32 adversarial images, within ε of ``x`` and inside ``[0, 1]``.

    Raises:
        ValueError: bad images (:func:`check_images`), labels of the wrong shape or out of
            range, or ε outside ``[0, 1]`` (:func:`check_attack`).
    """
    epsilon, _, _ = check_attack(epsilon)
    x, y = _check_batch(model, x, y)
    return _fgsm_jit(model, jnp.asarray(x), jnp.asarray(y), epsilon)


def pgd(model: nnx.Module, x: np.ndarray | jax.Array, y: np.ndarray | jax.Array, epsilon: float,
        step_size: float, steps: int, *, random_start: bool = False, seed: int = 0) -> jax.Array:
    """L∞ projected gradient descent (ascent on the loss): ``steps`` signed steps of size α,
    each followed by the projection onto the ε-ball around ``x`` and onto ``[0, 1]``.

    :math:`x^{t+1} = \\Pi_{B_\\infty(x,\\varepsilon)\\cap[0,1]^d}\\big(x^t + \\alpha\\,
    \\mathrm{sign}(\\nabla_x L(x^t, y))\\big)`, with :math:`x^0 = x` or, with ``random_start``,
    a uniform draw from the ball (Madry et al. 2018, ICLR, section 2.1 and section 5). The
    loop is a Python loop over one compiled PGD step, compiled once and reused for any ε, α and
    number of steps (a ``jax.lax.fori_loop`` was 1.8x slower on CPU: XLA ran the gradient's
    convolutions inside the loop body as a generic kernel). Call it outside ``jax.jit``.

    Args:
        model: a classifier mapping ``(N, H, W, C)`` float images to ``(N, K)`` logits.
        x: ``(N, H, W, C)`` float32 images in ``[0, 1]``; y: ``(N,)`` integer labels.
        epsilon: the L∞ budget ε in ``[0, 1]``.
        step_size: α ``> 0`` (Madry et al. use 0.01 for ε = 0.3 and 40–100 steps on MNIST).
        steps: number of steps, ``>= 1``.
        random_start: start from a uniformly random point of the ball instead of ``x``.
        seed: the random start's seed (an integer ``>= 0``).

    Returns:
        ``(N, H, W, C)`` float32 adversarial images, within ε of ``x`` and inside ``[0, 1]``.

    Raises:
        ValueError: bad images or labels, ε outside ``[0, 1]``, α ``<= 0``, ``steps < 1``,
            ``random_start`` not a bool or ``seed`` not an integer ``>= 0``.
    """
    epsilon, step_size, steps = check_attack(epsilon, step_size, steps)
    random_start = check_bool("random_start", random_start)
    seed = check_int("seed", seed, 0)
    x, y = _check_batch(model, x, y)
    key = jax.random.key(seed) if random_start else None
    return _pgd(model, jnp.asarray(x), jnp.asarray(y), epsilon, step_size, steps, key)


def sign_noise(x: np.ndarray | jax.Array, epsilon: float, seed: int = 0) -> jax.Array:
    """Gradient-free control: move every pixel by ±ε with a fair random sign, clip to ``[0, 1]``.

    The same L∞ size as :func:`fgsm` (a corner of the ε-ball) but in a random direction. If
    random noise hurt a model as much as PGD, the "attack" would not be using the gradient, and
    if it hurt *more*, the gradient attack would be failing (a sign of gradient masking; Athalye,
    Carlini & Wagner 2018, ICML, section 3.1, list such symptoms of masked gradients).

    Args:
        x: ``(N, H, W, C)`` float images in ``[0, 1]``.
        epsilon: ε in ``[0, 1]``.
        seed: an integer ``>= 0``.

    Returns:
        ``(N, H, W, C)`` float32 images.

    Raises:
        ValueError: bad images, ε outside ``[0, 1]``, or a bad seed.
    """
    epsilon, _, _ = check_attack(epsilon)
    seed = check_int("seed", seed, 0)
    x = jnp.asarray(check_images(x))
    signs = jax.random.rademacher(jax.random.key(seed), x.shape, x.dtype)
    return jnp.clip(x + epsilon * signs, 0.0, 1.0)


def attack_accuracy(model: nnx.Module, x: np.ndarray, y: np.ndarray, attack: str = "pgd",
                    epsilon: float = 0.0, *, step_size: float | None = None, steps: int = 10,
                    restarts: int = 1, seed: int = 0, batch_size: int = 500) -> float:
    """Accuracy of ``model`` on ``(x, y)`` when every image is first attacked (robust accuracy).

    An image counts as correct only if it is classified correctly after *every* restart (PGD
    from a random start, or a fresh draw of :func:`sign_noise`), so more restarts can only lower
    the number; with ``restarts=1`` PGD starts at ``x`` (deterministic). The model is put in
    evaluation mode for the call and its modes restored afterwards.

    Args:
        model: a classifier mapping ``(N, H, W, C)`` float images to ``(N, K)`` logits.
        x: ``(N, H, W, C)`` float32 images in ``[0, 1]``; y: ``(N,)`` integer labels.
        attack: one of :data:`ATTACKS`: ``"none"`` (clean accuracy), ``"fgsm"``, ``"pgd"``,
            ``"noise"``.
        epsilon: ε in ``[0, 1]``.
        step_size: PGD's α (default ``2.5 ε / steps``, the rule of Madry et al.'s code).
        steps: PGD steps ``>= 1``.
        restarts: ``>= 1``; used by ``"pgd"`` (random starts when ``> 1``) and ``"noise"``.
        seed: seed of the random starts / noise, an integer ``>= 0``.
        batch_size: images attacked at once, ``>= 1``.

    Returns:
        The fraction of images still classified correctly, in ``[0, 1]``.

    Raises:
        ValueError: an unknown attack, bad images or labels, or a bad ε, α, ``steps``,
            ``restarts``, ``seed`` or ``batch_size``.
    """
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {ATTACKS}, got {attack!r}")
    epsilon, _, steps = check_attack(epsilon, None, steps)
    step_size = 2.5 * epsilon / steps if step_size is None else step_size
    if attack == "pgd" and epsilon > 0:
        check_attack(epsilon, step_size)
    restarts = check_positive_int("restarts", restarts)
    seed = check_int("seed", seed, 0)
    batch_size = check_positive_int("batch_size", batch_size)
    x, y = _check_batch(model, x, y)
    x, y = np.asarray(x), np.asarray(y)
    modes = get_modes(model)
    model.eval()
    try:
        correct = 0
        for idx in batches(len(x), batch_size, drop_last=False):
            xb, yb = jnp.asarray(x[idx]), jnp.asarray(y[idx])
            ok = jnp.ones(len(idx), bool)
            for r in range(restarts if attack in ("pgd", "noise") else 1):
                x_adv = _attack(model, xb, yb, attack, epsilon, step_size, steps,
                                restarts > 1, seed * 100_003 + r)
                ok &= jnp.argmax(model(x_adv), -1) == yb
            correct += int(ok.sum())
    finally:
        set_modes(modes)
    return correct / len(x)


def _attack(model, xb, yb, attack, epsilon, step_size, steps, random_start, seed):
    """One attack of a checked batch (no validation: :func:`attack_accuracy` did it)."""
    if attack == "none" or epsilon == 0.0:
        return xb
    if attack == "fgsm":
        return _fgsm_jit(model, xb, yb, epsilon)
    if attack == "noise":
        signs = jax.random.rademacher(jax.random.key(seed), xb.shape, xb.dtype)
        return jnp.clip(xb + epsilon * signs, 0.0, 1.0)
    key = jax.random.key(seed) if random_start else None
    return _pgd(model, xb, yb, epsilon, step_size, steps, key)


# --- adversarial training -----------------------------------------------------------------------

def _adversarial_train_step(model, optimizer, x, y, key, epsilon, step_size, steps):
    """PGD images against the current weights (compiled step by step, see :func:`_pgd`), then
    one ordinary compiled training step on them. The images are constants for the optimizer
    step: no gradient flows back through the attack."""
    x_adv = _pgd(model, x, y, epsilon, step_size, steps, key)
    return train_step(model, optimizer, x_adv, y)


def make_adversarial_step(epsilon: float, step_size: float, steps: int, *, seed: int = 0
                          ) -> Callable[[nnx.Module, nnx.Optimizer, jax.Array, jax.Array],
                                        jax.Array]:
    """A training step for :func:`lmcourse.training.fit` that trains on PGD adversarial images.

    Each call draws a fresh random start (key ``fold_in(key(seed), call number)``), runs
    ``steps`` PGD steps against the current model (one compiled program per PGD step, see
    :func:`pgd`), and takes one optimizer step (:func:`lmcourse.training.train_step`) on the
    cross-entropy of the adversarial batch: Madry et al. 2018 (ICLR),
    eq. (2.1) with the inner maximisation approximated by PGD (section 5: MNIST with ε = 0.3,
    40 steps of 0.01, random start). A step costs about ``steps + 1`` forward-backward passes.

    Args:
        epsilon: the training budget ε in ``[0, 1]``.
        step_size: α ``> 0``.
        steps: PGD steps per training step, ``>= 1``.
        seed: seed of the random starts, an integer ``>= 0``.

    Returns:
        ``step(model, optimizer, x, y) -> loss``: updates ``model`` and ``optimizer`` in place
        and returns the mean cross-entropy on the adversarial batch (before the update);
        ``x`` ``(B, H, W, C)`` float32 in ``[0, 1]``, ``y`` ``(B,)`` int32.

    Raises:
        ValueError: a bad ε, α, ``steps`` or ``seed``.
    """
    epsilon, step_size, steps = check_attack(epsilon, step_size, steps)
    base = jax.random.key(check_int("seed", seed, 0))
    counter = itertools.count()

    def step(model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array
             ) -> jax.Array:
        key = jax.random.fold_in(base, next(counter))
        return _adversarial_train_step(model, optimizer, x, y, key, epsilon, step_size, steps)

    return step
