import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from panoptic_core.cli import main
from panoptic_core.data import (
    CocoPanopticDataset,
    PanopticCollate,
    SyntheticConfig,
    write_synthetic_dataset,
)
from panoptic_core.errors import DatasetError
from panoptic_core.targets import PanopticDeepLabTargets
from panoptic_eval import pq_compute, read_id_png, write_id_png


def test_loads_real_coco_sample(coco_sample):
    data = json.loads((coco_sample / "panoptic_examples.json").read_text())
    ds = CocoPanopticDataset(
        coco_sample / "panoptic_examples.json", coco_sample / "images", coco_sample / "panoptic_examples"
    )
    assert len(ds) == len(data["annotations"]) == 2
    assert ds.categories.num_classes == 133 and ds.categories.num_things == 80
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    for i, ann in enumerate(data["annotations"]):
        image, target = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, *sizes[ann["image_id"]])
        assert target.ids.shape == sizes[ann["image_id"]]
        by_id = {s.id: s for s in target.segments}
        assert len(by_id) == len(ann["segments_info"])
        for info in ann["segments_info"]:
            seg = by_id[info["id"]]
            assert seg.area == info["area"] and list(seg.bbox) == info["bbox"]
            assert seg.category_id == info["category_id"] and seg.iscrowd == bool(info["iscrowd"])
            k = ds.categories.class_index(info["category_id"])
            assert seg.class_index == k and seg.isthing == bool(data["categories"][k]["isthing"])


def test_synthetic_is_valid_coco_panoptic(synthetic_root):
    for split in ("train", "val"):
        js = synthetic_root / "annotations" / f"panoptic_{split}.json"
        folder = synthetic_root / f"panoptic_{split}"
        result = pq_compute(js, js, folder, folder)
        assert result["All"]["pq"] == 1.0 and result["Things"]["n"] == 4 and result["Stuff"]["n"] == 4
        data = json.loads(js.read_text())
        crowd = void = 0
        for ann in data["annotations"]:
            ids = read_id_png(folder / ann["file_name"])
            void += int((ids == 0).sum())
            assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in ann["segments_info"]}
            for s in ann["segments_info"]:
                ys, xs = np.nonzero(ids == s["id"])
                assert s["area"] == len(ys)
                assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                crowd += s["iscrowd"]
            img = Image.open(synthetic_root / split / ann["file_name"].replace(".png", ".jpg"))
            assert img.size == (160, 128)
        assert void > 0
    ds = CocoPanopticDataset.from_root(synthetic_root, "train")
    kinds = {s.isthing for i in range(len(ds)) for s in ds[i][1].segments}
    assert kinds == {True, False}


def test_synthetic_has_crowd_void_and_sizes():
    rng_scenes = []
    from panoptic_core.data import make_synthetic_image

    for i in range(30):
        _, ids, info = make_synthetic_image(np.random.default_rng([0, 0, i]), 128, 160)
        rng_scenes.append((ids, info))
    infos = [s for _, info in rng_scenes for s in info]
    assert any(s["iscrowd"] for s in infos)
    assert any((ids == 0).any() for ids, _ in rng_scenes)
    thing_areas = [s["area"] for s in infos if s["category_id"] < 90 and not s["iscrowd"]]
    assert min(thing_areas) < 50 and max(thing_areas) > 3000
    assert len({s["category_id"] for s in infos}) == 8


