"""nms / batched_nms against torchvision's semantics (hand-worked) and the pure-torch reference."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import panoptic_ops
from panoptic_ops import reference as ref


def random_boxes(n, seed, *, integer=False, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + wh], dim=1)
    if integer:
        boxes = boxes.round()
    return boxes.to(dtype)


@pytest.mark.parametrize("impl", [panoptic_ops.nms, ref.nms], ids=["op", "ref"])
def test_hand_worked_semantics(impl):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30], [5, 5, 5, 9.0]])
    scores = torch.tensor([0.9, 0.9, 0.8, 0.1, 0.95])
    # Equal scores keep index order (stable sort); IoU([0,0,10,10], [0,0,10,5]) = 0.5 exactly:
    # suppressed only when IoU > threshold (strict). The zero-area box overlaps nothing.
    assert impl(boxes, scores, 0.5).tolist() == [4, 0, 2, 3]
    assert impl(boxes, scores, 0.49).tolist() == [4, 0, 3]
    assert impl(boxes, scores, 1.0).tolist() == [4, 0, 1, 2, 3]
    assert impl(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    assert impl(torch.zeros(0, 4), torch.zeros(0), 0.5).dtype == torch.int64


@pytest.mark.parametrize("impl", [panoptic_ops.nms, ref.nms], ids=["op", "ref"])
def test_threshold_compared_in_double(impl):
    # IoU = 0.6 computed in float32 is 0.6000000238..., above the double 0.6: suppressed, as
    # torchvision's CPU kernel does (a float32 comparison would keep the box).
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 6.0]])
    iou = torch.tensor(60.0) / torch.tensor(100.0)
    assert iou.item() > 0.6
    assert impl(boxes, torch.tensor([1.0, 0.5]), 0.6).tolist() == [0]


@pytest.mark.parametrize("impl", [panoptic_ops.batched_nms, ref.batched_nms], ids=["op", "ref"])
def test_batched_hand_worked(impl):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10.0]])
    scores = torch.tensor([0.5, 0.9, 0.5, 0.7])
    idxs = torch.tensor([0, 1, 1, 0])
    # Class 0: box 3 (0.7) suppresses box 0; class 1: box 1 suppresses box 2.
    assert impl(boxes, scores, idxs, 0.5).tolist() == [1, 3]
    # Nothing suppressed: order by score, equal scores in index order.
    assert impl(boxes, scores, torch.arange(4), 0.5).tolist() == [1, 3, 0, 2]


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_match_reference(device, seed, dtype):
    boxes = random_boxes(500, seed, integer=seed % 2 == 0, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 100)
    scores = torch.rand(500, generator=g, dtype=dtype)
    if seed % 3 == 0:
        scores = (scores * 4).round()  # many equal scores
    if seed % 4 == 0:
        boxes[::7] = boxes[1::7][: len(boxes[::7])]  # duplicates
        boxes[::11, 2] = boxes[::11, 0]  # zero-area boxes
    idxs = torch.randint(0, 5, (500,), generator=g)
    for threshold in (0.0, 0.3, 0.5, 0.7, 1.0):
        got = panoptic_ops.nms(boxes.to(device), scores.to(device), threshold).cpu()
        assert torch.equal(got, ref.nms(boxes, scores, threshold))
        got = panoptic_ops.batched_nms(boxes.to(device), scores.to(device), idxs.to(device), threshold).cpu()
        assert torch.equal(got, ref.batched_nms(boxes, scores, idxs, threshold))


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 40),
    seed=st.integers(0, 2**31 - 1),
    threshold=st.sampled_from([0.0, 0.25, 0.5, 0.6, 0.7, 0.9]),
    classes=st.integers(1, 4),
)
def test_hypothesis_match_reference(n, seed, threshold, classes):
    g = torch.Generator().manual_seed(seed)
    boxes = torch.randint(0, 8, (n, 4), generator=g).float()
    boxes[:, 2:] += boxes[:, :2]  # small integer boxes: frequent exact IoU ties and duplicates
    scores = torch.randint(0, 4, (n,), generator=g).float()
    idxs = torch.randint(0, classes, (n,), generator=g)
    assert torch.equal(panoptic_ops.nms(boxes, scores, threshold), ref.nms(boxes, scores, threshold))
    assert torch.equal(
        panoptic_ops.batched_nms(boxes, scores, idxs, threshold), ref.batched_nms(boxes, scores, idxs, threshold)
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cuda(device, dtype):
    if device.type != "cuda":
        with pytest.raises(TypeError, match="boxes must have dtype float32, float64"):
            panoptic_ops.nms(torch.zeros(1, 4, dtype=dtype), torch.zeros(1, dtype=dtype), 0.5)
        return
    boxes = random_boxes(300, 7, integer=True).to(dtype)
    scores = torch.rand(300, generator=torch.Generator().manual_seed(7)).to(dtype)
    # Integer boxes below 256 are exact in both types, so the float32 reference applies.
    got = panoptic_ops.nms(boxes.to(device), scores.to(device), 0.5).cpu()
    assert torch.equal(got, ref.nms(boxes.float(), scores.float(), 0.5))


def test_opcheck_and_compile(device):
    boxes, scores = random_boxes(64, 1).to(device), torch.rand(64, device=device)
    idxs = torch.randint(0, 3, (64,), device=device)
    for op, args in (
        (torch.ops.panoptic_ops.nms, (boxes, scores, 0.5)),
        (torch.ops.panoptic_ops.batched_nms, (boxes, scores, idxs, 0.5)),
    ):
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))

    def run(boxes, scores, idxs):
        return panoptic_ops.nms(boxes, scores, 0.5), panoptic_ops.batched_nms(boxes, scores, idxs, 0.5)

    torch._dynamo.reset()
    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(boxes, scores, idxs), run(boxes, scores, idxs)):
        assert torch.equal(got, want)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((torch.zeros(3, 5), torch.zeros(3), 0.5), ValueError, r"boxes must have shape \[\*, 4\], got \[3, 5\]"),
        ((torch.zeros(3, 4), torch.zeros(4), 0.5), ValueError, r"scores must have shape \[3\]"),
        ((torch.zeros(3, 4, dtype=torch.long), torch.zeros(3), 0.5), TypeError, "boxes must have dtype"),
        ((torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), 0.5), TypeError, "scores must be a floating"),
        ((torch.zeros(3, 4), torch.zeros(3), "0.5"), TypeError, "iou_threshold must be a number"),
    ],
)
def test_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        panoptic_ops.nms(*args)


def test_batched_bad_idxs():
    with pytest.raises(TypeError, match="idxs must have dtype"):
        panoptic_ops.batched_nms(torch.zeros(2, 4), torch.zeros(2), torch.zeros(2), 0.5)
