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
from lmcourse.models.detector import (
    CenterNet,
    detect,
    focal_loss,
    raw_detections,
    scene_batch,
    train_detector,
)


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


# ----------------------------------------------------------------------------------------------
# bad input: a clear ValueError instead of a silent wrong answer
# ----------------------------------------------------------------------------------------------
_BOXES = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
_SCORES = np.array([0.9, 0.8, 0.7])
_CLASSES = np.array([0, 1, 0])
_ALL_NMS = [lambda b, s, t=0.5: nms(b, s, t),
            lambda b, s, t=0.5: batched_nms(b, s, _CLASSES[:len(s)], t),
            lambda b, s, t=0.5: nms_across_classes(b, s, _CLASSES[:len(s)], t)]


@pytest.mark.parametrize("run", _ALL_NMS, ids=["nms", "batched_nms", "nms_across_classes"])
def test_nms_rejects_nan_scores_bad_boxes_and_thresholds(run):
    """A NaN score used to be ranked silently (argsort puts it first); now it is an error."""
    with pytest.raises(ValueError, match="NaN"):
        run(_BOXES, np.array([0.9, np.nan, 0.7]))
    for bad in (np.nan, np.inf, -np.inf):
        boxes = _BOXES.copy()
        boxes[1, 2] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            run(boxes, _SCORES)
    for col in (0, 1):                       # x2 < x1, then y2 < y1
        boxes = _BOXES.copy()
        boxes[2, col] = 35
        with pytest.raises(ValueError, match="x2 ≥ x1 and y2 ≥ y1"):
            run(boxes, _SCORES)
    for t in (-0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match=r"iou_threshold must be in \[0, 1\]"):
            run(_BOXES, _SCORES, t)
    with pytest.raises(ValueError, match="scores"):
        run(_BOXES, _SCORES[:2])


def test_nms_threshold_edges_0_and_1_are_valid():
    """τ = 0 keeps only boxes that do not overlap a better one at all; τ = 1 keeps every box
    (an IoU is never greater than 1), even an exact duplicate; ±inf scores rank normally."""
    boxes = np.concatenate([_BOXES, _BOXES[:1]])            # box 3 duplicates box 0
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    np.testing.assert_array_equal(nms(boxes, scores, 0.0), [0, 2])
    np.testing.assert_array_equal(nms(boxes, scores, 1.0), [0, 1, 2, 3])
    np.testing.assert_array_equal(nms(_BOXES, np.array([-np.inf, np.inf, 0.0]), 0.5), [1, 2])
    for t in (0.0, 1.0):
        out = postprocess(boxes[None], scores[None], np.zeros((1, 4), int), iou_threshold=t,
                          score_threshold=t)
        assert all(np.isfinite(part).all() for part in out[0])


def test_batched_nms_rejects_non_integer_classes():
    for classes in (np.array([0.0, 0.5, 1.0]), np.array([0.0, np.nan, 1.0]), np.array(["a", "b", "c"])):
        with pytest.raises(ValueError, match="integer class ids"):
            batched_nms(_BOXES, _SCORES, classes)
    np.testing.assert_array_equal(batched_nms(_BOXES, _SCORES, np.array([0.0, 1.0, 0.0])), [0, 1, 2])


def test_postprocess_rejects_nan_scores_even_below_the_threshold():
    """Without the check, `score >= threshold` is False for NaN and the box vanished silently."""
    scores = np.array([[0.9, np.nan, 0.01]])
    with pytest.raises(ValueError, match="NaN"):
        postprocess(_BOXES[None], scores, _CLASSES[None])
    for name, value in (("score_threshold", np.nan), ("score_threshold", 1.2),
                        ("iou_threshold", -0.5), ("iou_threshold", np.nan)):
        with pytest.raises(ValueError, match=name):
            postprocess(_BOXES[None], _SCORES[None], _CLASSES[None], **{name: value})
    with pytest.raises(ValueError, match="image_size"):
        postprocess(_BOXES[None], _SCORES[None], _CLASSES[None], image_size=0)
    with pytest.raises(ValueError, match=r"\(B, K, 4\)"):
        postprocess(_BOXES, _SCORES, _CLASSES)                 # forgot the batch axis


def _one_scene(label, box=(8, 8, 24, 24)):
    return (np.array([[box, (0, 0, 0, 0)]], np.float32), np.array([[label, -1]]), np.array([1]))


