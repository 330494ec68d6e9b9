"""The converters and the combination against panopticapi's own outputs (fixtures/panopticapi/PROVENANCE.md)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from panoptic_eval import PanopticEvalError, converters, read_id_png
from panoptic_eval.convert_cli import main_combine, main_convert

# pycocotools 2.0.11's mask.decode warns under numpy 2 (its __array__ lacks the copy keyword).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FIX = Path(__file__).parent / "fixtures" / "panopticapi"
CATS = FIX / "categories.json"
BASE = {c["id"]: c for c in json.loads(CATS.read_text())}


def load(path):
    return json.loads(Path(path).read_text())


def rgb_id(color):
    return int(color[0]) + 256 * int(color[1]) + 65536 * int(color[2])


def assert_ids_follow_the_id_generator(segments, categories=BASE):
    """panopticapi's IdGenerator rule: stuff = category colour; things near it and unique per image."""
    taken = {tuple(c["color"]) for c in categories.values() if not c["isthing"]}
    seen = set()
    for seg in segments:
        cat = categories[seg["category_id"]]
        color = (seg["id"] & 255, (seg["id"] >> 8) & 255, seg["id"] >> 16)
        if not cat["isthing"]:
            assert seg["id"] == rgb_id(cat["color"])
            continue
        assert seg["id"] not in seen and color not in taken and color != (0, 0, 0)
        assert all(abs(a - b) <= 30 for a, b in zip(color, cat["color"]))
        seen.add(seg["id"])


def assert_same_panoptic(ours_json, ours_folder, ref_json, ref_folder, *, categories=BASE):
    """Equal JSON and pixel-equal PNGs up to the randomly drawn thing ids (stuff ids and first
    thing ids, which panopticapi does not draw, are equal too)."""
    ours, ref = load(ours_json), load(ref_json)
    assert {k: v for k, v in ours.items() if k != "annotations"} == {k: v for k, v in ref.items() if k != "annotations"}
    assert len(ours["annotations"]) == len(ref["annotations"])
    for a, b in zip(ours["annotations"], ref["annotations"]):
        assert (a["image_id"], a["file_name"]) == (b["image_id"], b["file_name"])
        assert [{k: v for k, v in s.items() if k != "id"} for s in a["segments_info"]] == [
            {k: v for k, v in s.items() if k != "id"} for s in b["segments_info"]]
        for s, t in zip(a["segments_info"], b["segments_info"]):
            if t["id"] == rgb_id(categories[t["category_id"]]["color"]):
                assert s["id"] == t["id"]
        assert_ids_follow_the_id_generator(a["segments_info"], categories)
        mine = read_id_png(Path(ours_folder) / a["file_name"])
        theirs = read_id_png(Path(ref_folder) / b["file_name"])
        lut = {s["id"]: t["id"] for s, t in zip(a["segments_info"], b["segments_info"])}
        lut[0] = 0
        mapped = np.vectorize(lambda v, lut=lut: lut.get(int(v), -1))(mine)
        np.testing.assert_array_equal(mapped, theirs)


def test_two_channels_to_coco(tmp_path):
    case = FIX / "2ch"
    converters.two_channels_to_coco(case / "input" / "png", case / "input" / "images.json", CATS,
                                    tmp_path / "pred", tmp_path / "pred.json", workers=2)
    assert_same_panoptic(tmp_path / "pred.json", tmp_path / "pred", case / "expected" / "pred.json",
                         case / "expected" / "pred")


def test_outputs_do_not_depend_on_workers_and_follow_the_seed(tmp_path):
    case = FIX / "2ch"
    runs = {}
    for name, workers, seed in (("a", 1, 0), ("b", 3, 0), ("c", 1, 1)):
        converters.two_channels_to_coco(case / "input" / "png", case / "input" / "images.json", CATS, None,
                                        tmp_path / f"{name}.json", workers=workers, seed=seed)
        runs[name] = (load(tmp_path / f"{name}.json"), read_id_png(tmp_path / name / "c.png"))
    assert runs["a"][0] == runs["b"][0]
    np.testing.assert_array_equal(runs["a"][1], runs["b"][1])
    assert runs["a"][0] != runs["c"][0]  # repeated thing instances drew other colours


