"""The one training loop, as taught in chapter 03 and reused by every later chapter.

Used in chapters: 03, 04, 07, 08, 10, 11, 12; imported by ``lmcourse.adversarial``,
``lmcourse.models.detector``, ``lmcourse.multitask``, ``lmcourse.recsys``.

Pieces: :func:`to_float_images` (uint8 → float32 NHWC), :func:`batches` (the one seeded
batcher) and :class:`EpochBatches` (its epochs, with a position that can be saved),
:func:`train_step` and :func:`eval_step` (``nnx.jit``-compiled, model and optimizer updated in
place), :func:`evaluate`, :func:`train_loop` (a step function over a batch source, one
:class:`History`, one NaN policy: :class:`NonFiniteLossError` naming the step; checkpoints
every N steps and resume, :mod:`lmcourse.checkpoint`), and :func:`fit`, the chapter-03 case of
it. Loops written as one ``jax.lax.scan`` on purpose (chapter 04's k-fold and its capacity
sweep, where ``jax.vmap`` trains all seeds of one width as one program; chapter 09's MF epoch)
stay outside it; their docstrings or the notebook's text say why.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmcourse.compat import apply_gradients, get_modes, set_modes
from lmcourse.progress import progress as progress_bar
from lmcourse.validation import check_int, check_positive_int

if TYPE_CHECKING:  # orbax is imported only when a run checkpoints
    from lmcourse.checkpoint import Checkpoint


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the first bad step."""


