"""int8 weight quantisation: symmetric, per output channel, absmax scaled.

Used in chapters: 11.

For a weight matrix ``W`` and an output channel ``c`` (a column of a ``(in, out)`` kernel; a row
of a ``(V, d)`` embedding, whose rows are the output channels of the tied logits ``h Eᵀ``):

    s_c = max |W[:, c]| / 127,     q = round(W / s_c) ∈ [-127, 127] (int8),     Ŵ = q · s_c.

Symmetric (no zero point), so 0 stays exactly 0; the grid ``{k·s_c}`` is the same for positive
and negative values (``-128`` is not used). Rounding to the nearest grid point makes the error
of every element at most ``s_c / 2``; a value already on the grid comes back exactly. A channel
of zeros gets ``s_c = 1`` (any scale represents it exactly). Storage: 1 byte per weight plus one
float32 scale per channel, against 4 bytes per float32 weight.

Only 2-D kernels and embeddings are quantised (:func:`quantize_model`); biases and LayerNorm
parameters stay float32 (few bytes, and they set the scale of whole activations).

Source: Jacob et al. (2018), *Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference*, §2.1 (affine quantisation; symmetric is zero point 0);
Dettmers et al. (2022), *LLM.int8()*, §2 ("absmax quantization", per-row/column scaling,
"vector-wise quantization").
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["QuantizedTensor", "dequantize_int8", "quantize_int8", "quantize_model",
           "quantized_bytes"]

QMAX = 127


class QuantizedTensor(NamedTuple):
    """An int8 tensor with one float32 scale per output channel.

    Attributes:
        values: int8 array, the shape of the original.
        scale: float32 array, ``values.shape`` with every axis but ``channel_axis`` of size 1
            (broadcasts against ``values``).
        channel_axis: the axis of the output channels (non-negative).
    """

    values: np.ndarray
    scale: np.ndarray
    channel_axis: int

    @property
    def nbytes(self) -> int:
        """Bytes of storage: one per value plus four per scale."""
        return int(self.values.nbytes + self.scale.nbytes)


def quantize_int8(w: Any, channel_axis: int = -1) -> QuantizedTensor:
    """Symmetric absmax int8 quantisation of ``w`` with one scale per slice along ``channel_axis``.

    Args:
        w: float array of at least 1 dimension (NumPy or JAX; converted to float32 NumPy).
        channel_axis: the output-channel axis (``-1`` for a Flax ``(in, out)`` kernel, ``0`` for a
            ``(V, d)`` embedding table).

    Returns:
        :class:`QuantizedTensor`; ``dequantize_int8`` of it is within ``scale / 2`` of ``w``.

    Raises:
        ValueError: ``w`` is 0-d, not a float array, holds NaN or infinity (no finite scale
            represents them: clean the weights first), or ``channel_axis`` is out of range.
    """
    a = np.asarray(w)
    if a.ndim == 0:
        raise ValueError("quantize_int8 needs an array with at least one axis, got a scalar")
    if not np.issubdtype(a.dtype, np.floating) and a.dtype.name != "bfloat16":
        raise ValueError(f"quantize_int8 expects floating-point weights, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).sum())
        raise ValueError(f"quantize_int8: {bad} value(s) are NaN or infinite; int8 with a finite "
                         f"scale cannot represent them (check the training run that made them)")
    if not -a.ndim <= channel_axis < a.ndim:
        raise ValueError(f"channel_axis={channel_axis} is out of range for an array of shape "
                         f"{a.shape}")
    axis = channel_axis % a.ndim
    reduce = tuple(i for i in range(a.ndim) if i != axis)
    absmax = np.max(np.abs(a), axis=reduce, keepdims=True)
    scale = np.where(absmax > 0, absmax / QMAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(a / scale), -QMAX, QMAX).astype(np.int8)
    return QuantizedTensor(q, scale, axis)


def dequantize_int8(qt: QuantizedTensor) -> np.ndarray:
    """float32 ``values · scale`` of a :class:`QuantizedTensor`.

    Raises:
        ValueError: ``qt.values`` is not int8 or the scale does not broadcast against it.
    """
    if np.asarray(qt.values).dtype != np.int8:
        raise ValueError(f"values must be int8, got {np.asarray(qt.values).dtype}")
    try:
        return np.asarray(qt.values, np.float32) * np.asarray(qt.scale, np.float32)
    except ValueError as err:
        raise ValueError(f"scale of shape {np.shape(qt.scale)} does not broadcast against values "
                         f"of shape {np.shape(qt.values)}") from err


def _channel_axis(path: tuple[Any, ...]) -> int:
    """Output-channel axis of a parameter from its path: embeddings per row, kernels per column."""
    names = [str(getattr(p, "key", p)) for p in path]
    return 0 if "embedding" in names else -1


def quantize_model(model: Any) -> tuple[Any, dict[str, int]]:
    """A copy of an NNX model whose 2-D parameters went through int8 and back.

    Every ``nnx.Param`` with 2 dimensions (kernels: one scale per column; embedding tables: one
    scale per row) is replaced by ``dequantize_int8(quantize_int8(...))``; other parameters
    (biases, LayerNorm scales and shifts) are copied unchanged. The copy computes with float32
    values that lie on the int8 grid, which is what an int8-weight kernel would compute (up to
    the order of the sums).

    Args:
        model: a Flax NNX module (e.g. :class:`lmcourse.models.gpt.GPT`); it is not changed.

    Returns:
        ``(quantized_copy, sizes)`` with ``sizes = {"float32_bytes": all parameters in float32,
        "int8_bytes": int8 values + float32 scales of the quantised matrices + the other
        parameters in float32, "quantized_params": number of parameters stored in int8}``.

    Raises:
        ValueError: as :func:`quantize_int8` (e.g. a non-finite weight).
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    sizes = {"float32_bytes": 0, "int8_bytes": 0, "quantized_params": 0}

    def convert(path, leaf):
        a = np.asarray(leaf, np.float32)
        sizes["float32_bytes"] += a.size * 4
        if a.ndim != 2:
            sizes["int8_bytes"] += a.size * 4
            return leaf
        qt = quantize_int8(a, _channel_axis(path))
        sizes["int8_bytes"] += qt.nbytes
        sizes["quantized_params"] += a.size
        return jnp.asarray(dequantize_int8(qt), dtype=leaf.dtype)

    new_params = jax.tree_util.tree_map_with_path(convert, params)
    return nnx.merge(graphdef, new_params, rest), sizes


def quantized_bytes(n_matrix_params: int, n_channels: int, n_other_params: int) -> int:
    """Bytes of an int8-weight model: ``1·matrix + 4·channels (scales) + 4·other``.

    Raises:
        ValueError: a count is negative or not an integer.
    """
    from lmcourse.validation import check_int

    return (check_int("n_matrix_params", n_matrix_params, 0)
            + 4 * check_int("n_channels", n_channels, 0)
            + 4 * check_int("n_other_params", n_other_params, 0))
