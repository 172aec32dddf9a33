"""Counting before running: FLOPs and bytes of a GPT training step, and what XLA says about them.

Used in chapters: 11.

FLOPs. A matrix product ``(m x k) @ (k x n)`` costs ``2·m·k·n`` FLOPs (one multiply and one add
per term; the convention XLA's ``cost_analysis()`` uses for a ``dot``). The training step of the
chapter-07 GPT (:class:`lmcourse.models.gpt.GPT`) on ``B`` sequences of ``T`` tokens, width ``d``,
``L`` blocks, MLP width ``f`` and vocabulary ``V`` runs these products in the forward pass:

* per block: query/key/value ``2·BT·d·3d``, output projection ``2·BT·d·d``, MLP
  ``2·BT·d·f + 2·BT·f·d`` (the dense part, ``2·BT`` times the block's matrix parameters);
* per block: ``Q Kᵀ`` and ``A V``, each ``2·B·T·T·d`` (all heads together; the model computes the
  full ``T x T`` score matrix and masks it, so the causal half is computed too);
* the logits ``2·BT·d·V`` (the tied embedding as output matrix). The embedding lookups are
  gathers: no FLOPs.

The backward pass costs twice the forward (for ``Y = X W`` it computes ``dX = dY Wᵀ`` and
``dW = Xᵀ dY``, each as large as the forward product), so a training step costs
``3 x forward`` (:func:`gpt_train_flops`). Kaplan et al. (2020, §2.1 and Table 1) approximate the
forward pass per token by ``2N + 2·L·n_ctx·d`` with ``N`` the non-embedding parameters, hence
``C ≈ 6·N·D`` for ``D`` training tokens (:func:`kaplan_train_flops`). XLA also counts what the
formula leaves out: biases, softmax, LayerNorm, GELU, the loss and the optimizer update
(elementwise work, a few percent for our widths, less for wider models).

Memory. The training step's *arguments* are the parameters (4 bytes each in float32), Adam's two
moments (8 bytes per parameter), a few scalars (step counts, random-number state) and the batch;
:func:`training_argument_bytes` counts them. Mixed-precision Adam needs 16 bytes per parameter
(:func:`mixed_precision_adam_bytes`; Rajbhandari et al. 2020, ZeRO, §3.1). Activations saved for
the backward pass follow Korthikanti et al. (2022, §4.1), written here for float32 without
dropout (:func:`activation_bytes`); XLA's ``temp_size_in_bytes`` is the peak of its own buffer
plan, which this formula does not predict.

Sources: Kaplan et al. (2020), *Scaling Laws for Neural Language Models*, §2.1 and Table 1;
Rajbhandari et al. (2020), *ZeRO: Memory Optimizations Toward Training Trillion Parameter
Models*, §3.1; Korthikanti et al. (2022), *Reducing Activation Recomputation in Large Transformer
Models*, §4.1; Chowdhery et al. (2022), *PaLM*, §4.1 and Appendix B (model FLOPs utilisation);
the JAX documentation of ``jax.stages.Compiled.cost_analysis`` and ``memory_analysis``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lmcourse.param_count import GPTConfig
from lmcourse.validation import check_positive_float, check_positive_int

__all__ = ["activation_bytes", "adam_fp32_bytes", "compile_train_step", "gpt_forward_flops",
           "gpt_train_flops", "kaplan_forward_flops_per_token", "kaplan_train_flops",
           "mixed_precision_adam_bytes", "model_flops_utilization", "non_embedding_params",
           "training_argument_bytes", "tree_bytes", "xla_flops", "xla_memory"]


def _check_config(config: object) -> GPTConfig:
    if not isinstance(config, GPTConfig):
        raise ValueError(f"config must be a lmcourse.param_count.GPTConfig, got "
                         f"{type(config).__name__}")
    return config


def _seq_len(config: GPTConfig, seq_len: int | None) -> int:
    t = config.n_ctx if seq_len is None else check_positive_int("seq_len", seq_len)
    if t > config.n_ctx:
        raise ValueError(f"seq_len={t} exceeds the model's context n_ctx={config.n_ctx}")
    return t


def gpt_forward_flops(config: GPTConfig, batch_size: int, seq_len: int | None = None
                      ) -> dict[str, int]:
    """Matrix-product FLOPs of one forward pass of the GPT on ``B x T`` tokens, per component.

    Args:
        config: the model's :class:`~lmcourse.param_count.GPTConfig`.
        batch_size: ``B`` sequences.
        seq_len: ``T`` tokens per sequence (default and maximum ``n_ctx``).

    Returns:
        exact ``int`` FLOPs: ``{"qkv": L·2·BT·d·3d, "attn_scores": L·2·B·T²·d (Q Kᵀ),
        "attn_values": L·2·B·T²·d (A V), "attn_proj": L·2·BT·d², "mlp": L·4·BT·d·f,
        "logits": 2·BT·d·V}``. Their sum is the forward pass.

    Raises:
        ValueError: ``config`` is not a ``GPTConfig``, ``batch_size`` not a positive integer,
            ``seq_len`` not in ``[1, n_ctx]``.

    Source: the ``2·m·k·n`` count of a matrix product; Kaplan et al. (2020), Table 1 (their
    attention term counts the causal half only, see :func:`kaplan_forward_flops_per_token`).
    """
    c = _check_config(config)
    b, t = check_positive_int("batch_size", batch_size), _seq_len(config, seq_len)
    d, n_layers, v = c.d_model, c.layers, c.vocab_size
    f = c.d_ff or 4 * d
    bt = b * t
    return {"qkv": n_layers * 2 * bt * d * 3 * d,
            "attn_scores": n_layers * 2 * b * t * t * d,
            "attn_values": n_layers * 2 * b * t * t * d,
            "attn_proj": n_layers * 2 * bt * d * d,
            "mlp": n_layers * 2 * bt * 2 * d * f,
            "logits": 2 * bt * d * v}


def gpt_train_flops(config: GPTConfig, batch_size: int, seq_len: int | None = None) -> int:
    """Matrix-product FLOPs of one training step: forward + backward = 3 x forward.

    Raises:
        ValueError: as :func:`gpt_forward_flops`.

    Source: backward = 2 x forward for every product (gradient with respect to each operand);
    Kaplan et al. (2020) §2.1.
    """
    return 3 * sum(gpt_forward_flops(config, batch_size, seq_len).values())


def non_embedding_params(config: GPTConfig) -> int:
    """Kaplan's ``N``: all parameters except the token and position tables (and an untied head).

    Raises:
        ValueError: ``config`` is not a ``GPTConfig``.
    """
    parts = _check_config(config).breakdown()
    return parts["attention"] + parts["mlp"] + parts["norm"]


def kaplan_forward_flops_per_token(config: GPTConfig) -> int:
    """Kaplan et al.'s forward FLOPs per token: ``2N + 2·L·n_ctx·d`` (``N`` non-embedding).

    The attention term ``2·L·n_ctx·d`` is ``Q Kᵀ`` plus ``A V`` over the causal half (on average a
    token attends to ``n_ctx / 2`` positions); it leaves out the logits ``2·d·V``.

    Raises:
        ValueError: ``config`` is not a ``GPTConfig``.

    Source: Kaplan et al. (2020), Table 1 and eq. 2.2.
    """
    c = _check_config(config)
    return 2 * non_embedding_params(c) + 2 * c.layers * c.n_ctx * c.d_model


def kaplan_train_flops(config: GPTConfig, tokens: int) -> int:
    """``C ≈ 6·N·D``: training FLOPs for ``D = tokens`` with ``N`` the non-embedding parameters.

    Raises:
        ValueError: ``config`` is not a ``GPTConfig`` or ``tokens`` is not a positive integer.

    Source: Kaplan et al. (2020), §2.1.
    """
    return 6 * non_embedding_params(config) * check_positive_int("tokens", tokens)


def training_argument_bytes(n_params: int, *, batch_size: int, seq_len: int,
                            param_bytes: int = 4) -> dict[str, int]:
    """Bytes of the arguments of a float32 Adam training step, from the formula.

    Args:
        n_params: number of parameters ``P``.
        batch_size, seq_len: the batch ``(B, T)`` of int32 inputs and int32 targets.
        param_bytes: bytes per parameter and per Adam moment (4 for float32).

    Returns:
        ``{"parameters": P·4, "adam_moments": 2·P·4, "batch": 2·B·T·4}``. The step's arguments
        also hold a few scalars (step counters, random-number state: tens of bytes), which the
        formula leaves out.

    Raises:
        ValueError: a count is not a positive integer.

    Source: Kingma & Ba (2015), Algorithm 1 (Adam keeps ``m`` and ``v``, one of each per
    parameter).
    """
    p = check_positive_int("n_params", n_params)
    b, t = check_positive_int("batch_size", batch_size), check_positive_int("seq_len", seq_len)
    nb = check_positive_int("param_bytes", param_bytes)
    return {"parameters": p * nb, "adam_moments": 2 * p * nb, "batch": 2 * b * t * 4}


def adam_fp32_bytes(n_params: int) -> dict[str, int]:
    """Bytes per model of float32 training with Adam: 16 bytes per parameter.

    Returns:
        ``{"parameters": 4P, "gradients": 4P, "momentum": 4P, "variance": 4P}``.

    Raises:
        ValueError: ``n_params`` is not a positive integer.
    """
    p = check_positive_int("n_params", n_params)
    return {"parameters": 4 * p, "gradients": 4 * p, "momentum": 4 * p, "variance": 4 * p}


def mixed_precision_adam_bytes(n_params: int) -> dict[str, int]:
    """ZeRO's count for mixed-precision Adam: ``2 + 2 + K`` bytes per parameter with ``K = 12``.

    Returns:
        ``{"fp16_parameters": 2P, "fp16_gradients": 2P, "fp32_master_parameters": 4P,
        "fp32_momentum": 4P, "fp32_variance": 4P}`` (sum ``16P``; the last three are the
        ``K = 12`` bytes of optimizer state).

    Raises:
        ValueError: ``n_params`` is not a positive integer.

    Source: Rajbhandari et al. (2020), ZeRO, §3.1 ("2Ψ + 2Ψ + KΨ = 16Ψ bytes" with K = 12).
    """
    p = check_positive_int("n_params", n_params)
    return {"fp16_parameters": 2 * p, "fp16_gradients": 2 * p, "fp32_master_parameters": 4 * p,
            "fp32_momentum": 4 * p, "fp32_variance": 4 * p}


def activation_bytes(config: GPTConfig, batch_size: int, seq_len: int | None = None,
                     bytes_per_value: int = 4) -> dict[str, int]:
    """Activations a textbook backward pass keeps, per component (no dropout, no recomputation).

    Per block and token: the LayerNorm inputs ``2d``; the inputs of the query/key/value product
    ``d``, ``Q`` and ``K`` ``2d``, ``V`` ``d``, the softmax output ``h·T``, the output projection's
    input ``d``; the MLP's input ``d``, the GELU input ``f`` and its output ``f``. After the blocks:
    the final LayerNorm input ``d`` and the logits ``V``. With ``f = 4d`` that is
    ``16d + h·T`` values per block and token: Korthikanti et al.'s ``34·s·b·h + 5·a·s²·b`` bytes
    (16-bit values with dropout masks) without the masks.

    Args:
        config: the model; batch_size: ``B``; seq_len: ``T`` (default ``n_ctx``).
        bytes_per_value: 4 (float32) or 2 (bfloat16).

    Returns:
        ``{"blocks": ..., "head": ...}`` in bytes.

    Raises:
        ValueError: as :func:`gpt_forward_flops`, or ``bytes_per_value`` not a positive integer.

    Source: Korthikanti et al. (2022), §4.1, eq. 1.
    """
    c = _check_config(config)
    b, t = check_positive_int("batch_size", batch_size), _seq_len(config, seq_len)
    nb = check_positive_int("bytes_per_value", bytes_per_value)
    d, f = c.d_model, c.d_ff or 4 * c.d_model
    per_block = 2 * d + d + 2 * d + d + c.heads * t + d + d + 2 * f
    return {"blocks": c.layers * b * t * per_block * nb, "head": b * t * (d + c.vocab_size) * nb}


def tree_bytes(tree: Any) -> int:
    """Total bytes of the arrays in a pytree (``size x itemsize`` of each leaf).

    Raises:
        ValueError: a leaf has no ``shape`` and ``dtype``.
    """
    import jax

    total = 0
    for leaf in jax.tree.leaves(tree):
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise ValueError(f"tree_bytes: a leaf of type {type(leaf).__name__} is not an array")
        nbytes = getattr(leaf, "nbytes", None)   # arrays; random keys report their key data
        total += int(nbytes) if nbytes is not None else \
            int(np.prod(leaf.shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
    return total


def xla_flops(compiled: Any) -> float:
    """FLOPs of a compiled program as XLA counts them (``cost_analysis()["flops"]``).

    A ``dot`` counts ``2·m·n·k``; elementwise operations count one FLOP per element each
    (transcendentals such as ``exp`` and ``tanh`` are counted separately, under
    ``"transcendentals"``, not here).

    Raises:
        ValueError: the cost analysis has no ``"flops"`` entry (the backend does not report it).
    """
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    if not cost or "flops" not in cost:
        raise ValueError("this backend's cost_analysis() reports no 'flops'; count with "
                         "gpt_train_flops instead")
    return float(cost["flops"])


def xla_memory(compiled: Any) -> dict[str, int]:
    """Bytes of a compiled program from ``memory_analysis()``.

    Returns:
        ``{"arguments", "outputs", "temp", "alias"}``: the inputs, the outputs (which include an
        8-byte pointer per output of the result tuple), XLA's peak of temporary buffers after
        its buffer reuse, and the bytes of outputs that reuse (alias) donated inputs.

    Raises:
        ValueError: the backend reports no memory analysis.
    """
    stats = compiled.memory_analysis()
    if stats is None:
        raise ValueError("this backend's memory_analysis() returned None")
    return {"arguments": int(stats.argument_size_in_bytes),
            "outputs": int(stats.output_size_in_bytes),
            "temp": int(stats.temp_size_in_bytes),
            "alias": int(stats.alias_size_in_bytes)}


def compile_train_step(step: Callable[..., Any], model: Any, optimizer: Any, x: Any, y: Any
                       ) -> tuple[Any, Any]:
    """Compile an in-place NNX training step as a pure function, for cost and memory analysis.

    ``step(model, optimizer, x, y) -> loss`` updates ``model`` and ``optimizer`` in place (as
    :func:`lmcourse.models.gpt.train_step`). The pure version takes and returns their state:
    ``compiled(state, x, y) -> (new_state, loss)``; nothing in ``model`` or ``optimizer`` changes.

    Args:
        step: the in-place step; model, optimizer: the NNX objects; x, y: a batch (its shapes and
            dtypes are compiled in).

    Returns:
        ``(compiled, state)``: the ``jax.stages.Compiled`` program and the state to call it with.

    Raises:
        ValueError: ``step`` is not callable.
    """
    import jax
    from flax import nnx

    if not callable(step):
        raise ValueError(f"step must be callable, got {type(step).__name__}")
    graphdef, state = nnx.split((model, optimizer))

    def pure(state, x, y):
        m, o = nnx.merge(graphdef, state)
        loss = step(m, o, x, y)
        return nnx.state((m, o)), loss

    return jax.jit(pure).lower(state, x, y).compile(), state


def model_flops_utilization(flops_per_step: float, seconds_per_step: float,
                            peak_flops_per_second: float) -> float:
    """MFU: achieved FLOP/s over the peak FLOP/s of the machine, a fraction in ``(0, ...)``.

    Raises:
        ValueError: an argument is not a positive finite number.

    Source: Chowdhery et al. (2022), PaLM, §4.1 and Appendix B.
    """
    flops = check_positive_float("flops_per_step", flops_per_step)
    seconds = check_positive_float("seconds_per_step", seconds_per_step)
    return flops / seconds / check_positive_float("peak_flops_per_second", peak_flops_per_second)
