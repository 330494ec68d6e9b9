"""Hardening (issue 18): JSON that used to load silently wrong, bad constructor arguments,
decompression-bomb limits and the synth CLI's limits and signals."""

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from panoptic_core.cli import main
from panoptic_core.data import (
    Categories,
    CocoPanopticDataset,
    ColorJitter,
    Normalize,
    PadToDivisible,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    SyntheticConfig,
    write_synthetic_dataset,
)
from panoptic_core.errors import DatasetError
from panoptic_core.targets import PanopticDeepLabTargets
from panoptic_eval import PanopticEvalError, parse_categories


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return write_synthetic_dataset(
        tmp_path_factory.mktemp("hard") / "ds", SyntheticConfig(train=3, val=0, height=32, width=32, seed=1)
    )


def dataset_with(root, tmp_path, edit):
    data = json.loads((root / "annotations" / "panoptic_train.json").read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path, lambda: CocoPanopticDataset(path, root / "train", root / "panoptic_train")


def first_segment(data):
    return data["annotations"][0]["segments_info"][0]


CASES = {
    "annotation image_id repeats": (
        lambda d: d["annotations"][1].update(image_id=d["annotations"][0]["image_id"]),
        r"annotations\[1\] repeats image_id 0 of annotations\[0\]",
    ),
    "images id repeats": (lambda d: d["images"][1].update(id=d["images"][0]["id"]), r"images\[1\] repeats id 0"),
    "iscrowd string": (lambda d: first_segment(d).update(iscrowd="0"), "iscrowd must be 0 or 1, got '0'"),
    "iscrowd 2": (lambda d: first_segment(d).update(iscrowd=2), "iscrowd must be 0 or 1, got 2"),
    "iscrowd float": (lambda d: first_segment(d).update(iscrowd=1.0), "iscrowd must be 0 or 1, got 1.0"),
    "float segment id": (lambda d: first_segment(d).update(id=first_segment(d)["id"] + 0.5), "integer id"),
    "string segment id": (lambda d: first_segment(d).update(id=str(first_segment(d)["id"])), "integer id"),
    "float category_id": (lambda d: first_segment(d).update(category_id=1.0), "integer id and category_id"),
    "float category id": (lambda d: d["categories"][0].update(id=1.5), r"\[0\]: category id must be an integer"),
    "string category id": (lambda d: d["categories"][0].update(id="1"), "category id must be an integer, got '1'"),
    "bool category id": (lambda d: d["categories"][0].update(id=True), "category id must be an integer, got True"),
    "isthing string": (lambda d: d["categories"][4].update(isthing="0"), r"\[4\]: isthing must be 0 or 1, got '0'"),
    "isthing 2": (lambda d: d["categories"][4].update(isthing=2), "isthing must be 0 or 1, got 2"),
    "isthing null": (lambda d: d["categories"][4].update(isthing=None), "isthing must be 0 or 1, got None"),
    "isthing float": (lambda d: d["categories"][0].update(isthing=0.5), "isthing must be 0 or 1, got 0.5"),
    "isthing missing": (lambda d: d["categories"][4].pop("isthing"), r"\[4\]: a category needs 'id' and 'isthing'"),
    "category id repeats": (lambda d: d["categories"][1].update(id=1), "categories: duplicate category id 1"),
    "image id list": (lambda d: d["annotations"][0].update(image_id=[0]), "image id must be an integer or a string"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_json_that_loaded_silently_wrong_is_refused(tiny_root, tmp_path, case):
    edit, message = CASES[case]
    path, build = dataset_with(tiny_root, tmp_path, edit)
    with pytest.raises(DatasetError, match=message) as info:
        build()
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("case", sorted(c for c in CASES if "category id" in c or "isthing" in c))
def test_categories_are_refused_as_panoptic_eval_refuses_them(tiny_root, case):
    """Categories is built by panoptic_eval.parse_categories: the same entries refused, the same message."""
    data = json.loads((tiny_root / "annotations" / "panoptic_train.json").read_text())
    CASES[case][0](data)
    with pytest.raises(PanopticEvalError) as expected:
        parse_categories(data["categories"])
    with pytest.raises(DatasetError) as got:
        Categories.from_list(data["categories"])
    assert str(got.value) == str(expected.value) and isinstance(got.value, ValueError)


def test_valid_flags_still_load(tiny_root, tmp_path):
    def edit(d):
        first_segment(d).update(iscrowd=True)
        d["categories"][0].update(isthing=True)

    _, build = dataset_with(tiny_root, tmp_path, edit)
    ds = build()
    assert ds.load_target(0).segments[0].iscrowd is True and ds.categories.isthing[0] is True


def test_big_images_need_the_size_their_json_announces(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses above 200 px; images have 1024
    ds = CocoPanopticDataset.from_root(tiny_root, "train")
    image, target = ds[0]
    assert image.shape == (3, 32, 32) and target.ids.shape == (32, 32)

    def no_size(d):
        for img in d["images"]:
            del img["height"]

    _, build = dataset_with(tiny_root, tmp_path, no_size)
    with pytest.raises(DatasetError, match="decompression-bomb limit of 200 pixels and the annotation gives no size"):
        build()[0]
    _, build = dataset_with(tiny_root, tmp_path, lambda d: d["images"][0].update(width=31))
    with pytest.raises(DatasetError, match=r"000000.(jpg|png): 32x32 .* says 31x32"):
        build()[0]


# --- constructor arguments ---------------------------------------------------------------------

BAD_ARGUMENTS = [
    (lambda: RandomCrop((0, 0)), "RandomCrop: height must be an integer >= 1, got 0"),
    (lambda: RandomCrop((8, -1)), "RandomCrop: width must be an integer >= 1, got -1"),
    (lambda: RandomCrop((8.5, 8)), "height must be an integer"),
    (lambda: RandomCrop(8), r"size must be \(height, width\)"),
    (lambda: RandomCrop((8, 8), fill=math.nan), "fill must be a finite number"),
    (lambda: PadToDivisible(0), "PadToDivisible: divisor must be an integer >= 1"),
    (lambda: Normalize(std=(1.0, 0.0, 1.0)), "std > 0"),
    (lambda: Normalize(mean=(0.0, 0.0), std=(1.0, 1.0, 1.0)), "one entry per channel"),
    (lambda: ResizeShortestEdge(0), "short_edge must be an integer >= 1"),
    (lambda: ResizeShortestEdge(64, (math.nan, 1.0)), "scale_range must be a finite number"),
    (lambda: ResizeShortestEdge(64, (2.0, 1.0)), "0 < min <= max"),
    (lambda: ResizeShortestEdge(64, max_size=0), "max_size must be an integer >= 1"),
    (lambda: RandomHorizontalFlip(1.5), r"p must be a finite number in \[0.0, 1.0\]"),
    (lambda: ColorJitter(brightness=-0.1), "brightness must be a finite number"),
    (lambda: PanopticDeepLabTargets(sigma=0), "sigma must be a finite number > 0, got 0"),
    (lambda: PanopticDeepLabTargets(sigma=math.inf), "sigma must be a finite number > 0"),
    (lambda: PanopticDeepLabTargets(small_instance_area=-1), "small_instance_area must be an integer >= 0"),
    (lambda: PanopticDeepLabTargets(small_instance_weight=math.nan), "small_instance_weight must be a finite"),
    (lambda: PanopticDeepLabTargets(ignore_label=255.0), "ignore_label must be an integer"),
    (lambda: PanopticDeepLabTargets(ignore_stuff_in_offset="no"), "ignore_stuff_in_offset must be a bool"),
]


@pytest.mark.parametrize("n", range(len(BAD_ARGUMENTS)))
def test_bad_constructor_arguments_are_refused(n):
    build, message = BAD_ARGUMENTS[n]
    with pytest.raises(ValueError, match=message):
        build()


def test_good_arguments_still_work(tiny_root):
    image, target = CocoPanopticDataset.from_root(tiny_root, "train")[0]
    image, target = RandomCrop((16, 40))(image, target)
    assert image.shape == (3, 16, 40)
    assert PadToDivisible(7)(image, target)[0].shape == (3, 21, 42)
    out = PanopticDeepLabTargets(sigma=0.5)(target)
    assert all(not v.is_floating_point() or bool(v.isfinite().all()) for k, v in out.items() if k != "center_points")


# --- the synth CLI: limits before any work, SIGTERM leaves nothing ---------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "10000", "10000"], "size 10000x10000 is above the limit"),
        (["--size", "4096", "2048"], "height \\* width <= 4194304"),
        (["--train", "1000000000"], "at most 100000 images"),
        (["--train", "-1"], "image counts must be >= 0"),
    ],
)
def test_synth_refuses_sizes_beyond_the_limits(tmp_path, capsys, args, message):
    out = tmp_path / "ds"
    assert main(["synth", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.replace("\\", "") in err
    assert os.listdir(tmp_path) == []


def test_synth_sigterm_removes_its_temporary_folder(tmp_path):
    out = tmp_path / "ds"
    proc = subprocess.Popen(
        [sys.executable, "-m", "panoptic_core.cli", "synth", str(out), "--train", "100000", "--val", "0",
         "--size", "16", "16"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not any(name.endswith(".tmp") for name in os.listdir(tmp_path)):  # writing has started
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "panoptic-core synth: interrupted; nothing written\n"
    assert os.listdir(tmp_path) == []


def test_config_refuses_non_integers():
    with pytest.raises(DatasetError, match="height must be an integer"):
        SyntheticConfig(height=64.0)
    assert copy.copy(SyntheticConfig(height=2048, width=2048)).height == 2048
