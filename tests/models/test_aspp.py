"""ASPP and the DeepLabV3+ decoder: shapes at odd sizes, pooling windows, checks, detectron2's init."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from panoptic_models.backbones import ShapeSpec
from panoptic_models.layers import SeparableConv2d
from panoptic_models.necks import ASPP, DeepLabV3PlusDecoder

SHAPE = {"res2": ShapeSpec(24, 4), "res3": ShapeSpec(40, 8), "res4": ShapeSpec(48, 16), "res5": ShapeSpec(64, 16)}


def features(height: int, width: int) -> dict[str, torch.Tensor]:
    return {k: torch.randn(2, s.channels, math.ceil(height / s.stride), math.ceil(width / s.stride))
            for k, s in SHAPE.items()}  # fmt: skip


@pytest.mark.parametrize("separable", [False, True])
@pytest.mark.parametrize("size", [(97, 131), (64, 64), (17, 33)])
def test_decoder_shapes_at_odd_sizes(separable, size):
    decoder = DeepLabV3PlusDecoder(SHAPE, ("res2", "res3", "res5"), project_channels=(8, 16), aspp_channels=32,
                                   decoder_channels=24, norm="GN", depthwise_separable=separable)  # fmt: skip
    feats = features(*size)
    out = decoder(feats)
    assert out.shape == (2, 24, *feats["res2"].shape[-2:])
    assert decoder.output_stride == 4 and decoder.out_channels == 24
    out.square().mean().backward()
    assert all(p.grad is not None for p in decoder.parameters())


def test_decoder_checks_features():
    with pytest.raises(ValueError, match="equal stride"):
        DeepLabV3PlusDecoder(SHAPE, ("res2", "res4", "res5"), project_channels=(8, 8))
    with pytest.raises(ValueError, match="not in input_shape"):
        DeepLabV3PlusDecoder(SHAPE, ("res2", "res6"), project_channels=(8,))
    with pytest.raises(ValueError, match="project_channels"):
        DeepLabV3PlusDecoder(SHAPE, ("res2", "res3", "res5"), project_channels=(8,))


def test_aspp_pooling_window_clamped_per_axis():
    torch.manual_seed(0)
    aspp = ASPP(8, 4, (1, 2, 3), norm="", pool_kernel_size=(3, 50), dropout=0.0).eval()
    x = torch.randn(1, 8, 6, 5)
    pooled = F.avg_pool2d(x, (3, 5), stride=1)  # height keeps its window, width is clamped to 5
    expected_pool = F.interpolate(aspp.pool_conv(pooled), size=(6, 5), mode="bilinear", align_corners=False)
    branches = [b(x) for b in aspp.branches]
    expected = aspp.project(torch.cat([*branches, expected_pool], dim=1))
    torch.testing.assert_close(aspp(x), expected)
    global_aspp = ASPP(8, 4, (1, 2, 3), norm="", dropout=0.0).eval()
    assert global_aspp(x).shape == (1, 4, 6, 5)
    with pytest.raises(ValueError, match="3 rates"):
        ASPP(8, 4, (1, 2))


def test_init_follows_detectron2():
    """Plain convs: XavierFill (uniform, bound sqrt(3 / fan_in)); separable convs: MSRAFill (normal, fan_out)."""
    torch.manual_seed(0)
    aspp = ASPP(256, 256, norm="BN", depthwise_separable=True)
    plain = aspp.branches[0][0].weight  # 1x1, fan_in 256
    assert plain.abs().max() <= math.sqrt(3 / 256) + 1e-6
    separable = aspp.branches[1]
    assert isinstance(separable, SeparableConv2d)
    depthwise = separable[0][0].weight  # 256 x 1 x 3 x 3: torch's fan_out = 256 * 9
    std = depthwise.std().item()
    assert 0.9 * math.sqrt(2 / 2304) < std < 1.1 * math.sqrt(2 / 2304), std