def to_float_images(x: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` or ``(N, H, W, C)`` uint8 in [0, 255] → ``(N, H, W, C)`` float32 in [0, 1].

    Raises:
        ValueError: ``x`` has neither 3 nor 4 axes.
    """
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

    Raises:
        ValueError: ``n`` is not an integer >= 0 or ``batch_size`` not a positive integer
            (raised at the first ``next``, this being a generator).
    """
    n = check_int("n", n, 0)
    batch_size = check_positive_int("batch_size", batch_size)
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
    """What a training run measured (:func:`train_loop`, :func:`fit`, and the chapters' loops).

    Attributes:
        step_loss: the loss of every step, in order (Python floats, checked finite).
        step_metrics: other per-step scalars a step function returned next to its loss
            (e.g. the detector's loss parts), one list per name.
        eval_step: the number of steps done when each evaluation ran.
        eval_metrics: what ``eval_fn`` returned at each evaluation, one list per name.
        train_seconds, train_images: time and examples of the timed steps (each run's or
            resumed run's first step, which compiles, is excluded).
        wall_seconds: wall-clock time of the loop, compilation and evaluation included.
    """

    step_loss: list[float] = field(default_factory=list)
    step_metrics: dict[str, list[float]] = field(default_factory=dict)
    eval_step: list[int] = field(default_factory=list)
    eval_metrics: dict[str, list[float]] = field(default_factory=dict)
    train_seconds: float = 0.0
    train_images: int = 0
    wall_seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Training throughput (compilation of the first step excluded)."""
        return self.train_images / self.train_seconds if self.train_seconds else float("nan")

    @property
    def epoch_test_loss(self) -> list[float]:
        """:func:`fit`'s test loss after each epoch (``eval_metrics["test_loss"]``)."""
        return self.eval_metrics.get("test_loss", [])

    @property
    def epoch_test_accuracy(self) -> list[float]:
        """:func:`fit`'s test accuracy after each epoch (``eval_metrics["test_accuracy"]``)."""
        return self.eval_metrics.get("test_accuracy", [])


class EpochBatches:
    """Endless batches, epoch after epoch, whose position can be saved and restored exactly.

    Each epoch is the list ``make_epoch(rng)`` returns, drawn when its first batch is needed
    (so a caller that also draws from ``rng`` between batches, like the detector's random
    shifts, sees the generator in the same state as a hand-written loop would).
    :meth:`state` is JSON-able: the generator's state before the current epoch was drawn (to
    draw it again), its state now, and how many batches of the epoch were given.

    Args:
        make_epoch: ``rng -> sequence of batches`` (e.g. ``list(batches(n, b, rng))``); each
            batch is anything with a ``len`` (the number of examples; index arrays usually).
        rng: a NumPy generator, or a seed for one.

    Raises:
        ValueError: (when iterating) ``make_epoch`` returned no batch.
    """

    def __init__(self, make_epoch: Callable[[np.random.Generator], Sequence[Any]],
                 rng: np.random.Generator | int):
        self.make_epoch = make_epoch
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.epoch = 0            # epochs started
        self.position = 0         # batches of the current epoch already given
        self._epoch_rng: dict | None = None
        self._batches: Sequence[Any] = []

    def __iter__(self) -> EpochBatches:
        return self

    def __next__(self) -> Any:
        if self.position >= len(self._batches):
            self._epoch_rng = copy.deepcopy(self.rng.bit_generator.state)
            self._batches = self._draw()
            self.epoch, self.position = self.epoch + 1, 0
        self.position += 1
        return self._batches[self.position - 1]

    def _draw(self) -> Sequence[Any]:
        epoch = self.make_epoch(self.rng)
        if len(epoch) == 0:
            raise ValueError("make_epoch returned no batch: is the data set smaller than one batch?")
        return epoch

    def state(self) -> dict[str, Any]:
        """The position, as JSON-able values (see the class docstring)."""
        return {"epoch_rng": self._epoch_rng, "rng": copy.deepcopy(self.rng.bit_generator.state),
                "epoch": self.epoch, "position": self.position}

    def restore(self, state: dict[str, Any]) -> None:
        """Go back to a position returned by :meth:`state` (the current epoch is drawn again)."""
        if state["epoch_rng"] is not None:
            self.rng.bit_generator.state = state["epoch_rng"]
            self._batches = self._draw()
        self._epoch_rng = state["epoch_rng"]
        self.rng.bit_generator.state = state["rng"]
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator | int) -> EpochBatches:
    """:func:`batches` of ``range(n)``, reshuffled from ``rng`` every epoch, as :class:`EpochBatches`.

    Raises:
        ValueError: ``batch_size`` not in ``[1, n]``.
    """
    if batch_size <= 0 or n < batch_size:
        raise ValueError(f"batch_size must be in [1, {n}] (the number of examples), got {batch_size}")
    return EpochBatches(lambda g: list(batches(n, batch_size, g)), rng)


def _check_finite(outputs: list[Any], first_step: int) -> tuple[list[float], dict[str, list[float]]]:
    """Losses (and extra scalars) of steps ``first_step, …``, pulled to the host and checked.

    Each output is a scalar loss or ``(loss, {name: scalar})``.
    """
    host = jax.device_get(outputs)
    values = np.asarray([o[0] if isinstance(o, tuple) else o for o in host], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        step = first_step + int(bad[0])
        raise NonFiniteLossError(
            f"training loss became {values[bad[0]]} at step {step}: stop. Usual causes: a learning "
            "rate too high, inputs not scaled (e.g. raw 0-255 pixels), log of zero in a hand-written loss.")
    extra: dict[str, list[float]] = {}
    for o in host:
        for name, v in (o[1] if isinstance(o, tuple) else {}).items():
            extra.setdefault(name, []).append(float(v))
    return values.tolist(), extra


def train_loop(step_fn: Callable[[Any], Any], batch_source: Iterator[Any], *, steps: int,
               check_every: int = 50, epoch_steps: int | None = None,
               eval_fn: Callable[[], dict[str, float] | None] | None = None,
               callback: Callable[[int, History], None] | None = None,
               checkpoint: Checkpoint | None = None, history: History | None = None,
               progress: bool = True, desc: str = "train", unit: str = "examples",
               batch_size: int | None = None) -> History:
    """Run ``steps`` calls of ``step_fn`` on batches from ``batch_source``: the one training loop.

    Each step calls ``step_fn(batch)``, which updates the model in place and returns the batch
    loss (a scalar array) or ``(loss, {name: scalar})``. Outputs stay on the device and are
    checked every ``check_every`` steps (one host transfer, no stall per step); the first
    non-finite loss stops the run with :class:`NonFiniteLossError` naming its (0-based) step.

    Args:
        step_fn: one training step on one batch.
        batch_source: an iterator of batches (each with a ``len``, the number of examples); an
            :class:`EpochBatches` when checkpointing (its position is saved).
        steps: total steps of the run (≥ 0), counting those restored from a checkpoint.
        check_every: steps between loss checks (≥ 1); the first step's loss waits for the
            next check.
        epoch_steps: steps per epoch (≥ 1): losses are checked, ``eval_fn`` runs and the
            bar's epoch counter moves at the end of each epoch. None: one evaluation at the end.
        eval_fn: ``() -> {name: value}`` (or None), recorded in ``history.eval_metrics``
            (not timed as training).
        callback: ``callback(step, history)`` after every check (``step`` = steps done);
            raising from it stops the run (a saved checkpoint stays).
        checkpoint: a :class:`lmcourse.checkpoint.Checkpoint`: restore its latest save first,
            then save every ``checkpoint.every`` steps and at the end.
        history: a (possibly subclassed) :class:`History` to fill; a new one by default.
        progress: a progress bar (``unit``/s, ETA, loss) and one summary line; False: silent.
        desc, unit: the bar's name and the unit counted (the examples of a batch).
        batch_size: examples per step, for the bar's total and ETA (None: no total).

    Returns:
        the :class:`History`, including what a restored checkpoint held.

    Raises:
        NonFiniteLossError: naming the first step whose loss was NaN or infinite.
        ValueError: ``steps`` < 0, ``check_every`` or ``epoch_steps`` < 1, a checkpoint that
            does not fit (see :meth:`lmcourse.checkpoint.Checkpoint.restore`), or a batch
            source without ``state``/``restore`` while checkpointing.
    """
    if steps < 0 or check_every < 1 or (epoch_steps is not None and epoch_steps < 1):
        raise ValueError(f"steps must be >= 0, check_every and epoch_steps >= 1; got {steps}, "
                         f"{check_every} and {epoch_steps}")
    if checkpoint is not None and not (hasattr(batch_source, "state")
                                       and hasattr(batch_source, "restore")):
        raise ValueError("checkpointing needs a batch source whose position can be saved: "
                         "wrap the batches in lmcourse.training.EpochBatches")
    history = History() if history is None else history
    if checkpoint is None:
        return _run(step_fn, batch_source, steps, check_every, epoch_steps, eval_fn, callback,
                    None, history, progress, desc, unit, batch_size)
    try:
        return _run(step_fn, batch_source, steps, check_every, epoch_steps, eval_fn, callback,
                    checkpoint, history, progress, desc, unit, batch_size)
    finally:
        checkpoint.close()


def _run(step_fn, batch_source, steps, check_every, epoch_steps, eval_fn, callback, checkpoint,
         history, progress, desc, unit, batch_size) -> History:
    """The body of :func:`train_loop` (arguments checked)."""
    start = checkpoint.restore(history, batch_source) if checkpoint is not None else 0
    if start > steps:
        raise ValueError(f"the checkpoint is at step {start}, beyond this run's {steps} steps")
    wall = time.perf_counter()
    total = (steps - start) * batch_size if batch_size else None
    bar = progress_bar(total=total, desc=desc, unit=unit, enabled=progress)
    pending: list[Any] = []

    def check(step: int) -> None:
        nonlocal pending
        if not pending:
            return
        losses, extra = _check_finite(pending, step - len(pending))
        pending = []
        history.step_loss += losses
        for name, values in extra.items():
            history.step_metrics.setdefault(name, []).extend(values)
        bar.set(loss=float(np.mean(history.step_loss[-20:])))
        if callback is not None:
            callback(step, history)

    with bar:
        if epoch_steps and steps > epoch_steps:
            bar.set(epoch=f"{start // epoch_steps + 1}/{-(-steps // epoch_steps)}")
        for step in range(start + 1, steps + 1):         # step: steps done after this one
            batch = next(batch_source)
            t0 = time.perf_counter()
            pending.append(step_fn(batch))
            epoch_end = bool(epoch_steps) and step % epoch_steps == 0
            save = checkpoint is not None and (step == steps or (
                checkpoint.every and step % checkpoint.every == 0))
            if step == start + 1:                        # compile time is not throughput
                jax.block_until_ready(pending[-1])
            elif len(pending) >= check_every:
                check(step)
            if step > start + 1:
                history.train_seconds += time.perf_counter() - t0
                history.train_images += len(batch)
            bar.update(len(batch))
            if epoch_end or step == steps or save:
                t0 = time.perf_counter()
                check(step)
                history.train_seconds += time.perf_counter() - t0
            if eval_fn is not None and (epoch_end or (not epoch_steps and step == steps)):
                _evaluate_into(history, eval_fn, step, bar)
            if epoch_end and step < steps:
                bar.set(epoch=f"{step // epoch_steps + 1}/{-(-steps // epoch_steps)}")
            if save:
                history.wall_seconds += time.perf_counter() - wall
                wall = time.perf_counter()
                checkpoint.save(step, history, batch_source)
        history.wall_seconds += time.perf_counter() - wall
        bar.close(_summary(history, desc, unit, steps, start, epoch_steps, bar.elapsed))
    return history


def _evaluate_into(history: History, eval_fn: Callable[[], dict[str, float] | None], step: int,
                   bar: Any) -> None:
    results = eval_fn()
    if not results:
        return
    history.eval_step.append(step)
    for name, value in results.items():
        history.eval_metrics.setdefault(name, []).append(float(value))
    bar.set(**{name: float(value) for name, value in results.items()})


def _summary(history: History, desc: str, unit: str, steps: int, start: int,
             epoch_steps: int | None, wall_seconds: float) -> str:
    """``train: 1,200 steps (2 epochs) in 41.2 s, 4,660 img/s (compilation excluded), …``.

    ``wall_seconds`` (this call's) includes compilation and evaluation; the rate is History's.
    """
    text = f"{desc}: {steps:,} steps"
    if epoch_steps:
        epochs = steps // epoch_steps
        text += f" ({epochs} epoch{'' if epochs == 1 else 's'})"
    if start:
        text += f", resumed from the checkpoint of step {start:,},"
    text += f" in {wall_seconds:.1f} s"
    if history.train_images:
        text += f", {history.images_per_second:,.0f} {unit}/s (compilation excluded)"
    if history.step_loss:
        text += f", final loss {history.step_loss[-1]:.4g}"
    for name, values in history.eval_metrics.items():
        text += f", {name.replace('_', ' ')} {values[-1]:.4f}"
    return text


def fit(model: nnx.Module, optimizer: nnx.Optimizer, x_train: np.ndarray, y_train: np.ndarray,
        x_test: np.ndarray | None = None, y_test: np.ndarray | None = None, *, epochs: int = 1,
        batch_size: int = 128, seed: int = 0, check_every: int = 50, progress: bool = True,
        step_fn: Callable[..., jax.Array] = train_step, checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 0, resume: bool = True) -> History:
    """Train a classifier in place for ``epochs`` passes over the data, with :func:`train_loop`.

    Args:
        x_train: ``(N, H, W, C)`` float32 (see :func:`to_float_images`); ``y_train`` ``(N,)`` int32.
        x_test, y_test: evaluated after each epoch when given (``eval_metrics`` ``test_loss``
            and ``test_accuracy``, also read as ``epoch_test_loss``/``epoch_test_accuracy``).
        epochs, batch_size, seed: loop settings; batches (:func:`batches`, the last short one
            dropped) are reshuffled each epoch from ``default_rng(seed)``.
        check_every: how often (in steps) losses are pulled to the host and checked for NaN/inf.
        progress: show a progress bar (images/s, ETA, loss, test accuracy; see
            :mod:`lmcourse.progress`) and print one summary line at the end; False: silent.
        step_fn: ``step_fn(model, optimizer, x, y) -> loss``, updating in place
            (:func:`train_step` by default).
        checkpoint_dir: save checkpoints there (:mod:`lmcourse.checkpoint`): every
            ``checkpoint_every`` steps (0: only at the end) and at the end. With ``resume``
            (the default) an existing checkpoint is loaded first and training continues from
            it: a finished run is simply loaded ("train, or load the checkpoint if it exists").

    Returns:
        :class:`History`. The first step (which compiles) is excluded from the throughput.

    Raises:
        NonFiniteLossError: naming the first step whose loss was NaN or infinite.
        ValueError: mismatched lengths, labels outside ``[0, num_classes)``, fewer training
            examples than one batch, non-positive ``epochs``/``batch_size``/``check_every``, or
            a checkpoint in ``checkpoint_dir`` from another model or other settings.
    """
    if epochs < 0 or check_every <= 0:
        raise ValueError(f"epochs must be >= 0 and check_every > 0, got {epochs} and {check_every}")
    if batch_size <= 0 or len(x_train) < batch_size:
        raise ValueError(f"batch_size must be in [1, {len(x_train)}] (the training set size); "
                         f"got {batch_size}")
    if len(x_train) != len(y_train):
        raise ValueError(f"x_train has {len(x_train)} examples but y_train {len(y_train)} labels")
    _check_labels(np.asarray(y_train), _num_classes(model, x_train[:1]))
    steps_per_epoch = len(x_train) // batch_size
    checkpoint = None
    if checkpoint_dir is not None:
        from lmcourse.checkpoint import Checkpoint

        checkpoint = Checkpoint(checkpoint_dir, {"model": model, "optimizer": optimizer},
                                every=checkpoint_every, resume=resume,
                                config={"n": len(x_train), "batch_size": batch_size, "seed": seed,
                                        "epochs": epochs})
    eval_fn = None
    if x_test is not None and y_test is not None:
        def eval_fn() -> dict[str, float]:
            test_loss, test_acc = evaluate(model, x_test, y_test)
            return {"test_loss": test_loss, "test_accuracy": test_acc}
    return train_loop(lambda idx: step_fn(model, optimizer, x_train[idx], y_train[idx]),
                      epoch_batches(len(x_train), batch_size, seed),
                      steps=epochs * steps_per_epoch, check_every=check_every,
                      epoch_steps=steps_per_epoch, eval_fn=eval_fn, checkpoint=checkpoint,
                      progress=progress, desc="train", unit="img", batch_size=batch_size)
