import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from panoptic_core.data import (
    ColorJitter,
    Compose,
    Normalize,
    PadToDivisible,
    PanopticTarget,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    Segment,
    segment_stats,
)


def _scene(seed: int, height: int = 40, width: int = 56):
    """Rectangles of distinct ids over a background; the image colour encodes the id."""
    rng = np.random.default_rng(seed)
    ids = np.full((height, width), 7, np.int64)
    for k in range(int(rng.integers(1, 6))):
        y0, x0 = int(rng.integers(0, height - 4)), int(rng.integers(0, width - 4))
        ids[y0 : y0 + int(rng.integers(2, 20)), x0 : x0 + int(rng.integers(2, 20))] = 100 + k
    ids[rng.random((height, width)) < 0.02] = 0
    present = [int(i) for i in np.unique(ids) if i]
    t_ids = torch.from_numpy(ids)
    stats = segment_stats(t_ids, present)
    segs = [Segment(i, 1, 0, i != 7, False, a, b) for i, (a, b) in zip(present, stats, strict=True)]
    image = _colour(t_ids)
    return image, PanopticTarget(t_ids, segs, seed, "x.png")


def _colour(ids: torch.Tensor) -> torch.Tensor:
    return torch.stack([(ids * 37) % 251, (ids * 11) % 241, (ids * 3) % 239]).to(torch.uint8)


def _check_consistent(target: PanopticTarget) -> None:
    ids = target.ids.numpy()
    listed = {s.id for s in target.segments}
    assert set(np.unique(ids).tolist()) - {0} == listed
    for s in target.segments:
        ys, xs = np.nonzero(ids == s.id)
        assert s.area == len(ys) > 0
        assert s.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000), crop=st.tuples(st.integers(4, 60), st.integers(4, 70)), torch_seed=st.integers(0, 99)
)
def test_crop_flip_pad_keep_image_and_labels_aligned(seed, crop, torch_seed):
    torch.manual_seed(torch_seed)
    image, target = _scene(seed)
    t = Compose([RandomCrop(crop), RandomHorizontalFlip(0.5), PadToDivisible(16)])
    out_img, out_t = t(image, target)
    assert out_img.shape[1] % 16 == 0 and out_img.shape[2] % 16 == 0
    assert out_img.shape[1:] == out_t.ids.shape
    labelled = out_t.ids != 0
    assert torch.equal(out_img[:, labelled], _colour(out_t.ids)[:, labelled])
    _check_consistent(out_t)
    before = {s.id: s for s in target.segments}
    for s in out_t.segments:
        assert s.area <= before[s.id].area and s.category_id == before[s.id].category_id


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), short=st.integers(20, 90), torch_seed=st.integers(0, 99))
def test_resize_keeps_labels_under_uniform_image_regions(seed, short, torch_seed):
    torch.manual_seed(torch_seed)
    image, target = _scene(seed)
    out_img, out_t = ResizeShortestEdge(short, (0.5, 1.5), max_size=200)(image, target)
    h, w = out_t.ids.shape
    assert out_img.shape[1:] == (h, w) and max(h, w) <= 200
    _check_consistent(out_t)
    # Away from boundaries (a uniform 5x5 id window), the resized colour is the segment's colour.
    ids = out_t.ids
    pad = torch.nn.functional.pad(ids[None, None].double(), (2, 2, 2, 2), mode="replicate")[0, 0]
    windows = pad.unfold(0, 5, 1).unfold(1, 5, 1)
    uniform = (windows == ids[..., None, None]).all(-1).all(-1) & (ids != 0)
    scale = h / image.shape[1]
    if scale >= 1:  # downscaling blends more than a 5x5 window; check upscaled interiors only
        diff = (out_img.int() - _colour(ids).int()).abs()[:, uniform]
        assert diff.numel() == 0 or diff.max() <= 1


def test_resize_scales_areas():
    torch.manual_seed(0)
    image, target = _scene(3)
    _, out_t = ResizeShortestEdge(80)(image, target)
    assert out_t.ids.shape == (80, 112)
    before = {s.id: s.area for s in target.segments}
    for s in out_t.segments:
        assert abs(s.area - 4 * before[s.id]) <= 4 * 2 * (80 + 112)


def test_colour_jitter_and_normalize_leave_labels():
    torch.manual_seed(0)
    image, target = _scene(5)
    img, t = ColorJitter(0.4, 0.4, 0.4)(image, target)
    assert img.dtype == torch.uint8 and t is target and not torch.equal(img, image)
    norm, _ = Normalize(mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0))(image, target)
    assert norm.dtype == torch.float32
    assert torch.allclose(norm[1], (image[1].float() - 20) / 4)


def test_crop_drops_vanished_segments():
    image, target = _scene(11)
    ids = target.ids.clone()
    ids[:10] = 555
    ids[10:] = 7
    t = PanopticTarget(
        ids, [Segment(555, 1, 0, True, False, 0, (0, 0, 0, 0)), Segment(7, 1, 0, False, False, 0, (0, 0, 0, 0))]
    )
    torch.manual_seed(0)
    t = t.refreshed(ids)
    _, out = RandomCrop((20, 56))(image, t)
    assert [s.id for s in out.segments] == [7]
