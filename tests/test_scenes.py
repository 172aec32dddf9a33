"""Detection scenes from real images: exact boxes, controlled overlap, disjoint splits, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from lmcourse.data.images import load_mnist
from lmcourse.data.scenes import make_scene_splits, make_scenes, resize_bilinear, tight_box
from lmcourse.metrics import box_iou


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


@pytest.fixture(scope="module")
def splits(mnist):
    return make_scene_splits(n_train=300, n_val=100, n_test=100, seed=0, data=mnist)


def test_resize_bilinear_matches_jax_image_resize():
    jax_image = pytest.importorskip("jax.image")
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (28, 28)).astype(np.float32)
    for h, w in [(34, 34), (17, 17), (28, 40)]:
        ref = np.asarray(jax_image.resize(img, (h, w), "linear", antialias=False))
        np.testing.assert_allclose(resize_bilinear(img, h, w), ref, atol=1e-3)


def test_tight_box_continuous_coordinates():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    np.testing.assert_array_equal(tight_box(mask), [3, 2, 9, 5])
    with pytest.raises(ValueError, match="empty"):
        tight_box(np.zeros((4, 4), bool))


def test_boxes_are_tight_around_the_object_pixels(mnist):
    """Rebuild every object alone: its non-zero pixels have exactly the stored box."""
    sc = make_scenes(mnist.x_train[:500], mnist.y_train[:500], 60, max_iou=0.0, seed=3)
    for i in range(len(sc)):
        boxes, labels = sc.objects(i)
        assert 1 <= len(boxes) <= 5
        canvas = sc.images[i] > 0
        covered = np.zeros_like(canvas)
        for b, lab, j in zip(boxes, labels, sc.source_index[i, :len(boxes)], strict=True):
            assert lab == mnist.y_train[j]
            x1, y1, x2, y2 = b.astype(int)
            assert np.array_equal(b, [x1, y1, x2, y2])            # integer pixel edges
            region = canvas[y1:y2, x1:x2]
            # tight: each edge row/column of the box holds a pixel of the object
            assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()
            covered[y1:y2, x1:x2] = True
        assert not (canvas & ~covered).any()                       # no ink outside the boxes


def test_overlap_is_controlled(mnist):
    for max_iou in (0.0, 0.3):
        sc = make_scenes(mnist.x_train[:2000], mnist.y_train[:2000], 200, max_iou=max_iou, seed=1)
        worst = 0.0
        for i in range(len(sc)):
            b, _ = sc.objects(i)
            if len(b) > 1:
                iou = box_iou(b, b)
                np.fill_diagonal(iou, 0)
                worst = max(worst, iou.max())
        assert worst <= max_iou + 1e-9
        if max_iou > 0:
            assert worst > 0.1            # the generator does produce overlapping objects


def test_splits_are_disjoint_and_from_the_right_official_split(splits, mnist):
    train, val, test = splits
    assert (train.source, val.source, test.source) == ("train", "train", "test")
    src_train = set(train.source_index[train.source_index >= 0].tolist())
    src_val = set(val.source_index[val.source_index >= 0].tolist())
    assert src_train and src_val and not (src_train & src_val)
    for sc, x in ((train, mnist.x_train), (test, mnist.x_test)):
        i = 0
        b, lab = sc.objects(i)
        j = sc.source_index[i, 0]
        assert lab[0] == (mnist.y_train if x is mnist.x_train else mnist.y_test)[j]


def test_counts_scales_and_padding(splits):
    train = splits[0]
    assert set(np.unique(train.counts)) <= {1, 2, 3, 4, 5} and len(np.unique(train.counts)) >= 4
    n = train.counts
    k = np.arange(train.labels.shape[1])[None, :]
    assert ((train.labels >= 0) == (k < n[:, None])).all()
    sizes = train.boxes[..., 2:] - train.boxes[..., :2]
    real = sizes[train.labels >= 0]
    assert real.max() <= 64 and real.min() >= 1
    assert np.ptp(real[:, 1]) > 8                         # objects of clearly different sizes
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (64, 64)


def test_seeded(mnist):
    a = make_scenes(mnist.x_train[:300], mnist.y_train[:300], 20, seed=7)
    b = make_scenes(mnist.x_train[:300], mnist.y_train[:300], 20, seed=7)
    c = make_scenes(mnist.x_train[:300], mnist.y_train[:300], 20, seed=8)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.images, c.images)


def test_bad_arguments(mnist):
    x, y = mnist.x_train[:10], mnist.y_train[:10]
    with pytest.raises(ValueError, match="fit"):
        make_scenes(x, y, 1, canvas_size=20)
    with pytest.raises(ValueError, match="min_objects"):
        make_scenes(x, y, 1, min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="dataset"):
        make_scene_splits(dataset="cifar")
