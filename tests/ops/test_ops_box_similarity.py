"""CIAE box-filtered similarity: box edges, coordinate mapping, reference parity, gradients."""

import math

import pytest
import torch

import panoptic_ops
from panoptic_ops import UNBOXED
from panoptic_ops import reference as ref


def random_inputs(seed, batch=2, dim=6, height=13, width=17, num=5, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch, dim, height, width, generator=g, dtype=dtype)
    queries = torch.randn(batch, num, dim, generator=g, dtype=dtype)
    xy = torch.rand(batch, num, 2, generator=g, dtype=dtype) * 60 - 10
    boxes = torch.cat([xy, xy + torch.rand(batch, num, 2, generator=g, dtype=dtype) * 50], dim=-1)
    boxes[:, 0] = torch.tensor(UNBOXED, dtype=dtype)  # a stuff query
    boxes[0, 1] = torch.tensor([8.0, 4.0, 16.0, 12.0], dtype=dtype)  # edges on pixel centers (stride 4)
    return embeddings, queries, boxes


def test_box_edges_are_inclusive_and_mapped_through_pixel_centers():
    embeddings = torch.ones(1, 1, 4, 6)
    queries = torch.ones(1, 1, 1)
    # stride 4: pixel x stands for 4 * x + 2; [6, 14] covers x = 1, 2, 3 (6, 10, 14), edges included.
    boxes = torch.tensor([[[6.0, 2.0, 14.0, 6.0]]])
    s = panoptic_ops.box_filtered_similarity(embeddings, queries, boxes, 4)
    assert s[0, 0].tolist() == [[0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
    nudged = boxes + torch.tensor([1e-3, 0, -1e-3, 0])  # just inside -> the edge pixels drop
    assert panoptic_ops.box_filtered_similarity(embeddings, queries, nudged, 4)[0, 0, 0].tolist() == [0, 0, 1, 0, 0, 0]
    everywhere = panoptic_ops.box_filtered_similarity(embeddings, queries, torch.tensor([[UNBOXED]]), 4)
    assert bool((everywhere == 1).all())
    nowhere = panoptic_ops.box_filtered_similarity(embeddings, queries, torch.tensor([[[math.nan, 0, 30, 30]]]), 4)
    assert bool((nowhere == 0).all())
    assert torch.equal(panoptic_ops.box_mask(boxes, 4, 6, 4)[0, 0], s[0, 0].bool())


@pytest.mark.parametrize("stride", [1, 4, 8])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference(device, stride, seed, dtype):
    e, q, b = random_inputs(seed, dtype=dtype)
    got = panoptic_ops.box_filtered_similarity(e.to(device), q.to(device), b.to(device), stride).cpu()
    assert torch.equal(got, ref.box_filtered_similarity(e, q, b, stride))
    ids, scores = panoptic_ops.box_filtered_assign(e.to(device), q.to(device), b.to(device), stride)
    want_ids, want_scores = ref.box_filtered_assign(e, q, b, stride)
    assert torch.equal(ids.cpu(), want_ids) and torch.equal(scores.cpu(), want_scores)


def test_assign_ties_and_zero_outside_boxes(device):
    embeddings = torch.tensor([[[[1.0, -1.0]]]], device=device)  # D = 1, H = 1, W = 2
    queries = torch.tensor([[[1.0], [1.0], [2.0]]], device=device)
    boxes = torch.tensor([[UNBOXED, UNBOXED, [-5.0, -5.0, 1.0, 1.0]]], device=device)  # query 2: pixel 0 only
    ids, scores = panoptic_ops.box_filtered_assign(embeddings, queries, boxes, 1)
    # pixel 0: similarities (1, 1, 2) -> 2; pixel 1: (-1, -1, 0 outside the box) -> query 2 with 0.
    assert ids.tolist() == [[[2, 2]]] and scores.tolist() == [[[2.0, 0.0]]]
    ids, _ = panoptic_ops.box_filtered_assign(embeddings, queries[:, :2], boxes[:, :2], 1)
    assert ids.tolist() == [[[0, 0]]]  # equal similarities: the first query


def test_gradcheck(device):
    e, q, b = random_inputs(3, batch=1, dim=3, height=5, width=6, num=3, dtype=torch.float64)
    e, q, b = e.to(device).requires_grad_(), q.to(device).requires_grad_(), b.to(device)
    assert torch.autograd.gradcheck(lambda e, q: panoptic_ops.box_filtered_similarity(e, q, b, 4), (e, q))
    assert torch.autograd.gradgradcheck(lambda e, q: panoptic_ops.box_filtered_similarity(e, q, b, 4), (e, q))


def test_gradient_matches_reference(device):
    e, q, b = random_inputs(5)
    e1, q1 = e.clone().to(device).requires_grad_(), q.clone().to(device).requires_grad_()
    e2, q2 = e.clone().requires_grad_(), q.clone().requires_grad_()
    weight = torch.randn(2, 5, 13, 17)
    (panoptic_ops.box_filtered_similarity(e1, q1, b.to(device), 4) * weight.to(device)).sum().backward()
    (ref.box_filtered_similarity(e2, q2, b, 4) * weight).sum().backward()
    assert torch.allclose(e1.grad.cpu(), e2.grad, atol=1e-5) and torch.allclose(q1.grad.cpu(), q2.grad, atol=1e-4)


def test_half_inputs_computed_in_float32(device):
    e, q, b = random_inputs(1)
    got = panoptic_ops.box_filtered_similarity(e.half().to(device), q.half().to(device), b.to(device), 4)
    assert got.dtype == torch.float32
    assert torch.equal(got.cpu(), ref.box_filtered_similarity(e.half().float(), q.half().float(), b, 4))


def test_empty_inputs(device):
    e = torch.zeros(1, 3, 0, 4, device=device)
    q = torch.zeros(1, 2, 3, device=device)
    b = torch.zeros(1, 2, 4, device=device)
    assert panoptic_ops.box_filtered_similarity(e, q, b, 4).shape == (1, 2, 0, 4)
    no_queries = panoptic_ops.box_filtered_similarity(torch.zeros(1, 3, 2, 2, device=device), q[:, :0], b[:, :0], 4)
    assert no_queries.shape == (1, 0, 2, 2)
    with pytest.raises(ValueError, match="needs at least one query"):
        panoptic_ops.box_filtered_assign(torch.zeros(1, 3, 2, 2, device=device), q[:, :0], b[:, :0], 4)


def test_opcheck_and_compile(device):
    e, q, b = (t.to(device) for t in random_inputs(2, dtype=torch.float64))
    e.requires_grad_()
    torch.library.opcheck(torch.ops.panoptic_ops.box_filtered_similarity, (e, q, b, 4))
    torch.library.opcheck(
        torch.ops.panoptic_ops.box_filtered_assign, (e.detach(), q, b, 4), test_utils=("test_schema", "test_faketensor")
    )

    def run(e, q, b):
        return panoptic_ops.box_filtered_similarity(e, q, b, 4).sum(), panoptic_ops.box_filtered_assign(e, q, b, 4)[0]

    torch._dynamo.reset()
    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    got, want = compiled(e, q, b), run(e, q, b)
    assert torch.allclose(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (
            (torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), 4),
            ValueError,
            r"queries must have shape \[1, \*, 3\]",
        ),
        (
            (torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 3), torch.zeros(1, 3, 4), 4),
            ValueError,
            r"boxes must have shape \[1, 2, 4\]",
        ),
        (
            (torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), 0),
            ValueError,
            "stride must be a positive",
        ),
        (
            (torch.zeros(1, 3, 4, 4, dtype=torch.long), torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), 4),
            TypeError,
            "embeddings must be a floating",
        ),
    ],
)
def test_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        panoptic_ops.box_filtered_similarity(*args)
