"""Overfitting and its remedies (chapter 04): augmentation, penalties, dropout, early stopping and
k-fold cross-validation, written as pure functions so that ``jax.vmap`` can train several models
(seeds, folds, hyper-parameter values) at once inside one ``jax.jit``-compiled call.

Used in chapters: 04.

Pieces:

* augmentation: :func:`shift_images`, :func:`random_shift`, :func:`flip_left_right`,
  :func:`random_flip`, :func:`augment` (explicit ``jax.random`` keys, usable inside ``jit``);
* penalties: :func:`l1_penalty`, :func:`l2_penalty` over the weight matrices picked by
  :func:`penalty_mask` (biases are not penalised);
* model: :class:`MLP`, a one-hidden-layer perceptron whose :func:`dropout` takes its key and its
  rate as arguments (so the rate can be a traced, vmapped value); both live in
  :mod:`lmcourse.models.mlp` (every Flax model of the course is in ``lmcourse.models``) and are
  re-exported here;
* training: :class:`Hyper` (the remedies' strengths as traced values: L1, L2, dropout rate,
  decoupled weight decay, shift, flip probability), :class:`TrainConfig` (static settings),
  :func:`make_train_step`, :func:`make_run` (a whole training run as one pure function:
  ``lax.scan`` over epochs and steps, early stopping inside), :func:`train_seeds`,
  :func:`train_folds` (folds trained at once with ``jax.vmap``), :func:`train_folds_loop` (the same
  with a Python loop, the reference), :func:`evaluate_params`;
* :func:`early_stopping` (the rule applied to a validation curve) and :func:`kfold_indices`.

Bad values raise ``ValueError`` where they are concrete: a rate or probability outside
``[0, 1]`` or NaN, a negative penalty, a non-integer or negative shift, a non-positive size, row
indices or class labels outside the data. Inside ``jax.jit``/``jax.vmap`` a *traced* value cannot
be tested with a Python ``if``, so the checks run where the values are still Python or NumPy
numbers or concrete arrays: the constructors (:class:`Hyper`, :class:`TrainConfig`) and the
public functions called outside ``jit`` (:func:`dropout`, :func:`random_flip`, :func:`augment`,
:func:`train_seeds`, :func:`train_folds`, :func:`evaluate_params`, ...). A traced value passes
unchecked: check it before tracing (build a :class:`Hyper`, which checks its fields).

The model is an ordinary Flax NNX module; ``nnx.split`` turns it into a ``GraphDef`` (structure,
static) and an ``nnx.State`` of parameters (a pytree of arrays), and ``nnx.merge`` rebuilds it
inside the pure functions. Optimisers are plain Optax transformations applied to that state
(no ``nnx.Optimizer``), so the version-sensitive calls of :mod:`lmcourse.compat` are not involved.

Sources: dropout, Srivastava et al., "Dropout: a simple way to prevent neural networks from
overfitting", JMLR 15 (2014); decoupled weight decay (AdamW), Loshchilov & Hutter, "Decoupled
weight decay regularization", ICLR 2019; early stopping, Prechelt, "Early stopping - but when?",
in *Neural Networks: Tricks of the Trade* (1998); k-fold cross-validation, Hastie, Tibshirani &
Friedman, *The Elements of Statistical Learning*, 2nd ed. (2009), §7.10; augmentation by shifts
and flips, Simard et al., ICDAR 2003, and Krizhevsky et al., NeurIPS 2012.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

# The MLP and its explicit dropout live in ``lmcourse.models.mlp`` and are re-exported here
# (``R.MLP``, ``R.dropout``), the names chapter 04 uses.
from lmcourse.models.mlp import MLP, dropout  # noqa: F401  (re-exported: R.MLP, R.dropout)
from lmcourse.validation import check_count, check_int, check_probability, check_range, concrete

# --- data augmentation (数据增强) ----------------------------------------------------------------


def shift_images(images: jax.Array, dy: jax.Array, dx: jax.Array, pad: int) -> jax.Array:
    """Move the content of each image ``dy`` pixels down and ``dx`` pixels right, filling with 0.

    Written as zero padding by ``pad`` followed by an ``H×W`` crop at offset
    ``(pad - dy, pad - dx)``: a "random crop after padding" is the same thing. (Random crops and
    flips as augmentation: Krizhevsky et al., NeurIPS 2012; small shifts and distortions of
    digits: Simard et al., ICDAR 2003.)

    Args:
        images: ``(N, H, W, C)`` array (float32 in [0, 1] in the course; 0 = background).
        dy, dx: ``(N,)`` integer shifts (may be traced); values outside ``[-pad, pad]`` are
            clipped to it.
        pad: static bound on ``|dy|`` and ``|dx|`` (the zero padding), an ``int >= 0``.

    Returns:
        ``(N, H, W, C)`` array of the same dtype: ``out[n, i, j] = images[n, i - dy[n], j - dx[n]]``
        where that pixel exists, else 0.

    Raises:
        ValueError: if ``images`` is not 4-D or ``pad`` is not an integer ``>= 0``.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, H, W, C), got {images.shape}")
    p = check_int("pad", pad, 0)
    if p == 0:
        return images
    _, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
    dy = jnp.clip(jnp.asarray(dy, jnp.int32), -p, p)
    dx = jnp.clip(jnp.asarray(dx, jnp.int32), -p, p)

    def crop(image: jax.Array, sy: jax.Array, sx: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (p - sy, p - sx, 0), (h, w, c))

    return jax.vmap(crop)(padded, dy, dx)


