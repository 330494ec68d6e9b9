"""Panoptic-DeepLab ops: hand-worked detectron2 semantics, reference parity, compile, errors."""

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import panoptic_ops
from panoptic_ops import reference as ref
from panoptic_ops.testing import deeplab_scene

THINGS = (11, 12, 13, 14, 15, 16, 17, 18)


def detectron2_transcription(sem_seg, center_heatmap, offsets, thing_ids, label_divisor, stuff_area, void_label,
                             threshold, nms_kernel, top_k):  # fmt: skip
    """detectron2's post-processing as written there: torch.norm distances over [K, H*W, 2] and
    torch.mode votes. Used on inputs where torch.norm's rounding cannot matter."""
    heatmap = F.threshold(center_heatmap, threshold, -1)
    pooled = F.max_pool2d(heatmap, kernel_size=nms_kernel, stride=1, padding=(nms_kernel - 1) // 2)
    heatmap[heatmap != pooled] = -1
    heatmap = heatmap.squeeze()
    if top_k is None:
        centers = torch.nonzero(heatmap > 0)
    else:
        kth = torch.topk(torch.flatten(heatmap), top_k)[0][-1].clamp_(min=0)
        centers = torch.nonzero(heatmap > kth)
    thing_seg = torch.zeros_like(sem_seg)
    for c in thing_ids:
        thing_seg[sem_seg == c] = 1
    if centers.shape[0] == 0:
        ins = torch.zeros_like(sem_seg)
    else:
        h, w = offsets.shape[1:]
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=offsets.dtype), torch.arange(w, dtype=offsets.dtype), indexing="ij"
        )
        loc = (torch.stack([ys, xs]) + offsets).flatten(1).T.unsqueeze(0)
        distance = torch.norm(centers.unsqueeze(1) - loc, dim=-1)
        ins = thing_seg * (torch.argmin(distance, dim=0).reshape(1, h, w) + 1)
    pan = torch.zeros_like(sem_seg) + void_label
    is_thing = (ins > 0) & (thing_seg > 0)
    tracker = Counter()
    for ins_id in torch.unique(ins):
        if ins_id == 0:
            continue
        mask = (ins == ins_id) & is_thing
        if mask.sum() == 0:
            continue
        cls, _ = torch.mode(sem_seg[mask].view(-1))
        tracker[cls.item()] += 1
        pan[mask] = cls * label_divisor + tracker[cls.item()]
    for cls in torch.unique(sem_seg):
        if cls.item() in thing_ids:
            continue
        mask = (sem_seg == cls) & (ins == 0)
        if mask.sum().item() >= stuff_area:
            pan[mask] = cls * label_divisor
    return pan, centers.unsqueeze(0)


def assert_panoptic_equal(device, *args, **kwargs):
    moved = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]
    got_pan, got_ctr = panoptic_ops.get_panoptic_segmentation(*moved, **kwargs)
    want_pan, want_ctr = ref.get_panoptic_segmentation(*args, **kwargs)
    assert torch.equal(got_ctr.cpu(), want_ctr)
    assert torch.equal(got_pan.cpu(), want_pan)
    assert got_pan.dtype == torch.int64 and got_ctr.dtype == torch.int64
    return got_pan.cpu(), got_ctr.cpu()


# --- hand-worked cases of the semantics (reference and compiled op alike) -------------------


@pytest.mark.parametrize("impl", [panoptic_ops.find_instance_center, ref.find_instance_center], ids=["op", "ref"])
def test_center_threshold_plateau_topk_order(impl):
    hm = torch.zeros(1, 5, 7)
    hm[0, 1, 1] = 0.1  # equal to the threshold: dropped
    hm[0, 1, 5] = 0.8
    hm[0, 1, 6] = 0.8  # plateau: both survive the max-pool NMS
    hm[0, 3, 2] = 0.5
    hm[0, 4, 2] = 0.4  # not a peak (neighbour 0.5)
    assert impl(hm, 0.1, 3, None).tolist() == [[1, 5], [1, 6], [3, 2]]  # raster (y, x) order
    # top_k=2: the 2nd largest value is 0.8, only values strictly above it survive -> none.
    assert impl(hm, 0.1, 3, 2).tolist() == []
    # top_k=3: 3rd largest is 0.5 -> the two 0.8 peaks.
    assert impl(hm, 0.1, 3, 3).tolist() == [[1, 5], [1, 6]]
    # top_k beyond the number of peaks: the k-th value is -1, clamped at 0 -> all peaks.
    assert impl(hm, 0.1, 3, 4).tolist() == [[1, 5], [1, 6], [3, 2]]
    assert impl(hm, 0.1, 3, 5 * 7 + 1).tolist() == [[1, 5], [1, 6], [3, 2]]
    # A larger window suppresses the 0.5 peak? No: 0.8 is 3 columns away, outside a 5x5 window.
    assert impl(hm, 0.1, 5, None).tolist() == [[1, 5], [1, 6], [3, 2]]
    assert impl(hm, 0.1, 7, None).tolist() == [[1, 5], [1, 6]]
    assert impl(torch.zeros(1, 4, 4), 0.1, 3, 10).shape == (0, 2)


