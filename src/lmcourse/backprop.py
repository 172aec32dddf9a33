"""A multilayer perceptron in NumPy with a hand-written backward pass (chapter 02).

Used in chapters: 02.

The network maps a batch of inputs ``x`` (shape ``(batch_size, n_in)``) to class scores
(``logits``, shape ``(batch_size, n_classes)``)::

    a_0 = x
    z_l = a_{l-1} @ W_l.T + b_l        for l = 1 .. L
    a_l = tanh(z_l)                    for the hidden layers l = 1 .. L-1
    logits = z_L                       (no activation: the softmax lives in the loss)

Conventions:

* ``W_l`` has shape ``(n_out, n_in)`` as in the maths (``z = W a + b`` for one column vector
  ``a``); a batch stores one example per *row*, hence ``a @ W.T``. (Flax's ``nnx.Linear`` stores
  the transpose, a ``kernel`` of shape ``(n_in, n_out)``.)
* The hidden activation function is ``tanh``: it is zero-centred and smooth everywhere (so the
  finite-difference gradient check has no kinks to trip over), and its derivative is cheap to get
  from the forward output, ``tanh'(z) = 1 - tanh(z)**2``.
* The loss is softmax cross-entropy averaged over the batch; its gradient with respect to the
  logits is ``(softmax(logits) - y_onehot) / batch_size``.
* Everything is computed in ``float64``; inputs of another floating dtype are converted.
* Bad input raises ``ValueError`` with a message that says what was expected: sizes that are not
  positive integers, shapes that do not chain, NaN or infinite inputs, weights or targets, targets
  that are not probability vectors, class labels outside ``[0, n_classes)``.
* Cost: the forward pass does one matrix product per layer, the backward pass two (one for the
  weight gradient, one for the gradient that flows to the layer below, which the first layer does
  not need); :func:`mlp_flops` counts them, so forward + backward is about three forward passes.

Why depth is hard (section 8 of the chapter): :func:`init_scale` gives the standard deviation of
the LeCun, Glorot and He initialisations, :func:`init_deep_mlp` draws a deep MLP with one of them
(or a fixed "naive" standard deviation), and :func:`depth_statistics` measures the variance of
every layer's activations and the norm of every layer's weight gradient, for tanh, sigmoid, ReLU
or no activation.

Sources: D. E. Rumelhart, G. E. Hinton and R. J. Williams, "Learning representations by
back-propagating errors", Nature 323 (1986) 533-536; I. Goodfellow, Y. Bengio and A. Courville,
*Deep Learning* (MIT Press, 2016), sections 6.2.2 (softmax units) and 6.5 (back-propagation);
X. Glorot and Y. Bengio, "Understanding the difficulty of training deep feedforward neural
networks", AISTATS 2010 (initialisation); K. He, X. Zhang, S. Ren and J. Sun, "Delving deep
into rectifiers", ICCV 2015, section 2.2 (initialisation for ReLU).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from lmcourse.validation import check_finite, check_positive_float, check_positive_int

Params = list[tuple[np.ndarray, np.ndarray]]
"""One ``(W, b)`` pair per layer: ``W`` of shape ``(n_out, n_in)``, ``b`` of shape ``(n_out,)``."""


class ForwardCache(NamedTuple):
    """What :func:`mlp_forward` keeps for :func:`mlp_backward`.

    Attributes:
        activations: ``[a_0, a_1, ..., a_{L-1}]``, the input of every layer; ``a_0`` is ``x``
            (shape ``(batch_size, n_in)``), ``a_l = tanh(z_l)`` has shape ``(batch_size, n_l)``.
        logits: ``z_L``, shape ``(batch_size, n_classes)``, float64.
    """

    activations: list[np.ndarray]
    logits: np.ndarray



def _checked_sizes(layer_sizes, rng) -> list[int]:
    """Layer sizes as ints (at least two, each positive); ``rng`` must be a NumPy Generator."""
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least an input and an output size, got {sizes}")
    sizes = [check_positive_int(f"layer_sizes[{i}]", n) for i, n in enumerate(sizes)]
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a np.random.Generator (np.random.default_rng(seed)), "
                         f"got {type(rng).__name__}")
    return sizes

def _as_targets(y_onehot: np.ndarray, shape: tuple[int, ...], name: str = "y_onehot") -> np.ndarray:
    """Return targets as float64 of ``shape``; each row must be a probability vector."""
    y = np.asarray(y_onehot, dtype=np.float64)
    if y.shape != shape:
        raise ValueError(f"{name} has shape {y.shape}, expected the logits' shape {shape}")
    check_finite(name, y)
    if (y < 0).any() or not np.allclose(y.sum(axis=-1), 1.0, rtol=0.0, atol=1e-6):
        raise ValueError(
            f"every row of {name} must be a probability vector (entries >= 0 summing to 1), e.g. a "
            f"one-hot row; build it from integer labels with one_hot(labels, n_classes)"
        )
    return y


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """One-hot rows ``Y[i, k] = 1 if labels[i] == k else 0``, with the labels checked first.

    ``np.eye(n_classes)[labels]`` would silently give the row of class ``n_classes - 1`` for the
    label ``-1``; this function refuses it.

    Args:
        labels: integer class ids of shape ``(batch_size,)``, each in ``[0, n_classes)``.
        n_classes: the number of classes, a positive integer.

    Returns:
        float64 array of shape ``(batch_size, n_classes)``; every row has a single 1.

    Raises:
        ValueError: if ``n_classes`` is not a positive integer, ``labels`` is not a 1-D array of
            integers, or a label lies outside ``[0, n_classes)``.
    """
    n = check_positive_int("n_classes", n_classes)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of class ids, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers (class ids), got dtype {labels.dtype}")
    out_of_range = (labels < 0) | (labels >= n)
    if out_of_range.any():
        i = int(np.argmax(out_of_range))
        raise ValueError(
            f"labels must lie in [0, {n}) for n_classes={n}; labels[{i}] = {int(labels[i])} "
            f"({int(out_of_range.sum())} out of range). Map the labels to 0..{n - 1} or raise n_classes"
        )
    return np.eye(n, dtype=np.float64)[labels]


def init_mlp(layer_sizes: Sequence[int], rng: np.random.Generator) -> Params:
    """Create the weights of an MLP with Glorot (Xavier) normal initialisation and zero biases.

    Args:
        layer_sizes: ``[n_in, n_hidden_1, ..., n_classes]``, at least two positive integers.
        rng: a NumPy generator, e.g. ``np.random.default_rng(0)``; the only source of randomness.

    Returns:
        A list of ``L = len(layer_sizes) - 1`` pairs ``(W, b)``: ``W`` float64 of shape
        ``(layer_sizes[l + 1], layer_sizes[l])`` drawn from ``N(0, 2 / (n_in + n_out))``,
        ``b`` float64 zeros of shape ``(layer_sizes[l + 1],)``.

    Raises:
        ValueError: if fewer than two sizes are given, a size is not a positive integer (``0``,
            ``-3``, ``2.5``, ``NaN`` and ``True`` are refused), or ``rng`` is not a
            ``np.random.Generator``.

    Source: Glorot & Bengio (2010), eq. 16 (variance ``2 / (n_in + n_out)``, designed for tanh).
    """
    sizes = _checked_sizes(layer_sizes, rng)
    params: Params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        std = np.sqrt(2.0 / (n_in + n_out))
        weights = rng.normal(0.0, std, size=(int(n_out), int(n_in)))
        params.append((weights.astype(np.float64), np.zeros(int(n_out), dtype=np.float64)))
    return params


def _as_params(params: Params) -> Params:
    """Return ``params`` as float64 ``(W, b)`` arrays after checking shapes chain and are finite.

    Raises:
        ValueError: if ``params`` is empty, a ``W`` is not 2-D, a ``b`` does not match its ``W``,
            consecutive layers do not chain, or an entry is NaN or infinite.
    """
    if len(params) == 0:
        raise ValueError("params is empty: an MLP needs at least one (W, b) layer")
    checked: Params = []
    for layer, pair in enumerate(params):
        if len(pair) != 2:
            raise ValueError(f"layer {layer}: expected a (W, b) pair, got {len(pair)} items")
        weights = np.asarray(pair[0], dtype=np.float64)
        bias = np.asarray(pair[1], dtype=np.float64)
        if weights.ndim != 2:
            raise ValueError(f"layer {layer}: W must be 2-D (n_out, n_in), got shape {weights.shape}")
        if bias.shape != (weights.shape[0],):
            raise ValueError(
                f"layer {layer}: b has shape {bias.shape}, expected ({weights.shape[0]},) to "
                f"match W of shape {weights.shape}"
            )
        if layer > 0:
            n_prev = checked[layer - 1][0].shape[0]
            if weights.shape[1] != n_prev:
                raise ValueError(
                    f"layer {layer}: W has shape {weights.shape}, so it expects {weights.shape[1]} "
                    f"inputs, but layer {layer - 1} produces {n_prev}"
                )
        check_finite(f"W of layer {layer}", weights)
        check_finite(f"b of layer {layer}", bias)
        checked.append((weights, bias))
    return checked


def _as_batch(x: np.ndarray, n_features: int, name: str) -> np.ndarray:
    """Return ``x`` as a finite float64 array ``(batch_size, n_features)`` or raise ValueError."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"{name} must have shape (batch_size, {n_features}), got {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    check_finite(name, x)
    return x


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax ``p_ik = exp(z_ik) / sum_j exp(z_ij)``, computed stably.

    Args:
        logits: float array of shape ``(batch_size, n_classes)``.

    Returns:
        float64 probabilities of the same shape; each row sums to 1.

    Raises:
        ValueError: if ``logits`` is 0-D, has no classes, or holds a NaN or an infinity.

    Source: Goodfellow et al., *Deep Learning*, section 6.2.2.3 (subtracting the row maximum
    leaves the result unchanged and avoids overflow).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ValueError(f"logits must have a non-empty last (class) axis, got shape {logits.shape}")
    check_finite("logits", logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def softmax_cross_entropy(logits: np.ndarray, y_onehot: np.ndarray) -> float:
    """Mean softmax cross-entropy ``L = -(1/B) sum_i sum_k y_ik log softmax(z_i)_k``.

    Uses ``log softmax(z)_k = z_k - logsumexp(z)`` so that large logits do not overflow.

    Args:
        logits: float array of shape ``(batch_size, n_classes)``.
        y_onehot: targets of the same shape, each row a probability vector (usually one-hot).

    Returns:
        The loss as a Python float (natural log, so ``ln(n_classes)`` for uniform predictions).

    Raises:
        ValueError: if the two shapes differ or are not 2-D, the batch is empty, a value is NaN
            or infinite, or a row of ``y_onehot`` is not a probability vector.

    Source: Goodfellow et al., *Deep Learning*, sections 6.2.1.1 and 6.2.2.3.
    """
    logits = np.asarray(logits, dtype=np.float64)
    y_onehot = np.asarray(y_onehot, dtype=np.float64)
    if logits.ndim != 2 or logits.shape != y_onehot.shape:
        raise ValueError(
            f"logits and y_onehot must both have shape (batch_size, n_classes); "
            f"got {logits.shape} and {y_onehot.shape}"
        )
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits is empty (shape {logits.shape}): need >= 1 example and class")
    check_finite("logits", logits)
    y_onehot = _as_targets(y_onehot, logits.shape)
    row_max = logits.max(axis=1, keepdims=True)
    log_sum_exp = row_max + np.log(np.exp(logits - row_max).sum(axis=1, keepdims=True))
    log_probs = logits - log_sum_exp
    return float(-(y_onehot * log_probs).sum(axis=1).mean())


def mlp_forward(params: Params, x: np.ndarray) -> tuple[np.ndarray, ForwardCache]:
    """Forward propagation: ``logits = W_L tanh(... tanh(W_1 x + b_1) ...) + b_L`` per row.

    Args:
        params: the layers, see :data:`Params` (check: consecutive shapes must chain).
        x: inputs of shape ``(batch_size, n_in)`` with ``n_in = params[0][0].shape[1]``.

    Returns:
        ``(logits, cache)``: float64 logits of shape ``(batch_size, n_classes)`` and the
        :class:`ForwardCache` that :func:`mlp_backward` needs.

    Raises:
        ValueError: if the layer shapes do not chain, ``x`` has the wrong shape or is empty, or
            ``x`` or a weight is NaN or infinite.
    """
    params = _as_params(params)
    activation = _as_batch(x, params[0][0].shape[1], "x")
    activations = [activation]
    for weights, bias in params[:-1]:
        activation = np.tanh(activation @ weights.T + bias)
        activations.append(activation)
    weights_out, bias_out = params[-1]
    logits = activation @ weights_out.T + bias_out
    return logits, ForwardCache(activations=activations, logits=logits)


def mlp_backward(params: Params, cache: ForwardCache, y_onehot: np.ndarray) -> Params:
    """Backpropagation of the mean softmax cross-entropy through the MLP.

    With ``B = batch_size`` and rows as examples, the chain rule gives (Goodfellow et al.,
    algorithm 6.4; Rumelhart, Hinton & Williams 1986, eqs. 13-16)::

        delta_L = (softmax(z_L) - y) / B                        # dL/dz_L
        dW_l    = delta_l.T @ a_{l-1}        db_l = sum over rows of delta_l
        delta_{l-1} = (delta_l @ W_l) * (1 - a_{l-1}**2)         # tanh'(z) = 1 - tanh(z)**2

    Args:
        params: the same layers that produced ``cache``.
        cache: the :class:`ForwardCache` returned by :func:`mlp_forward`.
        y_onehot: targets of shape ``(batch_size, n_classes)`` (rows are probability vectors).

    Returns:
        Gradients with the structure and shapes of ``params``: ``[(dL/dW_1, dL/db_1), ...]``,
        float64.

    Raises:
        ValueError: if ``y_onehot`` does not match the logits or is not made of probability rows,
            or the cache does not match params.
    """
    params = _as_params(params)
    logits = np.asarray(cache.logits, dtype=np.float64)
    y_onehot = _as_targets(y_onehot, logits.shape)
    if len(cache.activations) != len(params):
        raise ValueError(
            f"cache holds {len(cache.activations)} layer inputs but params has {len(params)} "
            f"layers: was the cache made by mlp_forward with these params?"
        )
    batch = logits.shape[0]
    for layer, (activation, (weights, _)) in enumerate(zip(cache.activations, params, strict=True)):
        if np.shape(activation) != (batch, weights.shape[1]):
            raise ValueError(
                f"cache: the input of layer {layer} has shape {np.shape(activation)}, expected "
                f"({batch}, {weights.shape[1]}): was the cache made by mlp_forward with these params?"
            )
    if logits.shape[1] != params[-1][0].shape[0]:
        raise ValueError(f"cache: logits have {logits.shape[1]} classes, the last layer "
                         f"produces {params[-1][0].shape[0]}")
    batch_size = logits.shape[0]
    delta = (softmax(logits) - y_onehot) / batch_size
    grads: Params = []
    for layer in reversed(range(len(params))):
        weights, _ = params[layer]
        layer_input = np.asarray(cache.activations[layer], dtype=np.float64)
        grads.append((delta.T @ layer_input, delta.sum(axis=0)))
        if layer > 0:
            delta = (delta @ weights) * (1.0 - layer_input**2)
    grads.reverse()
    return grads


def loss_and_grads(params: Params, x: np.ndarray, y_onehot: np.ndarray) -> tuple[float, Params]:
    """Forward pass, mean softmax cross-entropy and backward pass in one call.

    Args:
        params: the layers, see :data:`Params`.
        x: inputs of shape ``(batch_size, n_in)``.
        y_onehot: targets of shape ``(batch_size, n_classes)``.

    Returns:
        ``(loss, grads)`` with ``grads`` shaped like ``params``.

    Raises:
        ValueError: on any shape mismatch (see :func:`mlp_forward`, :func:`mlp_backward`).
    """
    logits, cache = mlp_forward(params, x)
    loss = softmax_cross_entropy(logits, y_onehot)
    return loss, mlp_backward(params, cache, y_onehot)


def numerical_gradient(
    f: Callable[[Params], float], params: Params, eps: float = 1e-5
) -> Params:
    """Central finite differences ``df/dθ_j ≈ (f(θ + eps e_j) - f(θ - eps e_j)) / (2 eps)``.

    Every entry of every ``W`` and ``b`` is perturbed in turn, so the cost is
    ``2 * n_parameters`` calls of ``f``: use it on small networks and batches only.
    The truncation error is ``O(eps**2)``; in float64 the rounding error is about
    ``1e-16 * |f| / eps``, so ``eps`` near ``1e-16 ** (1/3) ≈ 1e-5`` balances the two.

    Args:
        f: a scalar function of the parameters, e.g. ``lambda p: softmax_cross_entropy(
            mlp_forward(p, x)[0], y)``.
        params: where to evaluate the gradient; left unchanged on return.
        eps: the step, a positive float.

    Returns:
        float64 gradients shaped like ``params``.

    Raises:
        ValueError: if ``eps`` is not a finite positive number, ``params`` is malformed (see
            :func:`mlp_forward`), or ``f`` returns NaN or an infinity.

    Source: Goodfellow et al., *Deep Learning*, section 11.5 (debugging: gradient checking).
    """
    eps = check_positive_float("eps", eps)   # e.g. 1e-5
    work = [(np.array(w, dtype=np.float64), np.array(b, dtype=np.float64))
            for w, b in _as_params(params)]
    grads: Params = []
    for weights, bias in work:
        layer_grads = []
        for array in (weights, bias):
            grad = np.zeros_like(array)
            for index in np.ndindex(array.shape):
                original = array[index]
                array[index] = original + eps
                f_plus = float(f(work))
                array[index] = original - eps
                f_minus = float(f(work))
                array[index] = original
                if not (math.isfinite(f_plus) and math.isfinite(f_minus)):
                    raise ValueError(f"f returned a non-finite value ({f_plus}, {f_minus}) when "
                                     f"entry {index} was moved by +-{eps}")
                grad[index] = (f_plus - f_minus) / (2.0 * eps)
            layer_grads.append(grad)
        grads.append((layer_grads[0], layer_grads[1]))
    return grads


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """Relative error of two arrays of the same shape: ``max|a - b| / max(max|a|, max|b|)``.

    The largest entry-wise difference is measured against the largest entry (the scale of the
    array), not entry by entry: an entry whose true value is ~0 (e.g. a weight fed by an input
    pixel that is always 0) would otherwise give 0/0 or ``1e-10 / 1e-12``. Returns 0.0 when both
    arrays are all zeros.

    Raises:
        ValueError: if the shapes differ or an entry is NaN or infinite (a NaN would make every
            comparison with a tolerance silently false).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare arrays of shapes {a.shape} and {b.shape}")
    check_finite("the first array", a)
    check_finite("the second array", b)
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - b).max(initial=0.0) / scale)


def max_relative_error(grads_a: Params, grads_b: Params) -> float:
    """The largest :func:`relative_error` over all layers and over both ``W`` and ``b``.

    Args:
        grads_a, grads_b: two gradient lists shaped like :data:`Params` (JAX arrays work too).

    Raises:
        ValueError: if the lists are empty, the number of layers or any pair of shapes differ, or
            an entry is NaN or infinite.
    """
    if len(grads_a) != len(grads_b):
        raise ValueError(f"{len(grads_a)} layers vs {len(grads_b)} layers")
    if len(grads_a) == 0:
        raise ValueError("no layers to compare: both gradient lists are empty")
    return max(
        relative_error(x, y)
        for (w_a, b_a), (w_b, b_b) in zip(grads_a, grads_b, strict=True)
        for x, y in ((w_a, w_b), (b_a, b_b))
    )


class MatmulFlops(NamedTuple):
    """Floating-point operations of the matrix products of one training step (see :func:`mlp_flops`).

    Attributes:
        forward: FLOP of the forward pass, ``sum_l 2 B n_{l-1} n_l``.
        weight_grads: FLOP of the weight gradients ``Delta_l.T @ A_{l-1}``, the same sum.
        input_grads: FLOP of the gradients passed down, ``Delta_l @ W_l``, the same sum without
            the first layer unless the gradient with respect to the input was asked for.
    """

    forward: int
    weight_grads: int
    input_grads: int

    @property
    def backward(self) -> int:
        """FLOP of the backward pass: weight gradients plus the gradients passed down."""
        return self.weight_grads + self.input_grads

    @property
    def ratio(self) -> float:
        """(forward + backward) / forward: 3 for a deep stack, less when layer 1 dominates."""
        return (self.forward + self.backward) / self.forward


def mlp_flops(layer_sizes: Sequence[int], batch_size: int, *,
              input_gradient: bool = False) -> MatmulFlops:
    """Count the FLOP of the matrix products of one forward and one backward pass of the MLP.

    A product of an ``(m, k)`` and a ``(k, n)`` matrix costs ``2 m k n`` FLOP (one multiply and one
    add per term). Per layer ``l`` (``n_{l-1}`` inputs, ``n_l`` outputs, batch ``B``):

    * forward ``Z_l = A_{l-1} @ W_l.T``: ``2 B n_{l-1} n_l``;
    * backward ``dW_l = Delta_l.T @ A_{l-1}``: the same, for every layer;
    * backward ``Delta_l @ W_l`` (the gradient passed to the layer below): the same, except for the
      first layer, whose input is the data; it is computed only with ``input_gradient=True``.

    So, with ``N`` weights, the forward pass costs ``2 B N`` and forward + backward ``6 B N`` minus
    the first layer's input gradient: the ``C ~ 6 N D`` of Kaplan et al. (2020, §2.1: "the
    backwards pass is approximately twice the compute as the forwards pass"). Biases, the
    activation function and the softmax add ``O(B n)`` elementwise operations, left out here.

    Args:
        layer_sizes: ``[n_in, n_hidden_1, ..., n_classes]``, at least two positive integers.
        batch_size: ``B``, a positive integer.
        input_gradient: also count the gradient with respect to the input ``x`` (as a saliency map
            or an attack on the input needs).

    Returns:
        A :class:`MatmulFlops` of exact integers.

    Raises:
        ValueError: if fewer than two sizes are given or a size or ``batch_size`` is not a positive
            integer.
    """
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least an input and an output size, got {sizes}")
    sizes = [check_positive_int(f"layer_sizes[{i}]", n) for i, n in enumerate(sizes)]
    batch = check_positive_int("batch_size", batch_size)
    per_layer = [2 * batch * n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)]
    input_grads = sum(per_layer) if input_gradient else sum(per_layer[1:])
    return MatmulFlops(forward=sum(per_layer), weight_grads=sum(per_layer), input_grads=input_grads)


# ----------------------------------------------------------------------------------------------
# Why depth is hard: initialisation scales and per-layer statistics (chapter 02, section 8)
# ----------------------------------------------------------------------------------------------
INIT_KINDS = ("lecun", "glorot", "he")
"""The variance-preserving initialisations :func:`init_scale` knows."""

ACTIVATIONS = ("linear", "tanh", "sigmoid", "relu")
"""The hidden activation functions :func:`depth_statistics` knows."""


def init_scale(kind: str, fan_in: int, fan_out: int | None = None) -> float:
    """The standard deviation of a zero-mean weight initialisation that preserves variance.

    * ``"lecun"``: ``Var[W] = 1 / fan_in``, keeps the variance of the forward signal through a
      linear layer (and through ``tanh`` near 0, where ``tanh(z) ≈ z``);
      LeCun, Bottou, Orr & Müller, "Efficient BackProp" (1998), §4.6.
    * ``"glorot"``: ``Var[W] = 2 / (fan_in + fan_out)``, the compromise between the forward
      (``1 / fan_in``) and backward (``1 / fan_out``) conditions; Glorot & Bengio (2010), eq. 12,
      and its uniform form ``U[-sqrt(6 / (fan_in + fan_out)), +sqrt(...)]``, eq. 16.
    * ``"he"``: ``Var[W] = 2 / fan_in``, for ReLU, which zeroes half of a symmetric input and
      so halves ``E[a**2]``; He, Zhang, Ren & Sun, "Delving deep into rectifiers" (ICCV 2015),
      §2.2 (their condition ``(1/2) n_l Var[w_l] = 1``).

    These are the variances of ``jax.nn.initializers.lecun_normal``, ``glorot_normal`` and
    ``he_normal`` (which draw from a truncated normal rescaled to that variance).

    Args:
        kind: ``"lecun"``, ``"glorot"`` or ``"he"``.
        fan_in: inputs of the layer (``n_in``, the columns of ``W`` of shape ``(n_out, n_in)``),
            a positive integer.
        fan_out: outputs of the layer; required for ``"glorot"``, ignored otherwise.

    Returns:
        The standard deviation ``sqrt(Var[W])`` as a Python float (dimensionless).

    Raises:
        ValueError: if ``kind`` is not one of :data:`INIT_KINDS`, ``fan_in`` is not a positive
            integer, or ``kind == "glorot"`` and ``fan_out`` is missing or not a positive integer.
    """
    if kind not in INIT_KINDS:
        raise ValueError(f"kind must be one of {INIT_KINDS}, got {kind!r}")
    n_in = check_positive_int("fan_in", fan_in)
    if kind == "lecun":
        return math.sqrt(1.0 / n_in)
    if kind == "he":
        return math.sqrt(2.0 / n_in)
    if fan_out is None:
        raise ValueError("kind='glorot' needs fan_out (the layer's number of outputs)")
    n_out = check_positive_int("fan_out", fan_out)
    return math.sqrt(2.0 / (n_in + n_out))


def init_deep_mlp(layer_sizes: Sequence[int], rng: np.random.Generator,
                  std: str | float) -> Params:
    """Weights of a deep MLP drawn from ``N(0, std**2)`` per layer, zero biases.

    Args:
        layer_sizes: ``[n_in, n_1, ..., n_classes]``, at least two positive integers.
        rng: a NumPy generator, the only source of randomness.
        std: a name of :func:`init_scale` (``"lecun"``, ``"glorot"``, ``"he"``: the standard
            deviation then depends on each layer's fan-in and fan-out) or one positive number
            used for every layer (a "naive" initialisation such as ``1.0`` or ``0.01``).

    Returns:
        :data:`Params`: float64 ``W`` of shape ``(n_out, n_in)`` and zero ``b`` of shape ``(n_out,)``.

    Raises:
        ValueError: if fewer than two sizes are given, a size is not a positive integer, ``rng``
            is not a ``np.random.Generator``, or ``std`` is neither a known name nor a finite
            positive number.
    """
    sizes = _checked_sizes(layer_sizes, rng)
    fixed = None if isinstance(std, str) else check_positive_float("std", std)
    params: Params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        scale = fixed if fixed is not None else init_scale(str(std), n_in, n_out)
        params.append((rng.normal(0.0, scale, size=(n_out, n_in)), np.zeros(n_out)))
    return params


def _activation(name: str) -> tuple[Callable[[np.ndarray], np.ndarray],
                                    Callable[[np.ndarray], np.ndarray]]:
    """``(f, f')`` with the derivative written in terms of the output ``a = f(z)``."""
    if name == "linear":
        return (lambda z: z), np.ones_like
    if name == "tanh":
        return np.tanh, (lambda a: 1.0 - a**2)
    if name == "sigmoid":
        return (lambda z: 0.5 * (1.0 + np.tanh(0.5 * z))), (lambda a: a * (1.0 - a))
    if name == "relu":
        return (lambda z: np.maximum(z, 0.0)), (lambda a: (a > 0).astype(np.float64))
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


class DepthStatistics(NamedTuple):
    """Per-layer statistics of one forward and backward pass (see :func:`depth_statistics`).

    Attributes:
        activation_variance: float64 ``(L - 1,)``: the variance of each hidden layer's output
            ``a_l`` over the batch and the units (``np.var(a_l)``), layer 1 first.
        gradient_norm: float64 ``(L,)``: the Frobenius norm ``||dL/dW_l||`` of each layer's weight
            gradient for the mean softmax cross-entropy, layer 1 first.
        loss: the mean softmax cross-entropy of the batch (nats).
    """

    activation_variance: np.ndarray
    gradient_norm: np.ndarray
    loss: float


def depth_statistics(params: Params, x: np.ndarray, y_onehot: np.ndarray,
                     activation: str = "tanh") -> DepthStatistics:
    """Activation variance and weight-gradient norm of every layer of an MLP, in one pass.

    The network is that of :func:`mlp_forward` with another hidden activation if asked
    (``a_l = f(W_l a_{l-1} + b_l)``, no activation on the logits); the backward pass is that of
    :func:`mlp_backward` with ``f'`` in place of ``tanh'``. Used to watch signals explode or
    vanish through depth (Glorot & Bengio 2010, §4.2; He et al. 2015, §2.2).

    Args:
        params: the layers, see :data:`Params` (e.g. from :func:`init_deep_mlp`).
        x: inputs of shape ``(batch_size, n_in)``.
        y_onehot: targets of shape ``(batch_size, n_classes)`` (rows are probability vectors).
        activation: the hidden activation, one of :data:`ACTIVATIONS`.

    Returns:
        A :class:`DepthStatistics`. In float64, values as large as ``1e300`` or as small as
        ``1e-300`` are still represented: an exploding network shows as huge numbers, not NaN,
        up to that range.

    Raises:
        ValueError: if ``activation`` is unknown, the layer shapes do not chain, ``x`` or
            ``y_onehot`` has the wrong shape or holds NaN/inf, or the signal overflowed float64
            (the message says at which layer).
    """
    function, derivative = _activation(activation)
    params = _as_params(params)
    a = _as_batch(x, params[0][0].shape[1], "x")
    activations = [a]
    for layer, (weights, bias) in enumerate(params[:-1], start=1):
        with np.errstate(over="ignore", invalid="ignore"):   # reported just below
            a = function(a @ weights.T + bias)
        if not np.isfinite(a).all():
            raise ValueError(f"the activations of layer {layer} overflowed float64: the weights "
                             f"are far too large for this depth")
        activations.append(a)
    logits = a @ params[-1][0].T + params[-1][1]
    check_finite("logits", logits, "the weights are far too large for this depth")
    y = _as_targets(y_onehot, logits.shape)
    delta = (softmax(logits) - y) / logits.shape[0]
    norms = []
    for layer in reversed(range(len(params))):
        norms.append(float(np.linalg.norm(delta.T @ activations[layer])))
        if layer > 0:
            delta = (delta @ params[layer][0]) * derivative(activations[layer])
    return DepthStatistics(
        activation_variance=np.array([float(np.var(h)) for h in activations[1:]]),
        gradient_norm=np.array(norms[::-1]),
        loss=softmax_cross_entropy(logits, y),
    )
