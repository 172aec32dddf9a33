"""The generic supervised training loop, as taught in chapter 03 and reused afterwards.

Pieces: :func:`to_float_images` (uint8 → float32 NHWC), :func:`batches` (seeded shuffling),
:func:`train_step` and :func:`eval_step` (``nnx.jit``-compiled, model and optimizer updated in
place), :func:`evaluate`, and :func:`fit`, which stops with :class:`NonFiniteLossError` naming
the step when the loss becomes NaN or infinite.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmcourse.compat import apply_gradients, get_modes, set_modes
from lmcourse.progress import progress as progress_bar


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the first bad step."""


def to_float_images(x: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` or ``(N, H, W, C)`` uint8 in [0, 255] → ``(N, H, W, C)`` float32 in [0, 1]."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, H, W) or (N, H, W, C), got {x.shape}")
    return x.astype(np.float32) / 255.0


def batches(n: int, batch_size: int, rng: np.random.Generator | None = None,
            drop_last: bool = True) -> Iterator[np.ndarray]:
    """Yield index arrays of ``batch_size`` covering ``range(n)``, shuffled when ``rng`` is given.

    ``drop_last`` drops a final short batch (one compiled shape for the jitted step).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def cross_entropy_loss(model: nnx.Module, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy of ``model(x)`` against integer labels ``y``; returns (loss, logits)."""
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, logits


@nnx.jit
def train_step(model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    """One gradient step on a batch, in place. ``x`` ``(B, H, W, C)`` float32, ``y`` ``(B,)`` int32.

    Returns the batch's mean cross-entropy loss (a scalar, before the update).
    """
    grad_fn = nnx.value_and_grad(cross_entropy_loss, has_aux=True)
    (loss, _), grads = grad_fn(model, x, y)
    apply_gradients(optimizer, model, grads)
    return loss


@nnx.jit
def eval_step(model: nnx.Module, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Summed loss and number of correct predictions on a batch (for exact dataset means)."""
    loss, logits = cross_entropy_loss(model, x, y)
    correct = jnp.sum(jnp.argmax(logits, axis=-1) == y)
    return loss * x.shape[0], correct


def evaluate(model: nnx.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000
             ) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on all of ``(x, y)``.

    Args:
        model: a classifier returning ``(B, num_classes)`` logits.
        x: ``(N, H, W, C)`` float32 images; ``y``: ``(N,)`` integer labels in ``[0, num_classes)``.
        batch_size: evaluation batch size (the last batch may be shorter; means are exact).

    ``model`` is put in evaluation mode (dropout off, batch-norm running averages) for the call,
    then every module is put back in the mode it was found in, also when an error is raised.

    Raises:
        ValueError: ``x`` and ``y`` differ in length, are empty, or a label is outside
            ``[0, num_classes)`` (JAX would otherwise score it silently as wrong).
    """
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)} labels; they must match")
    if len(x) == 0:
        raise ValueError("evaluate needs at least one example, got an empty x")
    modes = get_modes(model)
    model.eval()
    try:
        total_loss, total_correct, checked = 0.0, 0, False
        for idx in batches(len(x), batch_size, drop_last=False):
            if not checked:  # the class count is known once the model has produced logits
                num_classes = _num_classes(model, x[idx[:1]])
                _check_labels(y, num_classes)
                checked = True
            loss, correct = eval_step(model, x[idx], y[idx])
            total_loss += float(loss)
            total_correct += int(correct)
    finally:
        set_modes(modes)
    return total_loss / len(x), total_correct / len(x)


def _num_classes(model: nnx.Module, x_one: np.ndarray) -> int:
    """Number of logits ``model`` returns for one example (shape inference only, no compute)."""
    return int(nnx.eval_shape(lambda m, x: m(x), model, jnp.asarray(x_one)).shape[-1])


def _check_labels(y: np.ndarray, num_classes: int) -> None:
    """Raise ``ValueError`` unless every label is an integer in ``[0, num_classes)``."""
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) for a {num_classes}-class model; "
                         f"got values from {y.min()} to {y.max()}")


@dataclass
class History:
    """What :func:`fit` measured: per-step losses, per-epoch test metrics, throughput."""

    step_loss: list[float] = field(default_factory=list)
    epoch_test_loss: list[float] = field(default_factory=list)
    epoch_test_accuracy: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    train_images: int = 0

    @property
    def images_per_second(self) -> float:
        """Training throughput (compilation of the first step excluded)."""
        return self.train_images / self.train_seconds if self.train_seconds else float("nan")


def _check_finite(losses: list[jax.Array], first_step: int) -> list[float]:
    values = np.asarray(jax.device_get(jnp.stack(losses)), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        step = first_step + int(bad[0])
        raise NonFiniteLossError(
            f"training loss became {values[bad[0]]} at step {step}: stop. Usual causes: a learning "
            "rate too high, inputs not scaled (e.g. raw 0-255 pixels), log of zero in a hand-written loss.")
    return values.tolist()


def fit(model: nnx.Module, optimizer: nnx.Optimizer, x_train: np.ndarray, y_train: np.ndarray,
        x_test: np.ndarray | None = None, y_test: np.ndarray | None = None, *, epochs: int = 1,
        batch_size: int = 128, seed: int = 0, check_every: int = 50, progress: bool = True) -> History:
    """Train ``model`` in place with :func:`train_step` for ``epochs`` passes over the data.

    Args:
        x_train: ``(N, H, W, C)`` float32 (see :func:`to_float_images`); ``y_train`` ``(N,)`` int32.
        x_test, y_test: evaluated after each epoch when given.
        epochs, batch_size, seed: loop settings; batches are reshuffled each epoch from ``seed``.
        check_every: how often (in steps) losses are pulled to the host and checked for NaN/inf.
        progress: show a progress bar (images/s, ETA, last checked loss, test accuracy; see
            :mod:`lmcourse.progress`) and print one summary line at the end; False: silent.

    Returns:
        :class:`History`. The first step (which compiles) is excluded from the throughput.

    Raises:
        NonFiniteLossError: naming the first step whose loss was NaN or infinite.
        ValueError: mismatched lengths, labels outside ``[0, num_classes)``, fewer training
            examples than one batch, or non-positive ``epochs``/``batch_size``/``check_every``.
    """
    if epochs < 0 or check_every <= 0:
        raise ValueError(f"epochs must be >= 0 and check_every > 0, got {epochs} and {check_every}")
    if batch_size <= 0 or len(x_train) < batch_size:
        raise ValueError(f"batch_size must be in [1, {len(x_train)}] (the training set size); "
                         f"got {batch_size}")
    if len(x_train) != len(y_train):
        raise ValueError(f"x_train has {len(x_train)} examples but y_train {len(y_train)} labels")
    _check_labels(np.asarray(y_train), _num_classes(model, x_train[:1]))
    rng = np.random.default_rng(seed)
    history = History()
    step = 0
    pending: list[jax.Array] = []
    steps_per_epoch = len(x_train) // batch_size
    bar = progress_bar(total=epochs * steps_per_epoch * batch_size, desc="train", unit="img",
                       enabled=progress)
    with bar:
        for epoch in range(epochs):
            if epochs > 1:
                bar.set(epoch=f"{epoch + 1}/{epochs}")
            for idx in batches(len(x_train), batch_size, rng):
                t0 = time.perf_counter()
                pending.append(train_step(model, optimizer, x_train[idx], y_train[idx]))
                step += 1
                if step == 1:  # compile time is not throughput
                    pending[-1].block_until_ready()
                elif len(pending) >= check_every:
                    history.step_loss += _check_finite(pending, step - len(pending))
                    pending = []
                    bar.set(loss=history.step_loss[-1])
                if step > 1:
                    history.train_seconds += time.perf_counter() - t0
                    history.train_images += len(idx)
                bar.update(len(idx))
            t0 = time.perf_counter()
            if pending:
                history.step_loss += _check_finite(pending, step - len(pending))
                pending = []
                bar.set(loss=history.step_loss[-1])
            history.train_seconds += time.perf_counter() - t0
            if x_test is not None and y_test is not None:
                test_loss, test_acc = evaluate(model, x_test, y_test)
                history.epoch_test_loss.append(test_loss)
                history.epoch_test_accuracy.append(test_acc)
                bar.set(test_acc=test_acc)
        bar.close(_fit_summary(history, step, epochs, bar.elapsed))
    return history


def _fit_summary(history: History, steps: int, epochs: int, wall_seconds: float) -> str:
    """``train: 1,200 steps (2 epochs) in 41.2 s, 4,660 img/s (compilation excluded), …``.

    ``wall_seconds`` includes compilation and evaluation; the rate is History's.
    """
    text = (f"train: {steps:,} steps ({epochs} epoch{'' if epochs == 1 else 's'}) in "
            f"{wall_seconds:.1f} s")
    if history.train_images:
        text += f", {history.images_per_second:,.0f} img/s (compilation excluded)"
    if history.step_loss:
        text += f", final loss {history.step_loss[-1]:.4g}"
    if history.epoch_test_accuracy:
        text += f", test accuracy {history.epoch_test_accuracy[-1]:.4f}"
    return text
