"""Hand-computed cases, one per panopticapi rule."""

import numpy as np
import pytest
from helpers import CATS, gt_seg, write_pair
from reference import assert_same_results, reference_pq_compute

from panoptic_eval import PanopticQuality, pq_compute


def run(tmp_path, images, categories=CATS):
    p = write_pair(tmp_path, images, categories)
    return pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"], workers=1), p


def strip(n, value, total=10):
    """A 1 x total row: the first n pixels hold value, the rest 0."""
    row = np.zeros((1, total), np.uint32)
    row[0, :n] = value
    return row


def test_iou_exactly_half_is_not_a_match(tmp_path):
    gt = np.array([[5, 5, 5, 5, 0, 0]], np.uint32)  # GT area 4
    pred = np.array([[7, 7, 0, 0, 7, 7]], np.uint32)  # pred area 4, pred on VOID: 2 -> union 4+4-2-2 = 4
    res, _ = run(tmp_path, [(gt, [gt_seg(5, 1, 4)], pred, [{"id": 7, "category_id": 1}])])
    # IoU = 2 / 4 = 0.5: not > 0.5, so one FN and (pred half on VOID: 2/4 = 0.5 not > 0.5) one FP.
    assert res["per_class"][1] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert res["Things"]["n"] == 1


def test_union_excludes_prediction_on_void(tmp_path):
    gt = np.array([[5, 5, 5, 0, 0, 0]], np.uint32)
    pred = np.array([[7, 7, 7, 7, 7, 0]], np.uint32)  # IoU = 3 / (5 + 3 - 3 - 2) = 1.0
    res, _ = run(tmp_path, [(gt, [gt_seg(5, 1, 3)], pred, [{"id": 7, "category_id": 1}])])
    assert res["per_class"][1] == {"pq": 1.0, "sq": 1.0, "rq": 1.0}


def test_gt_area_comes_from_the_json(tmp_path):
    gt = np.array([[5, 5, 5, 5]], np.uint32)
    pred = np.array([[7, 7, 7, 7]], np.uint32)
    res, _ = run(tmp_path, [(gt, [gt_seg(5, 1, 6)], pred, [{"id": 7, "category_id": 1}])])
    assert res["per_class"][1]["sq"] == pytest.approx(4 / 6)  # union = 4 + 6 - 4


def test_crowd_region_absorbs_predictions_and_last_crowd_wins(tmp_path):
    # two crowd segments of category 1 (ids 8 then 9); the prediction lies on the first one.
    gt = np.array([[8, 8, 8, 9, 9, 9, 3, 3, 3, 3]], np.uint32)
    pred = np.array([[7, 7, 7, 0, 0, 0, 0, 0, 0, 0]], np.uint32)
    segs = [gt_seg(8, 1, 3, iscrowd=1), gt_seg(9, 1, 3, iscrowd=1), gt_seg(3, 10, 4)]
    res, p = run(tmp_path, [(gt, segs, pred, [{"id": 7, "category_id": 1}])])
    # only crowd 9 (the last) counts as crowd region: the prediction is a false positive.
    assert res["per_class"][1] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert res["Things"]["n"] == 1
    assert_same_results(res, reference_pq_compute(**p))
    pred2 = np.array([[0, 0, 0, 7, 7, 7, 0, 0, 0, 0]], np.uint32)  # on crowd 9: ignored
    res2, _ = run(tmp_path / "b", [(gt, segs, pred2, [{"id": 7, "category_id": 1}])])
    assert res2["Things"]["n"] == 0


def test_prediction_mostly_on_void_is_ignored(tmp_path):
    gt = np.array([[0, 0, 0, 3, 3, 3, 3, 3, 3, 3]], np.uint32)
    pred = np.array([[7, 7, 7, 7, 0, 0, 0, 0, 0, 0]], np.uint32)  # 3 of 4 on VOID
    res, _ = run(tmp_path, [(gt, [gt_seg(3, 10, 7)], pred, [{"id": 7, "category_id": 1}])])
    assert res["Things"]["n"] == 0  # no TP/FP/FN for category 1
    assert res["Stuff"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 1}  # the stuff GT is missed


