"""PNG decoding and id encoding against plain Pillow + numpy."""

import json

import numpy as np
import pytest
from PIL import Image
from reference import assert_same_results, reference_pq_compute

from panoptic_eval import id2rgb, pq_compute, read_id_png, rgb2id, write_id_png
from panoptic_eval.formats import read_packed_png
from panoptic_eval.testing import categories


def test_read_id_png_matches_pillow_numpy_on_real_coco(coco_sample):
    for png in sorted((coco_sample / "panoptic_examples").glob("*.png")):
        expected = rgb2id(np.array(Image.open(png)))
        np.testing.assert_array_equal(read_id_png(png), expected)
        assert (read_packed_png(png) & 0xFFFFFF == expected).all()


def test_rgba_png_ignores_alpha(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1 << 24, size=(7, 9)).astype(np.uint32)
    rgba = np.concatenate([id2rgb(ids), rng.integers(0, 256, size=(7, 9, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_id_png(tmp_path / "a.png"), ids)


def test_id_round_trip_and_huge_ids(tmp_path):
    ids = np.array([[0, 1, 255, 256], [65535, 65536, (1 << 24) - 1, 12345678]], np.uint32)
    write_id_png(tmp_path / "x.png", ids)
    np.testing.assert_array_equal(read_id_png(tmp_path / "x.png"), ids)
    np.testing.assert_array_equal(rgb2id(id2rgb(ids)), ids)
    with pytest.raises(ValueError, match="2\\*\\*24"):
        id2rgb(np.array([[1 << 24]]))


def test_noise_maps_take_the_per_pixel_path_and_match(tmp_path):
    """Maps without runs (every pixel differs from its neighbour) skip the run-length step."""
    rng = np.random.default_rng(4)
    cats = categories()
    gt_anns, pred_anns = [], []
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    for i in range(4):
        gt_seg_ids = rng.choice(np.arange(1, 1 << 24), size=6, replace=False)
        gt = rng.choice(np.concatenate([[0], gt_seg_ids]), size=(20, 30)).astype(np.uint32)
        pred = np.where(rng.random((20, 30)) < 0.7, gt, rng.choice(np.concatenate([[0], gt_seg_ids]), size=(20, 30)))
        pred = pred.astype(np.uint32)
        gcat = {int(s): int(rng.choice([c["id"] for c in cats])) for s in gt_seg_ids}
        crowd = {int(s): int(rng.random() < 0.2) for s in gt_seg_ids}
        gi = [{"id": int(s), "category_id": gcat[int(s)], "iscrowd": crowd[int(s)], "area": int((gt == s).sum())}
              for s in gt_seg_ids]
        pi = [{"id": int(s), "category_id": gcat[int(s)]} for s in np.unique(pred) if s]
        write_id_png(tmp_path / "gt" / f"{i}.png", gt)
        write_id_png(tmp_path / "pred" / f"{i}.png", pred)
        gt_anns.append({"image_id": i, "file_name": f"{i}.png", "segments_info": gi})
        pred_anns.append({"image_id": i, "file_name": f"{i}.png", "segments_info": pi})

    (tmp_path / "gt.json").write_text(json.dumps({"annotations": gt_anns, "categories": cats}))
    (tmp_path / "pred.json").write_text(json.dumps({"annotations": pred_anns}))
    args = (tmp_path / "gt.json", tmp_path / "pred.json", tmp_path / "gt", tmp_path / "pred")
    assert_same_results(pq_compute(*args, workers=1), reference_pq_compute(*args))