def random_shift(key: jax.Array, images: jax.Array, max_shift: int | jax.Array,
                 pad: int | None = None) -> jax.Array:
    """Shift each image by its own random ``(dy, dx)``, each uniform in ``[-max_shift, max_shift]``.

    Args:
        key: a ``jax.random`` key.
        images: ``(N, H, W, C)`` array.
        max_shift: largest shift in pixels; 0 leaves the images unchanged. May be a traced value
            when ``pad`` is given.
        pad: static bound on ``max_shift`` (the padding); ``None`` means ``pad = max_shift``,
            which must then be a Python ``int``. Shifts beyond ``pad`` are clipped.

    Returns:
        ``(N, H, W, C)``, same dtype; pixels shifted in from outside are 0 (see :func:`shift_images`).

    Raises:
        ValueError: ``pad`` not an integer ``>= 0``; a concrete ``max_shift`` that is negative,
            NaN, not a whole number or larger than ``pad`` (it would be clipped silently); a
            traced ``max_shift`` without ``pad``.
    """
    if pad is None:
        if concrete(max_shift) is None:
            raise ValueError("a traced max_shift needs a static pad (the largest shift)")
        check_count("max_shift", max_shift)
        pad = int(max_shift)
    pad = check_int("pad", pad, 0)
    check_count("max_shift", max_shift, 0, pad)
    if pad == 0:
        return images
    m = jnp.asarray(max_shift, jnp.int32)
    shifts = jax.random.randint(key, (2, images.shape[0]), -m, m + 1)
    return shift_images(images, shifts[0], shifts[1], pad)


def flip_left_right(images: jax.Array) -> jax.Array:
    """Mirror ``(N, H, W, C)`` images left–right (exact; applying it twice gives the input back)."""
    return images[:, :, ::-1, :]


def random_flip(key: jax.Array, images: jax.Array, probability: float | jax.Array = 0.5
                ) -> jax.Array:
    """Mirror each ``(N, H, W, C)`` image left–right with ``probability`` (may be traced).

    Returns an array of the same shape and dtype; 0 returns the images, 1 flips them all (a
    uniform draw in ``[0, 1)`` is always ``< 1``). The gradient with respect to the images is a
    mirrored or passed-through copy of the incoming one: finite at every probability.

    Raises:
        ValueError: a concrete ``probability`` outside ``[0, 1]`` or NaN (a traced one is not
            checked; see the module docstring).
    """
    check_probability("flip probability", probability)
    flip = jax.random.uniform(key, (images.shape[0],)) < probability
    return jnp.where(flip[:, None, None, None], flip_left_right(images), images)


