"""A small single-stage, anchor-free detector in Flax NNX: CenterNet (chapter 08).

Source: X. Zhou, D. Wang, P. Krähenbühl, *Objects as Points*, arXiv:1904.07850 (2019). The
backbone here is a tiny plain CNN (output stride 4) instead of the paper's Hourglass / DLA; the
heads, targets (:func:`lmcourse.detection.centernet_targets`) and loss are the paper's:

* a per-class centre **heatmap** trained with the penalty-reduced focal loss (eq. 1, α = 2,
  β = 4; focal loss from Lin et al. 2017, *Focal Loss for Dense Object Detection*);
* the box **size** ``(w, h)`` and the sub-cell **offset** of the centre, regressed with an L1 loss
  at the true centres only (eq. 2–3), weighted ``λ_size = 0.1``, ``λ_off = 1``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmcourse.compat import apply_gradients, make_optimizer
from lmcourse.data.scenes import Scenes
from lmcourse.detection import centernet_targets, decode, postprocess, random_translate

HEATMAP_PRIOR = 0.1  # initial heatmap probability (CenterNet / RetinaNet bias init −2.19)


class CenterNet(nnx.Module):
    """``__call__`` maps ``(B, S, S, 1)`` float32 images in [0, 1] to output maps at stride 4:
    heatmap logits ``(B, S/4, S/4, num_classes)``, size ``(B, S/4, S/4, 2)`` and offset
    ``(B, S/4, S/4, 2)`` (both in output cells).

    Backbone: 3×3 conv (``width``) → two stride-2 3×3 convs (``width``, ``2·width``) → ``depth``
    residual 3×3 convs with dilations 1, 2, 4, 1, ... (receptive field ≈ 70 px, enough to see a
    whole object from its centre) → shared 3×3 head conv → 1×1 to ``num_classes + 4`` channels.
    ReLU everywhere. The heatmap bias starts at ``−log((1 − π) / π)``, π = 0.1.

    Args:
        rngs: parameter initialisation.
        num_classes: heatmap channels.
        width: channels of the first layer.
        depth: residual convolutions at stride 4.
    """

    stride = 4

    def __init__(self, rngs: nnx.Rngs, num_classes: int = 10, width: int = 32, depth: int = 4):
        self.num_classes = num_classes
        c = 2 * width
        self.stem = nnx.Conv(1, width, (3, 3), rngs=rngs)
        self.down1 = nnx.Conv(width, width, (3, 3), strides=(2, 2), rngs=rngs)
        self.down2 = nnx.Conv(width, c, (3, 3), strides=(2, 2), rngs=rngs)
        dilations = [(1, 2, 4)[i % 3] if i < depth - 1 else 1 for i in range(depth)]
        self.body = nnx.List([nnx.Conv(c, c, (3, 3), kernel_dilation=(d, d), rngs=rngs)
                              for d in dilations])
        self.head = nnx.Conv(c, c, (3, 3), rngs=rngs)
        bias = np.zeros(num_classes + 4, np.float32)
        bias[:num_classes] = -np.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR)
        self.out = nnx.Conv(c, num_classes + 4, (1, 1), rngs=rngs,
                            bias_init=lambda key, shape, dtype=jnp.float32: jnp.asarray(bias, dtype))

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        x = nnx.relu(self.stem(x))
        x = nnx.relu(self.down1(x))
        x = nnx.relu(self.down2(x))
        for conv in self.body:
            x = x + nnx.relu(conv(x))
        y = self.out(nnx.relu(self.head(x)))
        k = self.num_classes
        return y[..., :k], y[..., k:k + 2], y[..., k + 2:]


def focal_loss(heatmap_logits: jax.Array, target: jax.Array, num_objects: jax.Array,
               alpha: float = 2.0, beta: float = 4.0) -> jax.Array:
    r"""CenterNet's penalty-reduced pixel-wise focal loss (Zhou et al. 2019, eq. 1):

    .. math:: L_k = \frac{-1}{N}\sum_{xyc}\begin{cases}(1-\hat Y)^{\alpha}\log\hat Y & Y = 1\\
              (1-Y)^{\beta}\hat Y^{\alpha}\log(1-\hat Y) & \text{otherwise}\end{cases}

    with :math:`\hat Y = \sigma(\text{logit})` (logs computed stably from the logits).

    Args:
        heatmap_logits, target: ``(B, G, G, C)``; target in [0, 1] with exact 1 at centres.
        num_objects: scalar N (clipped to ≥ 1).

    Returns:
        scalar float32.
    """
    log_p = jax.nn.log_sigmoid(heatmap_logits)
    log_1mp = jax.nn.log_sigmoid(-heatmap_logits)
    p = jnp.exp(log_p)
    pos = target >= 1.0
    pos_term = (1 - p) ** alpha * log_p
    neg_term = (1 - target) ** beta * p ** alpha * log_1mp
    return -jnp.sum(jnp.where(pos, pos_term, neg_term)) / jnp.maximum(num_objects, 1.0)


def centernet_loss(model: CenterNet, images: jax.Array, targets: dict[str, jax.Array],
                   size_weight: float = 0.1, offset_weight: float = 1.0
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Total loss ``L_k + λ_size L_size + λ_off L_off`` on a batch and its three parts.

    Args:
        images: ``(B, S, S, 1)`` float32; targets: the dict of
            :func:`lmcourse.detection.centernet_targets` (as arrays).

    Returns:
        ``(loss, {"heatmap": ..., "size": ..., "offset": ...})`` scalars.
    """
    heat, size, offset = model(images)
    b = heat.shape[0]
    mask = targets["mask"]
    n = jnp.maximum(mask.sum(), 1.0)
    idx = targets["index"][..., None]
    pred_size = jnp.take_along_axis(size.reshape(b, -1, 2), idx, axis=1)
    pred_off = jnp.take_along_axis(offset.reshape(b, -1, 2), idx, axis=1)
    l_heat = focal_loss(heat, targets["heatmap"], n)
    l_size = jnp.sum(jnp.abs(pred_size - targets["size"]) * mask[..., None]) / n
    l_off = jnp.sum(jnp.abs(pred_off - targets["offset"]) * mask[..., None]) / n
    loss = l_heat + size_weight * l_size + offset_weight * l_off
    return loss, {"heatmap": l_heat, "size": l_size, "offset": l_off}


