"""A small single-stage, anchor-free detector in Flax NNX: CenterNet (chapter 08).

Used in chapters: 08.

Source: X. Zhou, D. Wang, P. Krähenbühl, *Objects as Points*, arXiv:1904.07850 (2019). The
backbone here is a tiny plain CNN (output stride 4) instead of the paper's Hourglass / DLA; the
heads, targets (:func:`lmcourse.detection.centernet_targets`) and loss are the paper's:

* a per-class centre **heatmap** trained with the penalty-reduced focal loss (eq. 1, α = 2,
  β = 4; focal loss from Lin et al. 2017, *Focal Loss for Dense Object Detection*);
* the box **size** ``(w, h)`` and the sub-cell **offset** of the centre, regressed with an L1 loss
  at the true centres only (eq. 2–3), weighted ``λ_size = 0.1``, ``λ_off = 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lmcourse.compat import apply_gradients, make_optimizer
from lmcourse.data.scenes import Scenes
from lmcourse.detection import (
    centernet_targets,
    decode,
    postprocess,
    random_translate,
)
from lmcourse.progress import progress as progress_bar
from lmcourse.training import History, epoch_batches, train_loop
from lmcourse.validation import (
    check_batch_size,
    check_fraction,
    check_int,
    check_nonnegative_float,
    check_positive_float,
)

HEATMAP_PRIOR = 0.1  # initial heatmap probability (CenterNet / RetinaNet bias init −2.19)


class CenterNet(nnx.Module):
    """``__call__`` maps ``(B, S, S, 1)`` float32 images in [0, 1] to output maps at stride 4:
    heatmap logits ``(B, S/4, S/4, num_classes)``, size ``(B, S/4, S/4, 2)`` and offset
    ``(B, S/4, S/4, 2)`` (both in output cells).

    Backbone: 3×3 conv (``width``) → two stride-2 3×3 convs (``width``, ``2·width``) → ``depth``
    residual 3×3 convs with dilations 1, 2, 4, 1, ... → shared 3×3 head conv → 1×1 to
    ``num_classes + 4`` channels (receptive field 81 px at depth 4, enough to see a whole object
    from its centre; chapter 08 computes it).
    ReLU everywhere. The heatmap bias starts at ``−log((1 − π) / π)``, π = 0.1.

    Args:
        rngs: parameter initialisation.
        num_classes: heatmap channels (≥ 1).
        width: channels of the first layer (≥ 1).
        depth: residual convolutions at stride 4 (≥ 0).

    Raises:
        ValueError: a size that is not an integer in its range; at call time, input that is not
            ``(B, S, S, 1)`` with ``S`` a multiple of 4.
    """

    stride = 4

    def __init__(self, rngs: nnx.Rngs, num_classes: int = 10, width: int = 32, depth: int = 4):
        num_classes = check_int("num_classes", num_classes, 1)
        width = check_int("width", width, 1)
        depth = check_int("depth", depth, 0)
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
        if x.ndim != 4 or x.shape[-1] != 1 or x.shape[1] % self.stride or x.shape[2] % self.stride:
            raise ValueError(f"CenterNet expects (B, S, S, 1) grey images with S a multiple of "
                             f"{self.stride}, got shape {x.shape}")
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
        alpha, beta: focusing exponents, finite and ≥ 0 (the paper's 2 and 4; 0 turns the
            focusing off).

    Returns:
        scalar float32.

    Raises:
        ValueError: ``alpha`` or ``beta`` negative, NaN or infinite (Python numbers).
    """
    alpha, beta = check_nonnegative_float("alpha", alpha), check_nonnegative_float("beta", beta)
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
        size_weight, offset_weight: ``λ_size``, ``λ_off`` (finite, ≥ 0).

    Returns:
        ``(loss, {"heatmap": ..., "size": ..., "offset": ...})`` scalars.

    Raises:
        ValueError: a negative, NaN or infinite weight.
    """
    size_weight = check_nonnegative_float("size_weight", size_weight)
    offset_weight = check_nonnegative_float("offset_weight", offset_weight)
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
    optionally shifted by :func:`lmcourse.detection.random_translate` (``max_shift > 0``).

    Args:
        scenes: the scenes; idx: ``(B,)`` integer scene indices in ``[0, len(scenes))``.
        num_classes: heatmap channels; every class id in the chosen scenes must be below it.
        stride: output stride; rng, max_shift: random shifts (``max_shift ≥ 0`` pixels).

    Returns:
        ``(images, targets)``, see :func:`lmcourse.detection.centernet_targets`.

    Raises:
        ValueError: a scene index outside ``[0, len(scenes))`` (NumPy would wrap a negative
            index silently), a class id outside ``[0, num_classes)`` (names the range),
            ``max_shift < 0``.
    """
    idx = np.asarray(idx)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        raise ValueError(f"idx must be a 1-D array of integer scene indices, got {idx.dtype} "
                         f"{idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= len(scenes)):
        raise ValueError(f"scene indices must be in [0, {len(scenes)}), got {idx.min()}..{idx.max()}")
    max_shift = check_int("max_shift", max_shift, 0)
    num_classes = check_int("num_classes", num_classes, 1)
    real = np.arange(scenes.labels.shape[1])[None, :] < scenes.counts[idx][:, None]
    labels = scenes.labels[idx][real]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"class ids must be in [0, num_classes) = [0, {num_classes}), the scenes "
                         f"hold {labels.min()}..{labels.max()}; build the model with "
                         f"num_classes={int(labels.max()) + 1} or relabel the scenes")
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
class DetectorHistory(History):
    """:class:`lmcourse.training.History` of :func:`train_detector`, with the chapter's names:
    ``loss`` (``step_loss``), ``heatmap_loss``, ``size_loss``, ``offset_loss`` (the parts,
    ``step_metrics``) per step, and ``seconds`` (``wall_seconds``, compilation included)."""

    @property
    def loss(self) -> list[float]:
        """Total training loss per step (``step_loss``)."""
        return self.step_loss

    @property
    def heatmap_loss(self) -> list[float]:
        """Focal heatmap loss per step."""
        return self.step_metrics.get("heatmap", [])

    @property
    def size_loss(self) -> list[float]:
        """L1 box-size loss per step (in output cells)."""
        return self.step_metrics.get("size", [])

    @property
    def offset_loss(self) -> list[float]:
        """L1 sub-cell offset loss per step."""
        return self.step_metrics.get("offset", [])

    @property
    def seconds(self) -> float:
        """Wall-clock seconds of the run, compilation included (``wall_seconds``)."""
        return self.wall_seconds


