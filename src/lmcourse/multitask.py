"""Multi-task learning 多任务学习 on a shared sentence encoder (chapter 06).

Used in chapters: 06.

One encoder, three heads trained together on the VADER corpora (:mod:`lmcourse.data.vader`):

* **intensity**: regression of the mean human rating, scaled to [-1, 1] (rating / 4);
* **polarity**: 3 classes (negative, neutral, positive);
* **domain**: 4 classes (which corpus the sentence comes from).

The joint loss is a weighted sum (Caruana 1997, *Multitask Learning*; Ruder 2017, arXiv:1706.05098):

.. math:: L = w_\\text{int}\\,\\mathrm{MSE}(\\hat s, r/4) + w_\\text{pol}\\,\\mathrm{CE}(z_\\text{pol}, y_\\text{pol})
              + w_\\text{dom}\\,\\mathrm{CE}(z_\\text{dom}, y_\\text{dom}).

The encoder is either the pretrained all-MiniLM-L6-v2 (:func:`lmcourse.models.bert.load_minilm`),
frozen (heads on cached sentence features) or fine-tuned, or a :class:`~lmcourse.models.bert.Bert`
of the same shape with random weights (:func:`scratch_encoder`).

Multi-task learning needs something shared *and trained*: with a frozen encoder and one linear
layer per task, the gradient of the joint loss with respect to one head involves only that
head's loss, so joint training is three independent problems. :class:`MultiTaskHeads` with
``hidden > 0`` puts a shared trainable layer (a "trunk") under the three heads.

Many small models (seeds, task weightings, few-shot repeats) are trained at once with
:func:`train_ensemble`: their parameters are stacked on a leading axis, the training loop is a
``jax.lax.scan`` over steps, ``jax.vmap``-ed over the models (one compilation, one call).

Bad input raises ``ValueError`` at the public functions, where values are concrete: negative,
NaN or infinite task weights, label ids outside their range (polarity 0–2, domain 0–3, token
ids outside the vocabulary), targets that are not finite, empty inputs, sizes ≤ 0, and a
few-shot ``k`` that is negative, zero or larger than a class.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmcourse.compat import apply_gradients, make_optimizer
from lmcourse.embedding_cache import cached_embeddings, params_digest
from lmcourse.metrics import pearson_r, precision_recall_f1
from lmcourse.models.bert import Bert, mean_pool
from lmcourse.param_count import BertConfig
from lmcourse.progress import progress as progress_bar
from lmcourse.training import EpochBatches, History, train_loop
from lmcourse.validation import (
    check_fraction,
    check_int,
    check_nonnegative_float,
    check_positive_float,
    concrete,
)

N_POLARITY, N_DOMAIN = 3, 4
N_CLASSES = {"polarity": N_POLARITY, "domain": N_DOMAIN}
TASKS = ("intensity", "polarity", "domain")
LENGTH_STEP = 32   # token batches are cut to a multiple of this length (few compiled shapes)


# ----------------------------------------------------------------------------------------------
# input checks (concrete values only: inside jit/vmap the values are tracers and are not seen)
# ----------------------------------------------------------------------------------------------
def check_weights(weights: Any) -> tuple[float, float, float]:
    """The task weights ``(w_int, w_pol, w_dom)`` as floats, checked.

    Raises:
        ValueError: not three numbers, or one is negative, NaN or infinite.
    """
    w = np.asarray(weights, dtype=np.float64) if concrete(weights) is not None else None
    if w is None or w.shape != (3,):
        raise ValueError(f"weights must be three numbers (w_intensity, w_polarity, w_domain), "
                         f"got {weights!r}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"task weights must be finite and ≥ 0 (0 switches a task off), got "
                         f"{tuple(float(v) for v in w)}")
    return tuple(float(v) for v in w)  # type: ignore[return-value]


def _check_any_task(w: tuple[float, float, float]) -> None:
    if sum(w) == 0:
        raise ValueError("all task weights are 0: nothing to train; give at least one task a "
                         "weight > 0, e.g. (1, 0, 0) for intensity only")


def check_labels(name: str, labels: Any, n_classes: int) -> np.ndarray:
    """Integer class ids ``(n,)`` in ``[0, n_classes)``, as int32.

    Raises:
        ValueError: not integers, or an id outside the range (JAX would clamp it silently).
    """
    y = np.asarray(labels)
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(np.isfinite(y))
                                          and np.all(y == np.round(y))):
        raise ValueError(f"{name} must hold integer class ids, got dtype {y.dtype}")
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(f"{name}[{i}] = {y.reshape(-1)[i]} is outside [0, {n_classes - 1}] "
                         f"({int(bad.sum())} bad id(s)); {name} has {n_classes} classes")
    return y.astype(np.int32)


def check_targets(targets: dict[str, Any], n: int | None = None) -> dict[str, np.ndarray]:
    """The three tasks' targets, checked: ``intensity`` float32 finite in [-1, 1] (rating / 4),
    ``polarity`` int32 in {0, 1, 2}, ``domain`` int32 in {0..3}, all of the same length ``n``.

    Raises:
        ValueError: a key is missing, lengths differ, a value is out of range or not finite.
    """
    missing = [k for k in TASKS if k not in targets]
    if missing:
        raise ValueError(f"targets lack {missing}; expected keys {list(TASKS)}")
    s = np.asarray(targets["intensity"], dtype=np.float32)
    if s.ndim != 1:
        raise ValueError(f"targets['intensity'] must be 1-D (n,), got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("targets['intensity'] contains NaN or infinite values")
    if s.size and np.abs(s).max() > 1.0 + 1e-6:
        raise ValueError(f"targets['intensity'] must lie in [-1, 1] (the rating divided by 4), "
                         f"max |value| is {float(np.abs(s).max()):.3g}")
    out = {"intensity": s, **{k: check_labels(f"targets['{k}']", targets[k], N_CLASSES[k])
                              for k in ("polarity", "domain")}}
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) != 1 or (n is not None and lengths["intensity"] != n):
        raise ValueError(f"targets have lengths {lengths}" + (f", inputs have {n} rows" if n
                                                               is not None else ""))
    return out


def _check_features(features: Any) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be a non-empty float array (n, d), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or infinite values")
    return x


def check_tokens(ids: Any, mask: Any, vocab_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and mask, two int32 ``(n, L)`` arrays with ``n ≥ 1``; ids in ``[0, vocab_size)``.

    Raises:
        ValueError: shapes differ or are empty, the mask is not 0/1, an id is out of range.
    """
    ids, mask = np.asarray(ids), np.asarray(mask)
    if ids.ndim != 2 or ids.shape != mask.shape or ids.size == 0:
        raise ValueError(f"ids and mask must be non-empty (n, L) arrays of one shape, got "
                         f"{ids.shape} and {mask.shape}")
    if not np.isin(mask, (0, 1)).all():
        raise ValueError("mask must hold only 0 (padding) and 1 (real token)")
    if vocab_size is not None:
        check_labels("token ids", ids.reshape(-1), vocab_size)
    return ids.astype(np.int32), mask.astype(np.int32)


