"""SOLOv2Targets against a float32 port of mmdetection's ``SOLOV2Head._get_targets_single``: one
(cell, mask) pair per instance and cell, so a cell shared by two instances gives two dice targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scenes import CATS, make_target, synthetic_target

from panoptic_core.data import PanopticCollate, PanopticTarget
from panoptic_core.targets import CombinedTargets, PanopticDeepLabTargets, SOLOv2Targets


def _mmdet_pairs(target: PanopticTarget, gen: SOLOv2Targets) -> tuple[list[np.ndarray], list[list[tuple[int, int]]]]:
    """mmdetection's labels and (pos_index, instance) pairs per level, transcribed in float32.

    For each level: the instances whose sqrt box area is in range, in order; the cell of the
    center of mass and of the 0.2-scaled box edges (trunc((v / size) / (1 / S)) in float32),
    limited to the 3 x 3 cells around the center; labels overwritten in order; then one pair per
    cell of the region, row-major (``for i in range(top, down + 1): for j in range(left, right + 1)``).
    """
    f32 = np.float32
    ids = target.ids.numpy()
    h, w = ids.shape
    full_h, full_w = -(-h // 4) * 4, -(-w // 4) * 4
    things = [s for s in target.segments if s.isthing and not s.iscrowd and s.area > 0]
    labels_out, pairs_out = [], []
    for grid, (lo, hi) in zip(gen.num_grids, gen.scale_ranges, strict=True):
        labels = np.full((grid, grid), CATS.num_things)
        pairs: list[tuple[int, int]] = []

        def cell(v, size, grid=grid):
            return int(np.trunc(f32(f32(v) / f32(size)) / f32(1.0 / grid)))

        for n, seg in enumerate(things):
            x1, y1, x2, y2 = (f32(v) for v in seg.xyxy)
            if not lo <= np.sqrt((x2 - x1) * (y2 - y1)) <= hi:
                continue
            ys, xs = np.nonzero(ids == seg.id)
            cy, cx = f32(ys.sum()) / f32(len(ys)), f32(xs.sum()) / f32(len(xs))
            hh, hw = f32(0.5) * (y2 - y1) * f32(0.2), f32(0.5) * (x2 - x1) * f32(0.2)
            coord_h, coord_w = cell(cy, full_h), cell(cx, full_w)
            top = max(max(0, cell(cy - hh, full_h)), coord_h - 1)
            down = min(min(grid - 1, cell(cy + hh, full_h)), coord_h + 1)
            left = max(coord_w - 1, max(0, cell(cx - hw, full_w)))
            right = min(min(grid - 1, cell(cx + hw, full_w)), coord_w + 1)
            labels[top : down + 1, left : right + 1] = CATS.thing_index[seg.class_index]
            for i in range(top, down + 1):
                for j in range(left, right + 1):
                    pairs.append((i * grid + j, n))
        labels_out.append(labels)
        pairs_out.append(pairs)
    return labels_out, pairs_out


def test_ring_around_a_second_instance_gives_one_pair_per_instance_and_cell():
    """The audit's case: a ring and the instance inside it share their center cells; upstream
    gives each instance its own dice target at every shared cell (13 pairs over 9 cells)."""
    ids = np.full((160, 160), 9, np.int64)
    yy, xx = np.mgrid[:160, :160]
    r = np.hypot(yy - 79.5, xx - 79.5)
    ids[(r >= 20) & (r < 30)] = 4  # ring: box 60 x 60, center of mass at its middle
    ids[70:90, 70:90] = 5  # square in the hole: box 20 x 20, same center
    target = make_target(ids, {9: 92, 4: 3, 5: 1})
    gen = SOLOv2Targets(CATS)
    out = gen(target)
    pairs = out["location_pairs"][0]  # level 0 (sqrt area 1..96) holds both
    cells = out["location_classes"][0] != CATS.num_things
    assert pairs.shape == (13, 2) and int(cells.sum()) == 9
    assert (pairs[:, 1] == 0).sum() == 9 and (pairs[:, 1] == 1).sum() == 4  # ring: 3 x 3, square: 2 x 2
    assert len(torch.unique(pairs[:, 0])) == 9  # the square's 4 cells are among the ring's 9
    _, want = _mmdet_pairs(target, gen)
    assert pairs.tolist() == [list(p) for p in want[0]]
    # the shared cells' class is the later instance's (labels overwritten in order)
    shared = pairs[pairs[:, 1] == 1, 0]
    assert (out["location_classes"][0].reshape(-1)[shared] == CATS.thing_index[CATS.class_index(1)]).all()


@pytest.mark.parametrize(("seed", "size"), [(s, (128, 160)) for s in range(12)] + [(3, (97, 130)), (5, (256, 320))])
def test_pairs_and_labels_equal_the_mmdetection_port(seed, size):
    target = synthetic_target(seed, *size)
    gen = SOLOv2Targets(CATS)
    out = gen(target)
    labels, pairs = _mmdet_pairs(target, gen)
    for level in range(len(gen.num_grids)):
        assert np.array_equal(out["location_classes"][level].numpy(), labels[level]), (seed, level)
        assert out["location_pairs"][level].tolist() == [list(p) for p in pairs[level]], (seed, level)
        got = out["location_pairs"][level]
        assert got.dtype == torch.int64 and got.shape[1] == 2
        if len(got):
            assert int(got[:, 1].max()) < len(out["instance_masks"])


def test_shared_cells_occur_on_synthetic_scenes():
    """Not only on the constructed ring: random scenes have cells with two mask targets too."""
    gen = SOLOv2Targets(CATS)
    duplicated = 0
    for seed in range(30):
        out = gen(synthetic_target(seed, 128, 160))
        for pairs in out["location_pairs"]:
            duplicated += len(pairs) - len(torch.unique(pairs[:, 0]))
    assert duplicated > 0


def test_empty_image_has_no_pairs():
    out = SOLOv2Targets(CATS)(PanopticTarget(torch.zeros(64, 64, dtype=torch.int64), [], 0, "e.png"))
    assert all(p.shape == (0, 2) and p.dtype == torch.int64 for p in out["location_pairs"])


def test_combined_targets_merge_generators_in_one_collate():
    semantic, solo = PanopticDeepLabTargets(), SOLOv2Targets(CATS)
    keys = {"semantic", "location_classes", "location_pairs", "instance_masks", "instance_classes"}
    gen = CombinedTargets([semantic, solo], keys=keys)
    assert gen.keys == keys
    assert gen.ragged == {"location_pairs", "instance_masks", "instance_classes"}
    assert gen.per_level == {"location_classes", "location_pairs"}
    items = [(torch.zeros(3, 96, 128), synthetic_target(s, 96, 128)) for s in range(2)]
    batch = PanopticCollate(32, target_generator=gen)(items)
    t = batch.method_targets
    assert set(t) == keys
    assert t["semantic"].shape == (2, 96, 128)
    assert len(t["location_pairs"]) == 2 and len(t["location_pairs"][0]) == len(solo.num_grids)
    padded = batch.targets[0]
    assert torch.equal(t["semantic"][0], semantic(padded)["semantic"])
    for got, want in zip(t["location_pairs"][0], solo(padded)["location_pairs"], strict=True):
        assert torch.equal(got, want)
    everything = CombinedTargets([semantic, solo])
    assert everything.keys == semantic.keys | solo.keys


def test_combined_targets_errors():
    with pytest.raises(ValueError, match="empty"):
        CombinedTargets([])
    with pytest.raises(ValueError, match="'instance_classes' is returned by both"):
        CombinedTargets([SOLOv2Targets(CATS), SOLOv2Targets(CATS)])
    with pytest.raises(ValueError, match=r"\['centre'\] are returned by no generator"):
        CombinedTargets([SOLOv2Targets(CATS)], keys={"centre"})
    with pytest.raises(ValueError, match="does not declare"):
        CombinedTargets([lambda target: {}])
