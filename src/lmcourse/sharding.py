"""Training chapter 07's GPT on many devices with ``jax.sharding``: meshes, partition rules,
sharded state, a sharded train step, and the collectives XLA inserted.

Used in chapters: 11.

The single-program, multiple-data (SPMD) recipe of JAX: describe *where* every array lives (a
:class:`jax.sharding.NamedSharding` = a device :class:`~jax.sharding.Mesh` with named axes and a
:class:`~jax.sharding.PartitionSpec` saying which array dimension is split over which mesh axis),
then ``jax.jit`` the ordinary one-device train step with those shardings. XLA's GSPMD partitioner
(Xu et al. 2021, *GSPMD: General and Scalable Parallelization for ML Computation Graphs*) turns
the program into one per-device program and inserts the communication (all-reduce, all-gather,
reduce-scatter, ...) that the layout needs. Nothing here writes a collective by hand.

Strategies (:data:`STRATEGIES`), for the GPT of :mod:`lmcourse.models.gpt`:

* ``"dp"`` data parallelism: batch split over mesh axis ``data``, parameters and optimizer state
  replicated; gradients are all-reduced.
* ``"fsdp"`` fully sharded data parallelism (ZeRO stage 3, Rajbhandari et al. 2020 §5): batch
  *and* every parameter and Adam moment split over ``data`` (each array along its largest
  dimension that the axis size divides); parameters are all-gathered for compute and gradients
  reduce-scattered.
* ``"tp"`` tensor parallelism (Megatron-LM, Shoeybi et al. 2019 §3): in every block, the MLP's
  first matrix and the attention's query/key/value projection are split by columns, the MLP's
  second matrix and the attention's output projection by rows, over mesh axis ``model``; the
  batch is replicated; one all-reduce per split pair in the forward pass, one in the backward.
* ``"dp+tp"`` the two together on a 2-D mesh ``(data, model)``.

Shardings never change what is computed, only where: a sharded run's loss equals the
one-device run's up to float32 rounding of sums taken in another order (tested to 1e-5).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lmcourse.validation import check_positive_int

__all__ = ["COLLECTIVES", "STRATEGIES", "batch_spec", "count_collectives", "describe_counts", "leaf_bytes",
           "make_mesh", "make_sharded_train_step", "mesh_axes", "param_spec", "path_names",
           "per_device_bytes", "place", "state_shardings", "use_cpu_devices"]

#: The parallelism strategies of :func:`param_spec` and the mesh axes each one uses.
STRATEGIES: dict[str, tuple[str, ...]] = {"single": ("data",), "dp": ("data",), "fsdp": ("data",),
                                          "tp": ("model",), "dp+tp": ("data", "model")}
#: The collective operations :func:`count_collectives` looks for in compiled HLO text.
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")

# Megatron-LM §3 (Shoeybi et al. 2019): column-split the first matrix of each pair (and its bias),
# row-split the second (its bias stays whole: it is added once, after the all-reduce).
_MEGATRON = {("qkv", "kernel"): (None, "model"), ("qkv", "bias"): ("model",),
             ("proj", "kernel"): ("model", None),
             ("fc", "kernel"): (None, "model"), ("fc", "bias"): ("model",),
             ("fc_out", "kernel"): ("model", None)}


def use_cpu_devices(n: int) -> int:
    """Ask JAX for ``n`` simulated CPU devices; call it before anything computes.

    Sets the ``jax_num_cpu_devices`` option (JAX ≥ 0.4.31; the older way is the XLA flag
    ``--xla_force_host_platform_device_count=n`` in ``XLA_FLAGS``). The devices share the
    machine's cores: they show how a program is partitioned and add no compute (on 2 cores a
    step split over 2 devices measured 1.06–1.21× faster per round, ``benchmarks/README.md``).
    On 2 cores the chapter-03 CNN's data-parallel step on 2 such devices aborted in 4 of 6 runs:
    XLA:CPU's in-process all-reduce waited 40 s for the other device and ended the process
    (``benchmarks/README.md``, "The chapter-03 CNN on two CPU devices").

    Args:
        n: number of CPU devices wanted, ≥ 1.

    Returns:
        the number of devices JAX then reports (``jax.device_count()``, which starts the backend).

    Raises:
        ValueError: ``n`` is not a positive integer.
        RuntimeError: JAX's backend already started with another device count (restart the
            kernel and call this first, before any computation).
    """
    n = check_positive_int("n", n)
    from lmcourse.compat import backends_started

    if not backends_started():
        jax.config.update("jax_num_cpu_devices", n)
    have = jax.device_count()
    if have != n and jax.default_backend() == "cpu":
        raise RuntimeError(f"JAX already started with {have} CPU device(s), so {n} cannot be "
                           f"simulated any more: restart the kernel (or process) and call "
                           f"use_cpu_devices({n}) before any JAX computation")
    return have


def make_mesh(shape: Sequence[int], axis_names: Sequence[str],
              devices: Sequence[Any] | None = None) -> Mesh:
    """A device mesh of the given shape over the first ``prod(shape)`` devices.

    Args:
        shape: devices along each mesh axis, e.g. ``(4, 2)``.
        axis_names: one name per axis, e.g. ``("data", "model")``.
        devices: the devices to use (default ``jax.devices()``); the mesh takes the first
            ``prod(shape)`` of them, which must divide their number.

    Returns:
        a :class:`jax.sharding.Mesh` with ``mesh.shape == dict(zip(axis_names, shape))``.

    Raises:
        ValueError: a size is not a positive integer, the names are not distinct or not one per
            axis, or ``prod(shape)`` does not divide the number of devices (says how many there
            are and how to get more).
    """
    shape = tuple(check_positive_int("mesh size", s) for s in shape)
    names = tuple(axis_names)
    if len(names) != len(shape) or len(set(names)) != len(names):
        raise ValueError(f"axis_names {names} must be {len(shape)} distinct names, one per mesh "
                         f"axis of shape {shape}")
    devices = list(jax.devices() if devices is None else devices)
    size = math.prod(shape)
    if size > len(devices) or len(devices) % size:
        raise ValueError(f"a mesh of shape {shape} needs {size} devices, which must divide the "
                         f"{len(devices)} device(s) available; choose sizes whose product divides "
                         f"{len(devices)}, or simulate more CPU devices with use_cpu_devices(n) "
                         f"before JAX starts")
    return Mesh(np.array(devices[:size]).reshape(shape), names)


def mesh_axes(strategy: str) -> tuple[str, ...]:
    """The mesh axis names a strategy uses (``"dp+tp"`` → ``("data", "model")``).

    Raises:
        ValueError: ``strategy`` is not one of :data:`STRATEGIES`.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {list(STRATEGIES)}")
    return STRATEGIES[strategy]


