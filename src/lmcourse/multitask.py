"""Multi-task learning 多任务学习 on a shared sentence encoder (chapter 06).

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
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmcourse.compat import apply_gradients, make_optimizer
from lmcourse.metrics import pearson_r, precision_recall_f1
from lmcourse.models.bert import Bert, BertConfig, mean_pool

N_POLARITY, N_DOMAIN = 3, 4
LENGTH_STEP = 32   # token batches are cut to a multiple of this length (few compiled shapes)


# ----------------------------------------------------------------------------------------------
# heads and loss
# ----------------------------------------------------------------------------------------------
class MultiTaskHeads(nnx.Module):
    """Three heads on a ``(B, d)`` sentence feature: intensity ``(B,)``, polarity logits ``(B, 3)``,
    domain logits ``(B, 4)``.

    With ``hidden > 0`` a shared ``Linear(d, hidden)`` + GELU comes first (a small MLP); with
    ``hidden = 0`` each head is one linear layer on the feature.
    """

    def __init__(self, d_in: int, *, hidden: int = 0, rngs: nnx.Rngs):
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
               weights: tuple[float, float, float]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted multi-task loss (module docstring).

    Args:
        outputs: ``intensity`` ``(B,)``, ``polarity`` ``(B, 3)``, ``domain`` ``(B, 4)`` float32.
        targets: ``intensity`` ``(B,)`` float32 in [-1, 1] (rating / 4), ``polarity`` ``(B,)``
            int32 in {0, 1, 2}, ``domain`` ``(B,)`` int32 in {0..3}.
        weights: ``(w_int, w_pol, w_dom)``; a zero weight turns that task off (single-task).

    Returns:
        ``(total, parts)``: the scalar loss and the three unweighted per-task losses.
    """
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
    gradient clipping at global norm 1."""
    warmup = max(1, int(warmup_fraction * total_steps))
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup, max(total_steps, warmup + 1))
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=weight_decay))


# ----------------------------------------------------------------------------------------------
# heads on fixed features (frozen encoder)
# ----------------------------------------------------------------------------------------------
@nnx.jit(static_argnames=("weights",))
def _heads_step(heads, optimizer, x, targets, weights):
    def loss_fn(heads):
        return joint_loss(heads(x), targets, weights)
    (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(heads)
    apply_gradients(optimizer, heads, grads)
    return loss


def train_heads(features: np.ndarray, targets: dict[str, np.ndarray], *,
                weights: tuple[float, float, float] = (1.0, 1.0, 1.0), hidden: int = 0,
                steps: int = 500, batch_size: int = 256, learning_rate: float = 3e-3,
                weight_decay: float = 0.01, seed: int = 0) -> tuple[MultiTaskHeads, list[float]]:
    """Train :class:`MultiTaskHeads` on fixed sentence features with AdamW + warm-up.

    Args:
        features: float32 ``(n, d)``.
        targets: as in :func:`joint_loss`, arrays of length ``n``.
        weights: task weights; steps: gradient steps (batches drawn with replacement when
            ``n < batch_size``, otherwise shuffled epochs).

    Returns:
        ``(heads, losses)``: the trained heads and the loss of each step.
    """
    rng = np.random.default_rng(seed)
    heads = MultiTaskHeads(features.shape[1], hidden=hidden, rngs=nnx.Rngs(seed))
    optimizer = make_optimizer(heads, adamw_warmup(learning_rate, steps, weight_decay=weight_decay))
    n = len(features)
    b = min(batch_size, n)
    order, pos, losses = rng.permutation(n), 0, []
    for _ in range(steps):
        if pos + b > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + b]
        pos += b
        batch = {k: jnp.asarray(v[idx]) for k, v in targets.items()}
        losses.append(_heads_step(heads, optimizer, jnp.asarray(features[idx]), batch, tuple(weights)))
    return heads, [float(v) for v in losses]


def predict_heads(heads: MultiTaskHeads, features: np.ndarray) -> dict[str, np.ndarray]:
    """The heads' outputs on ``(n, d)`` features as NumPy arrays (see :class:`MultiTaskHeads`)."""
    return {k: np.asarray(v) for k, v in nnx.jit(lambda h, x: h(x))(heads, jnp.asarray(features)).items()}


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
    """A :class:`Bert` of all-MiniLM-L6-v2's shape (by default) with random weights: no pretraining."""
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size,
                        num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                        intermediate_size=intermediate_size)
    return Bert(config, rngs=nnx.Rngs(seed))


