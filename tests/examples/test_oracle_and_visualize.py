"""examples/oracle.py and examples/visualize.py on synthetic data and the real COCO sample."""

from __future__ import annotations

import json

import numpy as np
import oracle as oracle_script
import visualize as visualize_script
from PIL import Image

from panoptic_core.data import SyntheticConfig, write_synthetic_dataset


def test_oracle_on_synthetic_val(tmp_path, capsys):
    root = write_synthetic_dataset(tmp_path / "syn", SyntheticConfig(train=0, val=16, seed=0))
    out = tmp_path / "oracle.json"
    code = oracle_script.main(["--method", "panoptic_deeplab", "--gt-json", str(root / "annotations/panoptic_val.json"),
                               "--gt-folder", str(root / "panoptic_val"), "--output", str(out),
                               "--preset", "synthetic"])  # fmt: skip
    assert code == 0
    results = json.loads(out.read_text())
    assert results["All"]["pq"] >= 0.9 and results["Stuff"]["pq"] == 1.0
    assert "PQ" in capsys.readouterr().out


def test_oracle_on_real_coco_sample(coco_sample, tmp_path):
    out = tmp_path / "oracle.json"
    code = oracle_script.main(["--method", "panoptic_deeplab", "--gt-json", str(coco_sample / "panoptic_examples.json"),
                               "--gt-folder", str(coco_sample / "panoptic_examples"), "--output", str(out),
                               "--preset", "coco"])  # fmt: skip
    assert code == 0
    assert json.loads(out.read_text())["All"]["pq"] >= 0.9


def test_oracle_errors(tmp_path, capsys):
    assert oracle_script.main(["--method", "mask_rcnn", "--gt-json", "x.json", "--output", str(tmp_path / "o")]) == 2
    assert "unknown method 'mask_rcnn'" in capsys.readouterr().err
    args = [
        "--method",
        "panoptic_deeplab",
        "--gt-json",
        str(tmp_path / "missing.json"),
        "--output",
        str(tmp_path / "o"),
    ]
    assert oracle_script.main(args) == 2
    assert "missing.json" in capsys.readouterr().err
    assert oracle_script.main([*args[:4], "--output", "x", "stuf_area=3"]) == 2
    assert "unknown key 'stuf_area'" in capsys.readouterr().err


def test_visualize_ground_truth(tmp_path):
    root = write_synthetic_dataset(tmp_path / "syn", SyntheticConfig(train=0, val=3, seed=1))
    out = tmp_path / "vis"
    code = visualize_script.main(["--json", str(root / "annotations/panoptic_val.json"), "--folder",
                                  str(root / "panoptic_val"), "--images", str(root / "val"), "--output-dir", str(out),
                                  "--limit", "2"])  # fmt: skip
    assert code == 0
    files = sorted(out.glob("*.png"))
    assert len(files) == 2
    drawn = np.asarray(Image.open(files[0]))
    assert drawn.shape == (128, 160, 3)
    assert (drawn == 255).all(axis=-1).any()  # segment borders are drawn white
