import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scenes import CATS, make_target, synthetic_target

from panoptic_core.data import Segment, segment_stats
from panoptic_core.targets import (
    CIAETargets,
    EINetTargets,
    PanopticDeepLabTargets,
    PanopticFCNTargets,
    SOLOv2Targets,
    centroids,
    detectron2_deeplab_targets,
    downsample_masks,
    guided_positions,
    panoptic_fcn_generate_gt,
    segment_index_map,
)
from panoptic_ops import UNBOXED

DEEPLAB_SCENES = [(s, (96, 128)) for s in range(12)] + [(s, (240, 320)) for s in (0, 1, 3, 4)]


@pytest.mark.parametrize(("seed", "size"), DEEPLAB_SCENES)
def test_deeplab_matches_detectron2_semantics(seed, size):
    target = synthetic_target(seed, *size)
    if size[0] > 200:  # scenes this size hold instances above the 4096 px small-instance bound
        assert any(s.isthing and s.area >= 4096 for s in target.segments)
    out = PanopticDeepLabTargets()(target)
    ref = detectron2_deeplab_targets(target)
    assert set(ref) == set(out)
    for key, value in ref.items():
        ours = out[key][0] if key in ("center", "center_weights", "offset_weights") else out[key]
        assert torch.equal(ours, torch.from_numpy(value)), key


def test_deeplab_hand_scene():
    ids = np.full((64, 64), 9, np.int64)  # stuff "sky"
    ids[20:30, 30:40] = 4  # a 10x10 disc-class instance: centroid (24.5, 34.5)
    ids[50:60, 0:5] = 6  # crowd
    ids[0, :] = 0  # VOID row
    out = PanopticDeepLabTargets()(make_target(ids, {9: 92, 4: 1, 6: 2}, crowd={6}))
    heat = out["center"][0]
    assert heat[24, 34] == 1.0  # 24.5 and 34.5 round half to even
    assert torch.equal(out["offset"][:, 20, 30], torch.tensor([4.5, 4.5]))
    assert torch.equal(out["offset"][:, 29, 39], torch.tensor([-4.5, -4.5]))
    assert (out["offset"][:, ids == 9] == 0).all()
    assert out["semantic_weights"][25, 35] == 3 and out["semantic_weights"][40, 10] == 1
    assert out["semantic"][0, 5] == 255 and out["semantic"][25, 35] == CATS.class_index(1)
    assert out["center_weights"][0, 0, 5] == 0 and out["center_weights"][0, 55, 2] == 0
    assert out["center_weights"][0, 40, 10] == 1
    assert out["offset_weights"][0, 25, 35] == 1 and out["offset_weights"][0, 40, 10] == 0
    assert out["offset_weights"][0, 55, 2] == 0
    # sigma 8: one pixel from the center the heatmap is exp(-1/128)
    assert math.isclose(float(heat[24, 35]), math.exp(-1 / 128), rel_tol=1e-6)
    # every thing pixel plus its offset lands on the centroid
    ys, xs = np.nonzero(ids == 4)
    assert np.allclose(ys + out["offset"][0].numpy()[ys, xs], 24.5)
    assert np.allclose(xs + out["offset"][1].numpy()[ys, xs], 34.5)


def test_einet_adds_class_heatmaps_and_segment_map():
    ids = np.full((64, 96), 9, np.int64)
    ids[10:30, 10:30] = 4  # disc class, centroid (19.5, 19.5)
    ids[40:60, 60:90] = 5  # ring class
    target = make_target(ids, {9: 95, 4: 1, 5: 5})
    out = EINetTargets(CATS, stride=1)(target)
    heat = out["class_center"]
    assert heat.shape == (4, 64, 96)
    assert heat[0, 19, 19] == 1 and heat[3, 49, 74] == 1  # thing indices 0 (disc) and 3 (ring)
    assert heat[1].max() == 0 and heat[2].max() == 0
    # scale-adaptive: the larger instance has the wider Gaussian
    assert (heat[3] > 0.5).sum() > (heat[0] > 0.5).sum()
    seg = out["segment_map"]
    assert [int(seg[0, 0]), int(seg[20, 20]), int(seg[50, 70])] == [2, 0, 1]  # segments sorted by id 4, 5, 9
    assert out["segment_classes"].tolist() == [CATS.class_index(1), CATS.class_index(5), CATS.class_index(95)]
    assert out["segment_isthing"].tolist() == [True, True, False]
    down = EINetTargets(CATS, stride=4)(target)
    assert down["class_center"].shape == (4, 16, 24) and down["segment_map"].shape == (16, 24)