@nnx.jit
def train_step(model: CenterNet, optimizer: nnx.Optimizer, images: jax.Array,
               targets: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One jitted gradient step in place; returns the batch loss and its parts (before the step)."""
    (loss, parts), grads = nnx.value_and_grad(centernet_loss, has_aux=True)(model, images, targets)
    apply_gradients(optimizer, model, grads)
    return loss, parts


@nnx.jit(static_argnames=("top_k",))
def predict_step(model: CenterNet, images: jax.Array, top_k: int = 50
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Jitted forward pass + :func:`lmcourse.detection.decode`: ``(boxes, scores, classes)``."""
    heat, size, offset = model(images)
    return decode(heat, size, offset, stride=model.stride, top_k=top_k)


def scene_batch(scenes: Scenes, idx: np.ndarray, *, num_classes: int = 10, stride: int = 4,
                rng: np.random.Generator | None = None, max_shift: int = 0
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Images ``(B, S, S, 1)`` float32 in [0, 1] and CenterNet targets for scenes ``idx``,
    optionally shifted by :func:`lmcourse.detection.random_translate` (``max_shift > 0``)."""
    images = scenes.images[idx]
    boxes = scenes.boxes[idx].copy()
    if max_shift > 0 and rng is not None:
        images = images.copy()
        for i, j in enumerate(idx):
            n = int(scenes.counts[j])
            images[i], boxes[i, :n] = random_translate(images[i], boxes[i, :n], rng, max_shift)
    targets = centernet_targets(boxes, scenes.labels[idx], scenes.counts[idx],
                                image_size=images.shape[1], stride=stride, num_classes=num_classes)
    return images[..., None].astype(np.float32) / 255.0, targets


@dataclass
class DetectorHistory:
    """Per-step losses and timing of :func:`train_detector`."""

    loss: list[float] = field(default_factory=list)
    heatmap_loss: list[float] = field(default_factory=list)
    size_loss: list[float] = field(default_factory=list)
    offset_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_detector(model: CenterNet, scenes: Scenes, *, steps: int, batch_size: int = 32,
                   learning_rate: float = 2e-3, warmup_steps: int = 100, weight_decay: float = 1e-4,
                   max_shift: int = 0, seed: int = 0,
                   callback: Callable[[int, DetectorHistory], None] | None = None
                   ) -> DetectorHistory:
    """Train ``model`` in place with AdamW and a warm-up + cosine learning-rate schedule.

    Batches are drawn by seeded shuffling of the scenes (epochs are reshuffled); targets are
    built on the fly so that random shifts (``max_shift`` pixels) can be applied.

    Args:
        steps: gradient steps; batch_size: scenes per step.
        callback: called as ``callback(step, history)`` every 100 steps (e.g. to print).

    Returns:
        :class:`DetectorHistory`.

    Raises:
        FloatingPointError: if the loss becomes NaN or infinite (names the step).
    """
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(warmup_steps, steps // 2),
                                                  steps, learning_rate * 0.01)
    optimizer = make_optimizer(model, optax.adamw(schedule, weight_decay=weight_decay))
    rng = np.random.default_rng(seed)
    history = DetectorHistory()
    order, cursor = rng.permutation(len(scenes)), 0
    pending = []
    start = time.perf_counter()
    for step in range(steps):
        if cursor + batch_size > len(order):
            order, cursor = rng.permutation(len(scenes)), 0
        idx = order[cursor:cursor + batch_size]
        cursor += batch_size
        images, targets = scene_batch(scenes, idx, num_classes=model.num_classes,
                                      stride=model.stride, rng=rng, max_shift=max_shift)
        pending.append(train_step(model, optimizer, images, targets))
        if (step + 1) % 100 == 0 or step + 1 == steps:
            for loss, parts in jax.device_get(pending):
                if not np.isfinite(loss):
                    raise FloatingPointError(f"detector loss became {loss} near step {step}")
                history.loss.append(float(loss))
                history.heatmap_loss.append(float(parts["heatmap"]))
                history.size_loss.append(float(parts["size"]))
                history.offset_loss.append(float(parts["offset"]))
            pending = []
            if callback is not None:
                callback(step + 1, history)
    history.seconds = time.perf_counter() - start
    return history


def detect(model: CenterNet, images: np.ndarray, *, batch_size: int = 100, top_k: int = 50,
           score_threshold: float = 0.05, iou_threshold: float = 0.5
           ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Detections for ``(N, S, S)`` uint8 scenes: per image ``(boxes (M, 4), scores (M,),
    classes (M,))`` after decoding, score threshold and per-class NMS (see
    :func:`lmcourse.detection.postprocess`)."""
    out = []
    size = images.shape[1]
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size, ..., None].astype(np.float32) / 255.0
        boxes, scores, classes = jax.device_get(predict_step(model, x, top_k=top_k))
        out += postprocess(boxes, scores, classes, score_threshold=score_threshold,
                           iou_threshold=iou_threshold, image_size=size)
    return out