def train_detector(model: CenterNet, scenes: Scenes, *, steps: int, batch_size: int = 32,
                   learning_rate: float = 2e-3, warmup_steps: int = 100, weight_decay: float = 1e-4,
                   max_shift: int = 0, seed: int = 0,
                   callback: Callable[[int, DetectorHistory], None] | None = None,
                   progress: bool = True, checkpoint_dir: str | Path | None = None,
                   checkpoint_every: int = 0, resume: bool = True) -> DetectorHistory:
    """Train ``model`` in place with AdamW and a warm-up + cosine learning-rate schedule.

    Runs :func:`lmcourse.training.train_loop`. Batches are drawn by seeded shuffling of the
    scenes (:func:`lmcourse.training.batches`, reshuffled each epoch, the last short batch
    dropped); targets are built on the fly so that random shifts (``max_shift`` pixels, drawn
    from the same generator) can be applied.

    Args:
        steps: gradient steps (≥ 1); batch_size: scenes per step, in ``[1, len(scenes)]``.
        learning_rate: peak learning rate (finite, > 0); warmup_steps: linear warm-up from 0
            (≥ 0; at most ``steps // 2`` are used), then cosine decay to 1% of the peak.
        weight_decay: AdamW's decoupled weight decay (finite, ≥ 0).
        max_shift: random shift in pixels (≥ 0; 0 = no augmentation).
        seed: batch order and shifts.
        callback: called as ``callback(step, history)`` every 100 steps (e.g. to print).
        progress: a progress bar (scenes/s, ETA, loss every 100 steps; see
            :mod:`lmcourse.progress`) and one summary line at the end; False: silent.
        checkpoint_dir, checkpoint_every, resume: checkpoints, as in
            :func:`lmcourse.training.fit` (model, optimizer, generator, step).

    Returns:
        :class:`DetectorHistory`.

    Raises:
        ValueError: an argument outside its range (NaN included), scene classes outside
            ``[0, model.num_classes)``, or a checkpoint of another model or other settings.
        NonFiniteLossError: (a ``FloatingPointError``) the loss became NaN or infinite; the
            message names the step.
    """
    steps = check_int("steps", steps, 1)
    batch_size = check_batch_size(batch_size, len(scenes), "training scenes")
    learning_rate = check_positive_float("learning_rate", learning_rate)
    warmup_steps = check_int("warmup_steps", warmup_steps, 0)
    weight_decay = check_nonnegative_float("weight_decay", weight_decay)
    max_shift = check_int("max_shift", max_shift, 0)
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(warmup_steps, steps // 2),
                                                  steps, learning_rate * 0.01)
    optimizer = make_optimizer(model, optax.adamw(schedule, weight_decay=weight_decay))
    source = epoch_batches(len(scenes), batch_size, seed)

    def step_fn(idx: np.ndarray) -> tuple[jax.Array, dict[str, jax.Array]]:
        images, targets = scene_batch(scenes, idx, num_classes=model.num_classes,
                                      stride=model.stride, rng=source.rng, max_shift=max_shift)
        return train_step(model, optimizer, images, targets)

    checkpoint = None
    if checkpoint_dir is not None:
        from lmcourse.checkpoint import Checkpoint

        checkpoint = Checkpoint(checkpoint_dir, {"model": model, "optimizer": optimizer},
                                every=checkpoint_every, resume=resume, config={
                                    "scenes": len(scenes), "steps": steps,
                                    "batch_size": batch_size, "learning_rate": learning_rate,
                                    "warmup_steps": warmup_steps, "weight_decay": weight_decay,
                                    "max_shift": max_shift, "seed": seed})
    return train_loop(step_fn, source, steps=steps, check_every=100, callback=callback,
                      checkpoint=checkpoint, history=DetectorHistory(), progress=progress,
                      desc="train detector", unit="scenes", batch_size=batch_size)


