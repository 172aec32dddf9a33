"""Detection helpers for chapter 08: CenterNet targets, box decoding, non-maximum suppression
(per class and class-agnostic), box-aware augmentation, a saliency map and Grad-CAM.

Used in chapters: 08; imported by ``lmcourse.models.detector``.

Boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates (see :mod:`lmcourse.data.scenes`).
The detector (:mod:`lmcourse.models.detector`) follows CenterNet — X. Zhou, D. Wang,
P. Krähenbühl, *Objects as Points*, arXiv:1904.07850 (2019): one heatmap per class whose peaks
are object centres, plus a box size and a sub-cell offset regressed at each centre.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lmcourse.metrics import box_iou
from lmcourse.validation import check_fraction, check_int, check_positive_int


# ----------------------------------------------------------------------------------------------
# argument checks (shared by the public functions below)
# ----------------------------------------------------------------------------------------------
def _check_boxes(boxes: np.ndarray, name: str = "boxes") -> np.ndarray:
    """``(N, 4)`` float64 boxes ``(x1, y1, x2, y2)``: finite, ``x2 ≥ x1``, ``y2 ≥ y1``."""
    b = np.asarray(boxes, np.float64)
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x1, y1, x2, y2), got {b.shape}")
    bad = np.flatnonzero(~np.isfinite(b).all(axis=1))
    if len(bad):
        raise ValueError(f"{name} contain NaN or infinite coordinates (box {bad[0]}: {b[bad[0]]}); "
                         "check the model output or the data")
    bad = np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
    if len(bad):
        raise ValueError(f"{name} must satisfy x2 ≥ x1 and y2 ≥ y1 (format (x1, y1, x2, y2)); "
                         f"box {bad[0]} is {b[bad[0]]}")
    return b


def _check_scores(scores: np.ndarray, n: int) -> np.ndarray:
    """``(n,)`` float64 scores without NaN (a NaN cannot be ranked: argsort puts it anywhere)."""
    s = np.asarray(scores, np.float64).reshape(-1)
    if len(s) != n:
        raise ValueError(f"{n} boxes but {len(s)} scores")
    bad = np.flatnonzero(np.isnan(s))
    if len(bad):
        raise ValueError(f"scores contain NaN (first at index {bad[0]}, {len(bad)} in all); a NaN "
                         "score cannot be ranked. Check the model output (a diverged training run "
                         "gives NaN logits)")
    return s


def _check_classes(classes: np.ndarray, n: int) -> np.ndarray:
    """``(n,)`` int64 class ids (integer-valued; NaN and fractions rejected)."""
    c = np.asarray(classes).reshape(-1)
    if len(c) != n:
        raise ValueError(f"{len(c)} classes but {n} scores")
    if c.dtype.kind == "f":
        if not (np.isfinite(c).all() and (c == np.round(c)).all()):
            raise ValueError("classes must be integer class ids (found NaN, inf or a fraction)")
    elif c.size and c.dtype.kind not in "iu":
        raise ValueError(f"classes must be integer class ids, got dtype {c.dtype}")
    return c.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# training targets
# ----------------------------------------------------------------------------------------------
def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """Radius (in output cells) of the Gaussian drawn around a centre, CenterNet's rule.

    The largest shift of a box's corners that still leaves IoU ≥ ``min_overlap`` with the true
    box, taking the smallest of three cases. Same formula as ``gaussian_radius`` in the official
    code (github.com/xingyizhou/CenterNet, ``src/lib/utils/image.py``, from CornerNet). Note:
    that code divides each quadratic's root by 2 instead of ``2a``, so the radius is not exactly
    the IoU-preserving one (a known quirk); we keep it, because the
    published models were trained with it and it only sets how wide the Gaussians are.

    Args:
        height, width: box size in output cells (finite, ≥ 0).
        min_overlap: IoU to keep, in [0, 1] (both edges give a finite radius; 1 gives 0).

    Returns:
        float ≥ 0.

    Raises:
        ValueError: a negative or non-finite size, or ``min_overlap`` outside [0, 1] or NaN.
    """
    min_overlap = check_fraction("min_overlap", min_overlap)
    if not (math.isfinite(height) and math.isfinite(width) and height >= 0 and width >= 0):
        raise ValueError(f"box height and width must be finite and ≥ 0, got {height}, {width}")
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def centernet_targets(boxes: np.ndarray, labels: np.ndarray, counts: np.ndarray, *,
                      image_size: int, stride: int = 4, num_classes: int = 10
                      ) -> dict[str, np.ndarray]:
    """CenterNet training targets for a batch of scenes.

    Each object with centre ``c = ((x1 + x2) / 2, (y1 + y2) / 2)`` (pixels) lands in output cell
    ``p = floor(c / stride)``; its class heatmap gets a Gaussian
    ``exp(-((x - p_x)^2 + (y - p_y)^2) / (2 σ^2))`` with ``σ = (2r + 1) / 6``,
    ``r = max(0, floor(gaussian_radius))``, cut at ``|x - p_x|, |y - p_y| ≤ r``, and value exactly 1
    at ``p`` (overlapping Gaussians of one class combine with a maximum).

    Args:
        boxes: ``(B, K, 4)`` boxes in pixels; ``labels``: ``(B, K)`` ints (padding ``-1``);
            ``counts``: ``(B,)`` objects per scene.
        image_size: input side in pixels (a multiple of ``stride``).
        stride: output stride (input pixels per heatmap cell).
        num_classes: heatmap channels.

    Returns:
        dict of NumPy arrays: ``heatmap`` ``(B, G, G, C)`` float32 in [0, 1] with ``G =
        image_size // stride``; ``index`` ``(B, K)`` int32 flat cell ``p_y·G + p_x``; ``size``
        ``(B, K, 2)`` float32 box ``(w, h)`` in output cells; ``offset`` ``(B, K, 2)`` float32
        ``c / stride − p`` in [0, 1); ``mask`` ``(B, K)`` float32, 1 for real objects.

    Raises:
        ValueError: ``image_size`` not a multiple of ``stride`` (or a size < 1); shapes that do
            not match; a count outside ``[0, K]``; a class id of a real object outside
            ``[0, num_classes)`` (NumPy would wrap a negative id to another class silently); a
            box with NaN/inf coordinates, ``x2 < x1`` or ``y2 < y1``, or its centre outside
            ``[0, image_size]``.
    """
    stride = check_positive_int("stride", stride)
    image_size = check_positive_int("image_size", image_size)
    num_classes = check_positive_int("num_classes", num_classes)
    if image_size % stride:
        raise ValueError(f"image_size {image_size} must be a multiple of stride {stride}")
    boxes, labels, counts = np.asarray(boxes), np.asarray(labels), np.asarray(counts)
    if labels.ndim != 2 or boxes.shape != (*labels.shape, 4) or counts.shape != labels.shape[:1]:
        raise ValueError(f"need boxes (B, K, 4), labels (B, K), counts (B,); got {boxes.shape}, "
                         f"{labels.shape}, {counts.shape}")
    b, k = labels.shape
    if b and not ((counts >= 0) & (counts <= k)).all():
        raise ValueError(f"counts must be in [0, K] = [0, {k}], got {counts.min()}..{counts.max()}")
    real = np.arange(k)[None, :] < counts[:, None]
    if real.any():
        lab = labels[real]
        if lab.min() < 0 or lab.max() >= num_classes:
            raise ValueError(f"class ids of real objects must be in [0, num_classes) = "
                             f"[0, {num_classes}), got {lab.min()}..{lab.max()}; pass the right "
                             "num_classes or fix the labels")
        bx = _check_boxes(boxes[real])
        cx, cy = (bx[:, 0] + bx[:, 2]) / 2, (bx[:, 1] + bx[:, 3]) / 2
        if min(cx.min(), cy.min()) < 0 or max(cx.max(), cy.max()) > image_size:
            raise ValueError(f"box centres must lie inside the {image_size}×{image_size} image "
                             "(in [0, image_size]); a centre outside has no heatmap cell")
    g = image_size // stride
    heat = np.zeros((b, g, g, num_classes), np.float32)
    index = np.zeros((b, k), np.int32)
    size = np.zeros((b, k, 2), np.float32)
    offset = np.zeros((b, k, 2), np.float32)
    mask = np.zeros((b, k), np.float32)
    grid = np.arange(g)
    for i in range(b):
        for j in range(int(counts[i])):
            x1, y1, x2, y2 = (float(v) / stride for v in boxes[i, j])
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            px, py = min(int(cx), g - 1), min(int(cy), g - 1)
            w, h = x2 - x1, y2 - y1
            r = max(0, int(gaussian_radius(h, w)))
            sigma = (2 * r + 1) / 6
            gx = np.exp(-((grid - px) ** 2) / (2 * sigma ** 2)) * (np.abs(grid - px) <= r)
            gy = np.exp(-((grid - py) ** 2) / (2 * sigma ** 2)) * (np.abs(grid - py) <= r)
            c = int(labels[i, j])
            np.maximum(heat[i, :, :, c], gy[:, None] * gx[None, :], out=heat[i, :, :, c])
            index[i, j] = py * g + px
            size[i, j] = (w, h)
            offset[i, j] = (cx - px, cy - py)
            mask[i, j] = 1.0
    return {"heatmap": heat, "index": index, "size": size, "offset": offset, "mask": mask}


# ----------------------------------------------------------------------------------------------
# decoding and non-maximum suppression
# ----------------------------------------------------------------------------------------------
def decode(heatmap_logits: jax.Array, size: jax.Array, offset: jax.Array, *, stride: int = 4,
           top_k: int = 50) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Turn the detector's output maps into the ``top_k`` highest-scoring boxes per image.

    A cell is a candidate centre of class ``c`` when its heatmap score ``σ(logit)`` is the maximum
    of its 3×3 neighbourhood (CenterNet's cheap replacement for NMS); candidates are ranked by
    score, and the box is ``(p + offset) · stride ± size · stride / 2``.

    Args:
        heatmap_logits: ``(B, G, G, C)`` logits; size: ``(B, G, G, 2)`` ``(w, h)`` in cells;
            offset: ``(B, G, G, 2)`` in cells.
        stride: input pixels per cell.
        top_k: boxes kept per image (≤ G·G·C).

    Returns:
        ``boxes`` ``(B, top_k, 4)`` float32 pixels, ``scores`` ``(B, top_k)`` in (0, 1) sorted
        descending, ``classes`` ``(B, top_k)`` int32.

    Raises:
        ValueError: shapes that do not match, ``stride < 1`` or ``top_k`` outside
            ``[1, G·G·C]`` (checked on shapes, so also under ``jax.jit``).
    """
    stride = check_positive_int("stride", stride)
    if heatmap_logits.ndim != 4 or size.shape != (*heatmap_logits.shape[:3], 2) \
            or offset.shape != size.shape:
        raise ValueError(f"need heatmap (B, G, G, C), size and offset (B, G, G, 2); got "
                         f"{heatmap_logits.shape}, {size.shape}, {offset.shape}")
    b, g, _, c = heatmap_logits.shape
    if not 1 <= top_k <= g * g * c:
        raise ValueError(f"top_k must be in [1, G·G·C] = [1, {g * g * c}], got {top_k}")
    heat = jax.nn.sigmoid(heatmap_logits)
    pooled = jax.lax.reduce_window(heat, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), "SAME")
    peaks = jnp.where(heat == pooled, heat, 0.0)
    scores, flat = jax.lax.top_k(peaks.reshape(b, -1), top_k)
    classes = (flat % c).astype(jnp.int32)
    cell = flat // c
    ys, xs = (cell // g).astype(jnp.float32), (cell % g).astype(jnp.float32)
    sz = jnp.take_along_axis(size.reshape(b, -1, 2), cell[..., None], axis=1)
    off = jnp.take_along_axis(offset.reshape(b, -1, 2), cell[..., None], axis=1)
    cx, cy = (xs + off[..., 0]) * stride, (ys + off[..., 1]) * stride
    w, h = jnp.maximum(sz[..., 0], 0) * stride, jnp.maximum(sz[..., 1], 0) * stride
    boxes = jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    return boxes, scores, classes


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """Greedy non-maximum suppression (NMS 非极大值抑制).

    Repeatedly keep the highest-scoring remaining box and drop every remaining box whose IoU
    with it is *greater than* ``iou_threshold`` (as ``torchvision.ops.nms``). Ties in score keep
    the earlier box. Source: e.g. Girshick et al. (2014), R-CNN; Felzenszwalb et al. (2010).

    Args:
        boxes: ``(N, 4)`` boxes ``(x1, y1, x2, y2)``, finite, ``x2 ≥ x1``, ``y2 ≥ y1``;
            scores: ``(N,)``, no NaN (±inf rank as usual).
        iou_threshold: in [0, 1]; 0 keeps only boxes that do not overlap at all, 1 keeps every
            box (an IoU is never greater than 1).

    Returns:
        ``(M,)`` int64 indices of the kept boxes, by decreasing score.

    Raises:
        ValueError: a NaN score (it cannot be ranked; ``argsort`` would place it arbitrarily), a
            box with NaN/inf coordinates or ``x2 < x1`` / ``y2 < y1``, different numbers of
            boxes and scores, or ``iou_threshold`` outside [0, 1] or NaN.
    """
    iou_threshold = check_fraction("iou_threshold", iou_threshold)
    boxes = _check_boxes(boxes)
    scores = _check_scores(scores, len(boxes))
    order = np.argsort(-scores, kind="stable")
    if len(order) == 0:
        return order.astype(np.int64)
    iou = box_iou(boxes, boxes)
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                iou_threshold: float = 0.5) -> np.ndarray:
    """Per-class :func:`nms` (boxes of different classes never suppress each other), as
    ``torchvision.ops.batched_nms``.

    Args:
        boxes: ``(N, 4)``; scores: ``(N,)``; classes: ``(N,)`` integer class ids.
        iou_threshold: in [0, 1].

    Returns:
        ``(M,)`` int64 indices of the kept boxes, by decreasing score.

    Raises:
        ValueError: as :func:`nms`, and for classes that are not integers or whose number
            differs from the number of scores.
    """
    iou_threshold = check_fraction("iou_threshold", iou_threshold)
    boxes = _check_boxes(boxes)
    scores = _check_scores(scores, len(boxes))
    classes = _check_classes(classes, len(scores))
    keep = [np.flatnonzero(classes == c)[nms(boxes[classes == c], scores[classes == c],
                                             iou_threshold)] for c in np.unique(classes)]
    kept = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    return kept[np.argsort(-scores[kept], kind="stable")].astype(np.int64)


