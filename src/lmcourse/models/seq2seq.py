"""The original encoder–decoder Transformer, with greedy decoding and beam search.

Used in chapters: 07.

Source: Vaswani et al. (2017), *Attention Is All You Need*: §3.1 (encoder and decoder stacks),
§3.2.3 (the three uses of attention: encoder self-attention, decoder causal self-attention,
encoder–decoder "cross" attention whose queries come from the decoder and keys/values from the
encoder output), §3.4 (one embedding matrix shared by both sides and the pre-softmax layer,
scaled by √d), §3.5 (sinusoidal positions). The encoder reuses chapter 05's post-LN
:class:`~lmcourse.models.attention.EncoderBlock` (GELU feed-forward, as BERT; the paper uses
ReLU); the decoder block is built the same way around
:func:`~lmcourse.models.attention.scaled_dot_product_attention`.
Beam search with the length penalty lp(Y) = ((5 + |Y|) / 6)^α of Wu et al. (2016), *Google's
Neural Machine Translation System*, eq. 14 (Vaswani et al. §6.1 use beam 4 and α = 0.6).

Shapes: ``B`` batch, ``S`` source length, ``T`` target length, ``d`` width, ``h`` heads,
``V`` vocabulary. Token ids are int32; id ``pad_id`` (0) is padding, ``bos_id`` starts every
target, ``eos_id`` ends it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmcourse.compat import apply_gradients, get_modes, set_modes
from lmcourse.models.attention import (
    EncoderBlock,
    MultiHeadAttention,
    _check_mask_shape,
    padding_mask,
    scaled_dot_product_attention,
)
from lmcourse.validation import (
    check_ids,
    check_nonnegative_float,
    check_positive_int,
    check_rate,
    concrete,
)


@dataclass(frozen=True)
class Seq2SeqConfig:
    """Hyper-parameters of :class:`Seq2SeqTransformer` (checked when made).

    Attributes:
        vocab_size: ``V``, shared by source and target (one character vocabulary).
        d_model, num_heads, d_ff: width, heads (dividing ``d_model``), feed-forward width.
        encoder_layers, decoder_layers: ``N`` of each stack (the paper: 6 and 6).
        max_source_len: longest source ``S`` accepted.
        max_target_len: longest decoder input ``T`` (``BOS`` + target); decoding writes at most
            this many tokens.
        dropout_rate: dropout on each sub-layer's output and the embeddings (paper: 0.1).
        pad_id, bos_id, eos_id: the special ids.

    Raises:
        ValueError: a size not a positive integer, ``d_model % num_heads != 0``, a dropout rate
            outside [0, 1], or special ids that are equal or outside the vocabulary.
    """

    vocab_size: int
    d_model: int = 64
    num_heads: int = 4
    d_ff: int = 256
    encoder_layers: int = 2
    decoder_layers: int = 2
    max_source_len: int = 34
    max_target_len: int = 12
    dropout_rate: float = 0.0
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_heads", "d_ff", "encoder_layers",
                     "decoder_layers", "max_source_len", "max_target_len"):
            check_positive_int(name, getattr(self, name))
        check_rate("dropout_rate", self.dropout_rate)
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads="
                             f"{self.num_heads}; choose num_heads among the divisors of d_model")
        ids = (self.pad_id, self.bos_id, self.eos_id)
        if len(set(ids)) != 3 or not all(0 <= i < self.vocab_size for i in ids):
            raise ValueError(f"pad_id, bos_id, eos_id must be three different ids in "
                             f"[0, {self.vocab_size}); got {ids}")


def sinusoidal_positions(length: int, d_model: int) -> jax.Array:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(…) (Vaswani et al. §3.5).

    Returns:
        float32 ``(length, d_model)``.
    """
    pos = np.arange(length)[:, None]
    i = np.arange(d_model)[None, :]
    angle = pos / np.power(10000.0, (2 * (i // 2)) / d_model)
    return jnp.asarray(np.where(i % 2 == 0, np.sin(angle), np.cos(angle)), jnp.float32)


def causal_mask(length: int) -> jax.Array:
    """Boolean ``(1, 1, T, T)``: position t may attend to positions ≤ t (lower triangle)."""
    return jnp.tril(jnp.ones((length, length), dtype=bool))[None, None]


class CrossAttention(MultiHeadAttention):
    """Encoder–decoder attention (Vaswani et al. §3.2.3): queries from the decoder ``x``,
    keys and values from the encoder output ``memory``; the same four ``(d, d)`` projections as
    :class:`~lmcourse.models.attention.MultiHeadAttention`.
    """

    def __call__(self, x: jax.Array, memory: jax.Array, mask: jax.Array | None = None, *,
                 return_weights: bool = False):
        """``x`` ``(B, T, d)`` attends to ``memory`` ``(B, S, d)``.

        Args:
            mask: boolean broadcastable to ``(B, h, T, S)``, e.g. ``padding_mask`` ``(B, 1, 1, S)``
                of the source.

        Returns:
            ``(B, T, d)``, and the weights ``(B, h, T, S)`` with ``return_weights``.

        Raises:
            ValueError: ``x`` or ``memory`` not ``(B, ·, d_model)`` with the same ``B``, or a
                mask that does not broadcast.
        """
        if x.ndim != 3 or memory.ndim != 3 or x.shape[-1] != self.d_model \
                or memory.shape[-1] != self.d_model or x.shape[0] != memory.shape[0]:
            raise ValueError(f"x and memory must be (B, T, {self.d_model}) and (B, S, "
                             f"{self.d_model}); got {x.shape} and {memory.shape}")
        if mask is not None:
            _check_mask_shape(jnp.shape(mask), (x.shape[0], self.num_heads, x.shape[1],
                                                 memory.shape[1]), "(B, h, T, S)", same_rank=True)
        q = self._split(self.query(x))
        k, v = self._split(self.key(memory)), self._split(self.value(memory))
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        b, h, t, d_k = heads.shape
        y = self.out(heads.transpose(0, 2, 1, 3).reshape(b, t, h * d_k))
        return (y, weights) if return_weights else y


class DecoderBlock(nnx.Module):
    """One post-LN decoder layer (Vaswani et al. §3.1):

    x ← LN(x + SelfAttn(x, causal)); x ← LN(x + CrossAttn(x, memory)); x ← LN(x + FFN(x)).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, rngs: nnx.Rngs,
                 dropout_rate: float = 0.0, layer_norm_eps: float = 1e-6):
        self.self_attention = MultiHeadAttention(d_model, num_heads, rngs=rngs)
        self.cross_attention = CrossAttention(d_model, num_heads, rngs=rngs)
        self.norm1 = nnx.LayerNorm(d_model, epsilon=layer_norm_eps, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d_model, epsilon=layer_norm_eps, rngs=rngs)
        self.norm3 = nnx.LayerNorm(d_model, epsilon=layer_norm_eps, rngs=rngs)
        self.ff_in = nnx.Linear(d_model, check_positive_int("d_ff", d_ff), rngs=rngs)
        self.ff_out = nnx.Linear(d_ff, d_model, rngs=rngs)
        self.dropout = nnx.Dropout(check_rate("dropout_rate", dropout_rate), rngs=rngs)

    def __call__(self, x: jax.Array, memory: jax.Array, self_mask: jax.Array,
                 memory_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x`` ``(B, T, d)``, ``memory`` ``(B, S, d)`` → ``(B, T, d)`` and the cross-attention
        weights ``(B, h, T, S)``."""
        x = self.norm1(x + self.dropout(self.self_attention(x, self_mask)))
        attended, weights = self.cross_attention(x, memory, memory_mask, return_weights=True)
        x = self.norm2(x + self.dropout(attended))
        x = self.norm3(x + self.dropout(self.ff_out(jax.nn.gelu(self.ff_in(x), approximate=False))))
        return x, weights


class Seq2SeqTransformer(nnx.Module):
    """Encoder–decoder Transformer (Vaswani et al. 2017) over one shared vocabulary.

    Raises:
        ValueError: invalid :class:`Seq2SeqConfig` values (checked when the config is made).
    """

    def __init__(self, config: Seq2SeqConfig, *, rngs: nnx.Rngs):
        c = config
        self.config = c
        self.embed = nnx.Embed(c.vocab_size, c.d_model, rngs=rngs)
        self.dropout = nnx.Dropout(c.dropout_rate, rngs=rngs)
        self.encoder = nnx.List([EncoderBlock(c.d_model, c.num_heads, c.d_ff, rngs=rngs,
                                              dropout_rate=c.dropout_rate, layer_norm_eps=1e-6)
                                 for _ in range(c.encoder_layers)])
        self.decoder = nnx.List([DecoderBlock(c.d_model, c.num_heads, c.d_ff, rngs=rngs,
                                              dropout_rate=c.dropout_rate)
                                 for _ in range(c.decoder_layers)])

    def _embed(self, ids: jax.Array) -> jax.Array:
        d = self.config.d_model
        x = self.embed(ids) * jnp.sqrt(jnp.float32(d)) + sinusoidal_positions(ids.shape[1], d)
        return self.dropout(x)

    def encode(self, source: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Source ids ``(B, S)`` → memory ``(B, S, d)`` and its padding mask ``(B, 1, 1, S)``."""
        mask = padding_mask(source != self.config.pad_id)
        x = self._embed(source)
        for block in self.encoder:
            x = block(x, mask)
        return x, mask

    def decode(self, memory: jax.Array, memory_mask: jax.Array, target_in: jax.Array
               ) -> tuple[jax.Array, list[jax.Array]]:
        """Decoder input ids ``(B, T)`` (``BOS`` first) → logits ``(B, T, V)`` for the next token
        at every position, and the cross-attention weights of each layer ``(B, h, T, S)``."""
        x = self._embed(target_in)
        mask = causal_mask(target_in.shape[1])
        weights = []
        for block in self.decoder:
            x, w = block(x, memory, mask, memory_mask)
            weights.append(w)
        return self.embed.attend(x), weights          # tied output layer (§3.4)

    def __call__(self, source: jax.Array, target_in: jax.Array, *,
                 return_attention: bool = False):
        """Teacher-forced logits ``(B, T, V)`` (and the per-layer cross-attention weights
        ``[(B, h, T, S)]`` with ``return_attention``).

        Raises:
            ValueError: ids outside the vocabulary, an empty source row, or lengths beyond the
                maxima (only for concrete arrays; see :func:`check_source`).
        """
        check_source(self.config, source)
        check_target(self.config, target_in)
        memory, memory_mask = self.encode(source)
        logits, weights = self.decode(memory, memory_mask, target_in)
        return (logits, weights) if return_attention else logits


# ----------------------------------------------------------------------------------------------
# checks at the public boundary
# ----------------------------------------------------------------------------------------------
def check_source(config: Seq2SeqConfig, source: object) -> None:
    """A concrete source batch must be int ``(B, S)`` with ``1 ≤ S ≤ max_source_len``, ids in
    ``[0, V)`` and at least one non-pad id per row (an empty prompt is refused: the encoder
    would have nothing to attend to). Traced arrays pass (they cannot be checked).

    Raises:
        ValueError: saying which rule is broken and how to fix it.
    """
    a = concrete(source)
    if a is None:
        return
    if a.ndim != 2:
        raise ValueError(f"source must be ids of shape (B, S), got shape {a.shape}; add the batch "
                         "axis for one sequence: ids[None, :]")
    if not 1 <= a.shape[1] <= config.max_source_len:
        raise ValueError(f"source length {a.shape[1]} is outside [1, max_source_len="
                         f"{config.max_source_len}]; shorten the input or build the model with a "
                         "larger max_source_len")
    check_ids("source", a, config.vocab_size, size_name="vocab_size",
              fix="encode the text with the model's own vocabulary")
    empty = np.flatnonzero((a != config.pad_id).sum(axis=1) == 0)
    if empty.size:
        raise ValueError(f"source row {int(empty[0])} is empty (only padding); give every row at "
                         f"least one character ({empty.size} empty row(s))")


def check_target(config: Seq2SeqConfig, target_in: object) -> None:
    """A concrete decoder input must be int ``(B, T)``, ``1 ≤ T ≤ max_target_len``, ids in
    ``[0, V)``. Traced arrays pass.

    Raises:
        ValueError: saying which rule is broken.
    """
    a = concrete(target_in)
    if a is None:
        return
    if a.ndim != 2 or not 1 <= a.shape[1] <= config.max_target_len:
        raise ValueError(f"target_in must be ids of shape (B, T) with 1 <= T <= max_target_len="
                         f"{config.max_target_len}, got shape {a.shape}")
    check_ids("target_in", a, config.vocab_size, size_name="vocab_size")


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
def sequence_loss(model: Seq2SeqTransformer, source: jax.Array, target_in: jax.Array,
                  target_out: jax.Array, label_smoothing: float = 0.0
                  ) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy over the non-pad target tokens (teacher forcing), and token accuracy.

    Args:
        source: ``(B, S)``; target_in: ``(B, T)`` = ``BOS`` + target; target_out: ``(B, T)`` =
            target + ``EOS``, padded with ``pad_id`` (not counted).
        label_smoothing: ε of Szegedy et al. (2016), as Vaswani et al. §5.4 (0.1 there).

    Returns:
        ``(loss, accuracy)`` float32 scalars.
    """
    logits = model(source, target_in)
    keep = (target_out != model.config.pad_id).astype(jnp.float32)
    labels = jax.nn.one_hot(target_out, logits.shape[-1])
    if label_smoothing:
        labels = optax.smooth_labels(labels, label_smoothing)
    loss = optax.softmax_cross_entropy(logits, labels)
    n = jnp.maximum(keep.sum(), 1.0)
    accuracy = ((logits.argmax(-1) == target_out) * keep).sum() / n
    return (loss * keep).sum() / n, accuracy


@partial(nnx.jit, static_argnames=("label_smoothing",))
def train_step(model: Seq2SeqTransformer, optimizer: nnx.Optimizer, source: jax.Array,
               target_in: jax.Array, target_out: jax.Array, label_smoothing: float = 0.0):
    """One AdamW (or any optax) step in place; returns ``(loss, {"token_accuracy": acc})`` for
    :func:`lmcourse.training.train_loop`."""
    def loss_fn(m):
        return sequence_loss(m, source, target_in, target_out, label_smoothing)

    (loss, acc), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    apply_gradients(optimizer, model, grads)
    return loss, {"token_accuracy": acc}


def teacher_forcing(targets: np.ndarray, config: Seq2SeqConfig) -> tuple[np.ndarray, np.ndarray]:
    """Target ids ``(B, T)`` (ending with ``EOS``, padded) → ``(target_in, target_out)``:
    ``BOS`` + targets[:, :-1], and targets (the next token at each position)."""
    targets = np.asarray(targets, np.int32)
    bos = np.full((len(targets), 1), config.bos_id, np.int32)
    return np.concatenate([bos, targets[:, :-1]], axis=1), targets


# ----------------------------------------------------------------------------------------------
# decoding
# ----------------------------------------------------------------------------------------------
@partial(nnx.jit, static_argnames=("max_len",))
def _greedy(model: Seq2SeqTransformer, source: jax.Array, max_len: int) -> jax.Array:
    c = model.config
    memory, memory_mask = model.encode(source)
    tokens = jnp.full((source.shape[0], max_len + 1), c.pad_id, jnp.int32).at[:, 0].set(c.bos_id)

    def step(t, state):
        tokens, done = state
        logits, _ = model.decode(memory, memory_mask, tokens[:, :-1])
        nxt = jnp.argmax(logits[:, t], axis=-1).astype(jnp.int32)
        nxt = jnp.where(done, c.pad_id, nxt)
        return tokens.at[:, t + 1].set(nxt), done | (nxt == c.eos_id)

    done = jnp.zeros(source.shape[0], bool)
    tokens, _ = jax.lax.fori_loop(0, max_len, step, (tokens, done))
    return tokens[:, 1:]


def greedy_decode(model: Seq2SeqTransformer, source: np.ndarray, max_len: int | None = None
                  ) -> np.ndarray:
    """The most likely token at each step, until ``EOS`` (then ``PAD``).

    Args:
        source: int ids ``(B, S)`` (see :func:`check_source`).
        max_len: tokens to write, ``1 ≤ max_len ≤ max_target_len`` (default: the maximum).

    Returns:
        int32 ``(B, max_len)``: the output ids, ``EOS`` included, padded with ``PAD``.

    Raises:
        ValueError: a bad source (:func:`check_source`) or ``max_len``.
    """
    max_len = _check_max_len(model.config, max_len)
    check_source(model.config, source)
    modes = get_modes(model)
    model.eval()
    try:
        return np.asarray(_greedy(model, jnp.asarray(source, jnp.int32), max_len))
    finally:
        set_modes(modes)


def length_penalty(length: jax.Array | np.ndarray, alpha: float) -> jax.Array:
    """lp(Y) = ((5 + |Y|) / 6)^α (Wu et al. 2016, eq. 14); α = 0: no normalisation."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def beam_search_core(next_log_probs: Callable[[jax.Array, int], jax.Array], batch: int, *,
                     beam_size: int, max_len: int, bos_id: int, eos_id: int, pad_id: int,
                     alpha: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Beam search over any next-token model, with length-normalised scores.

    Every hypothesis keeps the sum of its tokens' log-probabilities ``log P(Y)``; it is ranked
    by ``log P(Y) / lp(|Y|)`` (:func:`length_penalty`, ``|Y|`` counts ``EOS``). At each step each
    of the ``K`` live hypotheses of an example proposes every token; a finished one (it wrote
    ``EOS``) proposes only itself (``PAD``, score unchanged). Of the ``K·V`` candidates the ``K``
    best-ranked survive. At the start only the first beam is live (the K copies of ``BOS`` would
    otherwise fill the beam with duplicates). The answer is the best-ranked of the final ``K``.
    With ``K = 1`` this is greedy decoding.

    Args:
        next_log_probs: ``(tokens (N, max_len + 1) int32, t) -> (N, V)`` log-probabilities of
            the token after position ``t`` (``tokens[:, :t+1]`` are filled, ``BOS`` first),
            ``N = batch * beam_size``, rows grouped by example.
        batch: number of examples ``B``.
        beam_size: ``K`` ≥ 1; max_len: tokens to write ≥ 1; alpha: α ≥ 0.

    Returns:
        ``(tokens, scores)``: int32 ``(B, max_len)`` best hypothesis per example (``EOS`` then
        ``PAD``), float32 ``(B,)`` its normalised score.

    Raises:
        ValueError: ``beam_size`` or ``max_len`` not a positive integer, ``alpha`` < 0 or NaN.
    """
    k = check_positive_int("beam_size", beam_size)
    max_len = check_positive_int("max_len", max_len)
    alpha = check_nonnegative_float("alpha", alpha)
    neg = -1e9
    tokens = np.full((batch, k, max_len + 1), pad_id, np.int32)
    tokens[:, :, 0] = bos_id
    score = np.full((batch, k), neg, np.float32)
    score[:, 0] = 0.0
    length = np.zeros((batch, k), np.int32)
    done = np.zeros((batch, k), bool)
    for t in range(max_len):
        logp = np.asarray(next_log_probs(jnp.asarray(tokens.reshape(batch * k, -1)), t),
                          np.float32).reshape(batch, k, -1)
        vocab = logp.shape[-1]
        cand = score[:, :, None] + logp                                   # (B, K, V)
        frozen = np.full_like(cand, neg)
        frozen[:, :, pad_id] = score
        cand = np.where(done[:, :, None], frozen, cand)
        cand_len = np.where(done, length, t + 1)[:, :, None]
        ranked = cand / np.asarray(length_penalty(cand_len, alpha))
        ranked = np.where(cand <= neg / 2, -np.inf, ranked).reshape(batch, -1)
        best = np.argsort(-ranked, axis=1, kind="stable")[:, :k]          # (B, K)
        beam, tok = best // vocab, (best % vocab).astype(np.int32)
        rows = np.arange(batch)[:, None]
        tokens = tokens[rows, beam]
        tokens[:, :, t + 1] = tok
        score = cand.reshape(batch, -1)[rows, best]
        length = np.where(done[rows, beam], length[rows, beam], t + 1)
        done = done[rows, beam] | (tok == eos_id)
    final = score / np.asarray(length_penalty(length, alpha))
    final = np.where(score <= neg / 2, -np.inf, final)
    pick = final.argmax(axis=1)
    rows = np.arange(batch)
    return tokens[rows, pick, 1:], final[rows, pick].astype(np.float32)


@nnx.jit
def _encode(model: Seq2SeqTransformer, source: jax.Array):
    return model.encode(source)


@nnx.jit
def _next_log_probs(model: Seq2SeqTransformer, memory: jax.Array, memory_mask: jax.Array,
                    tokens: jax.Array, t: jax.Array) -> jax.Array:
    logits, _ = model.decode(memory, memory_mask, tokens[:, :-1])
    return jax.nn.log_softmax(jnp.take(logits, t, axis=1), axis=-1)     # t traced: one compile


def beam_search(model: Seq2SeqTransformer, source: np.ndarray, beam_size: int = 4,
                max_len: int | None = None, alpha: float = 0.6) -> np.ndarray:
    """Length-normalised beam search (:func:`beam_search_core`) with the Transformer.

    Args:
        source: int ids ``(B, S)``; beam_size: ``K`` ≥ 1 (1 = greedy);
        max_len: tokens to write, in ``[1, max_target_len]`` (default the maximum);
        alpha: the length-penalty exponent α ≥ 0 (Vaswani et al.: 0.6).

    Returns:
        int32 ``(B, max_len)``, like :func:`greedy_decode`.

    Raises:
        ValueError: a bad source, ``beam_size`` < 1, ``max_len`` out of range, ``alpha`` < 0.
    """
    c = model.config
    max_len = _check_max_len(c, max_len)
    k = check_positive_int("beam_size", beam_size)
    check_source(c, source)
    modes = get_modes(model)
    model.eval()
    try:
        memory, mask = _encode(model, jnp.asarray(source, jnp.int32))
        memory, mask = jnp.repeat(memory, k, axis=0), jnp.repeat(mask, k, axis=0)
        tokens, _ = beam_search_core(lambda tok, t: _next_log_probs(model, memory, mask, tok, jnp.int32(t)),
                                     len(source), beam_size=k, max_len=max_len, bos_id=c.bos_id,
                                     eos_id=c.eos_id, pad_id=c.pad_id, alpha=alpha)
    finally:
        set_modes(modes)
    return tokens


def cross_attention_map(model: Seq2SeqTransformer, source: np.ndarray, output: np.ndarray,
                        layer: int = -1) -> np.ndarray:
    """Cross-attention weights of one decoder layer, averaged over heads, for given outputs.

    Args:
        source: int ids ``(1, S)``; output: the decoded ids ``(1, T)`` (``EOS``-terminated),
            fed back with ``BOS`` in front (teacher forcing on the model's own output).
        layer: which decoder layer (Python index, default the last).

    Returns:
        float32 ``(T, S)``: row ``t`` = how much the step writing ``output[t]`` looked at each
        source position (rows sum to 1).

    Raises:
        ValueError: bad ids or lengths (:func:`check_source`), or a layer that does not exist.
    """
    c = model.config
    if not -c.decoder_layers <= layer < c.decoder_layers:
        raise ValueError(f"layer must be in [{-c.decoder_layers}, {c.decoder_layers}), got {layer}")
    output = np.asarray(output, np.int32)
    target_in = np.concatenate([np.full((len(output), 1), c.bos_id, np.int32), output[:, :-1]], 1)
    modes = get_modes(model)
    model.eval()
    try:
        _, weights = model(jnp.asarray(source, jnp.int32), jnp.asarray(target_in),
                           return_attention=True)
    finally:
        set_modes(modes)
    return np.asarray(weights[layer][0].mean(axis=0), np.float32)


def _check_max_len(config: Seq2SeqConfig, max_len: int | None) -> int:
    if max_len is None:
        return config.max_target_len
    max_len = check_positive_int("max_len", max_len)
    if max_len > config.max_target_len:
        raise ValueError(f"max_len={max_len} exceeds the model's max_target_len="
                         f"{config.max_target_len} (its positions were sized for it)")
    return max_len
