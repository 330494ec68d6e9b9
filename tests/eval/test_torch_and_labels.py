"""Torch inputs, label-divisor maps and torch.distributed reduction."""

import json

import numpy as np
import pytest
import torch
from gloo_ranks import run_on_gloo
from reference import assert_same_results, reference_pq_compute

from panoptic_eval import PanopticQuality, write_id_png
from panoptic_eval.testing import categories, make_gt, make_pred

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def images(seed, n, h=30, w=40):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        gt, gi = make_gt(rng, h, w)
        pred, pi = make_pred(rng, gt, gi)
        out.append((gt, gi, pred, pi))
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_torch_maps_equal_numpy_maps(device, dtype):
    imgs = images(7, 6)
    a, b = PanopticQuality(categories()), PanopticQuality(categories())
    for gt, gi, pred, pi in imgs:
        a.update(gt, gi, pred, pi)
        b.update(torch.from_numpy(gt.astype(np.int64)).to(device, dtype), gi,
                 torch.from_numpy(pred.astype(np.int64)).to(device, dtype), pi)
    assert a.compute() == b.compute()
    np.testing.assert_array_equal(a.stats, b.stats)


def to_label_map(ids, segs, divisor, void_label, cat_of_unlisted=None):
    """COCO ids -> category * divisor + instance; crowd things get instance 0; VOID -> void_label."""
    out = np.full(ids.shape, void_label, dtype=np.int64)
    next_instance = {}
    new_segs = []
    for s in segs:
        mask = ids == s["id"]
        if not mask.any():
            continue
        cat = s["category_id"]
        thing = cat < 100
        if thing and not s.get("iscrowd", 0):
            next_instance[cat] = next_instance.get(cat, 0) + 1
            inst = next_instance[cat]
        else:
            inst = 0
        value = cat * divisor + inst
        out[mask] = value
        new_segs.append((value, cat, int(s.get("iscrowd", 0)), int(mask.sum())))
    return out, new_segs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("void_label", [-1, 255 * 1000])
def test_label_divisor_update_matches_panopticapi(tmp_path, device, void_label):
    divisor = 1000
    rng = np.random.default_rng(3)
    metric = PanopticQuality(categories())
    gt_anns, pred_anns = [], []
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    for i in range(6):
        gt, gi = make_gt(rng, 30, 40)
        # one crowd region per thing category at most, stuff once per category: as label maps can express
        seen_crowd, keep = set(), []
        for s in gi:
            if s["iscrowd"] and s["category_id"] in seen_crowd:
                gt[gt == s["id"]] = 0
                continue
            seen_crowd.add(s["category_id"]) if s["iscrowd"] else None
            keep.append(s)
        listed = {s["id"] for s in keep}
        gt[~np.isin(gt, list(listed))] = 0
        pred, pi = make_pred(rng, gt, keep)
        # merge same-category stuff predictions (label maps hold one segment per stuff class)
        for cat in {s["category_id"] for s in pi if s["category_id"] >= 100}:
            ids = [s["id"] for s in pi if s["category_id"] == cat]
            pred[np.isin(pred, ids)] = ids[0]
            pi = [s for s in pi if s["category_id"] != cat or s["id"] == ids[0]]
        gt_lab, gt_segs = to_label_map(gt, keep, divisor, void_label)
        pred_lab, pred_segs = to_label_map(pred, pi, divisor, void_label)
        metric.update_label_divisor(torch.from_numpy(gt_lab).to(device), torch.from_numpy(pred_lab).to(device),
                                    label_divisor=divisor, void_label=void_label)
        # the same image as COCO files, for the reference
        def coco(lab, segs, gt_side):
            ids = np.zeros(lab.shape, np.uint32)
            info = []
            for k, (value, cat, crowd, area) in enumerate(segs, 1):
                ids[lab == value] = k
                seg = {"id": k, "category_id": cat}
                if gt_side:
                    seg.update(iscrowd=crowd, area=area)
                info.append(seg)
            return ids, info
        g_ids, g_info = coco(gt_lab, gt_segs, True)
        p_ids, p_info = coco(pred_lab, pred_segs, False)
        write_id_png(tmp_path / "gt" / f"{i}.png", g_ids)
        write_id_png(tmp_path / "pred" / f"{i}.png", p_ids)
        gt_anns.append({"image_id": i, "file_name": f"{i}.png", "segments_info": g_info})
        pred_anns.append({"image_id": i, "file_name": f"{i}.png", "segments_info": p_info})
    (tmp_path / "gt.json").write_text(json.dumps({"annotations": gt_anns, "categories": categories()}))
    (tmp_path / "pred.json").write_text(json.dumps({"annotations": pred_anns}))
    ref = reference_pq_compute(tmp_path / "gt.json", tmp_path / "pred.json", tmp_path / "gt", tmp_path / "pred")
    assert_same_results(metric.compute(), ref)


def test_label_divisor_rejects_unknown_category_and_bad_negatives():
    metric = PanopticQuality(categories())
    good = np.array([[1001, 1001, -1]])
    with pytest.raises(ValueError, match="unknown category 5"):
        metric.update_label_divisor(np.array([[5000, -1, -1]]), good, label_divisor=1000)
    with pytest.raises(ValueError, match="negative labels"):
        metric.update_label_divisor(np.array([[-3, -1, -1]]), good, label_divisor=1000)


def test_merge_and_state_dict_round_trip():
    imgs = images(11, 6)
    whole, left, right = (PanopticQuality(categories(), keep_per_image=True) for _ in range(3))
    for k, img in enumerate(imgs):
        whole.update(*img, image_id=k)
        (left if k < 3 else right).update(*img, image_id=k)
    merged = left.merge(right)
    assert merged.compute() == whole.compute()
    assert merged.per_image() == whole.per_image()
    restored = PanopticQuality(categories(), keep_per_image=True)
    restored.load_state_dict(merged.state_dict())
    assert restored.bootstrap(100) == whole.bootstrap(100)


def _pq_on_a_share(rank, world):
    metric = PanopticQuality(categories(), keep_per_image=True)
    for k, img in enumerate(images(21, 8)):
        if k % world == rank:
            metric.update(*img, image_id=k)
    return metric.compute(), sorted(r["image_id"] for r in metric.per_image())


def test_distributed_reduction_over_two_gloo_processes():
    results = run_on_gloo(_pq_on_a_share)
    single = PanopticQuality(categories())
    for img in images(21, 8):
        single.update(*img)
    expected = single.compute()
    for res, ids in results:
        assert ids == list(range(8))
        for g in ("All", "Things", "Stuff"):
            assert res[g]["n"] == expected[g]["n"]
            for k in ("pq", "sq", "rq"):
                assert res[g][k] == pytest.approx(expected[g][k], abs=1e-12)