def augment(key: jax.Array, images: jax.Array, labels: jax.Array, *,
            max_shift: int | jax.Array = 0, flip_probability: float | jax.Array = 0.0,
            pad: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Label-preserving augmentation of a batch: random shifts, then random left–right flips.

    Args:
        key: a ``jax.random`` key (split inside, one sub-key per transformation).
        images: ``(N, H, W, C)`` float32 in [0, 1].
        labels: ``(N,)`` int32, returned unchanged: these transformations do not change the class.
        max_shift: largest shift in pixels (0 = no shift); traced values need a static ``pad``.
        flip_probability: probability of mirroring each image (0 = never); may be traced.
        pad: static bound on ``max_shift`` (see :func:`random_shift`).

    Returns:
        ``(images, labels)`` with the input shapes and dtypes; values stay in the input's range.
        With ``max_shift = 0`` and ``flip_probability = 0`` the images come back unchanged.

    Raises:
        ValueError: as :func:`random_shift` and :func:`random_flip` (concrete values only).
    """
    check_probability("flip_probability", flip_probability)
    shift_key, flip_key = jax.random.split(key)
    images = random_shift(shift_key, images, max_shift, pad)
    if not (isinstance(flip_probability, int | float) and flip_probability == 0):
        images = random_flip(flip_key, images, flip_probability)
    return images, labels


# --- penalties (正则化项) -------------------------------------------------------------------------


def penalty_mask(params) -> object:
    """Pytree of bools like ``params``: ``True`` for weight matrices and kernels (``ndim >= 2``).

    Biases (1-D) are left out of L1/L2 penalties and weight decay, the usual convention (a bias
    shifts a unit's threshold; shrinking it does not make the function smoother).
    Usable as ``optax.adamw(..., mask=penalty_mask)``.
    """
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def _penalised_leaves(params) -> list[jax.Array]:
    return [p for p in jax.tree.leaves(params) if jnp.ndim(p) >= 2]


def l1_penalty(params) -> jax.Array:
    """``Σ |w|`` over the weight matrices of ``params`` (see :func:`penalty_mask`); a float32 scalar.

    ``params`` is one model's parameters (under ``jax.vmap``, each model's): on a stack of models
    outside ``vmap`` the stacked biases would count as matrices. Its (sub)gradient is ``sign(w)``
    (``jnp.abs`` gives 0 at exactly 0), which drives small weights to exactly 0: the lasso,
    Tibshirani, J. R. Stat. Soc. B 58 (1996).
    """
    return sum((jnp.abs(p).sum() for p in _penalised_leaves(params)), jnp.float32(0.0))


def l2_penalty(params) -> jax.Array:
    """``½ Σ w²`` over the weight matrices of ``params``; its gradient is ``w`` (float32 scalar).

    ``params`` is one model's parameters (see :func:`l1_penalty`). With the ½, adding
    ``λ · l2_penalty`` to the loss adds ``λ w`` to each weight's gradient: with plain SGD that is
    exactly weight decay (Krogh & Hertz, NeurIPS 1991; ridge regression, Hoerl & Kennard,
    Technometrics 1970); with Adam it is not (see :func:`make_train_step`).
    """
    return sum((0.5 * jnp.square(p).sum() for p in _penalised_leaves(params)), jnp.float32(0.0))


# --- training as pure functions ---------------------------------------------------------------


class _HyperFields(NamedTuple):
    l1: float | jax.Array = 0.0
    l2: float | jax.Array = 0.0
    dropout_rate: float | jax.Array = 0.0
    decoupled_decay: float | jax.Array = 0.0
    max_shift: int | jax.Array = 0
    flip_probability: float | jax.Array = 0.0


def check_hyper(hyper: _HyperFields, shift_pad: int | None = None) -> None:
    """Check the concrete fields of a :class:`Hyper` (traced fields pass; see the module docstring).

    Valid ranges: ``l1, l2 >= 0`` (finite); ``dropout_rate``, ``decoupled_decay`` and
    ``flip_probability`` in ``[0, 1]``; ``max_shift`` a whole number ``>= 0`` and, when
    ``shift_pad`` is given, ``<= shift_pad`` (a larger shift would be clipped silently).

    Raises:
        ValueError: naming the field, its valid range and the value found (NaN included).
    """
    for name in ("l1", "l2"):
        check_range(f"Hyper.{name}", getattr(hyper, name), 0.0, None,
                     "a penalty strength is >= 0 (0 = no penalty)")
    check_probability("Hyper.dropout_rate", hyper.dropout_rate)
    check_range("Hyper.decoupled_decay", hyper.decoupled_decay, 0.0, 1.0,
                 "it is the fraction of each weight removed per step (learning rate × wd)")
    check_probability("Hyper.flip_probability", hyper.flip_probability)
    check_count("Hyper.max_shift", hyper.max_shift, 0, shift_pad)


class Hyper(_HyperFields):
    """Hyper-parameters passed as (traced) values: changing one does not recompile, and
    ``jax.vmap`` can give each model its own. Python or 0-d array scalars (``(M,)`` arrays if you
    vmap over them); the defaults (all 0) give plain training, exactly. The constructor (and
    ``_replace``) checks every concrete field with :func:`check_hyper`: a dropout rate of -0.5,
    1.5 or NaN raises ``ValueError`` at once; fields that are traced (JAX rebuilding the tuple
    inside ``jit``) pass unchecked.

    Attributes:
        l1: strength λ₁ of the L1 penalty ``λ₁ Σ|w|`` added to the loss.
        l2: strength λ₂ of the L2 penalty ``λ₂ ½ Σw²`` added to the loss.
        dropout_rate: probability of dropping each hidden unit while training.
        decoupled_decay: fraction of each weight matrix removed per step *outside* the optimizer
            (decoupled weight decay, Loshchilov & Hutter's λ with schedule η_t = 1):
            ``w ← w + update − decoupled_decay · w``. ``optax.adam(α)`` with
            ``decoupled_decay = α · wd`` is exactly ``optax.adamw(α, weight_decay=wd,
            mask=penalty_mask)``.
        max_shift: random-shift augmentation in pixels (0 = none); at most
            ``TrainConfig.shift_pad``.
        flip_probability: probability of mirroring each training image left–right.

    Raises:
        ValueError: see :func:`check_hyper`.
    """

    __slots__ = ()

    def __new__(cls, l1: float | jax.Array = 0.0, l2: float | jax.Array = 0.0,
                dropout_rate: float | jax.Array = 0.0, decoupled_decay: float | jax.Array = 0.0,
                max_shift: int | jax.Array = 0, flip_probability: float | jax.Array = 0.0):
        self = super().__new__(cls, l1, l2, dropout_rate, decoupled_decay, max_shift,
                               flip_probability)
        check_hyper(self)
        return self

    @classmethod
    def _make(cls, iterable) -> Hyper:   # used by _replace: check there too
        return cls(*iterable)


@dataclass(frozen=True)
class TrainConfig:
    """Static settings of a training run (changing one compiles a new program).

    Attributes:
        epochs: passes over the training indices.
        batch_size: images per step; each epoch uses ``n_train // batch_size`` full batches.
        patience: early stopping (Prechelt, 1998): stop once the validation loss has not improved
            for ``patience`` epochs; ``None`` = never stop, keep the best epoch. Training still runs
            all ``epochs`` (for the curves); ``RunResult.best_params`` is what early stopping
            would have returned.
        shift_pad: zero padding for random shifts, the largest ``Hyper.max_shift`` honoured
            (0 removes the shift code from the program).

    Raises:
        ValueError: ``epochs``, ``batch_size`` or ``patience`` (unless ``None``) not an integer
            ``>= 1``; ``shift_pad`` not an integer ``>= 0``.
    """

    epochs: int
    batch_size: int = 100
    patience: int | None = None
    shift_pad: int = 2

    def __post_init__(self) -> None:
        check_int("TrainConfig.epochs", self.epochs, 1)
        check_int("TrainConfig.batch_size", self.batch_size, 1)
        if self.patience is not None:
            check_int("TrainConfig.patience (None = never stop)", self.patience, 1)
        check_int("TrainConfig.shift_pad", self.shift_pad, 0)


class RunResult(NamedTuple):
    """What one training run returns (with a leading model axis when vmapped).

    Attributes:
        params: parameters after the last epoch (an ``nnx.State``).
        best_params: parameters at ``best_epoch`` (early stopping's choice).
        train_loss: ``(epochs,)`` float32 mean cross-entropy on the (un-augmented) training
            indices after each epoch, dropout off.
        val_loss, val_accuracy: ``(epochs,)`` float32 on the validation indices after each epoch.
        best_epoch: int32, 0-based epoch of the lowest validation loss before stopping.
        stop_epoch: int32, 0-based epoch at which early stopping stopped (``epochs - 1`` if never).
    """

    params: object
    best_params: object
    train_loss: jax.Array
    val_loss: jax.Array
    val_accuracy: jax.Array
    best_epoch: jax.Array
    stop_epoch: jax.Array


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of ``(N, K)`` logits against ``(N,)`` int labels (scalar)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_loss_fn(graphdef: nnx.GraphDef) -> Callable:
    """The penalised loss ``L(θ) = CE(θ) + λ₁ Σ|w| + λ₂ ½ Σw²`` as a pure function.

    Returns ``loss_fn(params, x, y, key, hyper) -> (penalised_loss, cross_entropy)``; ``key``
    drives dropout (``None`` = no dropout); ``hyper`` is a :class:`Hyper`. The model rebuilt from
    ``graphdef`` must accept ``model(x, key=..., dropout_rate=...)`` like :class:`MLP`.
    """

    def loss_fn(params, x, y, key, hyper: Hyper):
        model = nnx.merge(graphdef, params)
        logits = model(x, key=key, dropout_rate=hyper.dropout_rate)
        ce = cross_entropy(logits, y)
        penalised = ce + hyper.l1 * l1_penalty(params) + hyper.l2 * l2_penalty(params)
        return penalised, ce

    return loss_fn


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, *,
                    shift_pad: int = 2) -> Callable:
    """A generic training step with augmentation, dropout, L1/L2 penalties and decoupled weight
    decay, as a pure function.

    ``step(params, opt_state, x, y, key, hyper) -> (params, opt_state, cross_entropy)``:
    augment the batch (:func:`augment`), take the gradient of the penalised loss
    (:func:`make_loss_fn`), apply ``tx``, then subtract ``hyper.decoupled_decay · w`` from each
    weight matrix ``w`` (its value before the step). ``x`` ``(B, H, W, C)`` float32, ``y`` ``(B,)``
    int32; ``hyper`` a :class:`Hyper`; the returned cross-entropy is the batch's, before the step.

    An L2 penalty adds ``λ₂ w`` to the gradient *before* ``tx``; Adam then divides it by the
    running RMS of the gradient, so how much a weight is pulled towards 0 depends on its gradient
    history. Decoupled decay (AdamW, Loshchilov & Hutter, 2019) shrinks every weight by the same
    fraction. Not jitted: wrap it (or a function that calls it) in ``jax.jit``/``jax.vmap``.

    Raises:
        ValueError: ``shift_pad`` not an integer ``>= 0``; when called with concrete values, a
            ``hyper`` outside its ranges (:func:`check_hyper`, ``max_shift <= shift_pad``).
    """
    grad_fn = jax.value_and_grad(make_loss_fn(graphdef), has_aux=True)
    shift_pad = check_int("shift_pad", shift_pad, 0)

    def step(params, opt_state, x, y, key, hyper: Hyper):
        check_hyper(hyper, shift_pad)
        aug_key, dropout_key = jax.random.split(key)
        x, y = augment(aug_key, x, y, max_shift=hyper.max_shift,
                       flip_probability=hyper.flip_probability, pad=shift_pad)
        (_, ce), grads = grad_fn(params, x, y, dropout_key, hyper)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(
            lambda u, p, m: u - hyper.decoupled_decay * p if m else u,
            updates, params, penalty_mask(params))
        return optax.apply_updates(params, updates), opt_state, ce

    return step


def _eval_loss_accuracy(graphdef: nnx.GraphDef, params, x: jax.Array, y: jax.Array
                        ) -> tuple[jax.Array, jax.Array]:
    logits = nnx.merge(graphdef, params)(x)
    return cross_entropy(logits, y), jnp.mean(jnp.argmax(logits, -1) == y)


def make_run(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, config: TrainConfig
             ) -> Callable:
    """A whole training run as one pure function (``lax.scan`` over epochs and steps).

    It runs all epochs (and, under ``vmap``, all seeds or folds) inside one ``jit`` on purpose:
    chapter 04 teaches that form, so it does not use :func:`lmcourse.training.train_loop`, the
    course's one Python loop over jitted steps (which checkpoints, shows progress and stops on a
    non-finite loss).

    ``run(params, key, hyper, x, y, train_idx, val_idx) -> RunResult``:

    * ``params``: initial ``nnx.State``; ``key``: ``jax.random`` key (shuffling, augmentation,
      dropout); ``hyper``: :class:`Hyper`;
    * ``x`` ``(N, H, W, C)`` float32 and ``y`` ``(N,)`` int32: a pool of examples;
    * ``train_idx`` ``(n_train,)`` and ``val_idx`` ``(n_val,)`` int32: which rows of the pool to
      train on and to validate on (k-fold cross-validation passes different rows per fold).

    Each epoch shuffles ``train_idx``, runs ``n_train // batch_size`` steps of
    :func:`make_train_step`, then measures the clean training loss and the validation loss and
    accuracy; the parameters of the best validation epoch are kept (early stopping with
    ``config.patience``). Jit it, or vmap it then jit it (:func:`train_seeds`, :func:`train_folds`).

    Raises:
        ValueError: ``patience < 1``; fewer training examples than one batch. Called with
            concrete values (not under ``jit``), also what :func:`check_run_inputs` checks.
    """
    step = make_train_step(graphdef, tx, shift_pad=config.shift_pad)
    patience = config.epochs if config.patience is None else config.patience
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {config.patience}")

    def run(params, key, hyper: Hyper, x, y, train_idx, val_idx) -> RunResult:
        check_hyper(hyper, config.shift_pad)
        hyper = Hyper(*(jnp.asarray(h, jnp.int32 if name == "max_shift" else jnp.float32)
                        for name, h in zip(Hyper._fields, hyper, strict=True)))
        n_steps = train_idx.shape[0] // config.batch_size
        if n_steps == 0:
            raise ValueError(f"{train_idx.shape[0]} training examples < batch size {config.batch_size}")
        x_val, y_val = x[val_idx], y[val_idx]
        x_fit, y_fit = x[train_idx], y[train_idx]

        def one_step(carry, batch_and_key):
            params, opt_state = carry
            batch, step_key = batch_and_key
            params, opt_state, ce = step(params, opt_state, x[batch], y[batch], step_key, hyper)
            return (params, opt_state), ce

        def one_epoch(carry, epoch_and_key):
            params, opt_state, best_params, best_loss, best_epoch, stopped = carry
            epoch, epoch_key = epoch_and_key
            perm_key, steps_key = jax.random.split(epoch_key)
            order = jax.random.permutation(perm_key, train_idx)[: n_steps * config.batch_size]
            step_keys = jax.random.split(steps_key, n_steps)
            (params, opt_state), _ = jax.lax.scan(
                one_step, (params, opt_state), (order.reshape(n_steps, config.batch_size), step_keys))
            train_loss, _ = _eval_loss_accuracy(graphdef, params, x_fit, y_fit)
            val_loss, val_acc = _eval_loss_accuracy(graphdef, params, x_val, y_val)
            improved = (val_loss < best_loss) & ~stopped
            best_params = jax.tree.map(lambda new, old: jnp.where(improved, new, old),
                                       params, best_params)
            best_loss = jnp.where(improved, val_loss, best_loss)
            best_epoch = jnp.where(improved, epoch, best_epoch)
            stopped = stopped | (epoch - best_epoch >= patience)
            return ((params, opt_state, best_params, best_loss, best_epoch, stopped),
                    (train_loss, val_loss, val_acc, stopped))

        carry = (params, tx.init(params), params, jnp.float32(jnp.inf), jnp.int32(0),
                 jnp.bool_(False))
        epochs = jnp.arange(config.epochs, dtype=jnp.int32)
        carry, (train_loss, val_loss, val_acc, stopped) = jax.lax.scan(
            one_epoch, carry, (epochs, jax.random.split(key, config.epochs)))
        params, _, best_params, _, best_epoch, _ = carry
        stop_epoch = jnp.where(stopped.any(), jnp.argmax(stopped), config.epochs - 1)
        return RunResult(params, best_params, train_loss, val_loss, val_acc, best_epoch,
                         stop_epoch.astype(jnp.int32))

    return run


@functools.cache
def _evaluator(graphdef: nnx.GraphDef, model_axes: int) -> Callable:
    fn = functools.partial(_eval_loss_accuracy, graphdef)
    for _ in range(model_axes):
        fn = jax.vmap(fn, in_axes=(0, None, None))
    return jax.jit(fn)


def evaluate_params(graphdef: nnx.GraphDef, params, x: np.ndarray, y: np.ndarray, *,
                    model_axes: int = 0, batch_size: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and accuracy of the model(s) ``(graphdef, params)`` on all of ``(x, y)``.

    Args:
        graphdef, params: from ``nnx.split(model)``; ``params`` may carry ``model_axes`` leading
            axes (e.g. 1 for a stack of seeds or folds).
        x: ``(N, H, W, C)`` float32; y: ``(N,)`` int32.
        batch_size: rows per evaluation call (bounds memory). Dropout is off.

    Returns:
        ``(loss, accuracy)`` as float64 NumPy arrays of the leading shape (scalars when
        ``model_axes = 0``).

    Raises:
        ValueError: ``batch_size`` not an integer ``>= 1``, ``model_axes`` not an integer
            ``>= 0``, empty ``x``, ``x`` and ``y`` of different lengths, or labels outside
            ``0 .. K-1`` for a model with ``K`` outputs (the cross-entropy would read a clamped
            logit instead of failing).
    """
    batch_size = check_int("batch_size", batch_size, 1)
    model_axes = check_int("model_axes", model_axes, 0)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"x and y must be non-empty and of equal length, got {len(x)} and {len(y)}")
    _check_labels(graphdef, params, x, y, model_axes)
    fn = _evaluator(graphdef, model_axes)
    total_loss, total_acc = 0.0, 0.0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        loss, acc = fn(params, xb, yb)
        total_loss = total_loss + np.asarray(loss, np.float64) * len(xb)
        total_acc = total_acc + np.asarray(acc, np.float64) * len(xb)
    return total_loss / len(x), total_acc / len(x)


def _num_classes(graphdef: nnx.GraphDef, params, x, model_axes: int) -> int:
    """Number of logits of the model, from its output shape on one example (no computation)."""
    one = jax.tree.map(lambda p: p[(0,) * model_axes], params) if model_axes else params
    out = jax.eval_shape(lambda p, xb: nnx.merge(graphdef, p)(xb), one, x[:1])
    return int(out.shape[-1])


def _check_labels(graphdef: nnx.GraphDef, params, x, y, model_axes: int) -> None:
    labels = concrete(y)
    if labels is None:
        return
    k = _num_classes(graphdef, params, x, model_axes)
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must be class ids 0..{k - 1} (the model has {k} outputs), "
                         f"found {labels.dtype} values in [{labels.min()}, {labels.max()}]")