@pytest.mark.parametrize("impl", [panoptic_ops.find_instance_center, ref.find_instance_center], ids=["op", "ref"])
def test_center_nan_and_negative_threshold(impl):
    hm = torch.full((1, 3, 6), -0.5)
    hm[0, 1, 1] = 0.9
    hm[0, 1, 4] = 0.9
    hm[0, 0, 5] = float("nan")  # NaN in the window suppresses the peak at (1, 4), not at (1, 1)
    assert impl(hm, 0.1, 3, None).tolist() == [[1, 1]]
    # Threshold below zero: values in (threshold, 0] survive thresholding but are never centers.
    assert impl(torch.full((1, 2, 2), -0.2), -0.5, 3, None).shape == (0, 2)


@pytest.mark.parametrize("impl", [panoptic_ops.group_pixels, ref.group_pixels], ids=["op", "ref"])
def test_group_pixels_ties_go_to_first_center(impl):
    centers = torch.tensor([[0, 0], [0, 4]])
    offsets = torch.zeros(2, 1, 5)
    # x = 2 is exactly between both centers -> the first; x = 3 -> the second.
    assert impl(centers, offsets).tolist() == [[[1, 1, 1, 2, 2]]]
    offsets[1, 0, 0] = 4.0  # pixel 0 points at (0, 4)
    assert impl(centers, offsets)[0, 0, 0].item() == 2
    assert impl(torch.zeros((0, 2), dtype=torch.long), offsets).tolist() == [[[0, 0, 0, 0, 0]]]
    nan_offsets = torch.zeros(2, 1, 5)
    nan_offsets[0, 0, 4] = float("nan")  # NaN distance to every center -> argmin's first NaN
    assert impl(centers, nan_offsets)[0, 0, 4].item() == 1


@pytest.mark.parametrize("impl", [panoptic_ops.merge_semantic_and_instance, ref.merge_semantic_and_instance],
                         ids=["op", "ref"])  # fmt: skip
def test_merge_votes_numbering_and_stuff_area(impl):
    sem = torch.tensor([[[12, 12, 11, 11, 3, 3, 3, 5]]])
    ins = torch.tensor([[[1, 1, 1, 1, 0, 0, 0, 0]]])  # a 2-2 tie between 11 and 12 -> 11 wins
    thing = torch.tensor([[[1, 1, 1, 1, 0, 0, 0, 0]]])
    out = impl(sem, ins, thing, 1000, {11, 12}, 3, -1)
    # stuff 3 has area 3 >= 3: kept; stuff 5 has area 1 < 3: void.
    assert out.tolist() == [[[11001, 11001, 11001, 11001, 3000, 3000, 3000, -1]]]
    # Instances numbered per class in increasing instance id order.
    sem = torch.tensor([[[11, 11, 12, 11, 0]]])
    ins = torch.tensor([[[5, 2, 3, 9, 0]]])
    out = impl(sem, ins, (ins > 0).long(), 100, [11, 12], 0, 0)
    assert out.tolist() == [[[1102, 1101, 1201, 1103, 0]]]
    # Thing-class pixels outside instances are void; negative instance ids are never things.
    out = impl(torch.tensor([[[11, 11, 2]]]), torch.tensor([[[0, -4, 0]]]), torch.tensor([[[1, 1, 0]]]), 10, [11], 0, 7)
    assert out.tolist() == [[[7, 7, 20]]]


def test_get_panoptic_segmentation_without_centers_is_stuff_only():
    sem = torch.tensor([[[1, 1, 2, 2], [1, 1, 2, 2]]])
    pan, ctr = panoptic_ops.get_panoptic_segmentation(sem, torch.zeros(1, 2, 4), torch.zeros(2, 2, 4), {2}, 256, 1, 0)
    assert ctr.shape == (1, 0, 2)
    assert pan.tolist() == [[[256, 256, 0, 0], [256, 256, 0, 0]]]


# --- the reference equals detectron2's code where torch.norm's rounding cannot differ ---------


@pytest.mark.parametrize("seed", range(6))
def test_reference_matches_detectron2_transcription(seed):
    g = torch.Generator().manual_seed(seed)
    h, w = 24, 40
    hm = (torch.rand(1, h, w, generator=g) * 4).round() / 4  # plateaus and exact threshold values
    offsets = (torch.randn(2, h, w, generator=g) * 6 * 4).round() / 4  # dyadic: exact distances
    sem = torch.randint(0, 6, (1, h, w), generator=g)
    args = (sem, hm, offsets, {1, 2, 3}, 1000, 5, -1, 0.25, 3, 9)
    want_pan, want_ctr = detectron2_transcription(*args)
    got_pan, got_ctr = ref.get_panoptic_segmentation(*args)
    assert torch.equal(got_ctr, want_ctr) and torch.equal(got_pan, want_pan)


