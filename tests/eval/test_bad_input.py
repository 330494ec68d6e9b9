"""Every bad input ends in one clear line naming the image and file; CLI exit 2, no output."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import gt_seg, write_pair
from PIL import Image

from panoptic_eval import Category, PanopticEvalError, PanopticQuality, parse_categories, pq_compute
from panoptic_eval.cli import main


def good_set(tmp_path):
    gt = np.array([[5, 5, 3, 3], [5, 5, 3, 3]], np.uint32)
    pred = np.array([[7, 7, 9, 9], [7, 7, 9, 0]], np.uint32)
    return write_pair(tmp_path, [(gt, [gt_seg(5, 1, 4), gt_seg(3, 10, 4)], pred,
                                  [{"id": 7, "category_id": 1}, {"id": 9, "category_id": 10}])])


def edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def cli(p, capsys, tmp_path):
    out = tmp_path / "out.json"
    code = main(["--gt-json", str(p["gt_json"]), "--pred-json", str(p["pred_json"]),
                 "--gt-folder", str(p["gt_folder"]), "--pred-folder", str(p["pred_folder"]),
                 "--output", str(out), "--quiet"])
    err = capsys.readouterr().err
    return code, err, out


def png_truncate(p):
    data = (p["pred_folder"] / "0.png").read_bytes()
    (p["pred_folder"] / "0.png").write_bytes(data[: len(data) // 2])


def png_grey(p):
    Image.fromarray(np.zeros((2, 4), np.uint8), mode="L").save(p["pred_folder"] / "0.png")


def png_size(p):
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(p["pred_folder"] / "0.png")


def png_missing(p):
    os.remove(p["pred_folder"] / "0.png")


def png_not_png(p):
    (p["pred_folder"] / "0.png").write_bytes(b"not an image at all")


def seg_extra_in_png(p):
    edit_json(p["pred_json"], lambda d: d["annotations"][0]["segments_info"].pop())


def seg_extra_in_json(p):
    edit_json(p["pred_json"], lambda d: d["annotations"][0]["segments_info"].append({"id": 77, "category_id": 1}))


def seg_duplicate(p):
    edit_json(p["pred_json"], lambda d: d["annotations"][0]["segments_info"].append({"id": 7, "category_id": 1}))


def gt_seg_duplicate(p):
    edit_json(p["gt_json"], lambda d: d["annotations"][0]["segments_info"].append(gt_seg(5, 1, 4)))


def unknown_category(p):
    edit_json(p["pred_json"], lambda d: d["annotations"][0]["segments_info"][0].update(category_id=999))


def no_prediction(p):
    edit_json(p["pred_json"], lambda d: d["annotations"][0].update(image_id=123))


def duplicate_image_id(p):
    edit_json(p["gt_json"], lambda d: d["annotations"].append(dict(d["annotations"][0])))


def malformed_json(p):
    p["pred_json"].write_text("{not json")


def missing_key(p):
    edit_json(p["gt_json"], lambda d: d["annotations"][0]["segments_info"][0].pop("iscrowd"))


def missing_annotations(p):
    edit_json(p["pred_json"], lambda d: d.pop("annotations"))


def escaping_name(p):
    edit_json(p["pred_json"], lambda d: d["annotations"][0].update(file_name="../gt/0.png"))


def absolute_name(p):
    edit_json(p["pred_json"], lambda d: d["annotations"][0].update(file_name="/etc/passwd"))


CASES = {
    png_truncate: "truncated", png_grey: "not RGB", png_size: "GT PNG", png_missing: "not found",
    png_not_png: "unreadable", seg_extra_in_png: "in the prediction PNG but not in its segments_info",
    seg_extra_in_json: "not in its PNG", seg_duplicate: "duplicate segment id 7",
    gt_seg_duplicate: "duplicate segment id 5", unknown_category: "unknown category_id 999",
    no_prediction: "no prediction", duplicate_image_id: "duplicate image_id", malformed_json: "malformed JSON",
    missing_key: "has no 'iscrowd'", missing_annotations: "'annotations'", escaping_name: "leaves its folder",
    absolute_name: "leaves its folder",
}


@pytest.mark.parametrize("breaker", list(CASES), ids=lambda f: f.__name__)
def test_cli_reports_one_line_and_writes_nothing(tmp_path, capsys, breaker):
    p = good_set(tmp_path)
    breaker(p)
    code, err, out = cli(p, capsys, tmp_path)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("panoptic-eval: error:"), err
    assert CASES[breaker] in lines[0]
    assert "Traceback" not in err
    assert not out.exists()
    assert not any(f.name.startswith(".out.json") for f in tmp_path.iterdir())
    with pytest.raises(PanopticEvalError):
        pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"])


def test_errors_name_image_and_file(tmp_path, capsys):
    p = good_set(tmp_path)
    png_truncate(p)
    _, err, _ = cli(p, capsys, tmp_path)
    assert "image_id 0" in err and str(p["pred_folder"] / "0.png") in err


def test_symlink_out_of_folder_is_refused(tmp_path, capsys):
    p = good_set(tmp_path)
    (p["pred_folder"] / "link.png").symlink_to(p["gt_folder"] / "0.png")
    edit_json(p["pred_json"], lambda d: d["annotations"][0].update(file_name="link.png"))
    code, err, _ = cli(p, capsys, tmp_path)
    assert code == 2 and "resolves outside" in err


def test_error_is_a_value_error():
    assert issubclass(PanopticEvalError, ValueError)


def test_in_memory_errors():
    metric = PanopticQuality([{"id": 1, "isthing": 1}])
    gt = np.array([[1, 1]], np.int64)
    with pytest.raises(PanopticEvalError, match="shape"):
        metric.update(gt, [{"id": 1, "category_id": 1}], np.zeros((2, 2), np.int64), [])
    with pytest.raises(PanopticEvalError, match="integer id map"):
        metric.update(gt.astype(float), [], gt, [])
    with pytest.raises(PanopticEvalError, match="non-negative"):
        metric.update(-gt, [], gt, [])
    with pytest.raises(PanopticEvalError, match="unknown category"):
        metric.update(gt, [{"id": 1, "category_id": 5}], gt, [{"id": 1, "category_id": 1}])
    with pytest.raises(PanopticEvalError, match="duplicate category"):
        PanopticQuality([{"id": 1, "isthing": 1}, {"id": 1, "isthing": 0}])
    assert metric.num_images == 0


@pytest.mark.parametrize(("category", "message"), [
    ({"id": 1}, r"categories\[1\]: a category needs 'id' and 'isthing', got \{'id': 1\}"),
    ({"id": 1.0, "isthing": 1}, r"categories\[1\]: category id must be an integer, got 1.0"),
    ({"id": "1", "isthing": 1}, "category id must be an integer, got '1'"),
    ({"id": True, "isthing": 1}, "category id must be an integer, got True"),
    ({"id": 1, "isthing": "0"}, r"categories\[1\]: isthing must be 0 or 1, got '0'"),
    ({"id": 1, "isthing": 2}, "isthing must be 0 or 1, got 2"),
    ({"id": 1, "isthing": None}, "isthing must be 0 or 1, got None"),
    ({"id": 1, "isthing": 0.5}, "isthing must be 0 or 1, got 0.5"),
    ({"id": 7, "isthing": 0}, "categories: duplicate category id 7"),
])  # fmt: skip
def test_parse_categories_refuses(category, message):
    with pytest.raises(PanopticEvalError, match=message):
        parse_categories([{"id": 7, "isthing": 1}, category])


def test_parse_categories_keeps_order_and_takes_category_objects():
    by_id = {5: {"id": 5, "isthing": True}, 2: Category(2, "sky", False), 9: {"id": np.int64(9), "isthing": 1}}
    cats = parse_categories(by_id)
    assert cats == [Category(5, "5", True), Category(2, "sky", False), Category(9, "9", True)]
    assert PanopticQuality(cats).categories == cats
    with pytest.raises(PanopticEvalError, match="category id must be an integer, got '2'"):
        parse_categories([Category("2", "sky", False)])
    # 1.0 / 0.0 are read as panopticapi reads them (isthing == 1).
    floats = parse_categories([{"id": 1, "isthing": 1.0}, {"id": 2, "isthing": 0.0}])
    assert [c.isthing for c in floats] == [True, False]


def test_cli_entry_point_runs(tmp_path):
    p = good_set(tmp_path)
    out = tmp_path / "res.json"
    run = subprocess.run(
        [sys.executable, "-m", "panoptic_eval.cli", "--gt-json", str(p["gt_json"]), "--pred-json", str(p["pred_json"]),
         "--gt-folder", str(p["gt_folder"]), "--pred-folder", str(p["pred_folder"]), "--output", str(out),
         "--per-class", "--pq-dagger", "--per-image", "1", "--bootstrap", "50"],
        capture_output=True, text=True, check=True)
    assert "All" in run.stdout and "person" in run.stdout and "bootstrap" in run.stdout
    data = json.loads(out.read_text())
    assert data["All"]["n"] == 2 and 0 <= data["All"]["pq"] <= 1
    assert set(data["per_class"]) == {"1", "2", "10", "11"}
    assert {"pq_dagger", "per_image", "bootstrap"} <= set(data)


def test_empty_gt_set_gives_zeros_and_bootstrap_error(tmp_path, capsys):
    p = write_pair(tmp_path, [])
    assert pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"])["All"] == {
        "pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}
    code = main(["--gt-json", str(p["gt_json"]), "--pred-json", str(p["pred_json"]), "--gt-folder",
                 str(p["gt_folder"]), "--pred-folder", str(p["pred_folder"]), "--bootstrap", "10", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "at least one image" in err and "Traceback" not in err