# ----------------------------------------------------------------------------------------------
# heads and loss
# ----------------------------------------------------------------------------------------------
class MultiTaskHeads(nnx.Module):
    """Three heads on a ``(B, d)`` sentence feature: intensity ``(B,)``, polarity logits ``(B, 3)``,
    domain logits ``(B, 4)``.

    With ``hidden > 0`` a shared ``Linear(d, hidden)`` + GELU (the trunk, shared by the three
    tasks) comes first; with ``hidden = 0`` each head is one linear layer on the feature (nothing
    trainable is shared).

    Raises:
        ValueError: ``d_in < 1`` or ``hidden < 0``.
    """

    def __init__(self, d_in: int, *, hidden: int = 0, rngs: nnx.Rngs):
        d_in, hidden = check_int("d_in", d_in, 1), check_int("hidden", hidden, 0)
        self.hidden = nnx.Linear(d_in, hidden, rngs=rngs) if hidden else None
        d = hidden or d_in
        self.intensity = nnx.Linear(d, 1, rngs=rngs)
        self.polarity = nnx.Linear(d, N_POLARITY, rngs=rngs)
        self.domain = nnx.Linear(d, N_DOMAIN, rngs=rngs)

    def __call__(self, features: jax.Array) -> dict[str, jax.Array]:
        h = jax.nn.gelu(self.hidden(features)) if self.hidden is not None else features
        return {"intensity": self.intensity(h)[:, 0], "polarity": self.polarity(h),
                "domain": self.domain(h)}