def test_synthetic_is_deterministic_and_independent_of_count(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", SyntheticConfig(train=3, val=1, seed=7))
    b = write_synthetic_dataset(tmp_path / "b", SyntheticConfig(train=5, val=1, seed=7))
    c = write_synthetic_dataset(tmp_path / "c", SyntheticConfig(train=3, val=1, seed=8))
    for name in ("train/000002.jpg", "panoptic_train/000002.png", "panoptic_val/000000.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "panoptic_train/000000.png").read_bytes() != (c / "panoptic_train/000000.png").read_bytes()
    ja = json.loads((a / "annotations/panoptic_train.json").read_text())["annotations"]
    jb = json.loads((b / "annotations/panoptic_train.json").read_text())["annotations"]
    assert ja == jb[:3]


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["synth", str(out), "--train", "2", "--val", "1", "--size", "48", "64", "--seed", "1"]) == 0
    assert sorted(p.name for p in (out / "train").iterdir()) == ["000000.jpg", "000001.jpg"]
    assert Image.open(out / "val" / "000000.jpg").size == (64, 48)
    assert main(["synth", str(out), "--train", "1", "--val", "1"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "not empty" in err and "Traceback" not in err
    assert main(["synth", str(out), "--train", "1", "--val", "0", "--overwrite"]) == 0
    assert len(list((out / "train").iterdir())) == 1
    assert main(["synth", str(tmp_path / "x"), "--size", "8", "8"]) == 2
    assert main(["synth", str(tmp_path / "y"), "--seed", "-1"]) == 2
    err = capsys.readouterr().err
    assert "seed must be >= 0, got -1" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # nothing half-written


@pytest.fixture
def broken(tmp_path, synthetic_root):
    root = tmp_path / "ds"
    shutil.copytree(synthetic_root, root)
    return root


def _edit_json(root: Path, fn) -> None:
    path = root / "annotations" / "panoptic_val.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_error_unlisted_id_in_png(broken):
    png = broken / "panoptic_val" / "000000.png"
    ids = read_id_png(png)
    ids[0, 0] = 12345678 % (1 << 24)
    write_id_png(png, ids)
    with pytest.raises(DatasetError, match=r"000000\.png.*does not list"):
        CocoPanopticDataset.from_root(broken, "val")[0]


def test_error_listed_segment_absent(broken):
    _edit_json(
        broken, lambda d: d["annotations"][1]["segments_info"].append({"id": 999, "category_id": 1, "iscrowd": 0})
    )
    with pytest.raises(DatasetError, match=r"image_id 1.*\[999\].*absent from PNG .*000001\.png"):
        CocoPanopticDataset.from_root(broken, "val")[1]


def test_error_size_mismatch(broken):
    Image.new("RGB", (10, 10)).save(broken / "val" / "000002.jpg")
    with pytest.raises(DatasetError, match=r"000002\.jpg is 10x10 but its panoptic PNG .*000002\.png is 160x128"):
        CocoPanopticDataset.from_root(broken, "val")[2]


def test_error_corrupt_image_and_png(broken):
    (broken / "val" / "000000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"000000\.jpg: unreadable or corrupt"):
        CocoPanopticDataset.from_root(broken, "val")[0]
    (broken / "panoptic_val" / "000001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match=r"000001\.png"):
        CocoPanopticDataset.from_root(broken, "val")[1]


def test_error_unknown_category_and_bad_json(broken):
    _edit_json(broken, lambda d: d["annotations"][0]["segments_info"][0].update(category_id=4242))
    with pytest.raises(DatasetError, match=r"panoptic_val\.json, image_id 0: segment \d+ has unknown category_id 4242"):
        CocoPanopticDataset.from_root(broken, "val")
    (broken / "annotations" / "panoptic_val.json").write_text("{broken")
    with pytest.raises(DatasetError, match=r"panoptic_val\.json: malformed JSON"):
        CocoPanopticDataset.from_root(broken, "val")
    with pytest.raises(DatasetError, match="file not found"):
        CocoPanopticDataset.from_root(broken, "test")


def test_error_path_leaving_folder(broken):
    _edit_json(broken, lambda d: d["annotations"][0].update(file_name="../../etc/passwd"))
    with pytest.raises(DatasetError, match="leaves its folder"):
        CocoPanopticDataset.from_root(broken, "val")[0]


def test_error_duplicate_segment(broken):
    def dup(d):
        segs = d["annotations"][0]["segments_info"]
        segs.append(dict(segs[0]))

    _edit_json(broken, dup)
    with pytest.raises(DatasetError, match="listed twice"):
        CocoPanopticDataset.from_root(broken, "val")


def _batches(ds, **kwargs):
    loader = DataLoader(ds, batch_size=2, collate_fn=PanopticCollate(size_divisibility=32), **kwargs)
    return [(b.images, [t.image_id for t in b.targets], [t.ids for t in b.targets]) for b in loader]


def test_dataloader_workers_and_distributed_sampler(synthetic_root):
    ds = CocoPanopticDataset.from_root(synthetic_root, "train")
    single = _batches(ds)
    multi = _batches(ds, num_workers=2)
    assert len(single) == len(multi) == 3
    for (ia, na, da), (ib, nb, db) in zip(single, multi, strict=True):
        assert torch.equal(ia, ib) and na == nb
        assert all(torch.equal(x, y) for x, y in zip(da, db, strict=True))
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        for _, names, _ in _batches(ds, sampler=sampler, num_workers=1):
            seen += names
    assert sorted(seen) == list(range(len(ds)))


def test_collate_pads_and_masks(synthetic_root):
    ds = CocoPanopticDataset.from_root(synthetic_root, "val")
    a, ta = ds[0]
    small = (a[:, :50, :70], ta.refreshed(ta.ids[:50, :70].contiguous()))
    batch = PanopticCollate(size_divisibility=32)([ds[1], small])
    assert batch.images.shape == (2, 3, 128, 160)
    assert batch.image_sizes == [(128, 160), (50, 70)]
    assert not batch.padding_mask[0].any()
    assert batch.padding_mask[1, 50:].all() and batch.padding_mask[1, :, 70:].all()
    assert not batch.padding_mask[1, :50, :70].any()
    assert (batch.targets[1].ids[50:] == 0).all() and torch.equal(batch.targets[1].ids[:50, :70], small[1].ids)
    assert torch.equal(batch.images[1, :, :50, :70], small[0])


def test_batch_moves_every_tensor(synthetic_root):
    ds = CocoPanopticDataset.from_root(synthetic_root, "val")
    batch = PanopticCollate(target_generator=PanopticDeepLabTargets())([ds[0], ds[1]])
    seen = []

    def record(x):
        seen.append(x)
        return x.double()

    moved = batch.apply(record)
    nested = [batch.method_targets[k] for k in sorted(batch.method_targets)]
    expected = 2 + len(batch.targets) + sum(len(v) if isinstance(v, list) else 1 for v in nested)
    assert len(seen) == expected
    assert moved.images.dtype == torch.float64 and moved.targets[1].ids.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in moved.method_targets["center_points"])
    assert moved.image_sizes == batch.image_sizes and batch.images.dtype == torch.uint8
    on_cpu = batch.to("cpu")
    assert torch.equal(on_cpu.method_targets["offset"], batch.method_targets["offset"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device; CPU twin above")
def test_pin_memory_pins_method_targets(synthetic_root):
    ds = CocoPanopticDataset.from_root(synthetic_root, "val")
    loader = DataLoader(
        ds, batch_size=2, pin_memory=True, collate_fn=PanopticCollate(target_generator=PanopticDeepLabTargets())
    )
    batch = next(iter(loader))
    assert batch.images.is_pinned() and batch.targets[0].ids.is_pinned()
    assert batch.method_targets["center"].is_pinned() and batch.method_targets["center_points"][0].is_pinned()
    on_gpu = batch.to("cuda", non_blocking=True)
    assert on_gpu.method_targets["offset"].is_cuda


def test_from_cityscapes_finds_images_in_city_folders(synthetic_root, tmp_path):
    """cityscapesScripts' JSON names images without their city folder; from_cityscapes adds it."""
    data = json.loads((synthetic_root / "annotations" / "panoptic_val.json").read_text())
    root = tmp_path / "cityscapes"
    (root / "gtFine").mkdir(parents=True)
    shutil.copytree(synthetic_root / "panoptic_val", root / "gtFine" / "cityscapes_panoptic_val")
    for k, image in enumerate(data["images"]):
        city = ["aachen", "bochum"][k % 2]
        name = f"{city}_000000_{k:06d}_leftImg8bit.jpg"
        (root / "leftImg8bit" / "val" / city).mkdir(parents=True, exist_ok=True)
        shutil.copy(synthetic_root / "val" / image["file_name"], root / "leftImg8bit" / "val" / city / name)
        image["file_name"] = name
    (root / "gtFine" / "cityscapes_panoptic_val.json").write_text(json.dumps(data))
    ds = CocoPanopticDataset.from_cityscapes(root, "val")
    reference = CocoPanopticDataset.from_root(synthetic_root, "val")
    assert len(ds) == len(reference) >= 2
    for i in range(len(ds)):
        image, target = ds[i]
        ref_image, ref_target = reference[i]
        assert torch.equal(image, ref_image) and torch.equal(target.ids, ref_target.ids)
