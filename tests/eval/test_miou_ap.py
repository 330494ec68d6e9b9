"""PQ + mIoU + mask AP in one pass: against the detectron2 formula and against COCOeval run directly."""

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from gloo_ranks import run_on_gloo
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from panoptic_eval import PanopticEvalError, PanopticQuality, pq_compute, read_id_png
from panoptic_eval._rle import column_runs, segment_rles
from panoptic_eval.cli import main
from panoptic_eval.testing import categories, make_gt, make_pred, write_set

ALL = ("pq", "miou", "ap")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def images(seed, n, h=30, w=40):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        gt, gi = make_gt(rng, h, w)
        pred, pi = make_pred(rng, gt, gi, scores=True)
        out.append((gt, gi, pred, pi))
    return out


def semantic(ids, segs, index, void):
    """Per-pixel category index; void where the id is 0 or not listed."""
    out = np.full(ids.shape, void, np.int64)
    for s in segs:
        out[ids == s["id"]] = index[s["category_id"]]
    return out


def reference_miou(imgs, cats):
    """detectron2 SemSegEvaluator's formula, with predicted VOID a miss and GT VOID ignored."""
    n = len(cats)
    index = {c["id"]: k for k, c in enumerate(cats)}
    conf = np.zeros((n + 1, n + 1), np.int64)  # [gt, pred], index n = VOID / unlisted
    for gt, gi, pred, pi in imgs:
        g, p = semantic(gt, gi, index, n), semantic(pred, pi, index, n)
        conf += np.bincount(g.ravel() * (n + 1) + p.ravel(), minlength=(n + 1) ** 2).reshape(n + 1, n + 1)
    tp = np.diag(conf)[:n].astype(float)
    pos_gt = conf[:n].sum(1).astype(float)
    pos_pred = conf[:n, :n].sum(0).astype(float)
    iou = np.full(n, np.nan)
    valid = pos_gt > 0
    iou[valid] = tp[valid] / (pos_gt + pos_pred - tp)[valid]
    return float(np.nanmean(iou)), {c["id"]: (None if np.isnan(v) else float(v)) for c, v in zip(cats, iou)}


