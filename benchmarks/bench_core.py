"""panoptic-core target generation against detectron2's per-segment generator, same run: alone and
inside a DataLoader that reads, transforms and batches a synthetic dataset.

Run: ``make bench`` or ``.venv/bin/python -m pytest benchmarks/bench_core.py -o python_files="bench_*.py"``.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from panoptic_core.data import (
    Categories,
    CocoPanopticDataset,
    Compose,
    Normalize,
    PanopticCollate,
    PanopticTarget,
    RandomHorizontalFlip,
    Segment,
    SyntheticConfig,
    segment_stats,
    write_synthetic_dataset,
)
from panoptic_core.targets import (
    PanopticDeepLabTargets,
    PanopticFCNTargets,
    detectron2_deeplab_targets,
    panoptic_fcn_generate_gt,
)

# Cityscapes' 19 training classes: 11 stuff, then 8 things.
CITYSCAPES = Categories.from_list([{"id": i, "name": f"c{i}", "isthing": int(i >= 11)} for i in range(19)])
SIZES = {"512x1024": (512, 1024), "1024x2048": (1024, 2048)}


def street_target(height: int, width: int, num_instances: int = 40, seed: int = 0) -> PanopticTarget:
    """A Cityscapes-like annotation: 11 wavy stuff bands, then ``num_instances`` thing discs
    (radius 8-120 px, later ones occluding earlier ones), one in ten a crowd region."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.arange(height, dtype=torch.float32)[:, None]
    xx = torch.arange(width, dtype=torch.float32)[None, :]
    wave = 0.06 * height * torch.sin(xx / width * 6.28 * 3 + float(torch.rand((), generator=g)) * 6.28)
    ids = (((yy + wave) / height * 11).long().clamp(0, 10) + 1) * 1000  # stuff class k -> id (k + 1) * 1000
    cats = {(k + 1) * 1000: k for k in range(11)}
    crowd = set()
    for n in range(num_instances):
        cy, cx = (int(torch.randint(0, size, (), generator=g)) for size in (height, width))
        radius = float(torch.randint(8, 121, (), generator=g))
        seg_id = 100_000 + n
        ids = torch.where((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2, seg_id, ids)
        cats[seg_id] = 11 + int(torch.randint(0, 8, (), generator=g))
        if n % 10 == 9:
            crowd.add(seg_id)
    present = sorted(int(i) for i in torch.unique(ids))
    segments = [
        Segment(i, cats[i], cats[i], CITYSCAPES.isthing[cats[i]], i in crowd, area, bbox)
        for i, (area, bbox) in zip(present, segment_stats(ids, present), strict=True)
    ]
    return PanopticTarget(ids, segments, 0, "street.png")


@pytest.mark.parametrize("size", SIZES)
def test_deeplab_targets_detectron2(benchmark, size):
    benchmark.group = f"Panoptic-DeepLab targets {size}, 40 instances (CPU)"
    benchmark.extra_info["peer"] = "detectron2 PanopticDeepLabTargetGenerator (per-segment numpy)"
    benchmark.pedantic(detectron2_deeplab_targets, args=(street_target(*SIZES[size]),), rounds=3, iterations=1)


@pytest.mark.parametrize("size", SIZES)
def test_deeplab_targets_ours(benchmark, size):
    benchmark.group = f"Panoptic-DeepLab targets {size}, 40 instances (CPU)"
    target = street_target(*SIZES[size])
    out = benchmark.pedantic(PanopticDeepLabTargets(), args=(target,), rounds=10, iterations=1, warmup_rounds=1)
    want = detectron2_deeplab_targets(target)
    assert torch.equal(out["offset"], torch.from_numpy(want["offset"]))
    assert torch.equal(out["center"][0], torch.from_numpy(want["center"]))


@pytest.mark.parametrize("size", SIZES)
def test_panoptic_fcn_targets_generate_gt(benchmark, size):
    benchmark.group = f"Panoptic FCN targets {size}, 40 instances (CPU)"
    benchmark.extra_info["peer"] = "Panoptic FCN GenerateGT (full-size float masks + F.interpolate)"
    target = street_target(*SIZES[size])
    benchmark.pedantic(panoptic_fcn_generate_gt, args=(target, CITYSCAPES), rounds=3, iterations=1)


@pytest.mark.parametrize("size", SIZES)
def test_panoptic_fcn_targets_ours(benchmark, size):
    benchmark.group = f"Panoptic FCN targets {size}, 40 instances (CPU)"
    target = street_target(*SIZES[size])
    out = benchmark.pedantic(PanopticFCNTargets(CITYSCAPES), args=(target,), rounds=5, iterations=1, warmup_rounds=1)
    want = panoptic_fcn_generate_gt(target, CITYSCAPES)
    assert torch.equal(out["instance_masks"], want["instance_masks"])
    assert all(torch.equal(a, b) for a, b in zip(out["thing_heatmap"], want["thing_heatmap"], strict=True))


class Detectron2Generator:
    """detectron2's per-segment generator as a collate target generator (the loader's peer)."""

    ragged = frozenset({"center_points"})

    def __call__(self, target: PanopticTarget) -> dict:
        return {k: torch.from_numpy(v) for k, v in detectron2_deeplab_targets(target).items()}


@pytest.fixture(scope="module")
def street_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "ds"
    write_synthetic_dataset(root, SyntheticConfig(train=8, val=0, height=1024, width=2048, seed=0))
    return CocoPanopticDataset.from_root(root, "train", transforms=Compose([RandomHorizontalFlip(), Normalize()]))


def read_all(dataset, generator) -> int:
    loader = DataLoader(dataset, batch_size=2, collate_fn=PanopticCollate(target_generator=generator))
    return sum(len(batch) for batch in loader)


def test_loader_detectron2_targets(benchmark, street_dataset):
    benchmark.group = "loader: 8 synthetic 1024x2048 images read, flipped, normalised, batched with DeepLab targets"
    benchmark.extra_info["peer"] = "the same loader with detectron2's target generator"
    benchmark.pedantic(read_all, args=(street_dataset, Detectron2Generator()), rounds=3, iterations=1)


def test_loader_our_targets(benchmark, street_dataset):
    benchmark.group = "loader: 8 synthetic 1024x2048 images read, flipped, normalised, batched with DeepLab targets"
    assert benchmark.pedantic(read_all, args=(street_dataset, PanopticDeepLabTargets()), rounds=3, iterations=1) == 8
