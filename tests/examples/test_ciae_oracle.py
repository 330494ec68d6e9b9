"""examples/oracle.py --method ciae on the synthetic val split and the real COCO sample (issue 12)."""

from __future__ import annotations

import json

import oracle as oracle_script

from panoptic_core.data import SyntheticConfig, write_synthetic_dataset


def _run(tmp_path, gt_json, gt_folder, *extra):
    out = tmp_path / "oracle.json"
    code = oracle_script.main(["--method", "ciae", "--gt-json", str(gt_json), "--gt-folder", str(gt_folder),
                               "--output", str(out), *extra])  # fmt: skip
    assert code == 0
    return json.loads(out.read_text())


def test_ciae_oracle_on_synthetic_val(tmp_path):
    """The synthetic preset (loss and oracle map at full resolution): only instances that no FCOS
    location covers are lost (README, CIAE oracle)."""
    root = write_synthetic_dataset(tmp_path / "syn", SyntheticConfig(train=0, val=16, seed=0))
    results = _run(tmp_path, root / "annotations/panoptic_val.json", root / "panoptic_val", "--preset", "synthetic")
    assert results["All"]["pq"] >= 0.9 and results["Stuff"]["pq"] >= 0.99 and results["Things"]["sq"] >= 0.99


def test_ciae_oracle_on_real_coco_sample(coco_sample, tmp_path):
    """The COCO preset: ideal stride-4 map up-sampled 4x (PQ >= 0.9, boundaries cost the rest); the
    full-resolution ideal map reaches 1.0."""
    json_file, folder = coco_sample / "panoptic_examples.json", coco_sample / "panoptic_examples"
    coarse = _run(tmp_path, json_file, folder, "--preset", "coco")
    assert coarse["All"]["pq"] >= 0.9 and coarse["All"]["rq"] == 1.0
    full = _run(tmp_path, json_file, folder, "--preset", "coco", "embedding_stride=1")
    assert full["All"]["pq"] >= 0.999