def tokenize_all(tokenizer, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and mask of every text, truncated to ``max_length``: two int32 ``(n, max_length)``
    arrays (padded with 0)."""
    enc = tokenizer.encode_batch(list(texts))
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
    """
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
                  weight_decay: float = 0.01, seed: int = 0, log_every: int = 0) -> list[float]:
    """Train encoder and heads together (in place) for ``steps`` steps of AdamW + warm-up.

    Args:
        ids, mask: int32 ``(n, L)`` from :func:`tokenize_all`.
        targets: as in :func:`joint_loss`, length ``n``.
        batch_size: if ``n < batch_size``, batches are drawn with replacement.

    Returns:
        the loss of each step.
    """
    rng = np.random.default_rng(seed)
    optimizer = make_optimizer(model, adamw_warmup(learning_rate, steps, weight_decay=weight_decay))
    losses: list[float] = []
    queue: list[np.ndarray] = []
    while len(losses) < steps:
        if not queue:
            queue = (length_batches(mask, batch_size, rng) if len(mask) >= batch_size
                     else [rng.integers(0, len(mask), batch_size)])
        idx = queue.pop()
        bi, bm = _cut(ids[idx], mask[idx])
        batch = {k: jnp.asarray(v[idx]) for k, v in targets.items()}
        losses.append(float(_encoder_step(model, optimizer, jnp.asarray(bi), jnp.asarray(bm),
                                          batch, tuple(weights))))
        if log_every and len(losses) % log_every == 0:
            print(f"  step {len(losses)}/{steps}: loss {np.mean(losses[-log_every:]):.4f}", flush=True)
    return losses


@nnx.jit
def _forward(model, ids, mask):
    return model(ids, mask)


@nnx.jit
def _features(model, ids, mask):
    return model.features(ids, mask)


def predict_encoder(model: EncoderWithHeads, ids: np.ndarray, mask: np.ndarray,
                    batch_size: int = 128, features_only: bool = False):
    """Outputs (dict as :class:`MultiTaskHeads`) or, with ``features_only``, mean-pooled features
    ``(n, d)`` float32, computed in length-sorted batches and returned in input order."""
    order = np.argsort(mask.sum(axis=1), kind="stable")
    chunks = []
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
    inverse = np.argsort(order)
    return jax.tree.map(lambda *a: np.concatenate(a)[inverse], *chunks)


def embed_cached(encoder: Bert, ids: np.ndarray, mask: np.ndarray, cache_dir: Path | None = None,
                 tag: str = "minilm", batch_size: int = 128) -> np.ndarray:
    """Mean-pooled sentence features of a frozen ``encoder``, ``(n, d)`` float32, saved under
    ``cache_dir/emb-{tag}-{hash of the token ids}.npy`` and reused when present."""
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256(ids.tobytes() + mask.tobytes()).hexdigest()[:16]
        path = Path(cache_dir) / f"emb-{tag}-{digest}.npy"
        if path.exists():
            return np.load(path)
    dummy = MultiTaskHeads(encoder.config.hidden_size, rngs=nnx.Rngs(0))
    feats = predict_encoder(EncoderWithHeads(encoder, dummy), ids, mask, batch_size, features_only=True)
    feats = np.asarray(feats, dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part.npy")
        np.save(tmp, feats)
        tmp.replace(path)
    return feats


# ----------------------------------------------------------------------------------------------
# evaluation and few-shot
# ----------------------------------------------------------------------------------------------
def scores(rating: np.ndarray, polarity: np.ndarray, intensity_pred: np.ndarray | None,
           polarity_pred: np.ndarray) -> dict[str, float]:
    """The chapter's metrics on one test set.

    Args:
        rating: ``(n,)`` true mean ratings; polarity: ``(n,)`` true labels; intensity_pred:
            ``(n,)`` predicted intensity (any scale) or ``None``; polarity_pred: ``(n,)`` labels.

    Returns:
        ``r`` (Pearson, NaN without intensity or for a constant prediction), ``P``, ``R``, ``F1``
        (support-weighted averages over the 3 classes: the VADER paper's "overall" figures), and
        ``macro_F1``.
    """
    weighted = precision_recall_f1(polarity, polarity_pred, average="weighted", labels=[0, 1, 2])
    macro = precision_recall_f1(polarity, polarity_pred, average="macro", labels=[0, 1, 2])
    r = float("nan")
    if intensity_pred is not None and np.ptp(intensity_pred) > 0:
        r = pearson_r(intensity_pred, rating)
    return {"r": r, "P": weighted.precision, "R": weighted.recall, "F1": weighted.f1, "macro_F1": macro.f1}


def few_shot_indices(labels: np.ndarray, k: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` random examples of each class present in ``labels`` (all rows if ``k`` is
    ``None``); a class with fewer than ``k`` examples gives all of them."""
    if k is None:
        return np.arange(len(labels))
    picks = [rng.choice(np.flatnonzero(labels == c), size=min(k, int((labels == c).sum())), replace=False)
             for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))
