"""pq_compute against panopticapi's code (cityscapesScripts' copy) on generated and real data."""

import json
import shutil

import numpy as np
import pytest
from reference import assert_same_results, reference_pq_compute

from panoptic_eval import PanopticQuality, pq_compute, read_id_png, write_id_png
from panoptic_eval.testing import write_set


@pytest.mark.parametrize("seed", range(12))
def test_generated_sets_match_panopticapi(tmp_path, seed):
    p = write_set(tmp_path, seed, n_images=6)
    ref = reference_pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"])
    ours = pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"], workers=1)
    assert_same_results(ours, ref)


def test_results_do_not_depend_on_workers(tmp_path):
    p = write_set(tmp_path, 99, n_images=10)
    one = pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"], workers=1)
    for workers in (2, 3, 8):
        assert pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"], workers=workers) == one


def test_streaming_equals_file_based(tmp_path):
    p = write_set(tmp_path, 5, n_images=8)
    gt = json.loads(p["gt_json"].read_text())
    pred = {a["image_id"]: a for a in json.loads(p["pred_json"].read_text())["annotations"]}
    metric = PanopticQuality(gt["categories"])
    for ann in gt["annotations"]:
        pa = pred[ann["image_id"]]
        metric.update(read_id_png(p["gt_folder"] / ann["file_name"]), ann["segments_info"],
                      read_id_png(p["pred_folder"] / pa["file_name"]), pa["segments_info"])
    ours = metric.compute()
    ref = reference_pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"])
    assert_same_results(ours, ref)


def test_default_folders_as_panopticapi(tmp_path):
    p = write_set(tmp_path, 3, n_images=2)
    shutil.move(p["gt_folder"], tmp_path / "gt")  # already named after the JSON
    assert pq_compute(p["gt_json"], p["pred_json"]) == pq_compute(
        p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"])


def test_real_coco_gt_against_itself(coco_sample):
    gt_json = coco_sample / "panoptic_examples.json"
    folder = coco_sample / "panoptic_examples"
    result = pq_compute(gt_json, gt_json, folder, folder)
    for group in ("All", "Things", "Stuff"):
        assert result[group]["pq"] == 1.0 and result[group]["sq"] == 1.0 and result[group]["rq"] == 1.0
    assert result["All"]["n"] == result["Things"]["n"] + result["Stuff"]["n"] > 0


def test_real_coco_perturbed_matches_panopticapi(coco_sample, tmp_path):
    gt_json = coco_sample / "panoptic_examples.json"
    folder = coco_sample / "panoptic_examples"
    gt = json.loads(gt_json.read_text())
    rng = np.random.default_rng(0)
    pred_folder = tmp_path / "pred"
    pred_folder.mkdir()
    anns = []
    for ann in gt["annotations"]:
        ids = read_id_png(folder / ann["file_name"])
        segs = [s for s in ann["segments_info"] if s["id"] in set(np.unique(ids).tolist())]
        out = ids.copy()
        kept = []
        for s in segs:
            r = rng.random()
            if r < 0.15:
                out[ids == s["id"]] = 0  # dropped: FN
                continue
            if r < 0.35:  # shifted mask
                mask = np.roll(ids == s["id"], tuple(rng.integers(-20, 21, size=2)), axis=(0, 1))
                out[ids == s["id"]] = 0
                out[mask] = s["id"]
            kept.append({"id": s["id"], "category_id": s["category_id"]})
        present = set(np.unique(out).tolist())
        kept = [s for s in kept if s["id"] in present]
        write_id_png(pred_folder / ann["file_name"], out)
        anns.append({"image_id": ann["image_id"], "file_name": ann["file_name"], "segments_info": kept})
    pred_json = tmp_path / "pred.json"
    pred_json.write_text(json.dumps({"annotations": anns}))
    ref = reference_pq_compute(gt_json, pred_json, folder, pred_folder)
    ours = pq_compute(gt_json, pred_json, folder, pred_folder)
    assert_same_results(ours, ref)
    assert ours["All"]["pq"] < 1.0