def nms_across_classes(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                       iou_threshold: float = 0.5) -> np.ndarray:
    """Class-agnostic NMS: greedy :func:`nms` over all boxes, whatever their class.

    A box is dropped when a higher-scoring box of *any* class overlaps it with IoU greater than
    ``iou_threshold``; so one object found in two class channels (a digit scored as both 3 and 5)
    keeps only its most confident class. The price: two genuinely overlapping objects of different
    classes can suppress each other, so ``iou_threshold`` should exceed the overlap that true
    objects reach. (torchvision's ``batched_nms`` is the per-class variant; ``nms`` on all boxes
    is this one.)

    Args:
        boxes: ``(N, 4)`` boxes ``(x1, y1, x2, y2)``; scores, classes: ``(N,)`` (classes are
            only checked for their length, they do not influence the result).
        iou_threshold: in [0, 1].

    Returns:
        ``(M,)`` int64 indices of the kept boxes, by decreasing score.

    Raises:
        ValueError: as :func:`nms`, and if the lengths of ``boxes``, ``scores`` and ``classes``
            differ or the classes are not integers.
    """
    _check_classes(classes, len(np.asarray(scores).reshape(-1)))
    return nms(boxes, scores, iou_threshold)


def postprocess(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *,
                score_threshold: float = 0.05, iou_threshold: float = 0.5, image_size: int | None = None,
                class_agnostic: bool = False) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Score threshold, clipping to the image and NMS for a batch of decoded boxes.

    Args:
        boxes: ``(B, K, 4)``; scores, classes: ``(B, K)`` (the outputs of :func:`decode`).
        score_threshold: drop boxes scoring below it; in [0, 1] (scores are probabilities).
        iou_threshold: for the NMS, in [0, 1].
        image_size: clip boxes to ``[0, image_size]`` when given (≥ 1).
        class_agnostic: ``False`` (default): per-class NMS (:func:`batched_nms`); ``True``:
            :func:`nms_across_classes`, so that of overlapping boxes with *different* classes
            only the highest-scoring one survives.

    Returns:
        one ``(boxes (M, 4) float64, scores (M,), classes (M,) int32)`` tuple per image.

    Raises:
        ValueError: shapes that do not match; a NaN score anywhere (checked *before* the score
            threshold, which would otherwise drop it silently); boxes with NaN/inf coordinates
            or ``x2 < x1``; thresholds outside [0, 1] or NaN; ``image_size < 1``.
    """
    score_threshold = check_fraction("score_threshold", score_threshold)
    iou_threshold = check_fraction("iou_threshold", iou_threshold)
    if image_size is not None:
        image_size = check_positive_int("image_size", image_size)
    boxes, scores, classes = (np.asarray(boxes, np.float64), np.asarray(scores, np.float64),
                              np.asarray(classes))
    if scores.ndim != 2 or boxes.shape != (*scores.shape, 4) or classes.shape != scores.shape:
        raise ValueError(f"need boxes (B, K, 4), scores and classes (B, K); got {boxes.shape}, "
                         f"{scores.shape}, {classes.shape}")
    _check_scores(scores, scores.size)
    _check_boxes(boxes.reshape(-1, 4))
    out = []
    for bx, sc, cl in zip(boxes, scores, classes, strict=True):
        ok = sc >= score_threshold
        bx, sc, cl = bx[ok], sc[ok], cl[ok]
        if image_size is not None:
            bx = np.clip(bx, 0, image_size)
        keep = (nms_across_classes if class_agnostic else batched_nms)(bx, sc, cl, iou_threshold)
        out.append((bx[keep], sc[keep], cl[keep].astype(np.int32)))
    return out


# ----------------------------------------------------------------------------------------------
# augmentation that moves the boxes with the pixels
# ----------------------------------------------------------------------------------------------
def hflip(images: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror images left–right and their boxes with them: ``x1' = W − x2``, ``x2' = W − x1``.

    Args:
        images: ``(..., H, W)`` grey images (the last axis is the width); boxes: ``(..., 4)``
            pixels, e.g. ``(N, K, 4)`` for ``(N, H, W)`` images.

    Returns:
        ``(images, boxes)`` flipped (new arrays). Padding boxes of zeros become ``(W, 0, W, 0)``;
        use the scene's ``counts`` to ignore them.
    """
    width = images.shape[-1]
    b = np.asarray(boxes, np.float32).copy()
    b[..., 0], b[..., 2] = width - boxes[..., 2], width - boxes[..., 0]
    return np.ascontiguousarray(images[..., ::-1]), b


