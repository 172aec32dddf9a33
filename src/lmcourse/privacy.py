"""Differential privacy 差分隐私 for training: DP-SGD, its privacy accountant, and an attack.

Used in chapters: 12.

* DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy", CCS, Algorithm 1):
  per-example gradients with ``jax.vmap(jax.grad(...))`` (:func:`per_example_grads`), each
  clipped to L2 norm ``C`` (:func:`clip_per_example`), summed, Gaussian noise
  ``N(0, σ²C²I)`` added, divided by the batch size (:func:`dp_aggregate`, the same arithmetic
  and the same noise draws as ``optax.contrib.differentially_private_aggregate``), in one jitted
  step (:func:`make_train_step`).
* Accounting: the Rényi DP (RDP) of the Poisson-subsampled Gaussian mechanism at integer orders
  (Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian
  Mechanism", Section 3.3; unsampled: Mironov 2017, Proposition 7, ``α / (2σ²)``), composed over
  steps and converted to (ε, δ) (:func:`rdp_sampled_gaussian`, :func:`rdp_to_epsilon`,
  :func:`epsilon_scratch`), checked against Google's ``dp_accounting`` RDP accountant
  (:func:`epsilon_dp_accounting`).
* Membership inference by a loss threshold (Yeom et al. 2018, "Privacy Risk in Machine
  Learning: Analyzing the Connection to Overfitting", CSF, Section 3.2):
  :func:`loss_threshold_attack_auc`.

The model is a Flax NNX module (``lmcourse.models.mlp.MLP``) used functionally:
``graphdef, params = nnx.split(model, nnx.Param)``, and :func:`make_example_loss` gives a pure
``loss(params, x, y)`` that ``jax.vmap(jax.grad(...))`` differentiates per example.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmcourse.metrics import roc_auc_score
from lmcourse.validation import check_float, check_int, check_positive_float

__all__ = [
    "check_clip_norm", "check_delta", "check_epsilon", "check_noise_multiplier",
    "check_sampling_rate", "clip_per_example", "dp_aggregate", "epsilon_dp_accounting",
    "epsilon_scratch", "loss_threshold_attack_auc", "make_example_loss", "make_train_step",
    "noise_for_epsilon", "per_example_grads", "poisson_batches", "poisson_max_batch",
    "rdp_sampled_gaussian", "rdp_to_epsilon", "temp_bytes",
]

#: Integer Rényi orders used by the from-scratch accountant (Mironov et al. 2019 need α ∈ ℕ).
INTEGER_ORDERS: tuple[int, ...] = (*range(2, 64), 80, 96, 128, 192, 256, 512, 1024)


# ----------------------------------------------------------------------------- validation
def check_epsilon(epsilon: object) -> float:
    """``epsilon`` as a float if it is a finite privacy budget ε > 0.

    Raises:
        ValueError: ε ≤ 0, NaN, infinite or not a number (ε = 0 would mean "no information
            at all"; no training run achieves it).
    """
    return check_float("epsilon", epsilon, 0.0, low_open=True)


def check_delta(delta: object) -> float:
    """``delta`` as a float if it lies in the open interval (0, 1).

    Raises:
        ValueError: δ ≤ 0 or δ ≥ 1 (δ is a failure probability; choose δ well below 1/N,
            e.g. 1e-5 for MNIST's 60,000 training images).
    """
    return check_float("delta", delta, 0.0, 1.0, low_open=True, high_open=True)


def check_clip_norm(clip_norm: object) -> float:
    """``clip_norm`` (C) as a float if it is finite and > 0.

    Raises:
        ValueError: C ≤ 0 (every gradient would be clipped to zero) or not finite.
    """
    return check_positive_float("clip_norm", clip_norm)


def check_noise_multiplier(noise_multiplier: object) -> float:
    """``noise_multiplier`` (σ, noise std divided by C) as a float if it is finite and ≥ 0.

    Raises:
        ValueError: σ < 0 or not finite (σ = 0 is allowed: clipping only, no privacy).
    """
    return check_float("noise_multiplier", noise_multiplier, 0.0)


def check_sampling_rate(sampling_rate: object) -> float:
    """``sampling_rate`` (q, batch size / training-set size) as a float in (0, 1].

    Raises:
        ValueError: q ≤ 0 or q > 1 (q = 1 is full-batch training).
    """
    return check_float("sampling_rate", sampling_rate, 0.0, 1.0, low_open=True)


# ----------------------------------------------------------------------------- model
def make_example_loss(graphdef: nnx.GraphDef) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """A pure loss ``example_loss(params, x, y)`` of the Flax NNX model described by ``graphdef``.

    The model (e.g. ``lmcourse.models.mlp.MLP``) is used functionally: split it once with
    ``graphdef, params = nnx.split(model, nnx.Param)``; the loss rebuilds it from ``params`` with
    ``nnx.merge(graphdef, params)`` and returns the softmax cross-entropy of its logits, so
    ``jax.grad``/``jax.vmap`` act on the ``params`` pytree (an ``nnx.State`` of float32 arrays).

    Args:
        graphdef: the model's structure, from ``nnx.split(model, nnx.Param)``; the model maps
            ``(N, d)`` float32 inputs to ``(N, classes)`` logits and holds no state but ``Param``.

    Returns:
        ``example_loss(params, x, y)``: ``x`` float32 ``(d,)`` (one example) or ``(N, d)``, ``y``
        int ``()`` or ``(N,)``; returns float32 cross-entropy in nats, ``()`` or ``(N,)``.

    Raises:
        ValueError: ``graphdef`` is not an ``nnx.GraphDef`` (pass the first value of
            ``nnx.split``, not the model).
    """
    if not isinstance(graphdef, nnx.GraphDef):
        raise ValueError(f"graphdef must be the first value of nnx.split(model, nnx.Param), "
                         f"got {type(graphdef).__name__}")

    def example_loss(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        one = x.ndim == 1                       # a single example (inside vmap): add a batch axis
        logits = nnx.merge(graphdef, params)(x[None] if one else x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y[None] if one else y)
        return loss[0] if one else loss

    return example_loss


# ----------------------------------------------------------------------------- DP-SGD
def per_example_grads(loss_fn: Callable[..., jax.Array], params: Any, x: jax.Array,
                      y: jax.Array) -> Any:
    """One gradient per example: ``jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, 0))``.

    Abadi et al. 2016, Algorithm 1, "Compute gradient: g_t(x_i) ← ∇_θ L(θ_t, x_i)".

    Args:
        loss_fn: ``loss_fn(params, x_i, y_i)`` → scalar loss of ONE example.
        params: a pytree.
        x: ``(B, ...)`` inputs; y: ``(B, ...)`` targets.

    Returns:
        the params pytree with a leading batch axis ``B`` on every leaf.
    """
    return jax.vmap(jax.grad(loss_fn), in_axes=(None, 0, 0))(params, x, y)


def clip_per_example(grads: Any, clip_norm: float) -> tuple[Any, jax.Array]:
    """Scale each example's gradient so that its global L2 norm is at most ``clip_norm``.

    Abadi et al. 2016, Algorithm 1, "Clip gradient: ḡ_t(x_i) ← g_t(x_i) / max(1, ‖g_t(x_i)‖₂/C)"
    (the norm is taken over all parameters together, as in optax).

    Args:
        grads: pytree whose leaves have a leading batch axis ``B``.
        clip_norm: C > 0 (a concrete number; in a jitted function pass it as a static value).

    Returns:
        ``(clipped, norms)``: the clipped pytree (same shapes) and the ``(B,)`` norms before
        clipping.

    Raises:
        ValueError: ``clip_norm`` ≤ 0 (when concrete).
    """
    if not isinstance(clip_norm, jax.core.Tracer):
        clip_norm = check_clip_norm(clip_norm)
    norms = jax.vmap(optax.tree.norm)(grads)
    scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norms, 1e-30))
    return jax.tree.map(lambda g: g * scale.reshape((-1,) + (1,) * (g.ndim - 1)), grads), norms


def dp_aggregate(grads: Any, clip_norm: float, noise_multiplier: float, key: jax.Array,
                 mask: jax.Array | None = None, lot_size: float | None = None) -> Any:
    """DP-SGD's noisy mean: ``(Σ_i m_i·clip(g_i) + N(0, σ²C²I)) / L``.

    Abadi et al. 2016, Algorithm 1, "Add noise: g̃_t ← (1/L)(Σ_i ḡ_t(x_i) + N(0, σ²C²I))".
    With Poisson sampling (:func:`poisson_batches`) the lot has a random size; the batch is
    padded to a fixed shape, ``mask`` (``m_i`` ∈ {0, 1}) zeroes the padding rows' clipped
    gradients, and ``L`` is the EXPECTED lot size ``q·N`` (Abadi et al.'s ``L = qN``; Opacus
    divides by the same), a constant, so the divisor reveals nothing about the drawn size.
    The noise is drawn exactly as ``optax.contrib.differentially_private_aggregate`` (0.2.8)
    draws it from its state key: ``jax.random.split(key, n_leaves + 1)``, the i-th leaf (in
    ``jax.tree.flatten`` order) using split ``i + 1``; so without a mask and with ``L = B``
    both give the same update for the same key.

    Args:
        grads: per-example gradients, leading batch axis ``B`` on every leaf.
        clip_norm: C > 0.
        noise_multiplier: σ ≥ 0 (noise std = σ·C).
        key: PRNG key for the noise.
        mask: optional ``(B,)`` float 0/1 array: 1 for the lot's examples, 0 for padding
            (default: all ``B`` rows count).
        lot_size: the divisor ``L`` > 0, e.g. ``q·N`` (default: ``B``, the rows given).

    Returns:
        pytree shaped like one example's gradient.

    Raises:
        ValueError: C ≤ 0, σ < 0 or ``lot_size`` ≤ 0 (when concrete), or a ``mask`` whose shape
            is not ``(B,)``.
    """
    if not isinstance(noise_multiplier, jax.core.Tracer):
        noise_multiplier = check_noise_multiplier(noise_multiplier)
    clipped, _ = clip_per_example(grads, clip_norm)
    leaves, treedef = jax.tree.flatten(clipped)
    batch = leaves[0].shape[0]
    if mask is not None:
        if jnp.shape(mask) != (batch,):
            raise ValueError(f"mask must have shape ({batch},), one 0/1 per row, "
                             f"got {jnp.shape(mask)}")
        leaves = [g * mask.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype) for g in leaves]
    if lot_size is None:
        lot_size = batch
    elif not isinstance(lot_size, jax.core.Tracer):
        lot_size = check_positive_float("lot_size", lot_size)
    keys = jax.random.split(key, len(leaves) + 1)[1:]
    std = clip_norm * noise_multiplier
    noised = [(g.sum(0) + std * jax.random.normal(k, g.shape[1:], g.dtype)) / lot_size
              for g, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, noised)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, *, private: bool,
                    clip_norm: float = 1.0, noise_multiplier: float = 1.0,
                    lot_size: float | None = None) -> Callable[..., tuple[Any, Any]]:
    """A jitted step ``step(params, opt_state, x, y, key, mask=None) -> (params, opt_state)``.

    ``private=True``: DP-SGD (per-example grads → clip → mask → sum → noise → /L, then ``tx``;
    see :func:`dp_aggregate`); ``private=False``: the gradient of ``Σ_i m_i·loss_i / L``, same
    model and optimizer (``key`` unused). Without ``mask`` and ``lot_size`` that is the plain
    batch mean. ``x`` is float32 ``(B, d)``, ``y`` int ``(B,)``, ``mask`` float32 ``(B,)``.

    Args:
        graphdef: from ``graphdef, params = nnx.split(model, nnx.Param)``.
        tx: an optax optimizer (Abadi et al. used plain SGD).
        private: DP-SGD or the non-private baseline.
        clip_norm: C > 0 (private only).
        noise_multiplier: σ ≥ 0 (private only).
        lot_size: the divisor ``L`` > 0; for Poisson lots the expected size ``q·N``
            (default: the batch's row count ``B``).

    Returns:
        the jitted step function.

    Raises:
        ValueError: C ≤ 0, σ < 0, ``lot_size`` ≤ 0, or ``graphdef`` not an ``nnx.GraphDef``.
    """
    clip_norm = check_clip_norm(clip_norm)
    noise_multiplier = check_noise_multiplier(noise_multiplier)
    if lot_size is not None:
        lot_size = check_positive_float("lot_size", lot_size)
    loss_fn = make_example_loss(graphdef)

    def step(params: Any, opt_state: Any, x: jax.Array, y: jax.Array, key: jax.Array,
             mask: jax.Array | None = None):
        if private:
            grads = dp_aggregate(per_example_grads(loss_fn, params, x, y), clip_norm,
                                 noise_multiplier, key, mask, lot_size)
        else:
            weights = jnp.ones(len(x)) if mask is None else mask
            denom = len(x) if lot_size is None else lot_size
            grads = jax.grad(lambda p: (weights * loss_fn(p, x, y)).sum() / denom)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return jax.jit(step)


# ----------------------------------------------------------------------------- Poisson lots
def poisson_max_batch(n: int, sampling_rate: float, steps: int,
                      failure_prob: float = 1e-6) -> int:
    """A padded batch size that ``steps`` Poisson lots all fit into, except with ``failure_prob``.

    Each lot's size is Binomial(n, q). The smallest ``m`` with ``P(size > m) ≤ failure_prob /
    steps`` (``scipy.stats.binom.isf``) makes, by the union bound over steps, the chance that
    ANY lot overflows at most ``failure_prob``; :func:`poisson_batches` raises if one does.

    Args:
        n: training-set size N ≥ 1; sampling_rate: q ∈ (0, 1]; steps: T ≥ 1.
        failure_prob: allowed probability of an overflow in the whole run, in (0, 1).

    Returns:
        ``m`` (int, 1 ≤ m ≤ n); about ``qN + z·sqrt(qN(1-q))`` with ``z`` ≈ 5–6 for 1e-6.

    Raises:
        ValueError: an argument out of range.
    """
    from scipy.stats import binom

    n, steps = check_int("n", n, 1), check_int("steps", steps, 1)
    q = check_sampling_rate(sampling_rate)
    failure_prob = check_float("failure_prob", failure_prob, 0.0, 1.0, low_open=True,
                               high_open=True)
    return int(min(n, max(1, binom.isf(failure_prob / steps, n, q))))


def poisson_batches(n: int, sampling_rate: float, steps: int, rng: np.random.Generator,
                    max_batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``steps`` Poisson-sampled lots, each padded to ``max_batch`` rows (one jit shape).

    Each example joins each lot independently with probability ``q`` (Bernoulli(q)), the
    sampling that the accountant (:func:`rdp_sampled_gaussian`; Mironov et al. 2019; Abadi et
    al. 2016, Sec. 3.1 "lots") assumes; a lot's size is Binomial(n, q), mean ``qN``.

    Args:
        n: training-set size N ≥ 1.
        sampling_rate: q ∈ (0, 1].
        steps: number of lots T ≥ 1.
        rng: a NumPy ``Generator`` (seeded by the caller).
        max_batch: padded size ≥ 1 (choose it with :func:`poisson_max_batch`).

    Returns:
        an iterator of ``steps`` pairs ``(idx, mask)``: int32 ``(max_batch,)`` indices into the training set (padding rows
        point at example 0) and float32 ``(max_batch,)`` mask, 1 for the lot's examples.

    Raises:
        ValueError: an argument out of range, or a drawn lot larger than ``max_batch`` (raise
            ``max_batch``, e.g. with :func:`poisson_max_batch` and a smaller ``failure_prob``;
            dropping examples would break the privacy accounting).
    """
    n, steps = check_int("n", n, 1), check_int("steps", steps, 1)
    q = check_sampling_rate(sampling_rate)
    max_batch = check_int("max_batch", max_batch, 1)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, e.g. "
                         f"np.random.default_rng(0), got {type(rng).__name__}")

    def draw() -> Iterator[tuple[np.ndarray, np.ndarray]]:   # arguments checked eagerly above
        for t in range(steps):
            members = np.flatnonzero(rng.random(n) < q)
            if len(members) > max_batch:
                raise ValueError(f"lot {t} drew {len(members)} examples > max_batch={max_batch}; "
                                 "raise max_batch (poisson_max_batch(n, q, steps, failure_prob) "
                                 "with a smaller failure_prob)")
            idx = np.zeros(max_batch, np.int32)
            idx[:len(members)] = members
            mask = np.zeros(max_batch, np.float32)
            mask[:len(members)] = 1.0
            yield idx, mask

    return draw()