def test_ciae_positives_inside_masks_and_levels():
    ids = np.full((128, 128), 9, np.int64)
    yy, xx = np.mgrid[0:128, 0:128]
    ring = ((yy - 60) ** 2 + (xx - 60) ** 2 <= 45**2) & ((yy - 60) ** 2 + (xx - 60) ** 2 >= 25**2)
    ids[ring] = 4
    ids[100:110, 100:112] = 5  # small box instance
    ids[0:6, 0:6] = 7  # crowd
    gen = CIAETargets(CATS)
    out = gen(make_target(ids, {9: 110, 4: 5, 5: 2, 7: 1}, crowd={7}))
    n_pos = 0
    for level, stride in enumerate(gen.strides):
        labels, ltrb, inst = out["location_classes"][level], out["box_targets"][level], out["location_instance"][level]
        lo, hi = gen.size_ranges[level]
        ys = torch.arange(labels.shape[0]) * stride + stride // 2
        xs = torch.arange(labels.shape[1]) * stride + stride // 2
        pos = inst >= 0
        n_pos += int(pos.sum())
        for i, j in zip(*torch.nonzero(pos, as_tuple=True), strict=True):
            y, x = int(ys[i]), int(xs[j])
            seg_id = int(ids[y, x])
            assert seg_id in (4, 5)  # inside a mask: the ring's hole gives none
            n = int(inst[i, j])
            box = out["instance_boxes"][n]
            left, top, right, bottom = ltrb[i, j].tolist()
            assert (left, top, right, bottom) == (x - box[0], y - box[1], box[2] - x, box[3] - y)
            assert lo <= max(left, top, right, bottom) <= hi
            assert labels[i, j] == {4: 3, 5: 1}[seg_id]
            expected = math.sqrt(min(left, right) / max(left, right) * min(top, bottom) / max(top, bottom))
            assert math.isclose(float(out["centerness"][level][i, j]), expected, rel_tol=1e-6)
        assert ((labels == 4) | (labels == -1) | pos).all()  # background is num_things = 4
        assert (out["centerness"][level][~pos] == 0).all()
    assert n_pos > 0
    assert out["location_classes"][0][0, 0] == 4  # location (4, 4) is in the crowd region: a negative (FCOS)
    assert out["location_classes"][0][7, 7] == 4  # ring hole at (60, 60): background
    # embedding maps (stride 1): stuff index, merged thing category, instance numbering
    seg, cat = out["segment_map"], out["category_map"]
    water = CATS.stuff_index[CATS.class_index(110)]
    assert seg[60, 60] == water and cat[60, 60] == water
    assert seg[60, 20] == 4 and seg[105, 105] == 5 and cat[60, 20] == 4 and cat[105, 105] == 4
    assert seg[2, 2] == -1 and cat[2, 2] == 4  # crowd: no instance, thing category
    boxes = out["segment_boxes"]
    assert boxes.shape == (6, 4) and torch.equal(boxes[:4], torch.tensor(UNBOXED).expand(4, 4))
    ring_box = out["instance_boxes"][0]
    assert ring_box.tolist() == [15, 15, 106, 106]
    assert torch.allclose(boxes[4], torch.tensor([60.5 - 68.25, 60.5 - 68.25, 60.5 + 68.25, 60.5 + 68.25]))
    assert gen.num_categories == 5
    unmerged = CIAETargets(CATS, merge_things=False)(make_target(ids, {9: 110, 4: 5, 5: 2, 7: 1}))
    assert unmerged["category_map"][60, 20] == 7