@pytest.mark.parametrize("things_only", [False, True])
def test_coco_to_detection(tmp_path, things_only):
    case = FIX / "panoptic"
    converters.coco_to_detection(case / "input" / "pan.json", case / "input" / "pan", tmp_path / "det.json", CATS,
                                 things_only=things_only, workers=2)
    expected = case / "expected" / ("det_things.json" if things_only else "det_all.json")
    assert load(tmp_path / "det.json") == load(expected)  # RLE strings included


@pytest.mark.parametrize("name", ["sem_json", "sem_json_other"])
def test_coco_to_semantic_json(tmp_path, name):
    case = FIX / "panoptic"
    converters.coco_to_semantic(case / "input" / "pan.json", case / "input" / "pan", CATS,
                                output_json_file=tmp_path / "sem.json", things_other=name.endswith("other"))
    assert load(tmp_path / "sem.json") == load(case / "expected" / f"{name}.json")


@pytest.mark.parametrize("name", ["sem_png", "sem_png_color", "sem_png_other"])
def test_coco_to_semantic_png(tmp_path, name):
    case = FIX / "panoptic"
    converters.coco_to_semantic(case / "input" / "pan.json", case / "input" / "pan", CATS,
                                semantic_seg_folder=tmp_path / "sem", save_with_color=name.endswith("color"),
                                things_other=name.endswith("other"), workers=2)
    expected = sorted((case / "expected" / name).iterdir())
    assert [p.name for p in expected] == sorted(p.name for p in (tmp_path / "sem").iterdir())
    for png in expected:
        np.testing.assert_array_equal(np.array(Image.open(tmp_path / "sem" / png.name)), np.array(Image.open(png)))


def test_detection_to_coco(tmp_path):
    case = FIX / "detection"
    converters.detection_to_coco(case / "input" / "det.json", None, tmp_path / "pan.json", CATS, workers=2)
    assert_same_panoptic(tmp_path / "pan.json", tmp_path / "pan", case / "expected" / "pan.json",
                         case / "expected" / "pan")


def test_combine_semantic_and_instance_predictions(tmp_path):
    case = FIX / "combine"
    code = main_combine(["--semseg_json_file", str(case / "input" / "sem.json"),
                         "--instseg_json_file", str(case / "input" / "inst.json"),
                         "--images_json_file", str(case / "input" / "images.json"),
                         "--categories_json_file", str(CATS), "--panoptic_json_file", str(tmp_path / "pan.json"),
                         "--stuff_area_limit", "20"])
    assert code == 0
    assert_same_panoptic(tmp_path / "pan.json", tmp_path / "pan", case / "expected" / "pan.json",
                         case / "expected" / "pan")


def test_cityscapes_to_coco(tmp_path):
    case = FIX / "cityscapes"
    code = main_convert(["cityscapes-to-coco", "--original_format_folder", str(case / "input" / "gtFine" / "val"),
                         "--out_folder", str(tmp_path / "pan"), "--out_file", str(tmp_path / "pan.json")])
    assert code == 0
    cats = {c["id"]: c for c in converters.CITYSCAPES_CATEGORIES}
    assert_same_panoptic(tmp_path / "pan.json", tmp_path / "pan", case / "expected" / "pan.json",
                         case / "expected" / "pan", categories=cats)


def test_cityscapes_table_is_cityscapesscripts():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels").labels
    expected = [{"id": el.id, "name": el.name, "color": list(el.color), "supercategory": el.category,
                 "isthing": int(el.hasInstances)} for el in labels if not el.ignoreInEval]
    assert converters.CITYSCAPES_CATEGORIES == expected