def joint_loss(outputs: dict[str, jax.Array], targets: dict[str, jax.Array],
               weights: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted multi-task loss (module docstring).

    Args:
        outputs: ``intensity`` ``(B,)``, ``polarity`` ``(B, 3)``, ``domain`` ``(B, 4)`` float32.
        targets: ``intensity`` ``(B,)`` float32 in [-1, 1] (rating / 4), ``polarity`` ``(B,)``
            int32 in {0, 1, 2}, ``domain`` ``(B,)`` int32 in {0..3}.
        weights: ``(w_int, w_pol, w_dom)``, each ≥ 0; a zero weight turns that task off
            (single-task). May be a traced array inside ``jit``/``vmap``.

    Returns:
        ``(total, parts)``: the scalar loss and the three unweighted per-task losses.

    Raises:
        ValueError: (concrete values only) a weight is negative, NaN or infinite, or a class
            label is outside its range.
    """
    if concrete(weights) is not None:
        check_weights(weights)
    for k in ("polarity", "domain"):
        y = concrete(targets[k])
        if y is not None:
            check_labels(f"targets['{k}']", y, N_CLASSES[k])
    ce = optax.softmax_cross_entropy_with_integer_labels
    parts = {
        "intensity": jnp.mean((outputs["intensity"] - targets["intensity"]) ** 2),
        "polarity": ce(outputs["polarity"], targets["polarity"]).mean(),
        "domain": ce(outputs["domain"], targets["domain"]).mean(),
    }
    total = weights[0] * parts["intensity"] + weights[1] * parts["polarity"] + weights[2] * parts["domain"]
    return total, parts


def adamw_warmup(learning_rate: float, total_steps: int, warmup_fraction: float = 0.1,
                 weight_decay: float = 0.01) -> optax.GradientTransformation:
    """AdamW with a linear warm-up 预热 to ``learning_rate`` over ``warmup_fraction`` of the steps,
    then cosine decay to 0 (Loshchilov & Hutter 2019; the BERT fine-tuning recipe), with
    gradient clipping at global norm 1.

    Raises:
        ValueError: ``learning_rate`` not finite and > 0, ``total_steps < 1``,
            ``warmup_fraction`` outside [0, 1], ``weight_decay`` negative or not finite.
    """
    learning_rate = check_positive_float("learning_rate", learning_rate)
    total_steps = check_int("total_steps", total_steps, 1)
    warmup_fraction = check_fraction("warmup_fraction", warmup_fraction)
    weight_decay = check_nonnegative_float("weight_decay", weight_decay)
    warmup = max(1, int(warmup_fraction * total_steps))
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup, max(total_steps, warmup + 1))
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=weight_decay))


# ----------------------------------------------------------------------------------------------
# many small models at once: stacked parameters, scan over steps, vmap over models
# ----------------------------------------------------------------------------------------------
def batch_indices(n: int, steps: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of every training batch, int32 ``(steps, batch_size)``.

    With ``n ≥ batch_size``: shuffled epochs (a new permutation whenever the rest of the current
    one cannot fill a batch). With ``n < batch_size``: each batch is drawn with replacement, so
    every step sees ``batch_size`` examples whatever ``n`` is (equal budgets in few-shot runs).

    Raises:
        ValueError: ``n``, ``steps`` or ``batch_size`` < 1.
    """
    n, steps = check_int("n (training rows)", n, 1), check_int("steps", steps, 1)
    b = check_int("batch_size", batch_size, 1)
    if n < b:
        return rng.integers(0, n, (steps, b)).astype(np.int32)
    out = np.empty((steps, b), np.int32)
    order, pos = rng.permutation(n), 0
    for s in range(steps):
        if pos + b > n:
            order, pos = rng.permutation(n), 0
        out[s] = order[pos:pos + b]
        pos += b
    return out


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """``R`` models of one architecture, their variables stacked on a leading axis of size ``R``.

    Attributes:
        graphdef: the architecture (``nnx.split``'s graph definition), shared by all members.
        params: the trainable ``nnx.Param`` variables, every array of shape ``(R, ...)``.
        rest: the other variables (e.g. random-number state), stacked the same way; not trained.
    """

    graphdef: Any
    params: Any
    rest: Any

    def __len__(self) -> int:
        return int(jax.tree.leaves(self.params)[0].shape[0])

    def member(self, i: int) -> nnx.Module:
        """Member ``i`` as an ordinary NNX module (a copy).

        Raises:
            ValueError: ``i`` outside ``[0, R)``.
        """
        i = check_int("member index", i, 0)
        if i >= len(self):
            raise ValueError(f"member index {i} is outside [0, {len(self) - 1}]")
        return nnx.merge(self.graphdef, *jax.tree.map(lambda a: a[i], (self.params, self.rest)))


def stack_models(models: Sequence[nnx.Module]) -> Ensemble:
    """Stack models of one architecture into an :class:`Ensemble` (their variables are copied).

    Raises:
        ValueError: no model, or the models differ in structure or shapes.
    """
    if len(models) == 0:
        raise ValueError("stack_models needs at least one model")
    splits = [nnx.split(m, nnx.Param, ...) for m in models]
    graphdef = splits[0][0]

    def signature(state):
        return jax.tree.structure(state), [np.shape(a) for a in jax.tree.leaves(state)]

    first = signature(splits[0][1:])
    if any(g != graphdef or signature((p, r)) != first for g, p, r in splits):
        raise ValueError("stack_models: the models differ in architecture or parameter shapes")
    params, rest = jax.tree.map(lambda *a: jnp.stack(a), *[(p, r) for _, p, r in splits])
    return Ensemble(graphdef, params, rest)


def init_ensemble(make: Callable[[Any], nnx.Module], seeds: Sequence[int]) -> Ensemble:
    """Build ``make(seed)`` for every seed in one compiled, ``vmap``-ed call.

    The same as ``stack_models([make(s) for s in seeds])`` (the same random draws, up to float
    rounding), but the constructor is traced once instead of running eagerly per model, which is
    faster for many models with many layers.

    Args:
        make: builds one model from ``seed``, which it must only pass to ``nnx.Rngs`` (or to a
            ``seed=`` argument that does): it receives ``jax.random.key(s)``, which seeds
            ``nnx.Rngs`` exactly as the integer ``s`` does.
        seeds: ``R ≥ 1`` integer seeds.

    Raises:
        ValueError: no seeds, or a seed that is not an integer.
    """
    seeds = [check_int("seed", s, np.iinfo(np.int32).min) for s in seeds]
    if not seeds:
        raise ValueError("init_ensemble needs at least one seed")
    graphdef = nnx.split(nnx.eval_shape(lambda: make(jax.random.key(0))), nnx.Param, ...)[0]

    @jax.jit
    def build(seed_array):
        return jax.vmap(lambda s: nnx.split(make(jax.random.key(s)), nnx.Param, ...)[1:])(seed_array)

    params, rest = build(jnp.asarray(seeds, dtype=jnp.int32))
    return Ensemble(graphdef, params, rest)


@functools.partial(jax.jit, static_argnames=("graphdef", "learning_rate", "weight_decay",
                                              "warmup_fraction"))
def _train_stacked(graphdef, params, rest, inputs, targets, batches, weights, *, learning_rate,
                   weight_decay, warmup_fraction):
    tx = adamw_warmup(learning_rate, batches.shape[1], warmup_fraction, weight_decay)

    def train_one(params, rest, member_batches, w):
        def step(carry, idx):
            params, opt_state = carry

            def loss_fn(p):
                out = nnx.merge(graphdef, p, rest)(*(a[idx] for a in inputs))
                return joint_loss(out, {k: v[idx] for k, v in targets.items()}, w)[0]

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), member_batches)
        return params, losses

    return jax.vmap(train_one)(params, rest, batches, weights)


