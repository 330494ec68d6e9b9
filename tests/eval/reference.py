"""The comparison: cityscapesScripts' copy of panopticapi's pq_compute, run single-process."""

from __future__ import annotations

import contextlib
import io
import json

from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as cs


def reference_pq_compute(gt_json, pred_json, gt_folder, pred_folder) -> dict:
    """panopticapi's pq_compute (through cityscapesScripts), without its process pool."""
    with open(gt_json) as f:
        gt = json.load(f)
    with open(pred_json) as f:
        pred = json.load(f)
    categories = {el["id"]: el for el in gt["categories"]}
    pred_by_image = {el["image_id"]: el for el in pred["annotations"]}
    matched = [(a, pred_by_image[a["image_id"]]) for a in gt["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        stat = cs.pq_compute_single_core(0, matched, str(gt_folder), str(pred_folder), categories)
    return cs.average_pq(stat, categories)


def assert_same_results(ours: dict, ref: dict, tol: float = 1e-9) -> None:
    for group in ("All", "Things", "Stuff"):
        assert ours[group]["n"] == ref[group]["n"], group
        for key in ("pq", "sq", "rq"):
            assert abs(ours[group][key] - ref[group][key]) <= tol, (group, key, ours[group][key], ref[group][key])
    assert list(ours["per_class"]) == list(ref["per_class"])
    for cat, values in ref["per_class"].items():
        for key in ("pq", "sq", "rq"):
            assert abs(ours["per_class"][cat][key] - values[key]) <= tol, (cat, key)
