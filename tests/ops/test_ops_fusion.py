"""matrix_nms (mmdetection semantics) and Panoptic FCN kernel fusion."""

import math

import pytest
import torch

import panoptic_ops
from panoptic_ops import reference as ref


def assert_all_equal(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert torch.equal(g.cpu(), w), (g, w)


def test_matrix_nms_hand_worked():
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, :2] = True  # area 8
    masks[1, :1] = True  # area 4, inside mask 0: IoU 4 / 8 = 0.5
    masks[2, 2:] = True  # disjoint
    labels = torch.tensor([1, 1, 1])
    scores = torch.tensor([0.9, 0.8, 0.7])
    for impl in (panoptic_ops.matrix_nms, ref.matrix_nms):
        s, lab, m, keep = impl(masks, labels, scores, kernel="linear")
        # mask 1 decays by (1 - 0.5) / (1 - 0) = 0.5; the others keep their scores.
        assert torch.allclose(s, torch.tensor([0.9, 0.7, 0.4]))
        assert keep.tolist() == [0, 2, 1] and lab.tolist() == [1, 1, 1]
        assert torch.equal(m, masks[[0, 2, 1]])
        s, *_ = impl(masks, labels, scores, kernel="gaussian", sigma=2.0)
        assert math.isclose(s[2].item(), 0.8 * math.exp(-2.0 * 0.25), rel_tol=1e-6)
        s, *_ = impl(masks, torch.tensor([1, 2, 1]), scores)  # other label: no decay
        assert s.tolist() == pytest.approx([0.9, 0.8, 0.7])
        s, lab, m, keep = impl(masks, labels, scores, kernel="linear", filter_thr=0.5)
        assert keep.tolist() == [0, 2]
        _, _, _, keep = impl(masks, labels, scores, kernel="linear", nms_pre=2, max_num=1)
        assert keep.tolist() == [0]
        empty = impl(masks[:0], labels[:0], scores[:0])
        assert [t.shape[0] for t in empty] == [0, 0, 0, 0] and empty[2].shape == (0, 4, 4)


@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
@pytest.mark.parametrize("seed", range(5))
def test_matrix_nms_matches_reference(device, kernel, seed):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(40, 24, 24, generator=g) > 0.6
    labels = torch.randint(0, 3, (40,), generator=g)
    scores = (torch.rand(40, generator=g) * 5).round() / 5  # equal scores
    for kwargs in ({}, {"filter_thr": 0.2, "nms_pre": 30, "max_num": 12}, {"sigma": 0.5, "filter_thr": 10.0}):
        got = panoptic_ops.matrix_nms(masks.to(device), labels.to(device), scores.to(device), kernel, **kwargs)
        assert_all_equal(got, ref.matrix_nms(masks, labels, scores, kernel, **kwargs))


def test_kernel_fusion_hand_worked():
    kernels = torch.tensor([[1.0, 0.0], [2.0, 0.01], [0.0, 1.0], [1.0, 0.02], [0.0, 0.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = torch.tensor([3, 3, 3, 4, 3])
    for impl in (panoptic_ops.kernel_fusion, ref.kernel_fusion):
        fused, s, lab, keep = impl(kernels, scores, labels, 0.9)
        # 0 and 1 are similar and of one class: averaged; 3 is similar but of another class;
        # 2 is orthogonal; the all-zero kernel 4 is similar to nothing (not even itself).
        assert keep.tolist() == [0, 2, 3, 4]
        assert torch.allclose(fused[0], torch.tensor([1.5, 0.005]))
        assert torch.equal(fused[1:], kernels[[2, 3, 4]])
        assert s.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5]) and lab.tolist() == [3, 3, 4, 3]
    # The cumsum rule: a kernel similar to two earlier kept kernels joins only the first.
    k = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.9, 0.45]])  # 2 ~ 0 (0.89) and 2 ~ 1 (0.9)
    fused, _, _, keep = panoptic_ops.kernel_fusion(
        k, torch.tensor([3.0, 2.0, 1.0]), torch.zeros(3, dtype=torch.long), 0.85
    )
    assert keep.tolist() == [0, 1]
    assert torch.allclose(fused[0], (k[0] + k[2]) / 2) and torch.allclose(fused[1], k[1])


@pytest.mark.parametrize("seed", range(5))
def test_kernel_fusion_matches_reference(device, seed):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(6, 16, generator=g)
    kernels = base[torch.randint(0, 6, (50,), generator=g)] + 0.05 * torch.randn(50, 16, generator=g)
    kernels[::9] = 0  # all-zero kernels
    scores = (torch.rand(50, generator=g) * 4).round()
    labels = torch.randint(0, 2, (50,), generator=g)
    for threshold in (0.5, 0.9, 0.99, 1.5):
        got = panoptic_ops.kernel_fusion(kernels.to(device), scores.to(device), labels.to(device), threshold)
        assert_all_equal(got, ref.kernel_fusion(kernels, scores, labels, threshold))
        assert not torch.isnan(got[0]).any()


def test_opcheck_and_compile(device):
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(12, 8, 8, generator=g) > 0.5).to(device)
    labels = torch.randint(0, 2, (12,), generator=g).to(device)
    scores = torch.rand(12, generator=g).to(device)
    kernels = torch.randn(12, 4, generator=g).to(device)
    torch.library.opcheck(
        torch.ops.panoptic_ops.matrix_nms,
        (masks, labels, scores, "gaussian", 2.0, 0.1, -1, -1, None),
        test_utils=("test_schema", "test_faketensor"),
    )
    torch.library.opcheck(
        torch.ops.panoptic_ops.kernel_fusion,
        (kernels, scores, labels, 0.9),
        test_utils=("test_schema", "test_faketensor"),
    )

    def run(masks, labels, scores, kernels):
        return (*panoptic_ops.matrix_nms(masks, labels, scores, filter_thr=0.1)[:2],
                *panoptic_ops.kernel_fusion(kernels, scores, labels))  # fmt: skip

    torch._dynamo.reset()
    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(masks, labels, scores, kernels), run(masks, labels, scores, kernels)):
        assert torch.equal(got, want)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kernel must be 'gaussian' or 'linear'"):
        panoptic_ops.matrix_nms(torch.zeros(1, 2, 2), torch.zeros(1, dtype=torch.long), torch.zeros(1), kernel="box")
    with pytest.raises(ValueError, match=r"labels must have shape \[2\]"):
        panoptic_ops.matrix_nms(torch.zeros(2, 2, 2), torch.zeros(1, dtype=torch.long), torch.zeros(2))
    with pytest.raises(ValueError, match="kernels must have 2 dimensions"):
        panoptic_ops.kernel_fusion(torch.zeros(2, 3, 1), torch.zeros(2), torch.zeros(2, dtype=torch.long))


def test_kernel_fusion_empty(device):
    out = panoptic_ops.kernel_fusion(
        torch.zeros(0, 4, device=device), torch.zeros(0, device=device), torch.zeros(0, dtype=torch.long, device=device)
    )
    assert [tuple(t.shape) for t in out] == [(0, 4), (0,), (0,), (0,)]