def test_cli_takes_panopticapi_option_names(tmp_path):
    case = FIX / "panoptic"
    code = main_convert(["coco-to-detection", "--input_json_file", str(case / "input" / "pan.json"),
                         "--segmentations_folder", str(case / "input" / "pan"), "--output_json_file",
                         str(tmp_path / "det.json"), "--categories_json_file", str(CATS), "--things_only"])
    assert code == 0 and load(tmp_path / "det.json") == load(case / "expected" / "det_things.json")
    code = main_convert(["coco-to-semantic", "--input-json", str(case / "input" / "pan.json"), "--segmentations-folder",
                         str(case / "input" / "pan"), "--semantic_seg_folder", str(tmp_path / "sem"),
                         "--categories-json", str(CATS), "--save_with_color", "True"])
    assert code == 0
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "sem" / "p1.png")),
                                  np.array(Image.open(case / "expected" / "sem_png_color" / "p1.png")))


def _error(capsys, code, prog="panoptic-convert"):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"{prog}: error:"), err
    return lines[0]


def test_overlapping_detections_are_one_line_naming_image_and_annotations(tmp_path, capsys):
    det = load(FIX / "detection" / "input" / "det.json")
    first = next(a for a in det["annotations"] if a["image_id"] == 1)
    det["annotations"].append(dict(first, id=99))  # the same mask again
    (tmp_path / "det.json").write_text(json.dumps(det))
    line = _error(capsys, main_convert(["detection-to-coco", "--input-json", str(tmp_path / "det.json"),
                                        "--output-json", str(tmp_path / "out.json"), "--categories-json", str(CATS)]))
    assert "image id 1" in line and "det.json" in line and f"{first['id']} and 99 overlap" in line
    assert not (tmp_path / "out.json").exists()


def test_bad_inputs_name_the_file(tmp_path, capsys):
    case = FIX / "2ch"
    shutil.copytree(case / "input", tmp_path / "in")
    (tmp_path / "in" / "png" / "c.png").unlink()
    line = _error(capsys, main_convert(["2ch-to-coco", "--source_folder", str(tmp_path / "in" / "png"),
                                        "--images_json_file", str(tmp_path / "in" / "images.json"),
                                        "--categories_json_file", str(CATS),
                                        "--predictions_json_file", str(tmp_path / "pred.json")]))
    assert "c.png" in line and "not found" in line and not (tmp_path / "pred.json").exists()
    cats = [c for c in load(CATS) if c["id"] != 12]
    (tmp_path / "cats.json").write_text(json.dumps(cats))
    shutil.copy(case / "input" / "png" / "c.png", tmp_path / "in" / "png" / "c.png")
    line = _error(capsys, main_convert(["2ch-to-coco", "--source-folder", str(tmp_path / "in" / "png"),
                                        "--images-json", str(tmp_path / "in" / "images.json"),
                                        "--categories-json", str(tmp_path / "cats.json"),
                                        "--predictions-json", str(tmp_path / "pred.json")]))
    assert "unknown semantic label 12" in line and ".png" in line
    line = _error(capsys, main_convert(["coco-to-semantic", "--input-json", str(tmp_path / "missing.json"),
                                        "--output-json", str(tmp_path / "s.json"), "--categories-json", str(CATS)]))
    assert "missing.json" in line and "not found" in line
    line = _error(capsys, main_combine(["--semseg-json", str(tmp_path / "cats.json"), "--instseg-json",
                                        str(tmp_path / "cats.json"), "--images-json", str(tmp_path / "cats.json"),
                                        "--categories-json", str(CATS), "--panoptic-json", str(tmp_path / "p.json")]),
                  prog="panoptic-combine")
    assert "images JSON" in line and "cats.json" in line


