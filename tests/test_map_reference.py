"""mAP@0.5 and mAP@[.5:.95] of lmcourse.metrics against pycocotools' COCOeval on the same boxes.

pycocotools is a test-only dependency (``pip install pycocotools``). We compare COCOeval's
``stats[0]`` (AP@[.5:.95]) and ``stats[1]`` (AP@0.5), i.e. maxDets=100 and area range "all",
and its per-class precision arrays, on realistic random predictions: several images and
classes, crowded scenes with overlapping objects, duplicates, misses, background detections,
images without objects, classes only predicted, and more than 100 detections in an image.

The metric is defined on the COCO "Detection Evaluation" page (cocodataset.org/#detection-eval,
§2 *Metrics*: AP at IoU = .50:.05:.95 is the primary metric, AP at IoU = .50 the PASCAL VOC one,
at most 100 detections per image) and implemented by ``pycocotools.cocoeval.COCOeval``
(``iouThrs`` = .5:.05:.95, ``recThrs`` = 0:.01:1, i.e. 101 recall levels); checked here with
pycocotools 2.0.11.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from lmcourse.metrics import (
    COCO_IOU_THRESHOLDS,
    detection_average_precision,
    interpolated_average_precision,
    match_detections,
    mean_average_precision,
)

pycocotools = pytest.importorskip("pycocotools")  # CI installs it; see the module docstring
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _jitter(rng, box, scale):
    w, h = box[2] - box[0], box[3] - box[1]
    d = rng.normal(0, scale, 4) * np.array([w, h, w, h])
    b = box + d
    return np.array([min(b[0], b[2] - 1), min(b[1], b[3] - 1), max(b[2], b[0] + 1), max(b[3], b[1] + 1)])


def random_case(seed: int, n_images: int = 30, n_classes: int = 5, crowded: bool = False,
                many: bool = False):
    """Ground truth and detector-like predictions for ``n_images`` 100×100 images."""
    rng = np.random.default_rng(seed)
    gt_b, gt_l, pr_b, pr_s, pr_l = [], [], [], [], []
    for _ in range(n_images):
        n = int(rng.integers(0, 8 if crowded else 4))
        xy = rng.uniform(0, 60, (n, 2))
        if crowded and n:
            xy = 30 + rng.normal(0, 6, (n, 2))          # objects piled on each other
        wh = rng.uniform(8, 40, (n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        labels = rng.integers(0, n_classes, n)
        preds, scores, plabels = [], [], []
        for b, lab in zip(boxes, labels, strict=True):
            if rng.random() < 0.85:                       # found, more or less precisely
                preds.append(_jitter(rng, b, rng.choice([0.03, 0.1, 0.25])))
                scores.append(rng.uniform(0.3, 1.0))
                plabels.append(lab if rng.random() < 0.9 else rng.integers(0, n_classes + 1))
            if rng.random() < 0.3:                        # duplicate detection
                preds.append(_jitter(rng, b, 0.15))
                scores.append(rng.uniform(0.0, 0.8))
                plabels.append(lab)
        n_bg = int(rng.integers(0, 150 if many else 4))   # background false positives
        for _ in range(n_bg):
            xy0 = rng.uniform(0, 80, 2)
            preds.append(np.concatenate([xy0, xy0 + rng.uniform(3, 30, 2)]))
            scores.append(rng.uniform(0.0, 0.6))
            plabels.append(rng.integers(0, n_classes + 1))  # class n_classes has no ground truth
        gt_b.append(boxes.reshape(-1, 4))
        gt_l.append(labels)
        pr_b.append(np.asarray(preds, float).reshape(-1, 4))
        pr_s.append(np.round(np.asarray(scores, float), 3 if crowded else 12))  # crowded: score ties
        pr_l.append(np.asarray(plabels, int))
    return gt_b, gt_l, pr_b, pr_s, pr_l, n_classes + 1


def coco_eval(gt_b, gt_l, pr_b, pr_s, pr_l, n_classes):
    """COCOeval on the same boxes (xyxy → xywh); returns the evaluator after summarize()."""
    images = [{"id": i + 1, "width": 100, "height": 100} for i in range(len(gt_b))]
    anns, dets = [], []
    for i, (boxes, labels) in enumerate(zip(gt_b, gt_l, strict=True)):
        for b, lab in zip(boxes, labels, strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(lab) + 1,
                         "bbox": [float(b[0]), float(b[1]), float(w), float(h)],
                         "area": float(w * h), "iscrowd": 0})
    for i, (boxes, scores, labels) in enumerate(zip(pr_b, pr_s, pr_l, strict=True)):
        for b, s, lab in zip(boxes, scores, labels, strict=True):
            dets.append({"image_id": i + 1, "category_id": int(lab) + 1, "score": float(s),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c + 1, "name": str(c)} for c in range(n_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


CASES = [dict(seed=0), dict(seed=1, crowded=True), dict(seed=2, many=True),
         dict(seed=3, n_images=5, n_classes=2, crowded=True), dict(seed=4, n_images=60, many=True)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_map_equals_pycocotools(case):
    gt_b, gt_l, pr_b, pr_s, pr_l, n_classes = random_case(**case)
    ev = coco_eval(gt_b, gt_l, pr_b, pr_s, pr_l, n_classes)
    ours_coco = mean_average_precision(gt_b, gt_l, pr_b, pr_s, pr_l, iou_thresholds=COCO_IOU_THRESHOLDS)
    ours_50 = mean_average_precision(gt_b, gt_l, pr_b, pr_s, pr_l, iou_thresholds=0.5)
    assert 0.05 < ev.stats[0] < 0.95          # a case where the metric is informative
    assert ours_coco == pytest.approx(ev.stats[0], abs=1e-12)
    assert ours_50 == pytest.approx(ev.stats[1], abs=1e-12)
    assert ours_50 > ours_coco                # stricter thresholds can only lose matches


@pytest.mark.parametrize("case", CASES[:3], ids=["plain", "crowded", "many"])
def test_per_class_precision_equals_pycocotools(case):
    """Class by class and threshold by threshold, not only the mean."""
    gt_b, gt_l, pr_b, pr_s, pr_l, n_classes = random_case(**case)
    ev = coco_eval(gt_b, gt_l, pr_b, pr_s, pr_l, n_classes)
    precision = ev.eval["precision"][:, :, :, 0, 2]        # (T, R, K) for area "all", maxDets 100
    per_class_50 = detection_average_precision(gt_b, gt_l, pr_b, pr_s, pr_l, iou_threshold=0.5)
    for c in range(n_classes):
        p = precision[:, :, c]
        if (p == -1).all():                                 # no ground truth: COCO skips the class
            assert c not in per_class_50
            continue
        m = match_detections(gt_b, gt_l, pr_b, pr_s, pr_l, c)
        np.testing.assert_allclose(interpolated_average_precision(m), p.mean(axis=1), atol=1e-12)
        assert per_class_50[c] == pytest.approx(p[0].mean(), abs=1e-12)


def test_max_detections_per_image_matters_like_coco():
    """With > 100 detections per image only the best 100 per image and class count."""
    gt_b, gt_l, pr_b, pr_s, pr_l, n_classes = random_case(seed=5, n_images=8, n_classes=1, many=True)
    # put many high-scoring junk boxes of class 0 in image 0
    rng = np.random.default_rng(0)
    junk = rng.uniform(0, 50, (150, 2))
    pr_b[0] = np.concatenate([pr_b[0], np.concatenate([junk, junk + 5], axis=1)])
    pr_s[0] = np.concatenate([pr_s[0], rng.uniform(0.9, 1.0, 150)])
    pr_l[0] = np.concatenate([pr_l[0], np.zeros(150, int)])
    ev = coco_eval(gt_b, gt_l, pr_b, pr_s, pr_l, n_classes)
    assert mean_average_precision(gt_b, gt_l, pr_b, pr_s, pr_l, iou_thresholds=COCO_IOU_THRESHOLDS) \
        == pytest.approx(ev.stats[0], abs=1e-12)
    unlimited = mean_average_precision(gt_b, gt_l, pr_b, pr_s, pr_l, max_detections=10_000)
    assert unlimited != pytest.approx(ev.stats[1], abs=1e-6)