def test_centernet_targets_reject_out_of_range_classes_and_bad_boxes():
    t = centernet_targets(*_one_scene(9), image_size=64)        # edges of [0, 10) are fine...
    assert t["heatmap"][..., 9].max() == 1.0
    t = centernet_targets(*_one_scene(0), image_size=64)
    assert t["heatmap"][..., 0].max() == 1.0
    for label in (10, -1):                                     # ...outside it is an error
        with pytest.raises(ValueError, match=r"\[0, 10\)"):
            centernet_targets(*_one_scene(label), image_size=64)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        centernet_targets(*_one_scene(5), image_size=64, num_classes=3)
    boxes, labels, _ = _one_scene(1)
    with pytest.raises(ValueError, match=r"counts must be in \[0, K\]"):
        centernet_targets(boxes, labels, np.array([3]), image_size=64)
    for box in ((np.nan, 8, 24, 24), (24, 8, 8, 24), (-40, 8, -30, 24)):
        with pytest.raises(ValueError, match="NaN|x2 ≥ x1|centres"):
            centernet_targets(*_one_scene(1, box), image_size=64)
    for kwargs in ({"stride": 0}, {"image_size": 62}, {"num_classes": 0}):
        with pytest.raises(ValueError):
            centernet_targets(*_one_scene(1), **{"image_size": 64, **kwargs})


def test_gaussian_radius_edges():
    for overlap in (0.0, 1.0):
        r = gaussian_radius(5.0, 3.0, overlap)
        assert np.isfinite(r) and r >= 0
    assert gaussian_radius(5.0, 3.0, 1.0) == 0.0             # IoU 1 allows no shift at all
    assert gaussian_radius(0.0, 0.0) == 0.0
    for overlap in (-0.1, 1.1, np.nan):
        with pytest.raises(ValueError, match="min_overlap"):
            gaussian_radius(5.0, 3.0, overlap)
    with pytest.raises(ValueError, match="height and width"):
        gaussian_radius(-1.0, 3.0)


def test_decode_checks_top_k_and_shapes():
    heat, size = jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 4, 4, 2))
    assert decode(heat, size, size, top_k=32)[0].shape == (1, 32, 4)     # G·G·C = 32 is the edge
    for k in (0, 33):
        with pytest.raises(ValueError, match=r"top_k must be in \[1, G·G·C\] = \[1, 32\]"):
            decode(heat, size, size, top_k=k)
    with pytest.raises(ValueError, match="size and offset"):
        decode(heat, size[..., :1], size, top_k=4)


def test_focal_loss_exponent_edges_are_finite_with_finite_gradients():
    target = np.zeros((1, 4, 4, 2), np.float32)
    target[0, 1, 2, 1] = 1.0
    target[0, 1, 1, 1] = 0.5
    logits = jnp.linspace(-8.0, 8.0, 32).reshape(1, 4, 4, 2)
    for alpha, beta in ((0.0, 0.0), (0.0, 4.0), (2.0, 0.0), (2.0, 4.0)):
        value, grad = jax.value_and_grad(lambda x, a=alpha, b=beta: focal_loss(x, target, 1.0, a, b))(logits)
        assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="alpha"):
            focal_loss(logits, target, 1.0, alpha=bad)
        with pytest.raises(ValueError, match="beta"):
            focal_loss(logits, target, 1.0, beta=bad)


def test_detector_sizes_and_input_shape_are_validated():
    for kwargs in ({"width": 0}, {"width": 2.5}, {"depth": -1}, {"num_classes": 0},
                   {"num_classes": True}):
        with pytest.raises(ValueError, match="must be an integer"):
            CenterNet(nnx.Rngs(0), **kwargs)
    model = CenterNet(nnx.Rngs(0), width=4, depth=0)          # depth 0: no residual block, valid
    assert model(jnp.zeros((1, 8, 8, 1)))[0].shape == (1, 2, 2, 10)
    for shape in ((1, 62, 62, 1), (1, 64, 64, 3), (64, 64, 1)):
        with pytest.raises(ValueError, match="multiple of 4"):
            model(jnp.zeros(shape))