def path_names(path: Sequence[Any]) -> tuple[str, ...]:
    """A JAX key path as plain names: ``[0]['blocks'][1]['fc']['kernel'].value`` →
    ``('0', 'blocks', '1', 'fc', 'kernel')`` (the trailing ``.value`` of an NNX variable dropped)."""
    names = []
    for key in path:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                names.append(str(getattr(key, attr)))
                break
        else:
            names.append(str(key))
    return tuple(names[:-1] if names and names[-1] == "value" else names)


def _fsdp_dims(shape: tuple[int, ...], axis_size: int) -> tuple[str | None, ...]:
    """Split the largest dimension that ``axis_size`` divides (ties: the first); else none."""
    choices = [d for d, n in enumerate(shape) if n % axis_size == 0]
    if not choices or axis_size == 1:
        return (None,) * len(shape)
    best = max(choices, key=lambda d: (shape[d], -d))
    return tuple("data" if d == best else None for d in range(len(shape)))


def param_spec(names: Sequence[str], shape: Sequence[int], strategy: str,
               mesh: Mesh) -> PartitionSpec:
    """The :class:`~jax.sharding.PartitionSpec` of one GPT parameter (or Adam moment of it).

    Rules (see the module docstring): ``single``/``dp`` replicate everything; ``fsdp`` splits the
    largest dimension that the ``data`` axis size divides (an array with no such dimension, or
    a scalar, stays replicated); ``tp`` and ``dp+tp`` apply the Megatron rules on the last two
    names of the path (``qkv``/``fc`` kernels by columns, ``proj``/``fc_out`` kernels by rows,
    ``qkv``/``fc`` biases split; embeddings, LayerNorms and the other biases replicated).
    Optimizer moments have the same path suffix as their parameter, so they get its layout.

    Args:
        names: the path as names (:func:`path_names`), e.g. ``('0','blocks','1','fc','kernel')``.
        shape: the array's shape.
        strategy: one of :data:`STRATEGIES`.
        mesh: the mesh (its axis sizes decide what divides).

    Returns:
        a ``PartitionSpec`` with one entry per dimension (``None`` = not split).

    Raises:
        ValueError: unknown strategy, the mesh lacks the strategy's axes, or a Megatron split
            does not divide the dimension (choose widths the ``model`` axis size divides).
    """
    axes = mesh_axes(strategy)
    missing = [a for a in axes if a not in mesh.shape]
    if missing:
        raise ValueError(f"strategy {strategy!r} needs mesh axes {axes}, the mesh has "
                         f"{tuple(mesh.shape)}")
    shape = tuple(int(s) for s in shape)
    if strategy in ("single", "dp") or not shape:
        return PartitionSpec()
    if strategy == "fsdp":
        return PartitionSpec(*_fsdp_dims(shape, mesh.shape["data"]))
    dims = _MEGATRON.get(tuple(names[-2:]))
    if dims is None:
        return PartitionSpec()
    for size, axis in zip(shape, dims, strict=True):
        if axis is not None and size % mesh.shape[axis]:
            raise ValueError(f"{'/'.join(names)} of shape {shape} cannot be split {dims} over a "
                             f"'{axis}' axis of {mesh.shape[axis]} devices; choose d_model, heads "
                             f"and d_ff that it divides")
    return PartitionSpec(*dims)