def check_run_inputs(graphdef: nnx.GraphDef, config: TrainConfig, params, hyper: Hyper, x, y,
                     train_idx, val_idx, *, model_axes: int = 0) -> None:
    """Check the concrete inputs of a training run before it is traced.

    ``hyper`` within its ranges (:func:`check_hyper`, ``max_shift <= config.shift_pad``); ``x``
    and ``y`` of equal length, ``y`` class ids ``0 .. K-1`` for a model with ``K`` outputs;
    ``train_idx`` and ``val_idx`` non-empty integer row indices in ``[0, len(x))`` (JAX clamps
    an out-of-range gather silently, so a wrong index would train on the last row instead of
    failing) and at least one batch of training rows (per fold).

    Raises:
        ValueError: naming the input, the valid range and how to fix it.
    """
    check_hyper(hyper, config.shift_pad)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    _check_labels(graphdef, params, x, y, model_axes)
    for name, idx in (("train_idx", train_idx), ("val_idx", val_idx)):
        rows = concrete(idx)
        if rows is None:
            continue
        if rows.size == 0 or rows.dtype.kind not in "iu":
            raise ValueError(f"{name} must be non-empty integer row indices, got {rows.dtype} "
                             f"of shape {rows.shape}")
        if rows.min() < 0 or rows.max() >= len(x):
            raise ValueError(f"{name} must index rows 0..{len(x) - 1} of the pool, found "
                             f"[{rows.min()}, {rows.max()}]")
    n_train = np.shape(train_idx)[-1]
    if n_train < config.batch_size:
        raise ValueError(f"{n_train} training examples < batch size {config.batch_size}: "
                         "lower TrainConfig.batch_size or give more rows")