def test_scene_batch_and_training_reject_bad_input(scenes):
    train = scenes[0]
    model = CenterNet(nnx.Rngs(0), num_classes=5, width=4, depth=1)
    with pytest.raises(ValueError, match=r"\[0, 5\).*num_classes=10"):
        scene_batch(train, np.arange(len(train)), num_classes=5)   # MNIST has 10 classes
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        train_detector(model, train, steps=1, batch_size=4)
    for idx in (np.array([0, -1]), np.array([0, len(train)])):
        with pytest.raises(ValueError, match=rf"\[0, {len(train)}\)"):
            scene_batch(train, idx)
    with pytest.raises(ValueError, match="max_shift"):
        scene_batch(train, np.arange(2), max_shift=-1)
    model = CenterNet(nnx.Rngs(0), width=4, depth=1)
    for kwargs in ({"steps": 0}, {"batch_size": 0}, {"batch_size": len(train) + 1},
                   {"learning_rate": np.nan}, {"learning_rate": 0.0}, {"learning_rate": -1e-3},
                   {"weight_decay": np.nan}, {"weight_decay": -1.0}, {"warmup_steps": -1},
                   {"max_shift": -2}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            train_detector(model, train, **{"steps": 2, "batch_size": 4, **kwargs})
    # edges of the valid ranges run: weight decay 0, no warm-up, no shifts, batch = all scenes
    hist = train_detector(model, train, steps=1, batch_size=len(train), weight_decay=0.0,
                          warmup_steps=0, max_shift=0)
    assert np.isfinite(hist.loss).all()


def test_detect_validates_images_and_thresholds(scenes):
    test = scenes[2]
    model = CenterNet(nnx.Rngs(0), width=4, depth=1)
    with pytest.raises(ValueError, match="uint8"):
        detect(model, test.images[:2].astype(np.float32) / 255)
    with pytest.raises(ValueError, match="iou_threshold"):
        detect(model, test.images[:2], iou_threshold=1.5)
    with pytest.raises(ValueError, match="score_threshold"):
        detect(model, test.images[:2], score_threshold=np.nan)
    with pytest.raises(ValueError, match=r"top_k must be in \[1, G·G·C\] = \[1, 2560\]"):
        raw_detections(model, test.images[:2], top_k=2561)
    boxes, scores, classes = raw_detections(model, test.images[:3], top_k=7, batch_size=2)
    assert boxes.shape == (3, 7, 4) and scores.shape == classes.shape == (3, 7)
    agnostic = detect(model, test.images[:3], class_agnostic=True, score_threshold=0.0)
    per_class = detect(model, test.images[:3], score_threshold=0.0)
    assert all(len(a[0]) <= len(p[0]) for a, p in zip(agnostic, per_class, strict=True))


def test_iou_is_scale_invariant_so_a_fixed_pixel_error_costs_small_boxes_more():
    """Chapter 08 §2: IoU(sA, sB) = IoU(A, B) for any s > 0, so the same 2-px shift leaves a
    4-px box with IoU 1/3 and a 32-px box with IoU 15/17."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = np.sort(rng.uniform(0, 50, (2, 2)), axis=0).T.reshape(-1)[[0, 2, 1, 3]]
        b = np.sort(rng.uniform(0, 50, (2, 2)), axis=0).T.reshape(-1)[[0, 2, 1, 3]]
        s = rng.uniform(0.1, 10)
        assert box_iou(a * s, b * s) == pytest.approx(box_iou(a, b), abs=1e-12)
    small, large = np.array([0, 0, 4, 4.0]), np.array([0, 0, 32, 32.0])
    shift = np.array([2, 0, 2, 0])
    assert box_iou(small, small + shift) == pytest.approx(1 / 3)
    assert box_iou(large, large + shift) == pytest.approx(15 / 17)


def test_translate_and_random_translate_reject_bad_shifts():
    img = np.zeros((10, 10), np.uint8)
    img[2:5, 2:5] = 9
    box = np.array([[2, 2, 5, 5]], np.float32)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="max_shift"):
        random_translate(img, box, rng, max_shift=-1)
    out, b = random_translate(img, box, rng, max_shift=0)            # edge: no shift at all
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(b, box)
    with pytest.raises(ValueError, match="inside"):
        random_translate(img, np.array([[2, 2, 12, 5]], np.float32), rng)
    with pytest.raises(ValueError, match="whole number"):
        translate(img, box, 1.5, 0)
