"""panoptic-visualize: blended category colours, borders, labels, GT and prediction side by side."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from panoptic_eval.visualize import GAP, category_color, main, overlay, segment_colors, visualize

CATS = {1: {"id": 1, "name": "person", "isthing": 1, "color": [220, 20, 60]},
        10: {"id": 10, "name": "sky", "isthing": 0, "color": [70, 130, 180]}}


def test_overlay_blends_colours_keeps_void_and_draws_borders():
    ids = np.array([[5, 5, 5, 0, 0, 0]] * 3 + [[7, 7, 7, 8, 8, 8]] * 3, np.uint32)
    segs = [{"id": 5, "category_id": 10}, {"id": 7, "category_id": 1}, {"id": 8, "category_id": 1, "iscrowd": 1}]
    photo = np.full((6, 6, 3), 100, np.uint8)
    out = np.array(overlay(photo, ids, segs, CATS, alpha=0.5, borders=False))
    np.testing.assert_array_equal(out[0, 0], np.rint(0.5 * 100 + 0.5 * np.array([70, 130, 180])))
    np.testing.assert_array_equal(out[0, 4], [100, 100, 100])  # VOID: the photo
    colors = segment_colors(segs, CATS)
    assert colors[0] == (70, 130, 180)
    assert colors[1] != colors[2] and all(abs(a - b) <= 40 for a, b in zip(colors[1], CATS[1]["color"]))
    np.testing.assert_array_equal(out[5, 0], np.rint(0.5 * 100 + 0.5 * np.array(colors[1])))
    bordered = np.array(overlay(photo, ids, segs, CATS, alpha=0.5))
    np.testing.assert_array_equal(bordered[0, 2], [255, 255, 255])  # 5 | 0 edge
    np.testing.assert_array_equal(bordered[2, 0], [255, 255, 255])  # 5 above 7
    np.testing.assert_array_equal(bordered[0, 0], out[0, 0])
    labelled = np.array(overlay(None, np.kron(ids, np.ones((8, 8), np.uint32)), segs, CATS, labels=True))
    plain = np.array(overlay(None, np.kron(ids, np.ones((8, 8), np.uint32)), segs, CATS))
    assert (labelled != plain).any()
    with pytest.raises(ValueError, match="alpha"):
        overlay(None, ids, segs, CATS, alpha=2)
    with pytest.raises(ValueError, match="unknown category_id 3"):
        overlay(None, ids, [{"id": 5, "category_id": 3}], CATS)


def test_category_without_colour_gets_a_fixed_one():
    assert category_color({"id": 42}) == category_color({"id": 42}) != category_color({"id": 43})


def test_gt_and_prediction_side_by_side_and_cli_errors(tmp_path, capsys):
    from panoptic_eval.testing import write_set

    p = write_set(tmp_path / "set", seed=3, n_images=3)
    photos = tmp_path / "photos"
    photos.mkdir()
    gt = json.loads(p["gt_json"].read_text())
    for img in gt["images"]:
        Image.fromarray(np.full((img["height"], img["width"], 3), 90, np.uint8)).save(photos / img["file_name"],
                                                                                      format="JPEG")
    written = visualize(p["gt_json"], tmp_path / "vis", gt_folder=p["gt_folder"], image_folder=photos,
                        pred_json_file=p["pred_json"], pred_folder=p["pred_folder"], workers=2)
    assert [os.path.basename(w) for w in written] == [a["file_name"] for a in gt["annotations"]]
    first = np.array(Image.open(written[0]))
    h, w = gt["images"][0]["height"], gt["images"][0]["width"]
    assert first.shape == (h, 2 * w + GAP, 3)
    code = main(["--gt-json", str(p["gt_json"]), "--gt-folder", str(p["gt_folder"]), "--output-dir",
                 str(tmp_path / "vis2"), "--max-images", "1", "--labels", "--workers", "1"])
    assert code == 0 and len(os.listdir(tmp_path / "vis2")) == 1
    os.remove(p["pred_folder"] / "000001.png")
    code = main(["--gt-json", str(p["gt_json"]), "--gt-folder", str(p["gt_folder"]), "--pred-json",
                 str(p["pred_json"]), "--pred-folder", str(p["pred_folder"]), "--output-dir", str(tmp_path / "vis3")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "image_id 1" in err[0] and "000001.png" in err[0]
