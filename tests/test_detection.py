"""CenterNet targets, decoding, NMS, box-aware augmentation, saliency and the detector's training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lmcourse.data.images import load_mnist
from lmcourse.data.scenes import make_scene_splits, tight_box
from lmcourse.detection import (
    batched_nms,
    centernet_targets,
    decode,
    gaussian_radius,
    grad_cam,
    hflip,
    nms,
    nms_across_classes,
    postprocess,
    random_translate,
    saliency_map,
    translate,
)
from lmcourse.metrics import box_iou, mean_average_precision
from lmcourse.models.detector import CenterNet, detect, focal_loss, train_detector


@pytest.fixture(scope="module")
def scenes():
    return make_scene_splits(n_train=400, n_val=50, n_test=60, seed=0, data=load_mnist())


def _logit(p):
    return np.log(p / (1 - p))


def test_gaussian_radius_is_centernets_rule():
    """Value worked out by hand from the three quadratics of the official code, for a 4×4 box:
    the third case gives (−11.2 + √(11.2² + 4·2.8·4.8)) / 2 = 1.0933."""
    assert gaussian_radius(4.0, 4.0) == pytest.approx((-11.2 + np.sqrt(11.2**2 + 4 * 2.8 * 4.8)) / 2)
    radii = [gaussian_radius(s, s) for s in (2.0, 4.0, 8.0)]
    assert radii == sorted(radii) and radii[2] == pytest.approx(2 * radii[1])   # linear in size


def test_targets_then_decode_recover_the_boxes(scenes):
    """Perfect output maps (built from the targets) decode to exactly the ground-truth boxes."""
    train = scenes[0]
    idx = np.arange(16)
    t = centernet_targets(train.boxes[idx], train.labels[idx], train.counts[idx], image_size=64)
    g = 16
    assert t["heatmap"].shape == (16, g, g, 10) and t["heatmap"].max() == 1.0
    assert ((t["heatmap"] == 1.0).sum(axis=(1, 2, 3)) <= train.counts[idx]).all()
    size = np.zeros((16, g * g, 2), np.float32)
    offset = np.zeros((16, g * g, 2), np.float32)
    for i in range(16):
        for j in range(int(train.counts[i])):
            size[i, t["index"][i, j]] = t["size"][i, j]
            offset[i, t["index"][i, j]] = t["offset"][i, j]
    logits = _logit(np.clip(t["heatmap"], 1e-4, 1 - 1e-4))
    boxes, scores, classes = decode(jnp.asarray(logits), jnp.asarray(size.reshape(16, g, g, 2)),
                                    jnp.asarray(offset.reshape(16, g, g, 2)), top_k=20)
    for i in range(16):
        gb, gl = train.objects(i)
        found = np.asarray(scores[i]) > 0.999
        if len(np.unique(t["index"][i, :len(gb)])) < len(gb):
            continue                       # two centres in one cell: CenterNet's known limit
        assert found.sum() == len(gb)
        pb, pc = np.asarray(boxes[i])[found], np.asarray(classes[i])[found]
        iou = box_iou(gb, pb)
        best = iou.argmax(axis=1)
        np.testing.assert_allclose(iou.max(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(pc[best], gl)


def test_focal_loss_rewards_the_right_heatmap():
    target = np.zeros((1, 4, 4, 2), np.float32)
    target[0, 1, 2, 1] = 1.0
    good = np.full(target.shape, -6.0, np.float32)
    good[0, 1, 2, 1] = 6.0
    bad = -good
    assert float(focal_loss(good, target, 1.0)) < 0.01 < float(focal_loss(bad, target, 1.0))


def test_nms_suppresses_overlaps_and_keeps_classes_apart():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.5]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [3, 2])
    np.testing.assert_array_equal(nms(boxes, scores, 0.99), [3, 0, 1, 2])
    classes = np.array([0, 1, 0, 0])
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.5), [3, 1, 2])
    assert len(nms(np.zeros((0, 4)), np.zeros(0))) == 0


def test_class_agnostic_nms_keeps_one_class_per_object():
    """One digit boxed as both a 3 (0.8) and a 5 (0.6): per-class NMS keeps both boxes,
    class-agnostic NMS only the 3; a distant box of another class survives either way, and
    boxes overlapping with IoU at or below the threshold are never suppressed."""
    boxes = np.array([[10, 10, 30, 40], [11, 10, 31, 40], [40, 40, 60, 60], [10, 10, 30, 40]], float)
    scores = np.array([0.8, 0.6, 0.7, 0.5])
    classes = np.array([3, 5, 5, 3])
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.5), [0, 2, 1])
    np.testing.assert_array_equal(nms_across_classes(boxes, scores, classes, 0.5), [0, 2])
    # IoU of boxes 0 and 1 is 19·30 / (2·600 − 570) = 0.905: kept apart only above it
    np.testing.assert_array_equal(nms_across_classes(boxes, scores, classes, 0.95), [0, 2, 1])
    with pytest.raises(ValueError, match="classes"):
        nms_across_classes(boxes, scores, classes[:3])
    # through postprocess: batches, score threshold and clipping as before
    out_pc, out_ag = (postprocess(boxes[None], scores[None], classes[None], score_threshold=0.55,
                                  image_size=50, class_agnostic=ag) for ag in (False, True))
    np.testing.assert_array_equal(out_pc[0][2], [3, 5, 5])
    np.testing.assert_array_equal(out_ag[0][2], [3, 5])
    np.testing.assert_array_equal(out_ag[0][0][1], [40, 40, 50, 50])


def test_class_agnostic_nms_on_random_boxes_is_nms_ignoring_classes():
    """Kept boxes of any classes never overlap above the threshold; every dropped box overlaps
    a kept box of higher (or equal, earlier) score, of any class; fewer boxes than per class."""
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, (150, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (150, 2))], axis=1)
    scores, classes = rng.uniform(0, 1, 150), rng.integers(0, 4, 150)
    iou = box_iou(boxes, boxes)
    for thr in (0.3, 0.5, 0.7):
        keep = nms_across_classes(boxes, scores, classes, thr)
        sub = iou[np.ix_(keep, keep)]
        np.fill_diagonal(sub, 0)
        assert sub.max() <= thr and (np.diff(scores[keep]) <= 0).all()
        for d in np.setdiff1d(np.arange(150), keep):
            assert ((iou[d, keep] > thr) & (scores[keep] >= scores[d])).any()
        assert len(keep) < len(batched_nms(boxes, scores, classes, thr))


def test_nms_definition_on_random_boxes():
    """Kept boxes never overlap above the threshold; every dropped box overlaps a kept box of
    higher (or equal, earlier) score above it; the kept list is sorted by score."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (200, 2))], axis=1)
    scores = rng.uniform(0, 1, 200)
    iou = box_iou(boxes, boxes)
    for thr in (0.3, 0.5, 0.7):
        keep = nms(boxes, scores, thr)
        assert 0 < len(keep) < 200
        assert (np.diff(scores[keep]) <= 0).all()
        sub = iou[np.ix_(keep, keep)]
        np.fill_diagonal(sub, 0)
        assert sub.max() <= thr
        for d in np.setdiff1d(np.arange(200), keep):
            assert ((iou[d, keep] > thr) & (scores[keep] >= scores[d])).any()