@pytest.mark.parametrize(("seed", "size"), [(0, (128, 160)), (1, (256, 320)), (2, (96, 224)), (3, (130, 162))])
def test_panoptic_fcn_matches_generate_gt(seed, size):
    # (130, 162) is not a multiple of 4: masks then come from F.interpolate of full-size masks
    target = synthetic_target(seed, *size)
    small_levels = {"strides": (4, 8, 16), "instance_scales": ((1, 32), (16, 64), (32, 2048))}
    for kwargs in ({}, small_levels):
        ours = PanopticFCNTargets(CATS, **kwargs)(target)
        ref = panoptic_fcn_generate_gt(target, CATS, **kwargs)
        assert set(ours) == set(ref)
        for key, value in ref.items():
            got = ours[key]
            pairs = zip(got, value, strict=True) if isinstance(value, list) else [(got, value)]
            for a, b in pairs:
                assert a.dtype == b.dtype and torch.equal(a, b), key
        assert sum(len(x) for x in ours["level_instances"]) > 0


def test_panoptic_fcn_levels_and_heatmaps():
    ids = np.full((256, 256), 9, np.int64)
    ids[10:30, 10:30] = 4  # sqrt area 20: level 0 only
    ids[100:200, 100:200] = 5  # sqrt area 100: levels 1 (32-128) and 2 (64-256)
    gen = PanopticFCNTargets(CATS)
    out = gen(make_target(ids, {9: 150, 4: 2, 5: 3}))
    assert [t.tolist() for t in out["level_instances"]] == [[0], [1], [1], [], []]
    assert out["instance_classes"].tolist() == [1, 2]
    masks = out["instance_masks"]
    assert masks.shape == (2, 64, 64)
    # mass center of the 1/4 mask of instance 0: pixels 2.5..7.5 -> (5, 5) at stride 4 -> (2, 2) at stride 8
    heat0 = out["thing_heatmap"][0]
    assert heat0.shape == (4, 32, 32) and heat0[1, 2, 2] == 1
    assert out["level_centers"][0].tolist() == [2 * 32 + 2]
    for level in (1, 2):
        heat = out["thing_heatmap"][level]
        cy, cx = divmod(int(out["level_centers"][level][0]), heat.shape[-1])
        assert heat[2, cy, cx] == 1 and heat[2].max() == 1
        assert (heat[[0, 1, 3]] == 0).all()
    stuff = out["stuff_masks"]
    wall = 1 + CATS.stuff_index[CATS.class_index(150)]
    assert stuff.shape == (5, 64, 64) and stuff[wall, 0, 0] == 1 and stuff[0, 40, 40] == 1
    assert out["stuff_heatmap"][4].shape == (5, 2, 2)
    # guided positions: top-k of the predicted class score inside the instance's mask
    logits = torch.full((4, 32, 32), -5.0)
    logits[1, 3, 3] = 2.0
    logits[1, 20, 20] = 9.0  # outside instance 0's mask: never chosen
    pos, w = guided_positions(logits, masks[:1], out["instance_classes"][:1], k=7)
    assert pos.shape == (1, 7) and int(pos[0, 0]) == 3 * 32 + 3
    assert torch.isclose(w[0, 0], torch.sigmoid(torch.tensor(2.0)))


def test_solov2_grid_cells():
    ids = np.full((320, 320), 9, np.int64)
    ids[100:160, 200:260] = 4  # 60x60: sqrt area 60 in levels 0 (1-96) and 1 (48-192)
    gen = SOLOv2Targets(CATS)
    out = gen(make_target(ids, {9: 92, 4: 3}))
    cat0, pairs0 = out["location_classes"][0], out["location_pairs"][0]
    # center (129.5, 229.5) on a 40-grid of 8 px cells: cell (16, 28); the 0.2-scaled box
    # (half 6 px) spans cells 15..16 x 27..29
    cells = torch.nonzero(cat0 != 4).tolist()
    assert cells == [[y, x] for y in (15, 16) for x in (27, 28, 29)]
    assert (cat0[cat0 != 4] == 2).all()
    assert pairs0.tolist() == [[y * 40 + x, 0] for y in (15, 16) for x in (27, 28, 29)]
    assert (out["location_classes"][2] == 4).all()  # 96-384 range: not assigned
    assert out["instance_masks"].shape == (1, 80, 80)
    assert out["instance_masks"][0].sum() == 15 * 15