def raw_detections(model: CenterNet, images: np.ndarray, *, batch_size: int = 100,
                   top_k: int = 50, progress: bool = True
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoded boxes *before* score threshold and NMS, for ``(N, S, S)`` uint8 scenes.

    Run the network once and hand the result to :func:`lmcourse.detection.postprocess` with
    as many post-processing settings as you like (cheap to sweep).

    Args:
        images: ``(N, S, S)`` uint8 (0–255), ``S`` a multiple of 4.
        batch_size: images per forward pass (≥ 1); top_k: boxes per image, in ``[1, G·G·C]``.
        progress: a progress bar (scenes/s, ETA) and one summary line; False: silent.

    Returns:
        ``boxes (N, top_k, 4)`` float32 pixels, ``scores (N, top_k)``, ``classes (N, top_k)``.

    Raises:
        ValueError: images not ``(N, S, S)`` uint8, or ``batch_size`` / ``top_k`` out of range.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, S, S) uint8 scenes (0–255), got {images.dtype} "
                         f"{images.shape}")
    batch_size = check_int("batch_size", batch_size, 1)
    g = images.shape[1] // model.stride
    top_k = check_int("top_k", top_k, 1)
    if top_k > g * g * model.num_classes:
        raise ValueError(f"top_k must be in [1, G·G·C] = [1, {g * g * model.num_classes}], "
                         f"got {top_k}")
    parts = []
    with progress_bar(total=len(images), desc="detect", unit="scenes", enabled=progress) as bar:
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size, ..., None].astype(np.float32) / 255.0
            parts.append(jax.device_get(predict_step(model, x, top_k=top_k)))
            bar.update(len(x))
    if not parts:
        return (np.zeros((0, top_k, 4), np.float32), np.zeros((0, top_k), np.float32),
                np.zeros((0, top_k), np.int32))
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def detect(model: CenterNet, images: np.ndarray, *, batch_size: int = 100, top_k: int = 50,
           score_threshold: float = 0.05, iou_threshold: float = 0.5,
           class_agnostic: bool = False, progress: bool = True
           ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Detections for ``(N, S, S)`` uint8 scenes: per image ``(boxes (M, 4), scores (M,),
    classes (M,))`` after decoding (:func:`raw_detections`), score threshold, clipping and NMS
    (per class, or across classes with ``class_agnostic=True``; see
    :func:`lmcourse.detection.postprocess`). ``progress``: as :func:`raw_detections`.

    Raises:
        ValueError: as :func:`raw_detections` and :func:`lmcourse.detection.postprocess`
            (thresholds outside [0, 1] or NaN; NaN scores from a diverged model).
    """
    check_fraction("score_threshold", score_threshold)     # fail before the forward passes
    check_fraction("iou_threshold", iou_threshold)
    boxes, scores, classes = raw_detections(model, images, batch_size=batch_size, top_k=top_k,
                                           progress=progress)
    return postprocess(boxes, scores, classes, score_threshold=score_threshold,
                       iou_threshold=iou_threshold, image_size=np.shape(images)[1],
                       class_agnostic=class_agnostic)
