"""panoptic-eval against panopticapi's code (cityscapesScripts) and torchmetrics.

Run: ``make bench`` or ``.venv/bin/python -m pytest benchmarks/bench_eval.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from panoptic_eval import PanopticQuality, pq_compute
from panoptic_eval.testing import categories, make_gt, make_pred, upscale_pair, write_set

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "eval"))
from reference import reference_pq_compute

N_FILE_IMAGES = 24


@pytest.fixture(scope="module")
def coco_like_set(tmp_path_factory):
    """24 image pairs of 480x640 (and 640x480) with COCO-like segment sizes and counts.

    COCO panoptic val2017 has about 11 thing and 7 stuff segments per image; here up to 20
    things (some occluded away) and up to 4 stuff segments.
    """
    root = tmp_path_factory.mktemp("bench")
    return write_set(root, seed=0, n_images=N_FILE_IMAGES, h=120, w=160, upscale=4, max_things=20)


def per_image(seconds: float) -> str:
    return f"{seconds / N_FILE_IMAGES * 1e3:.2f} ms/image"


def test_file_panopticapi_single_core(benchmark, coco_like_set):
    benchmark.group = "pq_compute 24 images 480x640"
    benchmark.extra_info["peer"] = "cityscapesScripts pq_compute_single_core"
    p = coco_like_set
    benchmark.pedantic(reference_pq_compute, args=(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"]),
                       rounds=3, iterations=1)


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_file_pq_compute(benchmark, coco_like_set, workers):
    benchmark.group = "pq_compute 24 images 480x640"
    p = coco_like_set
    benchmark.pedantic(pq_compute, args=(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"]),
                       kwargs={"workers": workers}, rounds=5, iterations=1)
    benchmark.extra_info["cpus"] = os.cpu_count()


@pytest.fixture(scope="module")
def scored_set(tmp_path_factory):
    """The same kind of set as ``coco_like_set``, with a ``score`` on every predicted segment."""
    root = tmp_path_factory.mktemp("bench_scored")
    return write_set(root, seed=0, n_images=N_FILE_IMAGES, h=120, w=160, upscale=4, max_things=20, scores=True)


def test_file_pq_alone(benchmark, scored_set):
    benchmark.group = "pq_compute 24 images 480x640: PQ alone vs PQ + mIoU + mask AP"
    benchmark.extra_info["peer"] = "pq_compute metrics=('pq',), workers=1"
    p = scored_set
    benchmark.pedantic(pq_compute, args=(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"]),
                       kwargs={"workers": 1}, rounds=7, iterations=1, warmup_rounds=1)


def test_file_pq_miou_ap(benchmark, scored_set):
    """Goal: at most 1.3x the time of PQ alone (a speed-up of at least 0.77 in the summary)."""
    benchmark.group = "pq_compute 24 images 480x640: PQ alone vs PQ + mIoU + mask AP"
    p = scored_set
    result = benchmark.pedantic(pq_compute, args=(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"]),
                                kwargs={"workers": 1, "metrics": ("pq", "miou", "ap")}, rounds=7, iterations=1,
                                warmup_rounds=1)
    assert 0 < result["AP"] < 1 and 0 < result["mIoU"] < 1


# ---------------------------------------------------------------- in memory, 1024 x 2048
OFFSET = 1 << 24


def reference_image_stats(gt, gt_segs, pred, pred_segs):
    """The per-image computation of panopticapi in memory: np.unique over a combined key."""
    gt_info = {s["id"]: s for s in gt_segs}
    pred_info = {s["id"]: dict(s) for s in pred_segs}
    labels, counts = np.unique(pred, return_counts=True)
    for label, count in zip(labels.tolist(), counts.tolist()):
        if label in pred_info:
            pred_info[label]["area"] = count
    key = gt.astype(np.uint64) * OFFSET + pred.astype(np.uint64)
    labels, counts = np.unique(key, return_counts=True)
    inter = {(int(k) // OFFSET, int(k) % OFFSET): int(c) for k, c in zip(labels, counts)}
    stats = {}
    gt_matched, pred_matched = set(), set()
    for (g, p), n in inter.items():
        if g not in gt_info or p not in pred_info or gt_info[g]["iscrowd"]:
            continue
        if gt_info[g]["category_id"] != pred_info[p]["category_id"]:
            continue
        union = pred_info[p]["area"] + gt_info[g]["area"] - n - inter.get((0, p), 0)
        if n / union > 0.5:
            s = stats.setdefault(gt_info[g]["category_id"], [0.0, 0, 0, 0])
            s[0] += n / union
            s[1] += 1
            gt_matched.add(g)
            pred_matched.add(p)
    crowd = {}
    for g, info in gt_info.items():
        if g in gt_matched:
            continue
        if info["iscrowd"]:
            crowd[info["category_id"]] = g
            continue
        stats.setdefault(info["category_id"], [0.0, 0, 0, 0])[3] += 1
    for p, info in pred_info.items():
        if p in pred_matched:
            continue
        ignored = inter.get((0, p), 0) + inter.get((crowd.get(info["category_id"], -1), p), 0)
        if ignored / info["area"] > 0.5:
            continue
        stats.setdefault(info["category_id"], [0.0, 0, 0, 0])[2] += 1
    return stats


@pytest.fixture(scope="module")
def big_image():
    rng = np.random.default_rng(1)
    gt, gi = make_gt(rng, 128, 256)
    pred, pi = make_pred(rng, gt, gi)
    gt, pred = upscale_pair(gt, gi, pred, 8)
    return gt, gi, pred, pi


class _DecodedMaps:
    """Stands in for PIL.Image in cityscapesScripts' module: ``open`` returns an id map already
    decoded (rgb2id is patched to the identity), so the peer is panopticapi's per-image compute
    without PNG decoding and RGB -> id conversion."""

    def __init__(self, maps):
        self.maps = maps

    def open(self, path):
        return self.maps[os.path.basename(path)]


def panopticapi_image_compute(gt, gt_segs, pred, pred_segs):
    """panopticapi's pq_compute_single_core (cityscapesScripts' copy) on one in-memory image."""
    import contextlib
    import io

    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as cs

    cats = {c["id"]: c for c in categories()}
    pair = ({"image_id": 0, "file_name": "gt.png", "segments_info": gt_segs},
            {"image_id": 0, "file_name": "pred.png", "segments_info": pred_segs})
    saved = cs.Image, cs.rgb2id
    cs.Image, cs.rgb2id = _DecodedMaps({"gt.png": gt, "pred.png": pred}), np.asarray
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return cs.pq_compute_single_core(0, [pair], "gt", "pred", cats)
    finally:
        cs.Image, cs.rgb2id = saved


def test_memory_panopticapi_image_compute(benchmark, big_image):
    benchmark.group = "update 1024x2048 vs panopticapi per-image compute"
    benchmark.extra_info["peer"] = "panopticapi pq_compute_single_core minus PNG decoding (cityscapesScripts)"
    benchmark.pedantic(panopticapi_image_compute, args=big_image, rounds=10, iterations=1, warmup_rounds=1)


def test_memory_update_vs_panopticapi(benchmark, big_image):
    """Goal: 10x the peer."""
    benchmark.group = "update 1024x2048 vs panopticapi per-image compute"
    metric = PanopticQuality(categories())
    benchmark.pedantic(metric.update, args=big_image, rounds=30, iterations=1, warmup_rounds=2)


def test_memory_reference_np_unique(benchmark, big_image):
    benchmark.group = "update 1024x2048"
    benchmark.extra_info["peer"] = "np.unique per-image reference"
    benchmark.pedantic(reference_image_stats, args=big_image, rounds=10, iterations=1)


def test_memory_update_numpy(benchmark, big_image):
    benchmark.group = "update 1024x2048"
    metric = PanopticQuality(categories())
    benchmark.pedantic(metric.update, args=big_image, rounds=20, iterations=1, warmup_rounds=1)


def test_memory_update_torch_cpu(benchmark, big_image):
    benchmark.group = "update 1024x2048"
    gt, gi, pred, pi = big_image
    metric = PanopticQuality(categories())
    args = (torch.from_numpy(gt.astype(np.int64)), gi, torch.from_numpy(pred.astype(np.int64)), pi)
    benchmark.pedantic(metric.update, args=args, rounds=20, iterations=1, warmup_rounds=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_memory_update_torch_cuda(benchmark, big_image):
    benchmark.group = "update 1024x2048"
    gt, gi, pred, pi = big_image
    metric = PanopticQuality(categories())
    args = (torch.from_numpy(gt.astype(np.int64)).cuda(), gi, torch.from_numpy(pred.astype(np.int64)).cuda(), pi)
    benchmark.pedantic(metric.update, args=args, rounds=20, iterations=1, warmup_rounds=2)


def test_memory_torchmetrics(benchmark, big_image):
    benchmark.group = "update 1024x2048 vs torchmetrics"
    benchmark.extra_info["peer"] = "torchmetrics PanopticQuality"
    from torchmetrics.detection import PanopticQuality as TMPanopticQuality

    gt, gi, pred, pi = big_image
    things = {c["id"] for c in categories() if c["isthing"]}
    stuffs = {c["id"] for c in categories() if not c["isthing"]}

    def to_pairs(ids, segs):
        cat = np.zeros(ids.shape, np.int64) - 1
        inst = np.zeros(ids.shape, np.int64)
        for k, s in enumerate(segs, 1):
            mask = ids == s["id"]
            cat[mask] = s["category_id"]
            inst[mask] = k
        cat[cat < 0] = 9999  # void
        return torch.from_numpy(np.stack([cat, inst], -1))[None]

    target, preds = to_pairs(gt, gi), to_pairs(pred, pi)
    metric = TMPanopticQuality(things=things, stuffs=stuffs, allow_unknown_preds_category=True)
    benchmark.pedantic(metric.update, args=(preds, target), rounds=1, iterations=1)


def test_memory_update_vs_torchmetrics(benchmark, big_image):
    benchmark.group = "update 1024x2048 vs torchmetrics"
    metric = PanopticQuality(categories())
    benchmark.pedantic(metric.update, args=big_image, rounds=10, iterations=1, warmup_rounds=1)


def test_reference_is_equivalent(big_image, coco_like_set):
    """The peers compute the same thing (so the ratios compare like with like)."""
    metric = PanopticQuality(categories())
    metric.update(*big_image)
    ref = reference_image_stats(*big_image)
    index = {c["id"]: k for k, c in enumerate(categories())}
    for cat, (iou, tp, fp, fn) in ref.items():
        k = index[cat]
        assert metric.stats[1:4, k].tolist() == [tp, fp, fn]
        assert metric.stats[0, k] == pytest.approx(iou, abs=1e-9)
    peer = panopticapi_image_compute(*big_image)
    for cat, k in index.items():
        assert metric.stats[1:4, k].tolist() == [peer.pq_per_cat[cat].tp, peer.pq_per_cat[cat].fp,
                                                 peer.pq_per_cat[cat].fn]
        assert metric.stats[0, k] == pytest.approx(peer.pq_per_cat[cat].iou, abs=1e-9)
    p = coco_like_set
    ref = reference_pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"])
    ours = pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"])
    assert abs(ours["All"]["pq"] - ref["All"]["pq"]) < 1e-9
    assert ours["All"]["n"] == ref["All"]["n"]


COCO_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-panoptic-sample"


@pytest.fixture(scope="module")
def real_coco():
    if not (COCO_SAMPLE / "panoptic_examples.json").is_file():
        pytest.skip(f"real COCO sample not present at {COCO_SAMPLE}")
    folder = COCO_SAMPLE / "panoptic_examples"
    return (COCO_SAMPLE / "panoptic_examples.json", COCO_SAMPLE / "panoptic_examples.json", folder, folder)


def test_real_coco_panopticapi(benchmark, real_coco):
    benchmark.group = "pq_compute real COCO sample (2 images, GT vs GT)"
    benchmark.extra_info["peer"] = "cityscapesScripts pq_compute_single_core"
    benchmark.pedantic(reference_pq_compute, args=real_coco, rounds=20, iterations=1)


def test_real_coco_pq_compute(benchmark, real_coco):
    benchmark.group = "pq_compute real COCO sample (2 images, GT vs GT)"
    benchmark.pedantic(pq_compute, args=real_coco, kwargs={"workers": 1}, rounds=20, iterations=1)
