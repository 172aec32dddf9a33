"""Object-detection scenes composed from real MNIST / Fashion-MNIST images (chapter 08).

Used in chapters: 08; imported by ``lmcourse.models.detector``.

A scene is a ``canvas_size × canvas_size`` grey image on which 1–5 real 28×28 images were pasted
at a random scale and position. Each pasted object has an *exact* box: the tight box around the
non-zero pixels of the rescaled image, in continuous pixel coordinates ``(x1, y1, x2, y2)``
(``x2`` is one past the last non-zero column, so a single pixel at column 3 spans ``[3, 4)``),
and its class is the source image's label. Overlap is controlled: a new object is only placed
where its box has IoU ≤ ``max_iou`` with every box already in the scene (the pixels of
overlapping objects are combined with a maximum, so a box always covers its whole object even
when part of it is hidden behind another one).

Splits come from disjoint source images (:func:`make_scene_splits`): training and validation
scenes from two disjoint parts of the official training set, test scenes from the official
10,000-image test set. This is the "multi-MNIST" construction used in e.g. Eslami et al. (2016),
*Attend, Infer, Repeat*, and Ba et al. (2015), with boxes added for detection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmcourse.data.images import ImageData, load_fashion_mnist, load_mnist
from lmcourse.metrics import box_iou
from lmcourse.validation import check_int


@dataclass(frozen=True)
class Scenes:
    """A set of detection scenes.

    Attributes:
        images: ``(N, S, S)`` ``uint8`` canvases, 0 = background.
        boxes: ``(N, K, 4)`` ``float32`` boxes ``(x1, y1, x2, y2)`` in pixels, padded with 0
            beyond ``counts[i]``.
        labels: ``(N, K)`` ``int32`` classes in ``[0, 10)``, padded with ``-1``.
        counts: ``(N,)`` ``int32`` number of objects per scene (1..K).
        source_index: ``(N, K)`` ``int64`` index of each object's source image in the split it
            was drawn from (``-1`` for padding), to check that splits are disjoint.
        source: ``"train"`` or ``"test"``: the official split the objects came from.
        class_names: the dataset's 10 class names.
    """

    images: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    counts: np.ndarray
    source_index: np.ndarray
    source: str
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    def objects(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``(n, 4)`` and labels ``(n,)`` of scene ``i`` without the padding.

        Raises:
            ValueError: ``i`` not an integer in ``[0, len(self))``.
        """
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < len(self):
            raise ValueError(f"scene index must be an integer in [0, {len(self)}), got {i!r}")
        n = int(self.counts[i])
        return self.boxes[i, :n], self.labels[i, :n]


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a 2-D image with half-pixel centres (as ``jax.image.resize``
    ``"linear"`` and OpenCV ``INTER_LINEAR`` for upsampling).

    Args:
        image: ``(H, W)`` array (any real dtype).
        height, width: output size in pixels, ≥ 1.

    Returns:
        ``(height, width)`` ``float32`` array.

    Raises:
        ValueError: an output size that is not an integer >= 1, or an image that is not 2-D.
    """
    height, width = check_int("output height", height, 1), check_int("output width", width, 1)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"image must be a non-empty (H, W) array, got shape {img.shape}")
    h, w = img.shape

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(height, h)
    x0, x1, fx = axis(width, w)
    rows = img[y0] * (1 - fy)[:, None] + img[y1] * fy[:, None]
    return rows[:, x0] * (1 - fx)[None, :] + rows[:, x1] * fx[None, :]


def tight_box(mask: np.ndarray) -> np.ndarray:
    """``(x1, y1, x2, y2)`` float32 box around the ``True`` pixels of a 2-D mask (continuous
    coordinates: ``x2 = last column + 1``).

    Raises:
        ValueError: if the mask has no ``True`` pixel.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("the mask is empty: an object must have at least one non-zero pixel")
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def make_scenes(images: np.ndarray, labels: np.ndarray, n_scenes: int, *, canvas_size: int = 64,
                min_objects: int = 1, max_objects: int = 5,
                scale_range: tuple[float, float] = (0.6, 1.2), max_iou: float = 0.2,
                max_tries: int = 50, seed: int = 0, source: str = "train",
                class_names: tuple[str, ...] = tuple(str(i) for i in range(10))) -> Scenes:
    """Compose ``n_scenes`` detection scenes from ``images`` (seeded, reproducible).

    For each scene the number of objects is uniform in ``[min_objects, max_objects]``. Each
    object is the next source image of a seeded permutation of ``images`` (no image is reused
    before all have been used once), resized by a factor uniform in ``scale_range`` (28 px →
    ``round(28·s)`` px, aspect kept), and pasted at a uniform random position where the whole
    resized image fits. A position is accepted when the object's tight box has IoU ≤ ``max_iou``
    with every earlier box of the scene; after ``max_tries`` rejected positions the scene keeps
    the objects it has (so crowded scenes may hold fewer than drawn; at least one always fits).

    Args:
        images: ``(M, 28, 28)`` ``uint8`` source images (0 = background).
        labels: ``(M,)`` integer classes in ``[0, len(class_names))``.
        n_scenes: number of scenes ≥ 1.
        canvas_size: side of the square canvas in pixels (≥ the largest resized object).
        min_objects, max_objects: 1 ≤ min ≤ max.
        scale_range: ``(low, high)`` resize factors.
        max_iou: largest allowed IoU between two boxes of a scene, in [0, 1].
        max_tries: placement attempts per object.
        seed: seed of the ``numpy.random.Generator`` (same seed → same scenes).
        source: name of the official split the images come from (stored in the result).
        class_names: class names stored in the result.

    Returns:
        :class:`Scenes` with ``K = max_objects``.

    Raises:
        ValueError: inconsistent arguments (empty sources, objects larger than the canvas, a
            class id outside ``[0, len(class_names))``, a count or size that is not an integer
            ≥ 1, a NaN or infinite scale, ``max_iou`` outside [0, 1], ...).
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"images must be (M, H, W) with M = len(labels) > 0, got {images.shape}, "
                         f"{labels.shape}")
    for name, v in (("n_scenes", n_scenes), ("canvas_size", canvas_size),
                    ("min_objects", min_objects), ("max_objects", max_objects),
                    ("max_tries", max_tries)):
        check_int(name, v, 1)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise ValueError(f"labels must be class ids in [0, len(class_names)) = "
                         f"[0, {len(class_names)}), got {labels.min()}..{labels.max()}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"need 1 ≤ min_objects ≤ max_objects, got {min_objects}, {max_objects}")
    if len(scale_range) != 2 or not np.isfinite(scale_range).all() \
            or not 0 < scale_range[0] <= scale_range[1]:
        raise ValueError(f"scale_range must be (low, high) with 0 < low ≤ high, both finite, "
                         f"got {scale_range}")
    largest = round(images.shape[1] * scale_range[1])
    if largest > canvas_size:
        raise ValueError(f"objects up to {largest} px do not fit a {canvas_size} px canvas")
    if not 0.0 <= max_iou <= 1.0:
        raise ValueError(f"max_iou must be in [0, 1], got {max_iou}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    cursor = 0
    canvases = np.zeros((n_scenes, canvas_size, canvas_size), np.uint8)
    boxes = np.zeros((n_scenes, max_objects, 4), np.float32)
    classes = np.full((n_scenes, max_objects), -1, np.int32)
    src = np.full((n_scenes, max_objects), -1, np.int64)
    counts = np.zeros(n_scenes, np.int32)
    h0, w0 = images.shape[1:]
    for i in range(n_scenes):
        n_wanted = int(rng.integers(min_objects, max_objects + 1))
        placed: list[np.ndarray] = []
        for _ in range(n_wanted):
            if cursor == len(order):
                order, cursor = rng.permutation(len(images)), 0
            j = int(order[cursor])
            cursor += 1
            s = rng.uniform(*scale_range)
            h, w = max(1, round(h0 * s)), max(1, round(w0 * s))
            obj = np.clip(np.rint(resize_bilinear(images[j], h, w)), 0, 255).astype(np.uint8)
            if not obj.any():
                continue
            local = tight_box(obj > 0)
            for _try in range(max_tries):
                y, x = int(rng.integers(0, canvas_size - h + 1)), int(rng.integers(0, canvas_size - w + 1))
                box = local + np.array([x, y, x, y], np.float32)
                if not placed or box_iou(box, np.stack(placed)).max() <= max_iou:
                    break
            else:
                continue
            k = len(placed)
            placed.append(box)
            region = canvases[i, y:y + h, x:x + w]
            np.maximum(region, obj, out=region)
            boxes[i, k], classes[i, k], src[i, k] = box, labels[j], j
        counts[i] = len(placed)
    if (counts == 0).any():  # only possible if every drawn source image was blank
        raise ValueError("a scene ended up empty; the source images must not be blank")
    return Scenes(canvases, boxes, classes, counts, src, source, tuple(class_names))


def make_scene_splits(dataset: str = "mnist", n_train: int = 2000, n_val: int = 200,
                      n_test: int = 500, n_val_sources: int | None = None, seed: int = 0,
                      data: ImageData | None = None, **scene_kwargs
                      ) -> tuple[Scenes, Scenes, Scenes]:
    """Train, validation and test scenes built from disjoint real images.

    The official training set is split by a seeded permutation into ``60,000 − n_val_sources``
    images for training scenes and ``n_val_sources`` for validation scenes; test scenes use the
    official 10,000-image test set. ``source_index`` of each split indexes the *official* split
    (train or test), so disjointness can be checked directly.

    On the 5,000-digit MNIST subset (``data.is_subset``: 4,000 training and 1,000 test digits)
    the same construction applies to those digits; the default ``n_val_sources`` is a sixth of
    the training digits (10,000 of 60,000; 666 of the subset's 4,000), and source digits are
    reused more often across scenes (:func:`make_scenes` cycles through them).

    Args:
        dataset: ``"mnist"`` or ``"fashion_mnist"`` (loaded with :mod:`lmcourse.data.images`).
        n_train, n_val, n_test: number of scenes per split.
        n_val_sources: official training images reserved for validation scenes (default
            ``len(data.x_train) // 6``: 10,000 on full MNIST).
        seed: seeds the source split and the three scene generators (seed, seed+1, seed+2).
        data: an already loaded :class:`ImageData` (skips loading).
        **scene_kwargs: passed to :func:`make_scenes` (canvas_size, max_iou, ...).

    Returns:
        ``(train, val, test)`` :class:`Scenes`.

    Raises:
        ValueError: unknown dataset; ``n_val_sources`` not in ``(0, len(data.x_train))`` (the
            message says when the data is the MNIST subset and what to do); a number of scenes
            that is not an integer ≥ 1.
    """
    for name, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        check_int(name, v, 1)
    if data is None:
        loaders = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist}
        if dataset not in loaders:
            raise ValueError(f"dataset must be 'mnist' or 'fashion_mnist', got {dataset!r}")
        data = loaders[dataset]()
    n_official = len(data.x_train)
    if n_val_sources is None:
        n_val_sources = n_official // 6
    if isinstance(n_val_sources, bool) or not isinstance(n_val_sources, int | np.integer) \
            or not 0 < n_val_sources < n_official:
        hint = ""
        if getattr(data, "is_subset", False):
            hint = (f"; the data is the 5,000-digit MNIST SUBSET ({n_official:,} training digits, "
                    f"not 60,000): pass a smaller n_val_sources (or None for a sixth, "
                    f"{n_official // 6:,}), or get full MNIST (unset LMCOURSE_MNIST_SUBSET, or "
                    "let load_mnist download it)")
        raise ValueError(f"n_val_sources must be an integer in (0, {n_official}), "
                         f"got {n_val_sources!r}{hint}")
    perm = np.random.default_rng(seed).permutation(n_official)
    train_idx, val_idx = perm[n_val_sources:], perm[:n_val_sources]
    names = data.class_names

    def build(idx: np.ndarray | None, n: int, s: int, source: str) -> Scenes:
        x, y = (data.x_test, data.y_test) if idx is None else (data.x_train[idx], data.y_train[idx])
        sc = make_scenes(x, y, n, seed=s, source=source, class_names=names, **scene_kwargs)
        if idx is None:
            return sc
        mapped = np.where(sc.source_index >= 0, idx[np.maximum(sc.source_index, 0)], -1)
        return Scenes(sc.images, sc.boxes, sc.labels, sc.counts, mapped, source, names)

    return (build(train_idx, n_train, seed, "train"), build(val_idx, n_val, seed + 1, "train"),
            build(None, n_test, seed + 2, "test"))