@pytest.mark.parametrize("size", [(96, 128), (97, 130), (61, 35)])
def test_strided_maps_agree_on_any_size(size):
    target = synthetic_target(3, *size)
    for stride in (1, 2, 4, 8):
        out = EINetTargets(CATS, stride=stride)(target)
        assert out["class_center"].shape[1:] == out["segment_map"].shape, (size, stride)
        expected = tuple(math.ceil((n - stride // 2) / stride) for n in size)
        assert tuple(out["segment_map"].shape) == expected
    ciae = CIAETargets(CATS, embedding_stride=4)(target)
    assert ciae["segment_map"].shape == ciae["category_map"].shape
    solo = SOLOv2Targets(CATS)(target)
    assert solo["instance_masks"].shape[1:] == tuple(math.ceil(n / 4) for n in size)


@pytest.mark.parametrize(("seed", "size"), [(0, (128, 160)), (1, (256, 320)), (4, (96, 224))])
def test_solov2_masks_equal_mmcv_imrescale(seed, size):
    """mmdetection rescales each uint8 mask with mmcv.imrescale(mask, 1/4) = cv2.resize INTER_LINEAR."""
    target = synthetic_target(seed, *size)
    out = SOLOv2Targets(CATS)(target)
    things = [s for s in target.segments if s.isthing and not s.iscrowd]
    assert len(things) == len(out["instance_masks"]) > 0
    h, w = size
    for seg, mask in zip(things, out["instance_masks"], strict=True):
        full = (target.ids == seg.id).numpy().astype(np.uint8)
        want = cv2.resize(full, (int(w * 0.25 + 0.5), int(h * 0.25 + 0.5)), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(mask.numpy(), want), seg.id


def _cell_f32(value, size: int, grid: int) -> int:
    """mmdetection's trunc((value / size) / (1 / grid)), every step in float32."""
    f32 = np.float32
    return int(np.trunc(f32(f32(value) / f32(size)) / f32(1.0 / grid)))


def test_solov2_matches_mmdetection_float32_assignment():
    # Cells are computed in float32 as mmdetection does; a float64 port would differ where a
    # center lies within rounding of a cell edge. Compare every cell on many random scenes.
    f32 = np.float32
    gen = SOLOv2Targets(CATS)
    for seed in range(20):
        target = synthetic_target(seed, 128, 160)
        out = gen(target)
        things = [s for s in target.segments if s.isthing and not s.iscrowd]
        for level, (grid, (lo, hi)) in enumerate(zip(gen.num_grids, gen.scale_ranges, strict=True)):
            labels = np.full((grid, grid), CATS.num_things)
            for seg in things:
                x1, y1, x2, y2 = (f32(v) for v in seg.xyxy)
                if not lo <= np.sqrt((x2 - x1) * (y2 - y1)) <= hi:
                    continue
                ys, xs = np.nonzero(target.ids.numpy() == seg.id)
                cy, cx = f32(ys.sum()) / f32(len(ys)), f32(xs.sum()) / f32(len(xs))
                hh, hw = f32(0.5) * (y2 - y1) * f32(0.2), f32(0.5) * (x2 - x1) * f32(0.2)
                ry, rx = _cell_f32(cy, 128, grid), _cell_f32(cx, 160, grid)
                top = max(_cell_f32(cy - hh, 128, grid), 0, ry - 1)
                down = min(_cell_f32(cy + hh, 128, grid), grid - 1, ry + 1)
                left = max(_cell_f32(cx - hw, 160, grid), 0, rx - 1)
                right = min(_cell_f32(cx + hw, 160, grid), grid - 1, rx + 1)
                labels[top : down + 1, left : right + 1] = CATS.thing_index[seg.class_index]
            assert np.array_equal(out["location_classes"][level].numpy(), labels), (seed, level)


def test_generators_on_padded_batches_of_synthetic_scenes():
    from panoptic_core.data import PanopticCollate

    items = [(torch.zeros(3, 96, 128, dtype=torch.uint8), synthetic_target(s)) for s in range(3)]
    for gen in (
        PanopticDeepLabTargets(),
        EINetTargets(CATS, stride=4),
        CIAETargets(CATS),
        PanopticFCNTargets(CATS),
        SOLOv2Targets(CATS),
    ):
        batch = PanopticCollate(size_divisibility=32, target_generator=gen)(items)
        for key in gen.ragged:
            assert len(batch.method_targets[key]) == 3
        for key, value in batch.method_targets.items():
            if isinstance(value, torch.Tensor):
                assert value.shape[0] == 3, key


@pytest.mark.parametrize(("size", "count"), [((64, 80), 5), ((9, 7), 40), ((1, 1), 1), ((30, 2), 3)])
def test_centroids_equal_numpy_means(size, count):
    # (64, 80) with 5 segments fits one histogram table; (9, 7) with 40 is done 2 segments at a time.
    rng = np.random.default_rng(count)
    index = rng.integers(-1, count, size=size)
    index[0, 0] = -1
    center, area = centroids(torch.from_numpy(index), count)
    for k in range(count):
        ys, xs = np.nonzero(index == k)
        assert int(area[k]) == len(ys)
        if len(ys):
            assert center[k].tolist() == [np.mean(ys), np.mean(xs)]
        else:
            assert torch.isnan(center[k]).all()


def test_segment_index_map_marks_unlisted_ids():
    ids = torch.tensor([[0, 7, 3], [1 << 24, 5, 3], [2, 7, 1 << 40]])
    segs = [Segment(i, 92, 4, False, False, 1, (0, 0, 1, 1)) for i in (7, 3, 1 << 24)]
    assert segment_index_map(ids, segs).tolist() == [[-1, 0, 1], [2, -1, 1], [-1, 0, -1]]
    assert segment_index_map(ids, []).tolist() == [[-1] * 3] * 3


@pytest.mark.parametrize(("size", "count"), [((64, 80), 6), ((9, 7), 40), ((1, 5), 3), ((5, 1), 3)])
def test_segment_stats_equal_numpy(size, count):
    rng = np.random.default_rng(count)
    ids = rng.choice(np.array([0, 5, 1 << 30, 77, *range(100, 100 + count)]), size=size)
    wanted = [1 << 30, 5, 4, *range(100, 100 + count)]  # 4 is absent, 77 present but not wanted
    stats = segment_stats(torch.from_numpy(ids), wanted)
    for seg_id, (area, bbox) in zip(wanted, stats, strict=True):
        ys, xs = np.nonzero(ids == seg_id)
        if not len(ys):
            assert (area, bbox) == (0, (0, 0, 0, 0))
            continue
        x0, y0 = xs.min(), ys.min()
        assert (area, bbox) == (len(ys), (x0, y0, xs.max() - x0 + 1, ys.max() - y0 + 1))


@pytest.mark.parametrize(
    ("shape", "size"),
    [((64, 96), (16, 24)), ((64, 96), (32, 32)), ((63, 96), (16, 24)), ((60, 90), (20, 30)), ((9, 8), (9, 8))],
)
def test_downsample_masks_equal_bilinear_interpolate(shape, size):
    # strides 4x4, 2x3, non-dividing 63/16 (the F.interpolate path), 3x3 (one tap), 1x1
    rng = np.random.default_rng(shape[0])
    labels = torch.from_numpy(rng.integers(-1, 6, size=shape))
    values = torch.tensor([0, 3, 5, 9])
    want = F.interpolate((labels[None] == values.view(-1, 1, 1)).float()[None], size=size, mode="bilinear")[0]
    assert torch.equal(downsample_masks(labels, values, size), want)
