"""Panoptic FCN pieces of panoptic-core against upstream (dvlab-research/PanopticFCN): guided positions
(``loss_single_level``) and the weighted dice (``loss.py``), including the audit's fixes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from panoptic_core.losses import weighted_dice_loss
from panoptic_core.targets import guided_positions


def _upstream_guided(pred_center, gt_inst, gt_class, k):
    """upstream ``loss_single_level``'s guided top-k (one image, instances padded with 255 absent)."""
    guided = F.interpolate(gt_inst[None], size=pred_center.shape[-2:], mode="bilinear", align_corners=False)
    select = pred_center.index_select(0, gt_class).sigmoid()[None]
    keep = (guided > 0.1) & (guided < 255)
    guidance = torch.zeros_like(guided)
    guidance[keep] = select[keep]
    values, index = torch.topk(guidance.reshape(1, len(gt_class), -1), k=k, dim=-1)
    return index[0], values[0]


def _upstream_weighted_dice(prediction, target, weights, eps=1e-8):
    """upstream ``weighted_dice_loss`` (mode "thing", reduction "none"): prediction logits (N, k, HW)."""
    w = weights / torch.clamp(weights.sum(dim=-1, keepdim=True), min=eps)
    p = torch.sigmoid(prediction)
    t = target.unsqueeze(1).expand_as(p)
    part = (p**2).sum(-1) + (t**2).sum(-1)
    return (1 - 2 * (t * p).sum(-1) / torch.clamp(part, min=eps)) * w


@pytest.mark.parametrize("seed", range(3))
def test_guided_positions_equal_upstream(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 12, 15, generator=g)
    masks = (torch.rand(5, 24, 30, generator=g) > 0.6).float()
    classes = torch.randint(0, 4, (5,), generator=g)
    pos, w = guided_positions(logits, masks, classes, k=7)
    ref_pos, ref_w = _upstream_guided(logits, masks, classes, 7)
    torch.testing.assert_close(w, ref_w)
    assert torch.equal(pos, ref_pos)


def test_guided_weights_carry_the_gradient():
    """Upstream does not detach the scores it uses as dice weights (the audit's first item)."""
    logits = torch.randn(2, 6, 6, requires_grad=True)
    masks = torch.zeros(1, 12, 12)
    masks[0, 2:10, 2:10] = 1
    _, w = guided_positions(logits, masks, torch.tensor([1]), k=3)
    w.sum().backward()
    assert logits.grad[1].abs().sum() > 0 and logits.grad[0].abs().sum() == 0


def test_guided_positions_pad_tiny_levels():
    """A 2 x 2 level has fewer than k = 7 positions: upstream's topk fails; here 3 zero columns pad it."""
    logits = torch.tensor([[[0.0, 1.0], [2.0, -1.0]]])
    masks = torch.ones(1, 4, 4)
    pos, w = guided_positions(logits, masks, torch.tensor([0]), k=7)
    assert pos.shape == (1, 7) and w.shape == (1, 7)
    assert pos[0].tolist() == [2, 1, 0, 3, 0, 0, 0]
    torch.testing.assert_close(w[0, :4], torch.sigmoid(torch.tensor([2.0, 1.0, 0.0, -1.0])))
    assert (w[0, 4:] == 0).all()
    # padded columns do not change the loss: same value as the unpadded k = 4
    probs = torch.rand(1, 7, 16)
    target = (torch.rand(1, 16) > 0.5).float()
    torch.testing.assert_close(weighted_dice_loss(probs, target, w), weighted_dice_loss(probs[:, :4], target, w[:, :4]))
    empty_pos, empty_w = guided_positions(logits, torch.zeros(0, 4, 4), torch.zeros(0, dtype=torch.int64), k=7)
    assert empty_pos.shape == (0, 7) and empty_w.shape == (0, 7)


@pytest.mark.parametrize("seed", range(3))
def test_weighted_dice_equals_upstream(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 7, 40, generator=g) * 3
    target = torch.rand(6, 40, generator=g).round()
    weights = torch.rand(6, 7, generator=g)
    weights[2] = 0  # an instance whose mask holds no position: weight 0, loss 0 (upstream's eps clamp)
    ours = weighted_dice_loss(logits.sigmoid(), target, weights)
    ref = _upstream_weighted_dice(logits, target, weights).sum(-1)
    torch.testing.assert_close(ours, ref)
    assert ours[2] == 0


def test_weighted_dice_hand_checked():
    # two positions, weights 1 and 3 (normalised 0.25, 0.75); masks of 4 pixels
    probs = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]]])
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    # dice 0 for the exact mask; 1 - 2 * 1 / (1 + 2) = 1/3 for the flat one
    torch.testing.assert_close(weighted_dice_loss(probs, target, torch.tensor([[1.0, 3.0]])), torch.tensor([0.25]))