def batch_spec(strategy: str) -> PartitionSpec:
    """Layout of an int ``(B, T)`` batch: rows split over ``data`` where the strategy has it.

    Raises:
        ValueError: unknown strategy.
    """
    return PartitionSpec("data") if "data" in mesh_axes(strategy) and strategy != "single" \
        else PartitionSpec()


def state_shardings(state: Any, strategy: str, mesh: Mesh) -> Any:
    """A pytree like ``state`` (e.g. ``nnx.state((model, optimizer))``) of ``NamedSharding``.

    Leaves that are not floating-point arrays (step counters, random keys) are replicated.

    Raises:
        ValueError: as :func:`param_spec`.
    """
    def one(path, leaf):
        float_array = hasattr(leaf, "dtype") and jax.numpy.issubdtype(leaf.dtype, jax.numpy.floating)
        spec = param_spec(path_names(path), np.shape(leaf), strategy, mesh) if float_array \
            else PartitionSpec()
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(one, state)


def _put(leaf: Any, sharding: NamedSharding) -> jax.Array:
    if sharding.is_fully_addressable:
        return jax.device_put(leaf, sharding)
    # A mesh spanning several processes: each process supplies the pieces its devices hold
    # (the same full value in every process, e.g. the model built from the same seed).
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = np.asarray(jax.random.key_data(leaf))
        whole = jax.make_array_from_callback(data.shape, NamedSharding(sharding.mesh,
                                                                       PartitionSpec()),
                                             lambda index: data[index])
        return jax.random.wrap_key_data(whole, impl=jax.random.key_impl(leaf))
    value = np.asarray(leaf)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def place(tree: Any, shardings: Any) -> Any:
    """Copy every array of ``tree`` to the devices its ``NamedSharding`` names.

    On one process this is ``jax.device_put``. When the mesh spans several processes
    (``jax.distributed``), each process must hold the same full values (e.g. a model built from
    the same seed); every process then supplies the shards of its own devices
    (``jax.make_array_from_callback``).

    Raises:
        ValueError: the two trees do not have the same structure.
    """
    if jax.tree_util.tree_structure(tree) != jax.tree_util.tree_structure(shardings):
        raise ValueError("tree and shardings must have the same structure; build the shardings "
                         "with state_shardings(tree, strategy, mesh)")
    return jax.tree_util.tree_map(_put, tree, shardings)