def translate(image: np.ndarray, boxes: np.ndarray, dx: int, dy: int) -> tuple[np.ndarray, np.ndarray]:
    """Shift a ``(H, W)`` image by ``(dx, dy)`` whole pixels (zeros enter at the border) and its
    ``(n, 4)`` boxes by the same amount.

    Raises:
        ValueError: if a box would leave the image (its pixels would be cut, so the box would no
            longer be tight; use :func:`random_translate` to draw an allowed shift), if the shift
            is not a whole number of pixels, or the image is not 2-D.
    """
    if np.ndim(image) != 2:
        raise ValueError(f"image must be (H, W), got shape {np.shape(image)}")
    for name, v in (("dx", dx), ("dy", dy)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{name} must be a whole number of pixels (int), got {v!r}")
    h, w = image.shape
    b = np.asarray(boxes, np.float32) + np.array([dx, dy, dx, dy], np.float32)
    if len(b) and (b[:, 0].min() < 0 or b[:, 1].min() < 0 or b[:, 2].max() > w or b[:, 3].max() > h):
        raise ValueError(f"shift ({dx}, {dy}) moves a box out of the {w}×{h} image")
    out = np.zeros_like(image)
    src = image[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    out[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    return out, b


def random_translate(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                     max_shift: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """:func:`translate` by a uniform random shift of at most ``max_shift`` pixels per axis,
    limited so that every box (and so every object pixel) stays inside the image.

    Raises:
        ValueError: ``max_shift`` not an integer ≥ 0, or a box already outside the image.
    """
    max_shift = check_int("max_shift", max_shift, 0)
    h, w = image.shape
    if len(boxes) == 0:
        return image.copy(), np.asarray(boxes, np.float32)
    boxes = _check_boxes(boxes)
    if boxes[:, :2].min() < 0 or boxes[:, 2].max() > w or boxes[:, 3].max() > h:
        raise ValueError(f"boxes must lie inside the {w}×{h} image before shifting")
    lo_x, hi_x = -int(boxes[:, 0].min()), int(w - np.ceil(boxes[:, 2].max()))
    lo_y, hi_y = -int(boxes[:, 1].min()), int(h - np.ceil(boxes[:, 3].max()))
    dx = int(rng.integers(max(lo_x, -max_shift), min(hi_x, max_shift) + 1))
    dy = int(rng.integers(max(lo_y, -max_shift), min(hi_y, max_shift) + 1))
    return translate(image, boxes, dx, dy)


# ----------------------------------------------------------------------------------------------
# interpretability
# ----------------------------------------------------------------------------------------------
def saliency_map(score_fn: Callable[[jax.Array], jax.Array], image: jax.Array) -> np.ndarray:
    r"""Gradient saliency map (Simonyan, Vedaldi & Zisserman 2014, *Deep Inside Convolutional
    Networks*): :math:`M_{ij} = \max_c |\partial S / \partial x_{ijc}|`.

    Args:
        score_fn: maps one ``(H, W, C)`` float32 image to a scalar score (e.g. one class logit,
            or the detector's heatmap logit at a detected centre).
        image: ``(H, W, C)`` float32.

    Returns:
        ``(H, W)`` float32 map ≥ 0: how strongly a small change of each pixel changes the score.
    """
    grad = jax.grad(lambda x: score_fn(x).astype(jnp.float32))(jnp.asarray(image, jnp.float32))
    return np.asarray(jnp.abs(grad).max(axis=-1))


def grad_cam(features_fn: Callable[[jax.Array], jax.Array], head_fn: Callable[[jax.Array], jax.Array],
             image: jax.Array) -> np.ndarray:
    r"""Grad-CAM (Selvaraju et al. 2017, *Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization*, eq. 1–2): weight each channel ``k`` of a convolutional layer's
    activations :math:`A^k` by the spatial mean of the score's gradient,
    :math:`\alpha_k = \frac{1}{hw}\sum_{ij}\partial S/\partial A^k_{ij}`, and keep the positive
    part of the weighted sum, :math:`L = \mathrm{ReLU}(\sum_k \alpha_k A^k)`, resized (bilinear)
    to the image.

    Args:
        features_fn: maps one ``(H, W, C)`` float32 image to the layer's activations
            ``(h, w, K)`` (the network up to that layer).
        head_fn: maps those activations to a scalar score (the rest of the network, e.g. one
            class logit).
        image: ``(H, W, C)`` float32.

    Returns:
        ``(H, W)`` float32 map ≥ 0 (not normalised): where the layer's evidence *for* the score is.
    """
    image = jnp.asarray(image, jnp.float32)
    acts = features_fn(image)
    grads = jax.grad(lambda a: head_fn(a).astype(jnp.float32))(acts)
    cam = jax.nn.relu(jnp.sum(acts * grads.mean(axis=(0, 1)), axis=-1))
    return np.asarray(jax.image.resize(cam, image.shape[:2], "bilinear"))