def test_per_class_pq_is_iou_over_weighted_count(tmp_path):
    gt = np.array([[5, 5, 5, 5, 6, 6, 6, 6, 0, 0]], np.uint32)
    pred = np.array([[7, 7, 7, 0, 0, 0, 0, 0, 8, 8]], np.uint32)
    res, _ = run(tmp_path, [(gt, [gt_seg(5, 1, 4), gt_seg(6, 1, 4)], pred,
                             [{"id": 7, "category_id": 1}, {"id": 8, "category_id": 1}])])
    # TP (5,7) IoU 3/4; FN 6; pred 8 fully on VOID: ignored.
    assert res["per_class"][1]["pq"] == pytest.approx(0.75 / 1.5)
    assert res["per_class"][1]["sq"] == pytest.approx(0.75)
    assert res["per_class"][1]["rq"] == pytest.approx(1 / 1.5)


def test_empty_group_returns_documented_zero(tmp_path):
    gt = strip(4, 3)
    pred = strip(4, 9)
    res, _ = run(tmp_path, [(gt, [gt_seg(3, 10, 4)], pred, [{"id": 9, "category_id": 10}])])
    assert res["Things"] == {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
    assert res["Stuff"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 1}
    assert res["All"] == res["Stuff"]


def test_ids_equal_to_category_ids_and_unlisted_gt_ids(tmp_path):
    gt = np.array([[1, 1, 1, 42, 42, 10, 10, 10]], np.uint32)  # 42 not listed: ignored
    pred = np.array([[10, 10, 10, 0, 0, 1, 1, 1]], np.uint32)
    res, p = run(tmp_path, [(gt, [gt_seg(1, 1, 3), gt_seg(10, 10, 3)], pred,
                             [{"id": 10, "category_id": 1}, {"id": 1, "category_id": 10}])])
    assert res["All"]["pq"] == 1.0
    assert_same_results(res, reference_pq_compute(**p))


def test_huge_ids_in_memory_take_the_sort_path():
    metric = PanopticQuality(CATS)
    big = (1 << 40) + 5
    gt = np.array([[big, big, 0, 3]], np.int64)
    pred = np.array([[9, 9, 9, 1 << 50]], np.int64)
    metric.update(gt, [{"id": big, "category_id": 1}, {"id": 3, "category_id": 10}],
                  pred, [{"id": 9, "category_id": 1}, {"id": 1 << 50, "category_id": 10}])
    res = metric.compute()
    assert res["per_class"][1]["pq"] == 1.0  # IoU 2 / (3 + 2 - 2 - 1) = 1
    assert res["per_class"][10]["pq"] == 1.0


def test_pq_dagger_on_stuff_counts_every_overlap():
    metric = PanopticQuality(CATS)
    gt = np.array([[3, 3, 3, 3, 5, 5]], np.uint32)
    pred = np.array([[7, 7, 8, 8, 9, 9]], np.uint32)  # stuff GT split in two halves: IoU 0.5 each
    metric.update(gt, [{"id": 3, "category_id": 10}, {"id": 5, "category_id": 1}],
                  pred, [{"id": 7, "category_id": 10}, {"id": 8, "category_id": 10}, {"id": 9, "category_id": 1}])
    pq = metric.compute()
    dagger = metric.compute_pq_dagger()
    assert pq["per_class"][10]["pq"] == 0.0  # no match above 0.5
    assert dagger["per_class"][10] == pytest.approx(1.0)  # 0.5 + 0.5 over one GT segment
    assert dagger["per_class"][1] == pq["per_class"][1]["pq"] == 1.0
    assert dagger["All"] == {"pq": 1.0, "n": 2}