def test_malformed_entries_and_escaping_names_are_one_line(tmp_path, capsys):
    pan = load(FIX / "panoptic" / "input" / "pan.json")
    del pan["annotations"][1]["segments_info"][0]["id"]
    (tmp_path / "pan.json").write_text(json.dumps(pan))
    line = _error(capsys, main_convert(["coco-to-detection", "--input-json", str(tmp_path / "pan.json"),
                                        "--segmentations-folder", str(FIX / "panoptic" / "input" / "pan"),
                                        "--output-json", str(tmp_path / "det.json"), "--categories-json", str(CATS)]))
    assert "pan.json: annotations[1]: malformed entry" in line and "'id'" in line
    det = load(FIX / "detection" / "input" / "det.json")
    det["images"][0]["file_name"] = str(tmp_path / "escape.jpg")  # absolute: would write outside
    (tmp_path / "det.json").write_text(json.dumps(det))
    line = _error(capsys, main_convert(["detection-to-coco", "--input-json", str(tmp_path / "det.json"),
                                        "--output-json", str(tmp_path / "out.json"), "--categories-json", str(CATS)]))
    assert "leaves its folder" in line and not (tmp_path / "out.json").exists()
    assert not (tmp_path / "escape.png").exists()
    inst = load(FIX / "combine" / "input" / "inst.json")
    inst[0]["score"] = "high"
    (tmp_path / "inst.json").write_text(json.dumps(inst))
    case = FIX / "combine" / "input"
    line = _error(capsys, main_combine(["--semseg-json", str(case / "sem.json"), "--instseg-json",
                                        str(tmp_path / "inst.json"), "--images-json", str(case / "images.json"),
                                        "--categories-json", str(CATS), "--panoptic-json", str(tmp_path / "p.json")]),
                  prog="panoptic-combine")
    assert "inst.json: result [0] score must be a number" in line


def _segment_masks(data, folder):
    out = {}
    for ann in data["annotations"]:
        ids = read_id_png(Path(folder) / ann["file_name"])
        out[ann["image_id"]] = sorted((s["category_id"], (ids == s["id"]).tobytes()) for s in ann["segments_info"])
    return out


def test_real_coco_sample_against_panopticapi_published_outputs(coco_sample, tmp_path):
    """panopticapi's sample_data: its detection-format JSON was made by its panoptic2detection."""
    cats = coco_sample / "panoptic_coco_categories.json"
    pan_json, pan_folder = coco_sample / "panoptic_examples.json", coco_sample / "panoptic_examples"
    det = converters.coco_to_detection(pan_json, pan_folder, tmp_path / "det.json", cats)
    published = load(coco_sample / "panoptic_coco_detection_format.json")
    assert det["annotations"] == published["annotations"] and det["images"] == published["images"]
    # the published file predates the script's popping of 'color'; the current script pops it
    assert det["categories"] == [{k: v for k, v in c.items() if k != "color"} for c in published["categories"]]
    expected = _segment_masks(load(pan_json), pan_folder)
    back = converters.detection_to_coco(coco_sample / "panoptic_coco_detection_format.json", tmp_path / "d2p",
                                        tmp_path / "d2p.json", cats)
    assert _segment_masks(back, tmp_path / "d2p") == expected
    assert [{k: v for k, v in s.items() if k != "id"} for a in back["annotations"] for s in a["segments_info"]] == [
        {k: v for k, v in s.items() if k != "id"} for a in load(pan_json)["annotations"] for s in a["segments_info"]]
    two = converters.two_channels_to_coco(coco_sample / "panoptic_examples_2ch_format",
                                          coco_sample / "images_info_examples.json", cats, tmp_path / "2ch",
                                          tmp_path / "2ch.json")
    assert _segment_masks(two, tmp_path / "2ch") == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": 1.0}, r"categories\[0\]: category id must be an integer, got 1\.0"),
        ({"isthing": "0"}, r"categories\[0\]: isthing must be 0 or 1, got '0'"),
    ],
)
def test_categories_json_is_checked_as_the_evaluator_checks_it(tmp_path, change, message):
    """The converters read categories through panoptic_eval.parse_categories: the same refusals."""
    cats = json.loads(CATS.read_text())
    cats[0].update(change)
    path = tmp_path / "categories.json"
    path.write_text(json.dumps(cats))
    with pytest.raises(PanopticEvalError, match=rf"categories JSON {re.escape(str(path))}: {message}"):
        converters.read_categories(path)