def temp_bytes(fn: Callable[..., Any], *args: Any) -> int:
    """XLA's temporary (scratch) bytes of ``jax.jit(fn)`` compiled for ``args``.

    From ``jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes``: the peak
    of intermediate buffers after XLA's buffer reuse (parameters and outputs not included).

    Returns:
        bytes (int).

    Raises:
        RuntimeError: the backend gives no memory analysis.
    """
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    if analysis is None:
        raise RuntimeError("this JAX backend returns no memory_analysis(); measure on CPU/GPU")
    return int(analysis.temp_size_in_bytes)


# ----------------------------------------------------------------------------- accounting
def _log_add(a: float, b: float) -> float:
    hi, lo = max(a, b), min(a, b)
    return hi if lo == -math.inf else hi + math.log1p(math.exp(lo - hi))


def rdp_sampled_gaussian(sampling_rate: float, noise_multiplier: float,
                         orders: Sequence[int] = INTEGER_ORDERS) -> np.ndarray:
    r"""Rényi DP ε_RDP(α) of ONE step of the Poisson-subsampled Gaussian mechanism.

    For ``q = 1`` (no sampling) Mironov 2017, Proposition 7: ``α / (2σ²)``. For ``0 < q < 1``
    and integer α ≥ 2, Mironov, Talwar & Zhang 2019, Section 3.3:

    .. math:: A_α = \sum_{k=0}^{α} \binom{α}{k} (1-q)^{α-k} q^k \exp\big(\tfrac{k^2-k}{2σ^2}\big),
              \qquad ε_{RDP}(α) = \frac{\log A_α}{α - 1},

    summed in log space. ``T`` steps compose additively: ``T · ε_RDP(α)`` (Mironov 2017, Prop. 1).

    Args:
        sampling_rate: q ∈ (0, 1], the probability that an example is in a batch.
        noise_multiplier: σ ≥ 0 (σ = 0 gives infinite RDP).
        orders: integer orders α ≥ 2.

    Returns:
        float64 array ``(len(orders),)`` in nats.

    Raises:
        ValueError: q outside (0, 1], σ < 0, or an order that is not an integer ≥ 2.
    """
    q = check_sampling_rate(sampling_rate)
    sigma = check_noise_multiplier(noise_multiplier)
    alphas = [check_int("order", a, 2) for a in orders]
    if sigma == 0:
        return np.full(len(alphas), np.inf)
    if q == 1.0:
        return np.array([a / (2 * sigma**2) for a in alphas])
    out = []
    for a in alphas:
        log_a = -math.inf
        for k in range(a + 1):
            log_coef = (math.lgamma(a + 1) - math.lgamma(k + 1) - math.lgamma(a - k + 1)
                        + k * math.log(q) + (a - k) * math.log1p(-q))
            log_a = _log_add(log_a, log_coef + (k * k - k) / (2 * sigma**2))
        out.append(log_a / (a - 1))
    return np.array(out)