def make_sharded_train_step(graphdef: Any, shardings: Any, batch_sharding: NamedSharding,
                            loss_fn: Callable[..., jax.Array], *,
                            gather_params: bool = False) -> Callable:
    """``jax.jit`` of one optimizer step on ``nnx.state((model, optimizer))`` with fixed layouts.

    The step is the one-device step of chapter 07 (gradient of ``loss_fn``, then the optimizer
    update) on the merged model and optimizer; ``in_shardings`` and ``out_shardings`` pin the
    state to ``shardings`` before and after the step, the batch to ``batch_sharding``, the loss
    replicated. GSPMD inserts the collectives.

    With ``gather_params`` (fully sharded data parallelism, ZeRO-3, Rajbhandari et al. 2020
    §5.3): the forward and backward pass run on a *replicated* copy of the parameters
    (``jax.lax.with_sharding_constraint``: XLA all-gathers the shards), and the gradients are
    constrained back to the parameters' split layout (XLA reduces them across the ``data`` axis
    and keeps each device's shard), so the optimizer update runs on shards. Without it, GSPMD
    would propagate the parameters' split into the activations and mix it with the batch split.

    Args:
        graphdef: from ``graphdef, state = nnx.split((model, optimizer))``.
        shardings: :func:`state_shardings` of that state.
        batch_sharding: the ``NamedSharding`` of the int32 ``(B, T)`` inputs and targets.
        loss_fn: ``loss_fn(model, x, y)`` → float32 scalar, e.g. ``lm_loss``.
        gather_params: gather parameters for compute, split gradients (use with ``"fsdp"``).

    Returns:
        ``step(state, x, y) -> (new_state, loss)``, jitted; ``step.lower(state, x, y).compile()``
        gives the per-device program (``as_text()``, ``memory_analysis()``).

    Raises:
        ValueError: ``batch_sharding`` is not a ``NamedSharding``.
    """
    from flax import nnx

    from lmcourse.compat import apply_gradients

    if not isinstance(batch_sharding, NamedSharding):
        raise ValueError(f"batch_sharding must be a NamedSharding, got {type(batch_sharding)}")
    mesh = batch_sharding.mesh
    constrain = jax.lax.with_sharding_constraint

    def step(state, x, y):
        model, optimizer = nnx.merge(graphdef, state)
        if not gather_params:
            loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        else:
            graph, params, rest = nnx.split(model, nnx.Param, ...)

            def loss_of(params):
                full = constrain(params, state_shardings(params, "dp", mesh))      # all-gather
                return loss_fn(nnx.merge(graph, full, rest), x, y)

            loss, grads = jax.value_and_grad(loss_of)(params)
            grads = constrain(grads, state_shardings(grads, "fsdp", mesh))          # reduce-scatter
        apply_gradients(optimizer, model, grads)
        return nnx.state((model, optimizer)), loss

    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(step, in_shardings=(shardings, batch_sharding, batch_sharding),
                   out_shardings=(shardings, replicated))


def leaf_bytes(leaf: Any) -> int:
    """Bytes of one array (a typed PRNG key counts its underlying ``uint32`` words)."""
    dtype = leaf.dtype
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return int(np.prod(jax.random.key_data(leaf).shape)) * 4
    return int(np.prod(np.shape(leaf))) * np.dtype(dtype).itemsize


def per_device_bytes(tree: Any, shardings: Any) -> int:
    """Bytes of ``tree`` that each device holds under ``shardings``: the formula.

    Each array contributes ``bytes / (product of the mesh-axis sizes its PartitionSpec names)``
    (a replicated array: its full size on every device).

    Raises:
        ValueError: a split does not divide its dimension (the layout is invalid).
    """
    total = 0
    for leaf, sharding in zip(jax.tree_util.tree_leaves(tree),
                              jax.tree_util.tree_leaves(shardings), strict=True):
        ways = 1
        for dim, axis in enumerate(sharding.spec):
            for name in (axis,) if isinstance(axis, str) else (axis or ()):
                if np.shape(leaf)[dim] % sharding.mesh.shape[name]:
                    raise ValueError(f"dimension {dim} of shape {np.shape(leaf)} is not "
                                     f"divisible by mesh axis {name!r}")
                ways *= sharding.mesh.shape[name]
        total += leaf_bytes(leaf) // ways
    return total


_COLLECTIVE_RE = re.compile(r"\s(" + "|".join(COLLECTIVES) + r")(-start)?\(")


def count_collectives(hlo_text: str) -> dict[str, int]:
    """Count the collective operations in compiled HLO text (``compiled.as_text()``).

    An asynchronous pair (``all-gather-start`` … ``all-gather-done``) counts once; instruction
    names such as ``%all-reduce.3`` are not operations and are not counted.

    Args:
        hlo_text: HLO module text, one instruction per line.

    Returns:
        ``{name: count}`` for every name in :data:`COLLECTIVES` (zeros included).

    Raises:
        ValueError: ``hlo_text`` is not a string.
    """
    if not isinstance(hlo_text, str):
        raise ValueError(f"hlo_text must be the str from compiled.as_text(), got "
                         f"{type(hlo_text).__name__}")
    counts = dict.fromkeys(COLLECTIVES, 0)
    for line in hlo_text.splitlines():
        match = _COLLECTIVE_RE.search(line)
        if match and "=" in line[:match.start()]:
            counts[match.group(1)] += 1
    return counts


def describe_counts(counts: Mapping[str, int]) -> str:
    """``{'all-reduce': 3, 'all-gather': 0, ...}`` → ``'3 all-reduce'`` (non-zero ones only)."""
    return ", ".join(f"{n} {name}" for name, n in counts.items() if n) or "none"