def train_ensemble(ensemble: Ensemble, inputs: Sequence[np.ndarray], targets: dict[str, np.ndarray],
                   batches: np.ndarray, weights: Any, *, learning_rate: float,
                   weight_decay: float = 0.01, warmup_fraction: float = 0.1,
                   vocab_size: int | None = None) -> tuple[Ensemble, np.ndarray]:
    """Train every member of ``ensemble`` on its own batches and task weights, all at once.

    Each member gets AdamW + warm-up (:func:`adamw_warmup`) for ``steps`` steps; the loop is a
    ``lax.scan`` over steps inside a ``vmap`` over members (one compilation per shape).

    Args:
        ensemble: ``R`` models (:func:`stack_models`) called as ``model(*inputs_batch)``.
        inputs: arrays with ``n`` rows, e.g. ``(features,)`` float32 ``(n, d)`` for
            :class:`MultiTaskHeads` or ``(ids, mask)`` int32 ``(n, L)`` for
            :class:`EncoderWithHeads` (cut them to the longest text first: every step uses ``L``).
        targets: as in :func:`joint_loss`, arrays of length ``n``.
        batches: int ``(R, steps, B)`` row indices into ``inputs`` (:func:`batch_indices`).
        weights: ``(R, 3)`` task weights per member, or ``(3,)`` for all.
        learning_rate, weight_decay, warmup_fraction: as in :func:`adamw_warmup`.
        vocab_size: if given, ``inputs[0]`` are token ids and are checked against it.

    Returns:
        ``(trained, losses)``: a new :class:`Ensemble` and the float32 ``(R, steps)`` losses.

    Raises:
        ValueError: shapes disagree, a batch index is outside ``[0, n)``, bad targets, weights
            or hyper-parameters (see :func:`check_targets`, :func:`check_weights`).
    """
    inputs = tuple(np.asarray(a) for a in inputs)
    if not inputs or len({len(a) for a in inputs}) != 1 or len(inputs[0]) == 0:
        raise ValueError(f"inputs must be non-empty arrays with the same number of rows, got "
                         f"shapes {[a.shape for a in inputs]}")
    n = len(inputs[0])
    if vocab_size is not None:
        check_tokens(inputs[0], inputs[1], vocab_size)
    elif inputs[0].dtype.kind == "f" and not np.all(np.isfinite(inputs[0])):
        raise ValueError("inputs contain NaN or infinite values")
    targets = check_targets(targets, n)
    r = len(ensemble)
    batches = np.asarray(batches)
    if batches.ndim != 3 or batches.shape[0] != r or batches.size == 0:
        raise ValueError(f"batches must be (R={r}, steps, B) row indices, got shape {batches.shape}")
    check_labels("batches (row indices)", batches.reshape(-1), n)
    w = np.asarray(weights, dtype=np.float32)
    w = np.broadcast_to(w, (r, 3)) if w.shape == (3,) else w
    if w.shape != (r, 3):
        raise ValueError(f"weights must be (3,) or (R={r}, 3), got shape {np.shape(weights)}")
    for row in w:
        _check_any_task(check_weights(row))
    params, losses = _train_stacked(
        ensemble.graphdef, ensemble.params, ensemble.rest, tuple(jnp.asarray(a) for a in inputs),
        {k: jnp.asarray(v) for k, v in targets.items()}, jnp.asarray(batches, jnp.int32),
        jnp.asarray(w), learning_rate=check_positive_float("learning_rate", learning_rate),
        weight_decay=check_nonnegative_float("weight_decay", weight_decay),
        warmup_fraction=check_fraction("warmup_fraction", warmup_fraction))
    return Ensemble(ensemble.graphdef, params, ensemble.rest), np.asarray(losses)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _predict_stacked(graphdef, params, rest, inputs):
    return jax.vmap(lambda p, r: nnx.merge(graphdef, p, r)(*inputs))(params, rest)