# --- several models at once -------------------------------------------------------------------


def stack_params(states: Sequence) -> object:
    """Stack ``nnx.State`` pytrees of identical structure along a new leading (model) axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def unstack_params(params, index: int) -> object:
    """Model ``index`` of a stack made by :func:`stack_params` (or returned by a vmapped run)."""
    return jax.tree.map(lambda p: p[index], params)


_SEED_AXES = (0, 0, None, None, None, None, None)   # params, key vary; hyper and data shared
_FOLD_AXES = (0, 0, None, None, None, 0, 0)         # … and each fold has its own rows


@functools.cache
def _vmapped_run(graphdef, tx, config: TrainConfig, in_axes: tuple) -> Callable:
    return jax.jit(jax.vmap(make_run(graphdef, tx, config), in_axes=in_axes))


@functools.cache
def _single_run(graphdef, tx, config: TrainConfig) -> Callable:
    return jax.jit(make_run(graphdef, tx, config))


def train_seeds(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, config: TrainConfig,
                params, keys: jax.Array, hyper: Hyper, x, y, train_idx, val_idx) -> RunResult:
    """Train ``M`` models at once, one per seed: ``jax.jit(jax.vmap(run))`` of :func:`make_run`.

    ``params`` (stacked with :func:`stack_params`) and ``keys`` ``(M,)`` have a leading model axis;
    ``hyper``, the pool ``x, y`` and the indices are shared. Returns a :class:`RunResult` whose
    arrays have a leading ``M`` axis. The compiled program is cached per
    ``(graphdef, tx, config)``: reuse the same ``tx`` object to avoid recompiling.

    Raises:
        ValueError: see :func:`check_run_inputs` (hyper-parameters, labels, row indices).
    """
    check_run_inputs(graphdef, config, params, hyper, x, y, train_idx, val_idx, model_axes=1)
    return _vmapped_run(graphdef, tx, config, _SEED_AXES)(params, keys, hyper, x, y, train_idx,
                                                           val_idx)


def train_folds(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, config: TrainConfig,
                params, keys: jax.Array, hyper: Hyper, x, y, train_idx, val_idx) -> RunResult:
    """Train the ``k`` models of k-fold cross-validation at once, in one jitted, vmapped program.

    Args:
        params: stacked initial parameters, leading axis ``k`` (the same state ``k`` times gives
            every fold the same start).
        keys: ``(k,)`` keys.
        hyper: shared :class:`Hyper` (a Python loop over values does not recompile).
        x, y: the pool of examples; train_idx ``(k, n_train)``, val_idx ``(k, n_val)`` from
            :func:`kfold_indices`.

    Returns:
        :class:`RunResult` with a leading ``k`` axis; ``val_loss[:, e]`` are the k validation
        estimates after epoch ``e``.

    Raises:
        ValueError: see :func:`check_run_inputs` (hyper-parameters, labels, row indices).
    """
    check_run_inputs(graphdef, config, params, hyper, x, y, train_idx, val_idx, model_axes=1)
    return _vmapped_run(graphdef, tx, config, _FOLD_AXES)(params, keys, hyper, x, y, train_idx,
                                                           val_idx)


def train_folds_loop(graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                     config: TrainConfig, params, keys: jax.Array, hyper: Hyper, x, y, train_idx,
                     val_idx) -> RunResult:
    """:func:`train_folds` computed the plain way: a Python loop of jitted single-fold runs.

    Same arguments and result (stacked along a leading ``k`` axis); the reference that the
    vmapped version is checked against, and the baseline of its speed-up.

    Raises:
        ValueError: see :func:`check_run_inputs`.
    """
    check_run_inputs(graphdef, config, params, hyper, x, y, train_idx, val_idx, model_axes=1)
    run = _single_run(graphdef, tx, config)
    results = [run(unstack_params(params, f), keys[f], hyper, x, y, train_idx[f], val_idx[f])
               for f in range(len(train_idx))]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *results)


# --- early stopping and k-fold splits ---------------------------------------------------------


class EarlyStop(NamedTuple):
    """``best_epoch``: 0-based epoch of the lowest validation loss seen before stopping;
    ``stop_epoch``: the epoch after which training stops (the last epoch if it never does)."""

    best_epoch: int
    stop_epoch: int


def early_stopping(val_losses: Sequence[float], patience: int) -> EarlyStop:
    """Prechelt's (1998) patience rule applied to a validation curve.

    Walk through the epochs; stop at the first epoch that is ``patience`` epochs after the best
    (lowest, first in case of ties) validation loss so far; return the best epoch, whose
    parameters are the ones to keep. :func:`make_run` applies the same rule inside ``jit``.

    Args:
        val_losses: validation loss after each epoch (length ≥ 1).
        patience: epochs without improvement tolerated (≥ 1).

    Raises:
        ValueError: on an empty curve or a ``patience`` that is not an integer ``>= 1``.
    """
    losses = [float(v) for v in val_losses]
    if not losses:
        raise ValueError("empty validation curve")
    check_int("patience", patience, 1)
    best_epoch, best = 0, float("inf")
    for epoch, loss in enumerate(losses):
        if loss < best:
            best_epoch, best = epoch, loss
        if epoch - best_epoch >= patience:
            return EarlyStop(best_epoch, epoch)
    return EarlyStop(best_epoch, len(losses) - 1)


def kfold_indices(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into ``k`` folds after a seeded shuffle, for k-fold cross-validation
    (Hastie, Tibshirani & Friedman, *The Elements of Statistical Learning*, 2009, §7.10).

    Returns:
        ``(train_idx, val_idx)``: int32 arrays of shapes ``(k, n - n // k)`` and ``(k, n // k)``.
        Row ``f`` of ``val_idx`` is fold ``f``; row ``f`` of ``train_idx`` is all the other folds
        (sorted). The validation rows partition ``range(n)``.

    Raises:
        ValueError: unless ``n`` and ``k`` are integers, ``2 <= k <= n`` and ``k`` divides ``n``
            (equal folds give one array shape, which ``jax.vmap`` needs).
    """
    check_int("n", n, 1)
    check_int("k", k, 1)
    if not 2 <= k <= n:
        raise ValueError(f"need 2 <= k <= n, got k={k}, n={n}")
    if n % k:
        raise ValueError(f"k={k} does not divide n={n}: use n = {n - n % k} examples, or another k")
    folds = np.random.default_rng(seed).permutation(n).reshape(k, n // k).astype(np.int32)
    train = np.stack([np.sort(np.concatenate([folds[g] for g in range(k) if g != f]))
                      for f in range(k)])
    return train, np.sort(folds, axis=1)