def _pixel_boxes(image, boxes):
    """Tight box of the ink inside each (slightly enlarged) box: must equal the box itself."""
    out = []
    for b in boxes:
        x1, y1, x2, y2 = b.astype(int)
        mask = np.zeros(image.shape, bool)
        mask[y1:y2, x1:x2] = image[y1:y2, x1:x2] > 0
        out.append(tight_box(mask))
    return np.array(out)


def test_hflip_and_translate_keep_boxes_on_their_pixels(scenes):
    train = scenes[0]
    rng = np.random.default_rng(0)
    for i in range(40):
        img = train.images[i]
        b, _ = train.objects(i)
        np.testing.assert_array_equal(_pixel_boxes(img, b), b)           # holds before...
        fimg, fb = hflip(img, b)
        np.testing.assert_array_equal(_pixel_boxes(fimg, fb), fb)        # ...after a flip
        np.testing.assert_array_equal(fimg[:, ::-1], img)
        timg, tb = random_translate(img, b, rng, max_shift=10)
        np.testing.assert_array_equal(_pixel_boxes(timg, tb), tb)        # ...after a shift
        assert timg.sum() == img.sum()                                   # no ink was cut off
    # double flip is the identity
    img, b = train.images[0], train.objects(0)[0]
    ii, bb = hflip(*hflip(img, b))
    np.testing.assert_array_equal(ii, img)
    np.testing.assert_array_equal(bb, b)


