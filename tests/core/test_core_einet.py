"""EINetTargets: what EINet's figures use (no offsets), maps at the decoder's stride."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scenes import CATS, make_target, synthetic_target

from panoptic_core.data import (
    PanopticCollate,
    PanopticTarget,
)
from panoptic_core.targets import EINetTargets, PanopticDeepLabTargets, centroids, segment_index_map


def _centernet_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's ``gaussian_radius`` (src/lib/utils/image.py), transcribed in float64."""
    a1, b1, c1 = 1, height + width, width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (height + width), (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (height + width), (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def test_keys_are_what_the_figures_use():
    out = EINetTargets(CATS)(synthetic_target(0))
    assert set(out) == EINetTargets.keys
    assert not {"center", "center_weights", "offset", "offset_weights", "center_points"} & set(out)
    assert EINetTargets.ragged == {"segment_classes", "segment_isthing", "segment_iscrowd", "segment_centers"}


@pytest.mark.parametrize("seed", range(6))
def test_semantic_targets_equal_panoptic_deeplab(seed):
    target = synthetic_target(seed)
    for crowd in (False, True):
        ours = EINetTargets(CATS, small_instance_area=300, ignore_crowd_in_semantic=crowd)(target)
        theirs = PanopticDeepLabTargets(small_instance_area=300, ignore_crowd_in_semantic=crowd)(target)
        assert torch.equal(ours["semantic"], theirs["semantic"])
        assert torch.equal(ours["semantic_weights"], theirs["semantic_weights"])


def test_maps_at_the_decoder_stride_and_their_cost():
    target = synthetic_target(2, 96, 128)
    out = EINetTargets(CATS)(target)  # stride 4 by default
    assert out["class_center"].shape == (CATS.num_things, 24, 32)
    assert out["segment_map"].shape == (24, 32)
    assert out["semantic"].shape == (96, 128)  # L_sem is computed at the input size
    full = EINetTargets(CATS, stride=1)(target)
    assert full["class_center"].numel() == 16 * out["class_center"].numel()
    # the segment map samples input pixel (4y + 2, 4x + 2)
    index = segment_index_map(target.ids, target.segments)
    assert torch.equal(out["segment_map"], index[2::4, 2::4])
    # the figure: 80 COCO thing heatmaps of an 800 x 1344 image, float32
    assert 80 * 800 * 1344 * 4 / 2**20 == pytest.approx(328, abs=1)  # MiB (344 MB) at stride 1
    assert 80 * 200 * 336 * 4 / 2**20 == pytest.approx(20.5, abs=0.1)  # at stride 4


def test_centers_gaussians_and_scale_adaptive_radius():
    ids = np.full((64, 96), 9, np.int64)
    ids[10:30, 10:30] = 4  # disc, 20 x 20, centroid (19.5, 19.5)
    ids[40:62, 50:90] = 5  # ring class, 40 x 22, centroid (50.5, 69.5)
    ids[0:6, 0:6] = 7  # crowd of class disc
    target = make_target(ids, {9: 95, 4: 1, 5: 5, 7: 1, 8: 2}, crowd={7}, extra=(8,))
    out = EINetTargets(CATS, stride=4)(target)
    segs = [s.id for s in target.segments]
    assert segs == [4, 5, 7, 9, 8]
    centers = out["segment_centers"]
    assert centers[0].tolist() == [4, 4] and centers[1].tolist() == [12, 17]  # floor(centroid / 4)
    assert centers[4].tolist() == [-1, -1]  # no pixels
    heat = out["class_center"]
    disc, ring = CATS.thing_index[CATS.class_index(1)], CATS.thing_index[CATS.class_index(5)]
    assert heat[disc, 4, 4] == 1 and heat[ring, 12, 17] == 1
    assert heat[disc].eq(1).sum() == 1  # the crowd region gets no Gaussian
    assert out["segment_iscrowd"].tolist() == [False, False, True, False, False]
    assert out["segment_isthing"].tolist() == [True, True, True, False, True]
    # radius from the box at the map's scale, sigma = (2r + 1) / 6
    r = int(_centernet_radius(22 / 4, 40 / 4))
    sigma = (2 * r + 1) / 6
    assert r >= 1 and float(heat[ring, 12, 18]) == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-6)
    assert float(heat[ring, 12, 17 + r + 1]) == 0.0  # nothing beyond the radius
    fine = EINetTargets(CATS, stride=1)(target)["class_center"]  # scale-adaptive: the larger box, the wider
    assert (fine[ring] > 0.5).sum() > (fine[disc] > 0.5).sum() > 1


@pytest.mark.parametrize("size", [(96, 128), (97, 130), (61, 35)])
def test_centers_lie_in_the_map_at_any_size(size):
    target = synthetic_target(3, *size)
    for stride in (1, 4, 8):
        out = EINetTargets(CATS, stride=stride)(target)
        h, w = out["segment_map"].shape
        center, area = centroids(segment_index_map(target.ids, target.segments), len(target.segments))
        for k, seg in enumerate(target.segments):
            cy, cx = out["segment_centers"][k].tolist()
            if int(area[k]) == 0:
                assert (cy, cx) == (-1, -1)
                continue
            assert 0 <= cy < h and 0 <= cx < w
            assert cy == min(int(center[k, 0] // stride), h - 1) and cx == min(int(center[k, 1] // stride), w - 1)
            if seg.isthing and not seg.iscrowd:
                assert out["class_center"][CATS.thing_index[seg.class_index], cy, cx] == 1


def test_collated_batch_and_empty_image():
    items = [(torch.zeros(3, 96, 128, dtype=torch.uint8), synthetic_target(s)) for s in range(3)]
    batch = PanopticCollate(size_divisibility=32, target_generator=EINetTargets(CATS))(items)
    t = batch.method_targets
    assert t["class_center"].shape == (3, CATS.num_things, 24, 32) and t["segment_map"].shape == (3, 24, 32)
    assert len(t["segment_centers"]) == 3 and t["segment_centers"][0].shape[1] == 2
    empty = EINetTargets(CATS)(PanopticTarget(torch.zeros(32, 40, dtype=torch.int64), [], 1, "e.png"))
    assert empty["segment_centers"].shape == (0, 2) and empty["class_center"].sum() == 0
    assert (empty["semantic"] == 255).all() and (empty["segment_map"] == -1).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="stride"):
        EINetTargets(CATS, stride=0)
    with pytest.raises(ValueError, match="min_overlap"):
        EINetTargets(CATS, min_overlap=1.5)