def rdp_to_epsilon(orders: Sequence[float], rdp: Sequence[float], delta: float,
                   conversion: str = "improved") -> tuple[float, float]:
    r"""Smallest ε over the orders such that (α, ε_RDP)-RDP implies (ε, δ)-DP.

    * ``"classic"`` (Mironov 2017, Proposition 3): :math:`ε = ε_{RDP} + \log(1/δ)/(α-1)`.
    * ``"improved"`` (Canonne, Kamath & Steinke 2020, Proposition 12; also Asoodeh et al. 2020):
      :math:`ε = ε_{RDP} + \log(1 - 1/α) - (\log δ + \log α)/(α-1)`; the formula that
      ``dp_accounting``'s ``RdpAccountant`` uses (its ``compute_epsilon``).

    Args:
        orders: Rényi orders α > 1; rdp: the matching ε_RDP(α) (total over all steps).
        delta: δ ∈ (0, 1).
        conversion: ``"improved"`` or ``"classic"``.

    Returns:
        ``(epsilon, best_order)``.

    Raises:
        ValueError: δ outside (0, 1), an order ≤ 1, lengths that differ, or an unknown
            conversion.
    """
    delta = check_delta(delta)
    a, r = np.asarray(orders, np.float64), np.asarray(rdp, np.float64)
    if a.shape != r.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"orders and rdp must be 1-D of the same length, got {a.shape}, {r.shape}")
    if np.any(a <= 1):
        raise ValueError(f"Rényi orders must be > 1, got {a.min()}")
    if conversion == "classic":
        eps = r + math.log(1 / delta) / (a - 1)
    elif conversion == "improved":
        eps = r + np.log1p(-1 / a) - (math.log(delta) + np.log(a)) / (a - 1)
    else:
        raise ValueError(f"conversion must be 'improved' or 'classic', got {conversion!r}")
    i = int(np.argmin(eps))
    return max(0.0, float(eps[i])), float(a[i])


