"""The data-parallel step both training benchmarks time on simulated CPU devices (``jax-dp*``).

Chapter 11's own code (``lmcourse.sharding``, layout ``"dp"``): parameters and optimizer state
replicated, the batch split over the ``data`` axis, XLA adds the gradient all-reduce. Call
``lmcourse.sharding.use_cpu_devices(devices)`` before anything computes, then this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def make_dp_step(model: Any, optimizer: Any, loss_fn: Callable, devices: int
                 ) -> tuple[Callable, Callable]:
    """A ``step(model, optimizer, x, y) -> loss`` like the course's, run sharded over ``devices``.

    The model and optimizer are split once (``nnx.split``); the sharded state lives in a closure,
    so ``step`` ignores its ``model`` and ``optimizer`` arguments (kept so that the timing loop is
    the same for every variant).

    Args:
        model, optimizer: the course's ``nnx`` model and ``nnx.Optimizer``.
        loss_fn: ``loss_fn(model, x, y)`` -> float32 scalar.
        devices: the size of the ``data`` mesh axis (≤ ``jax.device_count()``).

    Returns:
        ``(step, state)``: ``state()`` gives the current sharded ``nnx.state((model, optimizer))``.

    Raises:
        ValueError: from ``lmcourse.sharding.make_mesh`` when ``devices`` exceeds the devices JAX has.
    """
    import jax
    from flax import nnx

    from lmcourse import sharding

    mesh = sharding.make_mesh((devices,), sharding.mesh_axes("dp"))
    graphdef, start = nnx.split((model, optimizer))
    shardings = sharding.state_shardings(start, "dp", mesh)
    batch_sharding = jax.sharding.NamedSharding(mesh, sharding.batch_spec("dp"))
    sharded_step = sharding.make_sharded_train_step(graphdef, shardings, batch_sharding, loss_fn)
    box = {"state": sharding.place(start, shardings)}

    def step(model, optimizer, x, y):   # model, optimizer: unused (the state is in box)
        box["state"], loss = sharded_step(box["state"], x, y)
        return loss

    return step, lambda: box["state"]