def predict_ensemble(ensemble: Ensemble, *inputs: np.ndarray, batch_size: int = 512) -> dict[str, np.ndarray]:
    """Outputs of every member on the same ``n`` rows: a dict of NumPy arrays ``(R, n, ...)``
    (keys as :class:`MultiTaskHeads`).

    ``inputs`` are ``features`` ``(n, d)`` or ``ids, mask`` ``(n, L)``; token inputs are run in
    length-sorted chunks of ``batch_size`` cut to their longest text (fewer padded tokens) and
    returned in input order.

    Raises:
        ValueError: empty or mismatched inputs, ``batch_size < 1``.
    """
    batch_size = check_int("batch_size", batch_size, 1)
    arrays = [np.asarray(a) for a in inputs]
    if not arrays or len({len(a) for a in arrays}) != 1 or len(arrays[0]) == 0:
        raise ValueError(f"inputs must be non-empty arrays with the same number of rows, got "
                         f"shapes {[a.shape for a in arrays]}")
    n = len(arrays[0])
    tokens = len(arrays) == 2
    order = np.argsort(arrays[1].sum(axis=1), kind="stable") if tokens else np.arange(n)
    chunks = []
    for s in range(0, n, batch_size):
        idx = order[s:s + batch_size]
        part = list(_cut(arrays[0][idx], arrays[1][idx])) if tokens else [a[idx] for a in arrays]
        pad = batch_size - len(idx) if n > batch_size else 0     # one compiled shape per length
        part = [np.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in part]
        out = jax.device_get(_predict_stacked(ensemble.graphdef, ensemble.params, ensemble.rest,
                                              tuple(jnp.asarray(a) for a in part)))
        chunks.append({k: v[:, :len(idx)] for k, v in out.items()})
    inverse = np.argsort(order)
    return {k: np.concatenate([c[k] for c in chunks], axis=1)[:, inverse] for k in chunks[0]}


# ----------------------------------------------------------------------------------------------
# heads on fixed features (frozen encoder)
# ----------------------------------------------------------------------------------------------
def train_heads(features: np.ndarray, targets: dict[str, np.ndarray], *,
                weights: tuple[float, float, float] = (1.0, 1.0, 1.0), hidden: int = 0,
                steps: int = 500, batch_size: int = 256, learning_rate: float = 3e-3,
                weight_decay: float = 0.01, seed: int = 0) -> tuple[MultiTaskHeads, list[float]]:
    """Train one :class:`MultiTaskHeads` on fixed sentence features with AdamW + warm-up
    (an :class:`Ensemble` of one, see :func:`train_ensemble`).

    Args:
        features: float32 ``(n, d)``, finite, ``n ≥ 1``.
        targets: as in :func:`joint_loss`, arrays of length ``n``.
        weights: task weights, each ≥ 0, not all 0.
        hidden: width of the shared trunk (0: none).
        steps: gradient steps; batches from :func:`batch_indices` (``seed`` draws them and
            initialises the heads).

    Returns:
        ``(heads, losses)``: the trained heads and the loss of each step.

    Raises:
        ValueError: bad features, targets, weights or hyper-parameters (the message says which).
    """
    features = _check_features(features)
    rng = np.random.default_rng(seed)
    heads = MultiTaskHeads(features.shape[1], hidden=hidden, rngs=nnx.Rngs(seed))
    batches = batch_indices(len(features), steps, min(check_int("batch_size", batch_size, 1), len(features)), rng)
    trained, losses = train_ensemble(stack_models([heads]), (features,), targets, batches[None],
                                     check_weights(weights), learning_rate=learning_rate,
                                     weight_decay=weight_decay)
    return trained.member(0), [float(v) for v in losses[0]]


def predict_heads(heads: MultiTaskHeads, features: np.ndarray) -> dict[str, np.ndarray]:
    """The heads' outputs on ``(n, d)`` features as NumPy arrays (see :class:`MultiTaskHeads`).

    Raises:
        ValueError: ``features`` empty, not 2-D, not finite.
    """
    x = jnp.asarray(_check_features(features))
    return {k: np.asarray(v) for k, v in nnx.jit(lambda h, x: h(x))(heads, x).items()}


# ----------------------------------------------------------------------------------------------
# encoders on token ids (fine-tuning, from scratch)
# ----------------------------------------------------------------------------------------------
class EncoderWithHeads(nnx.Module):
    """A BERT encoder, mean pooling over real tokens, then :class:`MultiTaskHeads`."""

    def __init__(self, encoder: Bert, heads: MultiTaskHeads):
        self.encoder = encoder
        self.heads = heads

    def features(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """Mean-pooled last hidden states ``(B, d)`` of int32 ``(B, L)`` token ids."""
        return mean_pool(self.encoder(input_ids, attention_mask), attention_mask)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array) -> dict[str, jax.Array]:
        return self.heads(self.features(input_ids, attention_mask))


def scratch_encoder(num_hidden_layers: int = 6, *, hidden_size: int = 384, num_attention_heads: int = 12,
                    intermediate_size: int = 1536, vocab_size: int = 30522, seed: int = 0) -> Bert:
    """A :class:`Bert` of all-MiniLM-L6-v2's shape (by default) with random weights: no pretraining.

    Raises:
        ValueError: a size < 1, or ``hidden_size`` not a multiple of ``num_attention_heads``.
    """
    sizes = {"num_hidden_layers": num_hidden_layers, "hidden_size": hidden_size,
             "num_attention_heads": num_attention_heads, "intermediate_size": intermediate_size,
             "vocab_size": vocab_size}
    sizes = {k: check_int(k, v, 1) for k, v in sizes.items()}
    if sizes["hidden_size"] % sizes["num_attention_heads"]:
        raise ValueError(f"hidden_size {hidden_size} must be a multiple of num_attention_heads "
                         f"{num_attention_heads}")
    return Bert(BertConfig(**sizes), rngs=nnx.Rngs(seed))