def epsilon_scratch(sampling_rate: float, noise_multiplier: float, steps: int, delta: float,
                    conversion: str = "improved",
                    orders: Sequence[int] = INTEGER_ORDERS) -> float:
    """ε at ``delta`` after ``steps`` DP-SGD steps, by the from-scratch RDP accountant.

    :func:`rdp_sampled_gaussian` × ``steps`` (RDP composes additively), then
    :func:`rdp_to_epsilon`.

    Args:
        sampling_rate: q ∈ (0, 1]; noise_multiplier: σ ≥ 0; steps: T ≥ 1; delta: δ ∈ (0, 1).
        conversion: ``"improved"`` (as dp_accounting) or ``"classic"`` (Mironov 2017).
        orders: integer Rényi orders ≥ 2.

    Returns:
        ε (float; ``inf`` when σ = 0).

    Raises:
        ValueError: any argument out of range (see the ``check_*`` functions).
    """
    steps = check_int("steps", steps, 1)
    delta = check_delta(delta)
    rdp = steps * rdp_sampled_gaussian(sampling_rate, noise_multiplier, orders)
    if not np.all(np.isfinite(rdp)):
        return math.inf
    return rdp_to_epsilon(orders, rdp, delta, conversion)[0]


def epsilon_dp_accounting(sampling_rate: float, noise_multiplier: float, steps: int,
                          delta: float, orders: Sequence[float] | None = None) -> float:
    """ε at ``delta`` from Google's ``dp_accounting`` RDP accountant (the reference).

    ``RdpAccountant(orders).compose(PoissonSampledDpEvent(q, GaussianDpEvent(σ)), steps)``,
    then ``get_epsilon(delta)`` (conversion: Canonne et al. 2020, Prop. 12).

    Args:
        sampling_rate: q ∈ (0, 1]; noise_multiplier: σ ≥ 0; steps: T ≥ 1; delta: δ ∈ (0, 1).
        orders: Rényi orders (default: the library's ``DEFAULT_RDP_ORDERS``, fractional ones
            from 1.1 included).

    Returns:
        ε (float).

    Raises:
        ValueError: any argument out of range.
    """
    import dp_accounting

    q, sigma = check_sampling_rate(sampling_rate), check_noise_multiplier(noise_multiplier)
    steps, delta = check_int("steps", steps, 1), check_delta(delta)
    accountant = dp_accounting.rdp.RdpAccountant(orders=None if orders is None else list(orders))
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    accountant.compose(event, steps)
    return float(accountant.get_epsilon(delta))


