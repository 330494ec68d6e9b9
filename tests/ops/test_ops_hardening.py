"""Hardening (issue 18): the indexed greedy NMS equals the reference on adversarial boxes,
torch.compile (Inductor, fullgraph) with 0 / 1 / many boxes, and Panoptic-DeepLab label
arguments that used to be truncated or overflow."""

import math

import pytest
import torch

import panoptic_ops
from panoptic_ops import reference as ref

# The compiled op switches from the exhaustive scan to the spatial index at 2048 boxes
# (csrc/nms/nms_greedy.h, kIndexedMin): every case here is above it.
N = 2100


def spread(n, seed, *, size=30.0, extent=1000.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * extent
    wh = torch.rand(n, 2, generator=g) * size
    return torch.cat([xy, xy + wh], 1).to(dtype), torch.rand(n, generator=g).to(dtype)


def grid(n, dtype=torch.float32):
    side = int(n**0.5) + 1
    ij = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(-1, 2)[:n]
    xy = ij.to(dtype) * 10
    return torch.cat([xy, xy + 10], 1)  # touching edges: IoU 0, nothing suppressed


def adversarial(kind, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    boxes, scores = spread(N, seed, dtype=dtype)
    if kind == "integer ties":
        boxes = (boxes / 40).round() * 4  # small integer boxes: exact IoU ties at 0.5 and duplicates
        scores = (scores * 4).round()
    elif kind == "identical":
        boxes[N // 2 :] = boxes[: N - N // 2]
        scores[::3] = 0.5
    elif kind == "zero-area and inverted":
        boxes[::5, 2] = boxes[::5, 0]
        boxes[1::7, 3] = boxes[1::7, 1] - 3
        boxes[2::9] = boxes[2::9, [2, 3, 0, 1]]
    elif kind == "nan and inf":
        boxes[::13, 0] = math.nan
        boxes[1::17, 3] = math.nan
        boxes[2::19, 2] = math.inf
        boxes[3::23, 1] = -math.inf
        scores[4::29] = math.nan
    elif kind == "huge coordinates":
        boxes = boxes * (1e30 if dtype == torch.float32 else 1e300)
        boxes[::11] *= -1
    elif kind == "grid":
        boxes = grid(N, dtype)
        boxes[::31] += 5  # a few overlap their neighbours
    elif kind == "nested":
        c = torch.rand(N, 1, generator=g, dtype=torch.float64).to(dtype) * 500
        r = torch.rand(N, 1, generator=g, dtype=torch.float64).to(dtype) * 500 + 1
        boxes = torch.cat([c - r, c - r, c + r, c + r], 1)  # concentric squares
    return boxes, scores


KINDS = ["spread", "integer ties", "identical", "zero-area and inverted", "nan and inf", "huge coordinates", "grid",
         "nested"]  # fmt: skip


CASES = [(kind, torch.float32) for kind in KINDS]
CASES += [(kind, torch.float64) for kind in ("nan and inf", "huge coordinates")]


@pytest.mark.parametrize(("kind", "dtype"), CASES, ids=[f"{k}-{str(d)[6:]}" for k, d in CASES])
def test_indexed_nms_equals_reference(kind, dtype):
    boxes, scores = adversarial(kind, KINDS.index(kind), dtype)
    for threshold in (0.0, 0.5, 0.7):
        want = ref.nms(boxes, scores, threshold)
        assert torch.equal(panoptic_ops.nms(boxes, scores, threshold), want), (kind, threshold)


def test_thresholds_outside_the_index():
    # 1.0 (nothing but identical boxes suppressed), a negative threshold (pairs that do not
    # overlap suppress too: the exhaustive scan) and NaN (nothing is suppressed).
    boxes, scores = adversarial("integer ties", 1, torch.float32)
    for threshold in (1.0, -0.5, math.nan):
        assert torch.equal(panoptic_ops.nms(boxes, scores, threshold), ref.nms(boxes, scores, threshold)), threshold


def test_indexed_batched_nms_equals_reference():
    boxes, scores = spread(2 * N + 400, 5, size=60.0)
    idxs = torch.randint(0, 2, (2 * N + 400,), generator=torch.Generator().manual_seed(5))  # >2048 per class
    for threshold in (0.5,):
        assert torch.equal(
            panoptic_ops.batched_nms(boxes, scores, idxs, threshold), ref.batched_nms(boxes, scores, idxs, threshold)
        )


def test_disjoint_boxes_all_survive_in_score_order():
    boxes = grid(200_000)
    scores = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    keep = panoptic_ops.nms(boxes, scores, 0.5)
    assert torch.equal(keep, torch.sort(scores, stable=True, descending=True).indices)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA twin: no GPU (CPU twin: the indexed tests above)")
def test_large_problem_on_cuda_equals_cpu():
    device = torch.device("cuda")
    boxes, scores = spread(40_000, 3, size=40.0, extent=4000.0)  # above the CUDA op's host threshold
    idxs = torch.randint(0, 4, (40_000,), generator=torch.Generator().manual_seed(3))
    got = panoptic_ops.nms(boxes.to(device), scores.to(device), 0.5).cpu()
    assert torch.equal(got, panoptic_ops.nms(boxes, scores, 0.5))
    got = panoptic_ops.batched_nms(boxes.to(device), scores.to(device), idxs.to(device), 0.5).cpu()
    assert torch.equal(got, panoptic_ops.batched_nms(boxes, scores, idxs, 0.5))


# --- torch.compile(fullgraph=True) with Inductor: 0 boxes used to fail in lowering --------------


def postprocess(boxes, scores, idxs, masks, kernels):
    keep = panoptic_ops.nms(boxes, scores, 0.5)
    keep_batched = panoptic_ops.batched_nms(boxes, scores, idxs, 0.5)
    m_scores, _, m_masks, _ = panoptic_ops.matrix_nms(masks, idxs, scores)
    f_kernels, f_scores, _, _ = panoptic_ops.kernel_fusion(kernels, scores, idxs)
    fused = f_kernels * f_scores[:, None]
    return boxes[keep] * 2, scores[keep_batched] + 1, m_masks.float().sum((1, 2)) * m_scores, fused


@pytest.mark.parametrize("n", [0, 1, 7])
def test_compile_inductor_fullgraph_with_0_1_many_boxes(n):
    g = torch.Generator().manual_seed(n)
    xy = torch.rand(n, 2, generator=g) * 20
    boxes = torch.cat([xy, xy + 10], 1)
    scores = torch.rand(n, generator=g)
    idxs = torch.randint(0, 2, (n,), generator=g)
    masks = torch.rand(n, 6, 6, generator=g) > 0.5
    kernels = torch.rand(n, 5, generator=g)
    args = (boxes, scores, idxs, masks, kernels)
    torch._dynamo.reset()
    got = torch.compile(postprocess, fullgraph=True)(*args)
    want = postprocess(*args)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b)


# --- Panoptic-DeepLab label arguments --------------------------------------------------------


def deeplab_inputs(label=2, dtype=torch.int64):
    sem = torch.zeros(1, 8, 8, dtype=dtype)
    sem[:, :4] = label
    center = torch.zeros(1, 8, 8)
    center[0, 2, 2] = 1
    return sem, center, torch.zeros(2, 8, 8)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"label_divisor": 0}, ValueError, r"label_divisor must lie in \[1, "),
        ({"label_divisor": -1000}, ValueError, r"label_divisor must lie in \[1, "),
        ({"label_divisor": 1000.5}, TypeError, "label_divisor must be an integer, got 1000.5"),
        ({"label_divisor": True}, TypeError, "label_divisor must be an integer"),
        ({"label_divisor": 2**62}, ValueError, r"label_divisor = 4611686018427387904 overflows int64 .* class 2 .* "
                                               r"at most 4611686018427387871"),
        ({"thing_ids": [2.5]}, TypeError, "thing_ids must be an iterable of integers, got 2.5"),
        ({"thing_ids": [-1]}, ValueError, r"thing_ids must lie in \[0, 2\*\*63\)"),
        ({"stuff_area": 1.5}, TypeError, "stuff_area must be an integer"),
        ({"void_label": -1.0}, TypeError, "void_label must be an integer"),
    ],
)
def test_label_arguments_are_validated(change, error, match):
    args = {"thing_ids": [2], "label_divisor": 1000, "stuff_area": 0, "void_label": -1, **change}
    with pytest.raises(error, match=match):
        panoptic_ops.get_panoptic_segmentation(*deeplab_inputs(), **args)
    sem = deeplab_inputs()[0]
    with pytest.raises(error, match=match):
        panoptic_ops.merge_semantic_and_instance(sem, torch.zeros_like(sem), sem > 0, **args)


def test_label_divisor_bound_uses_the_classes_present():
    # With uint8 labels no class can overflow; with int64 the largest label present decides.
    sem, center, offsets = deeplab_inputs(label=2, dtype=torch.uint8)
    pan, _ = panoptic_ops.get_panoptic_segmentation(sem, center, offsets, [2], 10**15, 0, -1)
    assert set(pan.unique().tolist()) == {0, 2 * 10**15 + 1}
    bound = ((1 << 63) - 1 - 64) // 2
    sem, center, offsets = deeplab_inputs(label=2)
    pan, _ = panoptic_ops.get_panoptic_segmentation(sem, center, offsets, [2], bound, 0, -1)
    assert pan.max().item() == 2 * bound + 1
    want = ref.get_panoptic_segmentation(sem, center, offsets, [2], 1000, 0, -1)[0]
    assert torch.equal(panoptic_ops.get_panoptic_segmentation(sem, center, offsets, (2,), 1000, 0, -1)[0], want)
