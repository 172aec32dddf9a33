"""A CLIP-style image–text model: contrastive training and zero-shot classification.

Used in chapters: 08.

CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision", ICML, arXiv:2103.00020) trains an image encoder and a text encoder together so that
an image and its caption land close together on the unit sphere. Its section 2.5 / Figure 3
pseudocode, for a batch of ``n`` (image, text) pairs::

    I_e = l2_normalize(np.dot(I_f, W_i), axis=1)
    T_e = l2_normalize(np.dot(T_f, W_t), axis=1)
    logits = np.dot(I_e, T_e.T) * np.exp(t)
    labels = np.arange(n)
    loss_i = cross_entropy_loss(logits, labels, axis=0)
    loss_t = cross_entropy_loss(logits, labels, axis=1)
    loss = (loss_i + loss_t)/2

with a learned temperature: "The learnable temperature parameter τ was initialized to the
equivalent of 0.07 from (Wu et al., 2018) and clipped to prevent scaling the logits by more than
100" (section 2.5). Zero-shot classification (section 3.1.2) embeds one text per class and picks
the class whose text embedding has the largest cosine similarity with the image's; several
wordings of a class are averaged ("prompt ensembling", section 3.1.4).

In chapter 08 the images are Fashion-MNIST, the image encoder is the chapter-03 :class:`CNN`
whose last layer outputs the embedding (it plays ``W_i``), and the text features are frozen
all-MiniLM-L6-v2 sentence embeddings (chapter 05) with a trainable linear ``W_t``.

Repeated texts. The paper's batches hold ``n`` different captions, so pair ``i`` is the only
positive of row ``i``. Our texts are class descriptions, so a batch holds many pairs of the same
class: :func:`symmetric_info_nce` takes optional ``pair_ids`` and then spreads each row's target
uniformly over all pairs with the same id (the targets of Khosla et al. 2020, "Supervised
Contrastive Learning", eq. 2 for one positive set); with all ids different it is the paper's loss.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmcourse.models.bert import l2_normalize
from lmcourse.models.cnn import CNN
from lmcourse.validation import check_ids, check_int, check_positive_float, check_positive_int

#: CLIP's initial temperature 0.07, stored as the log of the logit scale 1/τ (section 2.5).
INIT_LOG_SCALE = math.log(1 / 0.07)
#: The largest logit scale 1/τ CLIP allows (section 2.5: "clipped ... by more than 100").
MAX_LOGIT_SCALE = 100.0


def logit_scale(log_scale: jax.Array | float, max_scale: float = MAX_LOGIT_SCALE) -> jax.Array:
    """The factor ``exp(t)`` that multiplies cosine similarities, clipped at ``max_scale``.

    CLIP learns ``t = log(1/τ)`` (Figure 3: ``logits = ... * np.exp(t)``) and clips the scale
    at 100 (section 2.5). Clipping ``t`` at ``log(max_scale)`` before the exponential gives the
    same value and a zero gradient above the clip (the reference code clamps the parameter after
    each step instead; both keep the scale ≤ 100).

    Args:
        log_scale: scalar ``t`` (any float; learned, initialised to :data:`INIT_LOG_SCALE`).
        max_scale: the clip, a positive float (default 100).

    Returns:
        float32 scalar in ``(0, max_scale]``.

    Raises:
        ValueError: ``max_scale`` is not a positive finite float.
    """
    max_scale = check_positive_float("max_scale", max_scale)
    return jnp.exp(jnp.minimum(jnp.asarray(log_scale, jnp.float32), math.log(max_scale)))


def _check_pair(image_emb, text_emb) -> None:
    """Both ``(n, d)`` with the same ``n`` and ``d``, ``n ≥ 1``."""
    a, b = tuple(jnp.shape(image_emb)), tuple(jnp.shape(text_emb))
    if len(a) != 2 or len(b) != 2:
        raise ValueError(f"image and text embeddings must be 2-D (n, d), got {a} and {b}")
    if a[0] != b[0]:
        raise ValueError(f"a contrastive batch pairs image i with text i, so both need the same "
                         f"number of rows: got {a[0]} images and {b[0]} texts")
    if a[1] != b[1]:
        raise ValueError(f"image and text embeddings must have the same width to be compared, "
                         f"got {a[1]} and {b[1]}; project both to one width first")
    if a[0] < 1:
        raise ValueError("a contrastive batch needs at least one pair, got 0")


def similarity_logits(image_emb: jax.Array, text_emb: jax.Array,
                      log_scale: jax.Array | float = INIT_LOG_SCALE) -> jax.Array:
    """CLIP's logits: scaled cosine similarities of every image with every text.

    Args:
        image_emb: float ``(n, d)`` image embeddings (normalised here; need not be unit).
        text_emb: float ``(m, d)`` text embeddings (normalised here).
        log_scale: ``t``; the logits are ``cos(image_i, text_j) · min(exp(t), 100)``.

    Returns:
        float32 ``(n, m)``; entry ``(i, j)`` in ``[-100, 100]``.

    Raises:
        ValueError: not 2-D, or different widths ``d``.
    """
    a, b = tuple(jnp.shape(image_emb)), tuple(jnp.shape(text_emb))
    if len(a) != 2 or len(b) != 2 or a[1] != b[1]:
        raise ValueError(f"image and text embeddings must be (n, d) and (m, d) with the same d, "
                         f"got {a} and {b}")
    return (l2_normalize(image_emb) @ l2_normalize(text_emb).T) * logit_scale(log_scale)


def symmetric_info_nce(image_emb: jax.Array, text_emb: jax.Array,
                       log_scale: jax.Array | float = INIT_LOG_SCALE,
                       pair_ids: jax.Array | np.ndarray | None = None) -> jax.Array:
    """CLIP's symmetric InfoNCE loss of a batch of ``n`` (image, text) pairs.

    The mean of the image→text and text→image cross-entropies over the logits of
    :func:`similarity_logits` (Radford et al. 2021, Figure 3; the InfoNCE loss of van den Oord
    et al. 2018, arXiv:1807.03748, eq. 4, applied in both directions):

    .. math:: L = \\tfrac12\\Big(-\\tfrac1n\\sum_i \\log\\frac{e^{s_{ii}}}{\\sum_j e^{s_{ij}}}
              -\\tfrac1n\\sum_j \\log\\frac{e^{s_{jj}}}{\\sum_i e^{s_{ij}}}\\Big),\\quad
              s_{ij} = e^{t}\\cos(I_i, T_j).

    Args:
        image_emb: float ``(n, d)``; row ``i`` is paired with ``text_emb[i]``.
        text_emb: float ``(n, d)``.
        log_scale: the learned ``t`` (scale clipped at 100).
        pair_ids: optional int ``(n,)``: pairs with the same id count as positives of each other
            (the target of a row is uniform over them); ``None`` means all pairs differ (the
            paper's ``labels = np.arange(n)``).

    Returns:
        float32 scalar ≥ 0, in nats.

    Raises:
        ValueError: not 2-D, different numbers of rows (a mismatched batch) or widths, an empty
            batch, or ``pair_ids`` not ``(n,)``.
    """
    _check_pair(image_emb, text_emb)
    logits = similarity_logits(image_emb, text_emb, log_scale)
    n = logits.shape[0]
    if pair_ids is None:
        labels = jnp.arange(n)
        loss_i = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        loss_t = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
        return (loss_i + loss_t) / 2
    if tuple(jnp.shape(pair_ids)) != (n,):
        raise ValueError(f"pair_ids must have shape ({n},), one id per pair, got "
                         f"{tuple(jnp.shape(pair_ids))}")
    same = (jnp.asarray(pair_ids)[:, None] == jnp.asarray(pair_ids)[None, :]).astype(jnp.float32)
    targets = same / same.sum(axis=1, keepdims=True)       # symmetric `same`: rows = columns
    loss_i = optax.softmax_cross_entropy(logits, targets).mean()
    loss_t = optax.softmax_cross_entropy(logits.T, targets).mean()
    return (loss_i + loss_t) / 2


class ContrastiveModel(nnx.Module):
    """CNN image encoder + linear projection of frozen text features + learned temperature.

    The image side is the chapter-03 :class:`CNN` with ``embed_dim`` outputs (its last dense
    layer is CLIP's ``W_i``); the text side is ``W_t``, an ``nnx.Linear(text_dim, embed_dim)``
    applied to precomputed (frozen) sentence embeddings; ``log_scale`` is ``t``, initialised to
    ``log(1/0.07)``. All three are trained; the text encoder that made the features is not.
    """

    def __init__(self, text_dim: int, embed_dim: int = 64, *, rngs: nnx.Rngs):
        """Build it.

        Args:
            text_dim: width of the frozen text features (384 for MiniLM).
            embed_dim: width of the joint embedding space.
            rngs: parameter initialisation.

        Raises:
            ValueError: a width that is not a positive integer.
        """
        text_dim = check_positive_int("text_dim", text_dim)
        embed_dim = check_positive_int("embed_dim", embed_dim)
        self.image_encoder = CNN(rngs, num_classes=embed_dim)
        self.text_projection = nnx.Linear(text_dim, embed_dim, rngs=rngs)
        self.log_scale = nnx.Param(jnp.asarray(INIT_LOG_SCALE, jnp.float32))

    def encode_images(self, images: jax.Array) -> jax.Array:
        """Unit image embeddings ``(N, embed_dim)`` of float images ``(N, 28, 28, 1)`` in [0, 1].

        Raises:
            ValueError: see :meth:`CNN.__call__`.
        """
        return l2_normalize(self.image_encoder(images))

    def encode_texts(self, text_features: jax.Array) -> jax.Array:
        """Unit text embeddings ``(M, embed_dim)`` of frozen features ``(M, text_dim)``.

        Raises:
            ValueError: features of another width than ``text_dim``.
        """
        width = self.text_projection.in_features
        if jnp.ndim(text_features) != 2 or jnp.shape(text_features)[1] != width:
            raise ValueError(f"text features must be (M, {width}), got "
                             f"{tuple(jnp.shape(text_features))}")
        return l2_normalize(self.text_projection(text_features))

    def scale(self) -> jax.Array:
        """The current logit scale ``min(exp(t), 100)`` (1/temperature)."""
        return logit_scale(self.log_scale[...])


def class_prototypes(text_emb: np.ndarray | jax.Array, class_of_text: np.ndarray,
                     num_classes: int) -> jax.Array:
    """One unit vector per class: the normalised mean of its descriptions' unit embeddings.

    CLIP's prompt ensembling (section 3.1.4) averages the embeddings of several wordings.

    Args:
        text_emb: float ``(M, d)`` embeddings of ``M`` descriptions.
        class_of_text: int ``(M,)``: the class of each description, in ``[0, num_classes)``.
        num_classes: number of classes ``K``; every class needs at least one description.

    Returns:
        float32 ``(K, d)`` with unit rows.

    Raises:
        ValueError: mismatched lengths, a class id out of range, or a class without a description.
    """
    num_classes = check_positive_int("num_classes", num_classes)
    if jnp.ndim(text_emb) != 2 or len(text_emb) != len(class_of_text):
        raise ValueError(f"text_emb must be (M, d) with one row per entry of class_of_text "
                         f"({len(class_of_text)}), got {tuple(jnp.shape(text_emb))}")
    ids = check_ids("class_of_text", class_of_text, num_classes, size_name="num_classes")
    missing = sorted(set(range(num_classes)) - set(ids.tolist()))
    if missing:
        raise ValueError(f"classes {missing} have no description; give each class at least one")
    onehot = jax.nn.one_hot(ids, num_classes, dtype=jnp.float32)       # (M, K)
    means = onehot.T @ l2_normalize(jnp.asarray(text_emb, jnp.float32))
    return l2_normalize(means / onehot.sum(axis=0)[:, None])


def zero_shot_predict(image_emb: np.ndarray | jax.Array, prototypes: np.ndarray | jax.Array,
                      candidates: np.ndarray | None = None) -> np.ndarray:
    """Zero-shot classes: for each image the candidate class with the most similar prototype.

    Radford et al. 2021, section 3.1.2: the class whose text embedding has the largest cosine
    similarity with the image embedding.

    Args:
        image_emb: float ``(N, d)`` image embeddings.
        prototypes: float ``(K, d)`` class embeddings (:func:`class_prototypes`).
        candidates: optional int array of the class ids allowed (e.g. only the held-out ones);
            default all ``K``.

    Returns:
        int64 ``(N,)`` class ids (ids of ``prototypes``' rows, from ``candidates``).

    Raises:
        ValueError: widths differ, or a candidate id outside ``[0, K)``, or no candidate.
    """
    sims = np.asarray(similarity_logits(image_emb, prototypes, 0.0))    # scale 1: cosines
    k = sims.shape[1]
    if candidates is None:
        return sims.argmax(axis=1).astype(np.int64)
    cand = check_ids("candidates", candidates, k, size_name="the number of prototypes")
    if cand.ndim != 1 or cand.size == 0:
        raise ValueError(f"candidates must be a non-empty 1-D array of class ids, got {cand.shape}")
    return cand[sims[:, cand].argmax(axis=1)]


def held_out_classes(num_classes: int, n_held_out: int, seed: int) -> np.ndarray:
    """The classes kept out of training, drawn without replacement with a fixed seed.

    Args:
        num_classes: ``K ≥ 2``.
        n_held_out: how many, in ``[1, K - 1]`` (at least one class must remain to train on).
        seed: integer ≥ 0 for ``np.random.default_rng``.

    Returns:
        int64 ``(n_held_out,)`` sorted class ids.

    Raises:
        ValueError: ``n_held_out`` outside ``[1, K - 1]``, or a bad ``num_classes``/``seed``.
    """
    num_classes = check_int("num_classes", num_classes, 2)
    n_held_out = check_positive_int("n_held_out", n_held_out)
    if n_held_out >= num_classes:
        raise ValueError(f"n_held_out must be at most num_classes - 1 = {num_classes - 1} (some "
                         f"class must be left to train on), got {n_held_out}")
    rng = np.random.default_rng(check_int("seed", seed, 0))
    return np.sort(rng.choice(num_classes, n_held_out, replace=False)).astype(np.int64)


def seen_mask(labels: np.ndarray, held_out: np.ndarray, num_classes: int) -> np.ndarray:
    """Boolean ``(N,)``: which examples belong to a class that is NOT held out.

    Args:
        labels: int ``(N,)`` class ids in ``[0, num_classes)``.
        held_out: int class ids in ``[0, num_classes)``, no repeats.
        num_classes: ``K``.

    Returns:
        bool ``(N,)``; ``labels[mask]`` holds only seen classes.

    Raises:
        ValueError: a label or held-out id outside ``[0, K)`` (NumPy's ``isin`` would silently
            hold out nothing), a repeated held-out id, or every class held out.
    """
    num_classes = check_positive_int("num_classes", num_classes)
    held = check_ids("held_out", held_out, num_classes, size_name="num_classes",
                     fix="held-out classes are label ids of the dataset")
    if len(np.unique(held)) != held.size:
        raise ValueError(f"held_out repeats a class: {held.tolist()}")
    if len(np.unique(held)) >= num_classes:
        raise ValueError("every class is held out: nothing is left to train on")
    y = check_ids("labels", labels, num_classes, size_name="num_classes")
    return ~np.isin(y, held)