def noise_for_epsilon(epsilon: float, sampling_rate: float, steps: int, delta: float, *,
                      low: float = 0.3, high: float = 100.0, tol: float = 1e-3) -> float:
    """The smallest σ (within ``tol``, relative) whose ``dp_accounting`` ε is ≤ ``epsilon``.

    Bisection on σ (ε falls as σ grows).

    Args:
        epsilon: target ε > 0; sampling_rate: q ∈ (0, 1]; steps: T ≥ 1; delta: δ ∈ (0, 1).
        low, high: the σ bracket searched; tol: relative width at which bisection stops.

    Returns:
        σ (float).

    Raises:
        ValueError: an argument out of range, or ``epsilon`` not reachable in the bracket.
    """
    epsilon = check_epsilon(epsilon)
    check_positive_float("low", low)
    check_positive_float("tol", tol)

    def eps(sigma: float) -> float:
        return epsilon_dp_accounting(sampling_rate, sigma, steps, delta)

    if eps(high) > epsilon:
        raise ValueError(f"epsilon={epsilon} needs σ > {high}: use fewer steps or a smaller "
                         "sampling rate")
    if eps(low) <= epsilon:
        return low
    while high - low > tol * low:
        mid = 0.5 * (low + high)
        low, high = (low, mid) if eps(mid) <= epsilon else (mid, high)
    return high


# ----------------------------------------------------------------------------- attack
def loss_threshold_attack_auc(member_losses: Any, nonmember_losses: Any) -> float:
    """AUC of the loss-threshold membership-inference attack (Yeom et al. 2018, Section 3.2).

    The attacker guesses "member" when an example's loss is below a threshold; sweeping the
    threshold gives a ROC curve, scored by ``lmcourse.metrics.roc_auc_score`` with score
    ``-loss`` and label 1 for members. 0.5 = the attacker learns nothing.

    Args:
        member_losses: ``(M,)`` losses of training examples; nonmember_losses: ``(N,)`` losses of
            examples the model never saw (same distribution).

    Returns:
        AUC in [0, 1].

    Raises:
        ValueError: an empty or non-finite set of losses.
    """
    m = np.asarray(member_losses, np.float64).ravel()
    n = np.asarray(nonmember_losses, np.float64).ravel()
    if m.size == 0 or n.size == 0:
        raise ValueError("need at least one member and one non-member loss")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(n))):
        raise ValueError("losses must be finite; check the model's outputs")
    labels = np.concatenate([np.ones(m.size, int), np.zeros(n.size, int)])
    return float(roc_auc_score(labels, -np.concatenate([m, n])))