# --- compiled op == reference ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(8))
def test_random_maps_match_reference(device, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    h, w = 37, 53
    hm = torch.rand(1, h, w, generator=g, dtype=dtype)
    if seed % 2:
        hm = (hm * 5).round() / 5  # plateaus, values equal to the threshold and to the k-th
    offsets = torch.randn(2, h, w, generator=g, dtype=dtype) * 10
    if seed % 3 == 0:
        offsets = offsets.round()  # exact distance ties
    sem = torch.randint(0, 8, (1, h, w), generator=g)
    for top_k in (None, 1, 3, 50, h * w + 5):
        got = panoptic_ops.find_instance_center(hm.to(device), 0.2, 3, top_k).cpu()
        assert torch.equal(got, ref.find_instance_center(hm, 0.2, 3, top_k))
    centers = ref.find_instance_center(hm, 0.4, 5, 25)
    assert torch.equal(panoptic_ops.group_pixels(centers.to(device), offsets.to(device)).cpu(),
                       ref.group_pixels(centers, offsets))  # fmt: skip
    for top_k in (None, 5, 200):
        assert_panoptic_equal(device, sem, hm, offsets, {2, 3, 5}, 1000, 10, 0, 0.2, 5, top_k)
    fg = torch.rand(1, h, w, generator=g) > 0.5
    assert_panoptic_equal(device, sem, hm, offsets, {2, 3, 5}, 1000, 10, -1, 0.2, 7, 100, foreground_mask=fg)


@pytest.mark.parametrize("num_instances", [0, 1, 40, 200])
def test_scenes_match_reference(device, num_instances):
    sem, hm, offsets = deeplab_scene(96, 160, num_instances, seed=num_instances)
    pan, ctr = assert_panoptic_equal(device, sem, hm, offsets, THINGS, 1000, 64, 0, 0.1, 7, None)
    found = ctr.shape[1]  # one peak of value 1.0 per disc, unless two centers share a 7x7 window
    assert num_instances - 2 <= found <= num_instances
    if num_instances:
        assert ((pan % 1000 > 0) & (pan // 1000 >= 11)).any()
    # With top_k = 200 the 200th largest value is 1.0 when 200 peaks share it, and only values
    # strictly above the k-th survive: detectron2 then finds no center at all.
    pan, ctr = assert_panoptic_equal(device, sem, hm, offsets, THINGS, 1000, 64, 0, 0.1, 7, 200)
    assert ctr.shape[1] == (0 if found >= 200 else found)


def test_many_centers_and_huge_ids(device):
    g = torch.Generator().manual_seed(3)
    hm = torch.rand(1, 30, 30, generator=g)  # ~100 peaks with a 3x3 window
    offsets = torch.randn(2, 30, 30, generator=g) * 40  # many locations off the image
    sem = torch.randint(0, 3, (1, 30, 30), generator=g) * (2**40) - 2**39
    things = {2**39}
    assert_panoptic_equal(device, sem, hm, offsets, things, 2**20, 3, -(2**62), 0.0, 3, None)


def test_merge_with_many_instances_matches_reference(device):
    g = torch.Generator().manual_seed(0)
    sem = torch.randint(0, 300, (1, 200, 300), generator=g)
    ins = torch.randint(-2, 20000, (1, 200, 300), generator=g) * 7919  # sparse, huge instance ids
    thing = torch.randint(0, 2, (1, 200, 300), generator=g, dtype=torch.uint8)
    args = (sem, ins, thing, 100000, list(range(0, 300, 3)), 5, -1)
    got = panoptic_ops.merge_semantic_and_instance(*(a.to(device) if isinstance(a, torch.Tensor) else a for a in args))
    assert torch.equal(got.cpu(), ref.merge_semantic_and_instance(*args))


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    levels=st.integers(1, 6),
    nms_kernel=st.sampled_from([1, 3, 5, 7]),
    top_k=st.one_of(st.none(), st.integers(1, 20)),
    threshold=st.sampled_from([-0.5, 0.0, 0.2, 0.5]),
)
def test_hypothesis_matches_reference(h, w, seed, levels, nms_kernel, top_k, threshold):
    g = torch.Generator().manual_seed(seed)
    hm = (torch.rand(1, h, w, generator=g) * levels).floor() / levels  # heavy plateaus and ties
    offsets = (torch.randn(2, h, w, generator=g) * 3).round() / 2
    sem = torch.randint(0, 4, (1, h, w), generator=g)
    assert_panoptic_equal("cpu", sem, hm, offsets, {1, 2}, 100, 2, -1, threshold, nms_kernel, top_k)


def test_per_image_equals_separate_calls(device):
    scenes = [deeplab_scene(40, 64, k, seed=k) for k in (0, 3, 9)]
    sem = torch.cat([s[0] for s in scenes]).to(device)
    hm = torch.stack([s[1] for s in scenes]).to(device)
    off = torch.stack([s[2] for s in scenes]).to(device)
    pan, centers = panoptic_ops.get_panoptic_segmentation_per_image(sem, hm, off, THINGS, 1000, 16, 0)
    for b, (s, h, o) in enumerate(scenes):
        want_pan, want_ctr = ref.get_panoptic_segmentation(s, h, o, THINGS, 1000, 16, 0)
        assert torch.equal(pan[b].cpu(), want_pan[0]) and torch.equal(centers[b].cpu(), want_ctr[0])


def test_empty_image(device):
    pan, ctr = panoptic_ops.get_panoptic_segmentation(
        torch.zeros(1, 0, 5, dtype=torch.long, device=device), torch.zeros(1, 0, 5, device=device),
        torch.zeros(2, 0, 5, device=device), THINGS, 1000, 1, 0,
    )  # fmt: skip
    assert pan.shape == (1, 0, 5) and ctr.shape == (1, 0, 2)
    assert panoptic_ops.find_instance_center(torch.zeros(1, 0, 5, device=device)).shape == (0, 2)
    empty_long = torch.zeros(1, 0, 5, dtype=torch.long, device=device)
    assert panoptic_ops.merge_semantic_and_instance(empty_long, empty_long, empty_long, 1000, [1], 1, 0).shape == (
        1,
        0,
        5,
    )


# --- torch.library integration ------------------------------------------------------------------


def test_opcheck(device):
    sem, hm, off = deeplab_scene(24, 32, 5, seed=1)
    sem, hm, off = sem.to(device), hm.to(device), off.to(device)
    ops = torch.ops.panoptic_ops
    centers = ops.find_instance_center(hm, 0.1, 3, 200)
    cases = [
        (ops.find_instance_center, (hm, 0.1, 3, 200)),
        (ops.group_pixels, (centers, off)),
        (ops.merge_semantic_and_instance, (sem, ops.group_pixels(centers, off), sem > 10, 1000, list(THINGS), 8, 0)),
        (ops.get_panoptic_segmentation, (sem, hm, off, list(THINGS), 1000, 8, 0, 0.1, 7, 200, None)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_fullgraph(device):
    sem, hm, off = deeplab_scene(32, 48, 6, seed=2)
    sem, hm, off = sem.to(device), hm.to(device), off.to(device)

    def run(sem, hm, off):
        centers = panoptic_ops.find_instance_center(hm, 0.1, 3, 50)
        grouped = panoptic_ops.group_pixels(centers, off)
        merged = panoptic_ops.merge_semantic_and_instance(sem, grouped, sem > 10, 1000, THINGS, 4, 0)
        pan, ctr = panoptic_ops.get_panoptic_segmentation(sem, hm, off, THINGS, 1000, 4, 0)
        return merged, pan, ctr

    torch._dynamo.reset()
    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(sem, hm, off), run(sem, hm, off)):
        assert torch.equal(got, want)


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"center_heatmap": torch.zeros(2, 4, 4)}, ValueError, "center_heatmap must have shape"),
        ({"center_heatmap": torch.zeros(1, 4, 4, dtype=torch.float16)}, TypeError, "center_heatmap must have dtype"),
        ({"nms_kernel": 4}, ValueError, "nms_kernel must be a positive odd"),
        ({"top_k": 0}, ValueError, "top_k must be None or a positive"),
        ({"offsets": torch.zeros(2, 4, 5)}, ValueError, "offsets must have shape"),
        ({"sem_seg": torch.zeros(1, 4, 4)}, TypeError, "sem_seg must have dtype"),
        ({"thing_ids": ["a"]}, TypeError, "thing_ids must be an iterable of integers"),
        ({"foreground_mask": torch.zeros(1, 3, 4, dtype=torch.bool)}, ValueError, "foreground_mask must have shape"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    args = {
        "sem_seg": torch.zeros(1, 4, 4, dtype=torch.long),
        "center_heatmap": torch.zeros(1, 4, 4),
        "offsets": torch.zeros(2, 4, 4),
        "thing_ids": {1},
        "label_divisor": 1000,
        "stuff_area": 1,
        "void_label": 0,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        panoptic_ops.get_panoptic_segmentation(**args)


def test_group_pixels_rejects_float_centers():
    with pytest.raises(TypeError, match="center_points must have dtype int64"):
        panoptic_ops.group_pixels(torch.zeros(3, 2), torch.zeros(2, 4, 4))