def test_translate_refuses_to_cut_objects():
    img = np.zeros((10, 10), np.uint8)
    img[2:5, 2:5] = 9
    box = np.array([[2, 2, 5, 5]], np.float32)
    out, b = translate(img, box, 3, -2)
    assert out[0:3, 5:8].all() and out.sum() == img.sum()
    np.testing.assert_array_equal(b, [[5, 0, 8, 3]])
    with pytest.raises(ValueError, match="out of"):
        translate(img, box, 6, 0)


def test_saliency_map_is_the_input_gradient():
    w = jnp.arange(12.0).reshape(2, 3, 2) - 6.0
    sal = saliency_map(lambda x: jnp.sum(w * x), jnp.ones((2, 3, 2)))
    np.testing.assert_allclose(sal, np.abs(np.asarray(w)).max(axis=-1))
    assert sal.shape == (2, 3)


def test_grad_cam_weights_channels_by_their_mean_gradient():
    """Two channels, a linear head S = Σ w·A: α_k is the spatial mean of w_k, and the map is
    ReLU(Σ_k α_k A_k), resized from the 2×2 activation grid to the 4×4 image."""
    acts = jnp.array([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 1.0], [0.0, 0.0]]])       # (2, 2, 2)
    w = jnp.array([[[1.0, -1.0], [3.0, -1.0]], [[0.0, -1.0], [0.0, -1.0]]])     # α = (1, −1)
    cam = grad_cam(lambda im: acts + 0.0 * im[:2, :2, :1], lambda a: jnp.sum(w * a), jnp.ones((4, 4, 1)))
    expected = np.maximum(np.array([[1.0, -2.0], [2.0, 0.0]]), 0)
    assert cam.shape == (4, 4) and (cam >= 0).all()
    np.testing.assert_allclose(np.asarray(jax.image.resize(jnp.asarray(expected), (4, 4), "bilinear")), cam)
    assert cam[0, 0] == pytest.approx(1.0) and cam[0, 3] == pytest.approx(0.0, abs=1e-6)


def _map50(model, sc):
    dets = detect(model, sc.images)
    g = [sc.objects(i) for i in range(len(sc))]
    return mean_average_precision([x[0] for x in g], [x[1] for x in g], [d[0] for d in dets],
                                  [d[1] for d in dets], [d[2] for d in dets])


def test_detector_shapes_and_it_learns(scenes):
    """A short training run beats the untrained network on held-out test scenes."""
    train, _, test = scenes
    model = CenterNet(nnx.Rngs(0), width=16, depth=2)
    heat, size, offset = model(jnp.zeros((2, 64, 64, 1)))
    assert heat.shape == (2, 16, 16, 10) and size.shape == offset.shape == (2, 16, 16, 2)
    np.testing.assert_allclose(jax.nn.sigmoid(heat).mean(), 0.1, atol=0.05)
    before = _map50(model, test)
    hist = train_detector(model, train, steps=150, batch_size=16, learning_rate=3e-3, max_shift=4)
    assert np.mean(hist.loss[-20:]) < 0.5 * np.mean(hist.loss[:20])
    after = _map50(model, test)
    assert after > before + 0.05, (before, after)