def tokenize_all(tokenizer, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and mask of every text, truncated to ``max_length`` (the final ``[SEP]`` kept).

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` (:func:`lmcourse.models.bert.load_minilm`).
        texts: ``n ≥ 1`` strings.
        max_length: ``≥ 2`` (room for ``[CLS]`` and ``[SEP]``).

    Returns:
        two int32 ``(n, max_length)`` arrays, padded with 0.

    Raises:
        ValueError: ``texts`` empty or holding a non-string, ``max_length < 2``.
    """
    max_length = check_int("max_length", max_length, 2)
    texts = list(texts)
    if not texts:
        raise ValueError("tokenize_all got no texts; pass at least one sentence")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise ValueError(f"texts[{bad}] is {type(texts[bad]).__name__}, not str")
    enc = tokenizer.encode_batch(texts)
    ids = np.zeros((len(enc), max_length), np.int32)
    mask = np.zeros((len(enc), max_length), np.int32)
    for i, e in enumerate(enc):
        real = e.ids[:sum(e.attention_mask)]   # the tokenizer may pad: keep real tokens only
        t = real[:max_length]
        if len(real) > max_length:            # keep the final [SEP]
            t = t[:-1] + [real[-1]]
        ids[i, :len(t)] = t
        mask[i, :len(t)] = 1
    return ids, mask


def _cut(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop padding columns beyond the batch's longest text, rounded up to LENGTH_STEP."""
    longest = int(mask.sum(axis=1).max()) if len(mask) else 1
    length = min(ids.shape[1], -(-longest // LENGTH_STEP) * LENGTH_STEP)
    return ids[:, :length], mask[:, :length]


def length_batches(mask: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of row indices of similar length (fewer padded tokens, few shapes).

    Rows are shuffled, stably sorted by length rounded to LENGTH_STEP, cut into full batches of
    ``batch_size`` (the remainder is dropped), and the batches are shuffled.

    Raises:
        ValueError: ``batch_size < 1``.
    """
    batch_size = check_int("batch_size", batch_size, 1)
    n = len(mask)
    order = rng.permutation(n)
    bucket = -(-mask.sum(axis=1)[order] // LENGTH_STEP)
    order = order[np.argsort(bucket, kind="stable")]
    batches = [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


@nnx.jit(static_argnames=("weights",))
def _encoder_step(model, optimizer, ids, mask, targets, weights):
    def loss_fn(model):
        return joint_loss(model(ids, mask), targets, weights)
    (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    apply_gradients(optimizer, model, grads)
    return loss


def train_encoder(model: EncoderWithHeads, ids: np.ndarray, mask: np.ndarray,
                  targets: dict[str, np.ndarray], *, steps: int, batch_size: int = 32,
                  learning_rate: float = 5e-5, weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                  weight_decay: float = 0.01, seed: int = 0, log_every: int = 0,
                  progress: bool = True, checkpoint_dir: str | Path | None = None,
                  checkpoint_every: int = 0, resume: bool = True) -> list[float]:
    """Train encoder and heads together (in place) for ``steps`` steps of AdamW + warm-up.

    Runs :func:`lmcourse.training.train_loop` over :func:`length_batches` (one epoch after
    another, each drawn from ``default_rng(seed)`` when the previous one is used up).

    Args:
        ids, mask: int32 ``(n, L)`` from :func:`tokenize_all`; ids in the encoder's vocabulary.
        targets: as in :func:`joint_loss`, length ``n``.
        batch_size: if ``n < batch_size``, batches are drawn with replacement.
        log_every: print the mean loss every ``log_every`` steps (0: never).
        progress: a progress bar (examples/s, ETA, mean loss of the last 20 steps;
            see :mod:`lmcourse.progress`) and one summary line; False: silent.
        checkpoint_dir, checkpoint_every, resume: checkpoints, as in
            :func:`lmcourse.training.fit` (model, optimizer, generator, step).

    Returns:
        the loss of each step.

    Raises:
        ValueError: bad ids/mask, targets, weights or hyper-parameters (the message says which),
            or a checkpoint of another model or other settings.
        NonFiniteLossError: the loss became NaN or infinite (the message names the step).
    """
    ids, mask = check_tokens(ids, mask, model.encoder.config.vocab_size)
    targets = check_targets(targets, len(ids))
    weights = check_weights(weights)
    _check_any_task(weights)
    steps, batch_size = check_int("steps", steps, 1), check_int("batch_size", batch_size, 1)
    log_every = check_int("log_every", log_every, 0)
    optimizer = make_optimizer(model, adamw_warmup(learning_rate, steps, weight_decay=weight_decay))

    def make_epoch(rng: np.random.Generator) -> list[np.ndarray]:
        if len(mask) < batch_size:
            return [rng.integers(0, len(mask), batch_size)]
        return length_batches(mask, batch_size, rng)[::-1]     # used from the end, as a stack

    def step_fn(idx: np.ndarray) -> jax.Array:
        bi, bm = _cut(ids[idx], mask[idx])
        batch = {k: jnp.asarray(v[idx]) for k, v in targets.items()}
        return _encoder_step(model, optimizer, jnp.asarray(bi), jnp.asarray(bm), batch, weights)

    def log(step: int, history: History) -> None:
        if log_every and step % log_every == 0:
            print(f"  step {step}/{steps}: loss {np.mean(history.step_loss[-log_every:]):.4f}",
                  flush=True)

    checkpoint = None
    if checkpoint_dir is not None:
        from lmcourse.checkpoint import Checkpoint

        checkpoint = Checkpoint(checkpoint_dir, {"model": model, "optimizer": optimizer},
                                every=checkpoint_every, resume=resume, config={
                                    "n": len(ids), "steps": steps, "batch_size": batch_size,
                                    "learning_rate": float(learning_rate),
                                    "weights": list(weights), "seed": seed})
    history = train_loop(step_fn, EpochBatches(make_epoch, seed), steps=steps,
                         check_every=log_every or 20, callback=log, checkpoint=checkpoint,
                         progress=progress, desc="train encoder", unit="examples",
                         batch_size=batch_size)
    return history.step_loss


@nnx.jit
def _forward(model, ids, mask):
    return model(ids, mask)


@nnx.jit
def _features(model, ids, mask):
    return model.features(ids, mask)


def predict_encoder(model: EncoderWithHeads, ids: np.ndarray, mask: np.ndarray,
                    batch_size: int = 128, features_only: bool = False, progress: bool = True):
    """Outputs (dict as :class:`MultiTaskHeads`) or, with ``features_only``, mean-pooled features
    ``(n, d)`` float32, computed in length-sorted batches and returned in input order.
    ``progress``: with more than one batch, a bar (examples/s, ETA) and one summary line.

    Raises:
        ValueError: ids/mask empty or mismatched, an id outside the vocabulary, ``batch_size < 1``.
    """
    ids, mask = check_tokens(ids, mask, model.encoder.config.vocab_size)
    batch_size = check_int("batch_size", batch_size, 1)
    order = np.argsort(mask.sum(axis=1), kind="stable")
    chunks = []
    bar = progress_bar(total=len(order), desc="predict", unit="examples",
                       enabled=progress and len(order) > batch_size)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        bi, bm = _cut(ids[idx], mask[idx])
        pad = batch_size - len(idx)       # fixed batch size: one compiled shape per length
        if pad:
            bi, bm = np.pad(bi, ((0, pad), (0, 0))), np.pad(bm, ((0, pad), (0, 0)))
        fn = _features if features_only else _forward
        out = jax.device_get(fn(model, jnp.asarray(bi), jnp.asarray(bm)))
        keep = len(idx)
        chunks.append(jax.tree.map(lambda a, keep=keep: a[:keep], out))
        bar.update(keep)
    bar.close()
    inverse = np.argsort(order)
    return jax.tree.map(lambda *a: np.concatenate(a)[inverse], *chunks)


def embed_cached(encoder: Bert, ids: np.ndarray, mask: np.ndarray, cache_dir: Path | None = None,
                 tag: str = "minilm", batch_size: int = 128) -> np.ndarray:
    """Mean-pooled sentence features of a frozen ``encoder``, ``(n, d)`` float32, saved under
    ``cache_dir/emb-{tag}-{key}.npz`` and reused when present
    (:func:`lmcourse.embedding_cache.cached_embeddings`: the key hashes the encoder's parameters,
    the token ids and mask, and the pooling; the file is checked when read).

    Raises:
        ValueError: ids/mask empty or mismatched, an id outside the vocabulary.
    """
    ids, mask = check_tokens(ids, mask, encoder.config.vocab_size)

    def compute() -> np.ndarray:
        dummy = MultiTaskHeads(encoder.config.hidden_size, rngs=nnx.Rngs(0))
        return predict_encoder(EncoderWithHeads(encoder, dummy), ids, mask, batch_size,
                               features_only=True)

    model = params_digest(encoder) if cache_dir is not None else ""
    return cached_embeddings(compute, directory=cache_dir, prefix=f"emb-{tag}", model=model,
                             inputs=(ids, mask), settings={"features": "mean-pooled last layer"},
                             n_rows=len(ids))


# ----------------------------------------------------------------------------------------------
# evaluation, comparisons and few-shot
# ----------------------------------------------------------------------------------------------
def scores(rating: np.ndarray, polarity: np.ndarray, intensity_pred: np.ndarray | None,
           polarity_pred: np.ndarray) -> dict[str, float]:
    """The chapter's metrics on one test set.

    Args:
        rating: ``(n,)`` true mean ratings (finite); polarity: ``(n,)`` true labels in {0, 1, 2};
            intensity_pred: ``(n,)`` predicted intensity (any scale) or ``None``;
            polarity_pred: ``(n,)`` labels in {0, 1, 2}.

    Returns:
        ``r`` (Pearson, NaN without intensity or for a constant prediction), ``P``, ``R``, ``F1``
        (support-weighted averages over the 3 classes: the VADER paper's "overall" figures), and
        ``macro_F1``.

    Raises:
        ValueError: empty or mismatched inputs, a label outside {0, 1, 2}, NaN ratings.
    """
    y = check_labels("polarity", polarity, N_POLARITY)
    p = check_labels("polarity_pred", polarity_pred, N_POLARITY)
    rating = np.asarray(rating, dtype=np.float64)
    if not (len(y) == len(p) == len(rating)) or len(y) == 0:
        raise ValueError(f"scores needs non-empty inputs of one length, got {len(rating)}, "
                         f"{len(y)}, {len(p)}")
    weighted = precision_recall_f1(y, p, average="weighted", labels=[0, 1, 2])
    macro = precision_recall_f1(y, p, average="macro", labels=[0, 1, 2])
    r = float("nan")
    if intensity_pred is not None and np.ptp(intensity_pred) > 0:
        r = pearson_r(intensity_pred, rating)
    return {"r": r, "P": weighted.precision, "R": weighted.recall, "F1": weighted.f1, "macro_F1": macro.f1}


def f1_weighted(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = N_POLARITY) -> float:
    """Support-weighted F1 over classes ``0..n_classes-1`` (as ``scores``' ``F1``), fast enough
    for bootstrap loops: one ``bincount`` of the confusion matrix.

    Raises:
        ValueError: empty or mismatched inputs, a label outside the range.
    """
    y, p = check_labels("y_true", y_true, n_classes), check_labels("y_pred", y_pred, n_classes)
    if len(y) != len(p) or len(y) == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and of one length, got {len(y)}, {len(p)}")
    cm = np.bincount(y * n_classes + p, minlength=n_classes ** 2).reshape(n_classes, n_classes)
    tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)
    return float((f1 * support).sum() / support.sum())


def compare_over_seeds(a: Sequence[float], b: Sequence[float], factor: float = 2.0) -> dict[str, Any]:
    """Is ``mean(a) - mean(b)`` larger than the seed-to-seed noise?

    The noise is the pooled standard deviation ``s = sqrt((s_a² + s_b²) / 2)`` (sample sds,
    ddof 1). The gap counts as measured when ``|mean(a) - mean(b)| > factor · s``.

    Args:
        a, b: one score per seed (≥ 2 each), finite.
        factor: how many pooled sds the gap must exceed (2 by default).

    Returns:
        ``diff`` (mean a − mean b), ``pooled_sd``, and ``verdict``: ``"A higher"``,
        ``"B higher"`` or ``"within noise"``.

    Raises:
        ValueError: fewer than 2 values on a side, NaN/inf values, ``factor`` not finite ≥ 0.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 1 or b.ndim != 1 or len(a) < 2 or len(b) < 2:
        raise ValueError(f"need ≥ 2 scores (one per seed) on each side, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("scores must be finite (a NaN score means a failed run: look at it)")
    factor = check_nonnegative_float("factor", factor)
    diff = float(a.mean() - b.mean())
    pooled = float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))
    verdict = ("A higher" if diff > factor * pooled else "B higher" if -diff > factor * pooled
               else "within noise")
    return {"diff": diff, "pooled_sd": pooled, "verdict": verdict}


def paired_bootstrap(metric: Callable[..., float], truth: np.ndarray, pred_a: np.ndarray,
                     pred_b: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Paired bootstrap of ``metric(truth, pred_a) - metric(truth, pred_b)`` over test sentences.

    The same resampled sentences are scored for both models (Efron & Tibshirani 1993, *An
    Introduction to the Bootstrap*; Koehn 2004, *Statistical Significance Tests for Machine
    Translation Evaluation*, for NLP). This measures test-set sampling noise only, not
    seed-to-seed noise.

    Args:
        metric: ``metric(truth, pred) -> float``, e.g. :func:`f1_weighted` or :func:`pearson_r`
            (with the prediction first: ``lambda t, p: pearson_r(p, t)``).
        truth, pred_a, pred_b: arrays of one length ``n ≥ 2``.
        n_boot: resamples (≥ 1).

    Returns:
        ``diff`` (on the whole set), ``sd`` (of the resampled differences), ``lo`` and ``hi``
        (2.5% and 97.5% percentiles).

    Raises:
        ValueError: lengths differ or ``n < 2``, ``n_boot < 1``.
    """
    n_boot = check_int("n_boot", n_boot, 1)
    truth, pred_a, pred_b = np.asarray(truth), np.asarray(pred_a), np.asarray(pred_b)
    if not (len(truth) == len(pred_a) == len(pred_b)) or len(truth) < 2:
        raise ValueError(f"truth, pred_a, pred_b must have one length ≥ 2, got "
                         f"{len(truth)}, {len(pred_a)}, {len(pred_b)}")
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, len(truth), len(truth))
        diffs[i] = metric(truth[idx], pred_a[idx]) - metric(truth[idx], pred_b[idx])
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"diff": float(metric(truth, pred_a) - metric(truth, pred_b)), "sd": float(diffs.std()),
            "lo": float(lo), "hi": float(hi)}


def few_shot_indices(labels: np.ndarray, k: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted, int64) of ``k`` random examples of each class present in ``labels``
    (all rows if ``k`` is ``None``).

    Raises:
        ValueError: ``labels`` empty, ``k`` not an integer ≥ 1, or ``k`` larger than the number
            of examples of some class (the message names the class and its count).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if k is None:
        return np.arange(len(labels))
    k = check_int("k (examples per class)", k, 1)
    classes, counts = np.unique(labels, return_counts=True)
    if k > counts.min():
        c = classes[counts.argmin()].item()
        raise ValueError(f"k={k} examples per class, but class {c!r} has only {counts.min()}; "
                         f"use k ≤ {counts.min()} (or k=None for all rows)")
    picks = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c in classes]
    return np.sort(np.concatenate(picks))