def reference_ap(imgs, cats):
    """COCOeval (segm) on RLEs made by pycocotools' own mask.encode from binary masks."""
    things = {c["id"] for c in cats if c["isthing"]}
    gt_anns, dets, imgs_json = [], [], []
    for k, (gt, gi, pred, pi) in enumerate(imgs):
        imgs_json.append({"id": k, "height": gt.shape[0], "width": gt.shape[1]})
        for s in gi:
            if s["category_id"] in things:
                rle = mask_utils.encode(np.asfortranarray((gt == s["id"]).astype(np.uint8)))
                gt_anns.append({"id": len(gt_anns) + 1, "image_id": k, "category_id": s["category_id"],
                                "iscrowd": int(s.get("iscrowd", 0)), "segmentation": rle,
                                "area": float(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist()})
        for s in pi:
            if s["category_id"] in things and "score" in s:
                rle = mask_utils.encode(np.asfortranarray((pred == s["id"]).astype(np.uint8)))
                dets.append({"image_id": k, "category_id": s["category_id"], "segmentation": rle, "score": s["score"]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": imgs_json, "annotations": gt_anns,
                           "categories": [{"id": c} for c in sorted(things)]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[:3].tolist()


def filled(imgs, metrics=ALL, **kwargs):
    metric = PanopticQuality(categories(), metrics=metrics, **kwargs)
    for k, img in enumerate(imgs):
        metric.update(*img, image_id=k)
    return metric


@pytest.mark.parametrize("seed", range(3))
def test_miou_and_ap_match_the_references(seed):
    imgs = images(seed, 8)
    res = filled(imgs).compute()
    miou, per_class = reference_miou(imgs, categories())
    assert res["mIoU"] == pytest.approx(miou, abs=1e-12)
    assert res["per_class_iou"].keys() == per_class.keys()
    for cat, value in per_class.items():
        assert (res["per_class_iou"][cat] is None) == (value is None)
        if value is not None:
            assert res["per_class_iou"][cat] == pytest.approx(value, abs=1e-12)
    assert [res["AP"], res["AP50"], res["AP75"]] == pytest.approx(reference_ap(imgs, categories()), abs=1e-12)
    assert 0 < res["AP"] < 1
    # the PQ part is the same as without the extra metrics
    pq_only = filled(imgs, metrics=("pq",)).compute()
    assert {k: res[k] for k in pq_only} == pq_only


def test_rles_equal_mask_encode_on_packed_maps_and_tensors():
    rng = np.random.default_rng(5)
    for gt, gi, _, _ in images(9, 4, h=23, w=31):
        seg_ids = np.array([s["id"] for s in gi], np.int64)
        wanted = rng.random(len(seg_ids)) < 0.8
        expected = {k: mask_utils.encode(np.asfortranarray((gt == seg_ids[k]).astype(np.uint8)))["counts"]
                    for k in np.flatnonzero(wanted)}
        junk = rng.integers(0, 256, size=gt.shape).astype(np.uint32) << 24  # RGBA alpha: splits runs
        maps = [(gt, None), (gt | junk, 0xFFFFFF)] + [(torch.from_numpy(gt.astype(np.int64)).to(d), None)
                                                        for d in DEVICES]
        other = rng.integers(0, 3, size=gt.shape).astype(np.uint32)  # a second map sharing the pass
        for ids, id_mask in maps:
            for group in ([ids], [ids, other if isinstance(ids, np.ndarray) else torch.from_numpy(
                    other.astype(np.int64)).to(ids.device)]):
                starts, ends, values = column_runs(group, id_mask)
                rles = segment_rles(starts, ends, values[0], seg_ids, wanted, gt.size)
                assert sorted(rles) == sorted(expected)
                h, w = gt.shape
                for k, counts in rles.items():
                    encoded = mask_utils.frPyObjects([{"size": [h, w], "counts": counts}], h, w)[0]["counts"]
                    assert encoded == expected[k]


def test_file_based_equals_streaming_and_cli(tmp_path, capsys):
    p = write_set(tmp_path, 4, n_images=7, scores=True)
    gt = json.loads(p["gt_json"].read_text())
    pred = {a["image_id"]: a for a in json.loads(p["pred_json"].read_text())["annotations"]}
    metric = PanopticQuality(gt["categories"], metrics=ALL)
    for ann in gt["annotations"]:
        pa = pred[ann["image_id"]]
        metric.update(read_id_png(p["gt_folder"] / ann["file_name"]), ann["segments_info"],
                      read_id_png(p["pred_folder"] / pa["file_name"]), pa["segments_info"])
    files = pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"], workers=2, metrics=ALL)
    assert files == metric.compute()
    assert files["All"] == pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"])["All"]
    out = tmp_path / "res.json"
    code = main(["--gt-json", str(p["gt_json"]), "--pred-json", str(p["pred_json"]), "--gt-folder",
                 str(p["gt_folder"]), "--pred-folder", str(p["pred_folder"]), "--metrics", "pq,miou,ap",
                 "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "mIoU" in printed and "AP50" in printed
    data = json.loads(out.read_text())
    assert data["mIoU"] == pytest.approx(files["mIoU"]) and data["AP75"] == pytest.approx(files["AP75"])
    assert set(data["per_class_iou"]) == {str(c["id"]) for c in categories()}
    only_miou = pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"], metrics="miou")
    assert set(only_miou) == {"mIoU", "per_class_iou"} and only_miou["mIoU"] == files["mIoU"]


@pytest.mark.parametrize("device", DEVICES)
def test_torch_maps_equal_numpy_maps(device):
    imgs = images(12, 5)
    a = filled(imgs)
    b = PanopticQuality(categories(), metrics=ALL)
    for gt, gi, pred, pi in imgs:
        b.update(torch.from_numpy(gt.astype(np.int64)).to(device), gi,
                 torch.from_numpy(pred.astype(np.int64)).to(device), pi)
    assert a.compute() == b.compute()


def test_label_divisor_maps_give_the_same_miou_and_ap():
    imgs = images(2, 4)
    divisor, cats = 1000, categories()
    coco, labels = PanopticQuality(cats, metrics=ALL), PanopticQuality(cats, metrics=ALL)
    for gt, gi, pred, pi in imgs:
        gi = [dict(s, iscrowd=0) for s in gi]  # label maps: every listed segment its own label
        listed = {s["id"] for s in gi}
        gt = np.where(np.isin(gt, list(listed)), gt, 0)
        coco.update(gt, gi, pred, pi)

        def encode(ids, segs):
            out = np.full(ids.shape, -1, np.int64)
            for k, s in enumerate(segs, 1):
                out[ids == s["id"]] = s["category_id"] * divisor + k
            return out

        scores = {s["category_id"] * divisor + k: s["score"] for k, s in enumerate(pi, 1)}
        labels.update_label_divisor(encode(gt, gi), encode(pred, pi), label_divisor=divisor,
                                    thing_instance_zero_is_crowd=False, pred_scores=scores)
    a, b = coco.compute(), labels.compute()
    assert a["mIoU"] == pytest.approx(b["mIoU"], abs=1e-12)
    assert a["per_class_iou"] == pytest.approx(b["per_class_iou"])
    # label maps list segments in label order, so score ties could order differently: none here
    assert [a["AP"], a["AP50"], a["AP75"]] == pytest.approx([b["AP"], b["AP50"], b["AP75"]], abs=1e-12)
    with pytest.raises(PanopticEvalError, match="score of label"):
        labels.update_label_divisor(encode(gt, gi), encode(pred, pi), label_divisor=divisor,
                                    pred_scores={next(iter(scores)): float("nan")})


def test_merge_and_state_dict_keep_every_metric():
    imgs = images(11, 6)
    whole = filled(imgs)
    left, right = filled(imgs[:2]), filled(imgs[2:])
    merged = left.merge(right).compute()
    expected = whole.compute()
    assert {k: merged[k] for k in ("mIoU", "per_class_iou", "AP", "AP50", "AP75")} == {
        k: expected[k] for k in ("mIoU", "per_class_iou", "AP", "AP50", "AP75")}
    assert merged["All"] == pytest.approx(expected["All"], abs=1e-12)  # IoU sums in another order
    restored = PanopticQuality(categories(), metrics=ALL)
    restored.load_state_dict(left.state_dict())
    assert restored.compute() == merged
    with pytest.raises(PanopticEvalError, match="metrics"):
        PanopticQuality(categories()).merge(whole)
    with pytest.raises(PanopticEvalError, match="metrics"):
        PanopticQuality(categories(), metrics=("pq", "miou")).load_state_dict(whole.state_dict())


def test_errors():
    gt = np.array([[5, 5, 3, 3]], np.uint32)
    segs = [{"id": 5, "category_id": 1}, {"id": 3, "category_id": 100}]
    metric = PanopticQuality(categories(), metrics=ALL)
    metric.update(gt, segs, gt, segs)  # no score anywhere
    with pytest.raises(PanopticEvalError, match="'score'"):
        metric.compute()
    with pytest.raises(PanopticEvalError, match="score must be a finite number"):
        metric.update(gt, segs, gt, [dict(segs[0], score="high"), segs[1]])
    with pytest.raises(PanopticEvalError, match="unknown metric 'map'"):
        PanopticQuality(categories(), metrics=("pq", "map"))
    with pytest.raises(PanopticEvalError, match="at least one"):
        PanopticQuality(categories(), metrics=())
    # AP undefined without GT things; mIoU undefined without GT pixels
    empty = PanopticQuality(categories(), metrics=ALL)
    zeros = np.zeros((2, 2), np.uint32)
    empty.update(zeros, [], np.ones((2, 2), np.uint32), [{"id": 1, "category_id": 1, "score": 0.5}])
    res = empty.compute()
    assert res["AP"] is None and res["mIoU"] is None and set(res["per_class_iou"].values()) == {None}


def test_without_pycocotools_ap_says_how_to_install(tmp_path):
    script = f"""
import sys
sys.modules["pycocotools"] = None
sys.modules["torch"] = None
from panoptic_eval import PanopticEvalError, PanopticQuality, pq_compute
from panoptic_eval.testing import write_set, categories
p = write_set({str(tmp_path)!r}, seed=1, n_images=2, scores=True)
r = pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"], metrics=("pq", "miou"))
assert 0 < r["mIoU"] < 1
try:
    PanopticQuality(categories(), metrics="pq,ap")
except PanopticEvalError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "pip install 'panoptic-eval[coco]'" in out.stdout


def _every_metric_on_a_share(rank, world):
    metric = PanopticQuality(categories(), metrics=ALL)
    for k, img in enumerate(images(21, 6)):
        if k % world == rank:
            metric.update(*img)
    return metric.compute()


def test_distributed_reduction_of_every_metric():
    results = run_on_gloo(_every_metric_on_a_share)
    imgs = images(21, 6)
    expected = filled(imgs).compute()
    # ranks hold images in a different order: AP, mIoU and PQ do not depend on it
    for res in results:
        assert res["mIoU"] == pytest.approx(expected["mIoU"], abs=1e-12)
        for key in ("AP", "AP50", "AP75"):
            assert res[key] == pytest.approx(expected[key], abs=1e-12)
        assert res["All"]["pq"] == pytest.approx(expected["All"]["pq"], abs=1e-12)


def test_ap_on_adversarial_images_matches_cocoeval_on_rles():
    """Mask AP from counted intersections against COCOeval on pycocotools' own RLEs: more than
    100 detections in an image (COCOeval's maxDets cut), tied scores (its mergesort order), a crowd
    GT covering several detections, a GT thing listed but absent from the map (panopticapi refuses
    absent predicted segments)."""
    cats = categories()
    thing = [c["id"] for c in cats if c["isthing"]]
    rng = np.random.default_rng(7)
    imgs = []
    h, w = 40, 60
    # Image 0: 150 predicted 2 x 2 squares over 12 GT squares, scores from 5 values (ties).
    gt = np.zeros((h, w), np.int64)
    gi = []
    for k in range(12):  # on the detections' 2 x 2 grid: 8 exact matches, 4 shifted by one pixel
        y, x = 2 * (k // 6), 4 * (k % 6) + int(k >= 8)
        gt[y : y + 2, x : x + 2] = 100 + k
        gi.append({"id": 100 + k, "category_id": thing[0], "iscrowd": 0})
    gt[30:40, 0:30] = 200
    gi.append({"id": 200, "category_id": thing[0], "iscrowd": 1})
    gi.append({"id": 300, "category_id": thing[1 % len(thing)], "iscrowd": 0})  # listed, absent
    pred = np.zeros((h, w), np.int64)
    pi = []
    for k in range(150):
        y, x = 2 * (k // 30), 2 * (k % 30)
        pred[y : y + 2, x : x + 2] = 1000 + k
        # 120 of one category: more than COCOeval's 100 per (image, category)
        category = thing[0] if k < 120 else thing[int(rng.integers(len(thing)))]
        pi.append({"id": 1000 + k, "category_id": category, "score": float(rng.integers(5)) / 5})
    for k in range(5):  # inside the crowd region
        pred[31 + k, 2 * k : 2 * k + 6] = 2000 + k
        pi.append({"id": 2000 + k, "category_id": thing[0], "score": 0.9})
    imgs.append((gt, gi, pred, pi))
    imgs.extend(images(11, 3))
    res = filled(imgs).compute()
    assert [res["AP"], res["AP50"], res["AP75"]] == pytest.approx(reference_ap(imgs, cats), abs=1e-12)
    assert 0 < res["AP"] < 1
