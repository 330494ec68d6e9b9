"""Necks and shared head blocks: FPN (+ top blocks), EfficientPS's 2-way FPN, semantic FPN, CoordConv, FCOS head.

Necks are built from fabricated ``{name: ShapeSpec}`` dicts and called on random features of the
sizes a padded conv net gives (``ceil(H / stride)``), at odd and even image sizes.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from panoptic_models.backbones.base import ShapeSpec
from panoptic_models.heads import ConvTower, FCOSHead, Scale
from panoptic_models.necks import (
    FPN,
    CoordConv2d,
    LastLevelMaxPool,
    LastLevelP6P7,
    SemanticFPN,
    TwoWayFPN,
    add_coords,
    coord_grid,
)

RES = {"res2": ShapeSpec(12, 4), "res3": ShapeSpec(16, 8), "res4": ShapeSpec(20, 16), "res5": ShapeSpec(24, 32)}
SIZES = [(97, 131), (64, 64)]
NORMS = ["", "BN", "FrozenBN", "SyncBN", "GN"]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """The tensors here are tiny: intra-op threads cost more than they save (and spin when the CPU is busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def make_features(shapes: dict[str, ShapeSpec], size: tuple[int, int], batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    return {
        k: torch.randn(batch, s.channels, ceil_div(h, s.stride), ceil_div(w, s.stride), generator=g)
        for k, s in shapes.items()
    }


def check_pyramid(out: dict[str, torch.Tensor], shapes: dict[str, ShapeSpec], size: tuple[int, int], batch: int = 2):
    """Names, order, channels and spatial sizes ceil(H / stride) of a neck's outputs."""
    assert list(out) == list(shapes)
    for name, spec in shapes.items():
        assert name == f"p{int(math.log2(spec.stride))}"
        assert tuple(out[name].shape) == (
            batch,
            spec.channels,
            ceil_div(size[0], spec.stride),
            ceil_div(size[1], spec.stride),
        )


def check_all_gradients(module: nn.Module, outputs) -> None:
    """Backward a random projection of every output; every parameter must get a finite, non-zero gradient."""
    tensors = list(outputs.values()) if isinstance(outputs, dict) else list(outputs)
    g = torch.Generator().manual_seed(1)
    loss = sum((t * torch.randn(t.shape, generator=g)).sum() for t in tensors)
    module.zero_grad()
    loss.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------------------------- FPN


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("norm", NORMS)
def test_fpn_shapes_and_gradients(norm, size):
    torch.manual_seed(0)
    fpn = FPN(RES, out_channels=16, norm=norm).train()
    shapes = fpn.output_shape()
    assert shapes == {f"p{k}": ShapeSpec(16, 2**k) for k in range(2, 6)}
    assert fpn.size_divisibility == 32 and fpn.out_features == ["p2", "p3", "p4", "p5"]
    out = fpn(make_features(RES, size))
    check_pyramid(out, shapes, size)
    check_all_gradients(fpn, out)
    convs = [m for m in fpn.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and all((c.bias is not None) == (norm == "") for c in convs)


def test_fpn_matches_detectron2_at_divisible_size():
    """At sizes divisible by 32, exact-size upsampling is detectron2's nearest scale_factor=2."""
    torch.manual_seed(0)
    fpn = FPN(RES, out_channels=8, norm="GN").eval()
    feats = make_features(RES, (64, 96))
    names = ["res2", "res3", "res4", "res5"]
    prev = fpn.lateral_convs[3](feats["res5"])
    ref = {"p5": fpn.output_convs[3](prev)}
    for i in (2, 1, 0):
        prev = fpn.lateral_convs[i](feats[names[i]]) + F.interpolate(prev, scale_factor=2.0, mode="nearest")
        ref[f"p{i + 2}"] = fpn.output_convs[i](prev)
    out = fpn(feats)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=0, atol=0)

    feats_small = {"res4": feats["res4"], "res5": feats["res5"]}
    avg_two = FPN({k: RES[k] for k in ("res4", "res5")}, ("res4", "res5"), out_channels=8, fuse_type="avg").eval()
    p5_lat = avg_two.lateral_convs[1](feats["res5"])
    p4_run = (avg_two.lateral_convs[0](feats["res4"]) + F.interpolate(p5_lat, scale_factor=2.0)) / 2
    torch.testing.assert_close(avg_two(feats_small)["p4"], avg_two.output_convs[0](p4_run))


def test_fpn_init_is_c2_xavier():
    fpn = FPN(RES, out_channels=16)
    for conv in [m for m in fpn.modules() if isinstance(m, nn.Conv2d)]:
        fan_in = conv.weight[0].numel()
        bound = math.sqrt(3.0 / fan_in)  # kaiming_uniform with a=1: sqrt(6 / ((1 + a^2) fan_in))
        assert conv.weight.abs().max() <= bound
        assert conv.weight.abs().max() > 0.5 * bound
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))


@pytest.mark.parametrize("size", SIZES)
def test_fpn_last_level_max_pool(size):
    fpn = FPN(RES, out_channels=8, top_block=LastLevelMaxPool()).eval()
    shapes = fpn.output_shape()
    assert shapes["p6"] == ShapeSpec(8, 64) and list(shapes) == ["p2", "p3", "p4", "p5", "p6"]
    out = fpn(make_features(RES, size))
    check_pyramid(out, shapes, size)
    torch.testing.assert_close(out["p6"], out["p5"][..., ::2, ::2], rtol=0, atol=0)


@pytest.mark.parametrize("in_feature", ["res5", "p5"])
@pytest.mark.parametrize("size", SIZES)
def test_fpn_last_level_p6p7(in_feature, size):
    torch.manual_seed(0)
    in_channels = RES["res5"].channels if in_feature == "res5" else 8
    top = LastLevelP6P7(in_channels, 8, in_feature)
    fpn = FPN(RES, out_channels=8, top_block=top).train()
    shapes = fpn.output_shape()
    assert list(shapes) == ["p2", "p3", "p4", "p5", "p6", "p7"]
    assert shapes["p6"] == ShapeSpec(8, 64) and shapes["p7"] == ShapeSpec(8, 128)
    feats = make_features(RES, size)
    out = fpn(feats)
    check_pyramid(out, shapes, size)
    source = feats["res5"] if in_feature == "res5" else out["p5"]
    torch.testing.assert_close(out["p6"], top.p6(source))
    torch.testing.assert_close(out["p7"], top.p7(F.relu(top.p6(source))))
    check_all_gradients(fpn, out)


def test_fpn_bad_arguments():
    with pytest.raises(ValueError, match="in_features"):
        FPN(RES, in_features=("res2", "res6"))
    with pytest.raises(ValueError, match="in_features"):
        FPN(RES, in_features="res5")
    with pytest.raises(ValueError, match="log2-contiguous"):
        FPN(RES, in_features=("res2", "res4"))
    with pytest.raises(ValueError, match="log2-contiguous"):
        FPN({**RES, "res5": ShapeSpec(24, 16)})  # a dilated res5
    with pytest.raises(ValueError, match="fuse_type"):
        FPN(RES, fuse_type="max")
    with pytest.raises(ValueError, match="norm"):
        FPN(RES, norm="LN")
    with pytest.raises(ValueError, match="out_channels"):
        FPN(RES, out_channels=0)
    with pytest.raises(ValueError, match="in_feature"):
        FPN(RES, top_block=LastLevelMaxPool("p9"))
    with pytest.raises(ValueError, match="in_channels"):
        FPN(RES, out_channels=8, top_block=LastLevelP6P7(8, 8, "res5"))
    with pytest.raises(ValueError, match="out_channels"):
        FPN(RES, out_channels=8, top_block=LastLevelP6P7(24, 16, "res5"))
    fpn = FPN(RES, out_channels=8)
    feats = make_features(RES, (64, 64))
    del feats["res3"]
    with pytest.raises(ValueError, match="features"):
        fpn(feats)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor imports
def test_fpn_torch_compile_matches_eager():
    torch.manual_seed(0)
    shapes = {k: ShapeSpec(4, s.stride) for k, s in RES.items()}
    fpn = FPN(shapes, out_channels=4, top_block=LastLevelMaxPool()).eval()
    feats = make_features(shapes, (37, 45), batch=1)
    with torch.no_grad():
        eager = fpn(feats)
        compiled = torch.compile(copy.deepcopy(fpn), fullgraph=True)(feats)
    assert list(compiled) == list(eager)
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------ 2-way FPN

EFF = {"res2": ShapeSpec(10, 4), "res3": ShapeSpec(14, 8), "res4": ShapeSpec(18, 16), "res5": ShapeSpec(26, 32)}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("norm", ["BN", "SyncBN", "GN", "FrozenBN", ""])
def test_two_way_fpn_shapes_and_gradients(norm, size):
    torch.manual_seed(0)
    neck = TwoWayFPN(EFF, out_channels=16, norm=norm).train()
    shapes = neck.output_shape()
    assert shapes == {f"p{k}": ShapeSpec(16, 2**k) for k in range(2, 6)}
    assert neck.size_divisibility == 32
    out = neck(make_features(EFF, size))
    check_pyramid(out, shapes, size)
    check_all_gradients(neck, out)


def test_two_way_fpn_wiring():
    """P_i = SepConv(TD_i + BU_i): top-down nearest upsampling, bottom-up nearest downsampling."""
    torch.manual_seed(0)
    neck = TwoWayFPN(EFF, out_channels=8).eval()
    feats = make_features(EFF, (97, 131))
    xs = [feats[k] for k in ("res2", "res3", "res4", "res5")]
    td = [m(x) for m, x in zip(neck.top_down_laterals, xs)]
    bu = [m(x) for m, x in zip(neck.bottom_up_laterals, xs)]
    for i in (2, 1, 0):
        td[i] = td[i] + F.interpolate(td[i + 1], size=td[i].shape[-2:], mode="nearest")
    for i in (1, 2, 3):
        bu[i] = bu[i] + F.interpolate(bu[i - 1], size=bu[i].shape[-2:], mode="nearest")
    out = neck(feats)
    for i, name in enumerate(("p2", "p3", "p4", "p5")):
        torch.testing.assert_close(out[name], neck.output_convs[i](td[i] + bu[i]), rtol=0, atol=0)
    # the output conv is depthwise-separable, activations are leaky ReLU(0.01), laterals are separate
    depthwise = neck.output_convs[0][0][0]
    assert depthwise.groups == 8 and depthwise.kernel_size == (3, 3)
    acts = [m for m in neck.modules() if isinstance(m, nn.LeakyReLU)]
    assert acts and all(a.negative_slope == 0.01 for a in acts)
    assert neck.top_down_laterals[0][0].weight is not neck.bottom_up_laterals[0][0].weight
    # at a size divisible by 32, nearest downsampling to the next size keeps the top-left pixel of each 2x2
    even = make_features(EFF, (64, 64))
    lat = neck.bottom_up_laterals[0](even["res2"])
    torch.testing.assert_close(F.interpolate(lat, size=lat.shape[-1] // 2, mode="nearest"), lat[..., ::2, ::2])


@pytest.mark.parametrize("extra_level", ["maxpool", "conv"])
@pytest.mark.parametrize("size", SIZES)
def test_two_way_fpn_extra_level(extra_level, size):
    torch.manual_seed(0)
    neck = TwoWayFPN(EFF, out_channels=8, extra_level=extra_level).train()
    shapes = neck.output_shape()
    assert list(shapes) == ["p2", "p3", "p4", "p5", "p6"] and shapes["p6"] == ShapeSpec(8, 64)
    out = neck(make_features(EFF, size))
    check_pyramid(out, shapes, size)
    if extra_level == "maxpool":
        torch.testing.assert_close(out["p6"], out["p5"][..., ::2, ::2], rtol=0, atol=0)
    check_all_gradients(neck, out)


def test_two_way_fpn_bad_arguments():
    with pytest.raises(ValueError, match="in_features"):
        TwoWayFPN(EFF, in_features=("res2", "res3", "res9"))
    with pytest.raises(ValueError, match="at least two"):
        TwoWayFPN(EFF, in_features=("res5",))
    with pytest.raises(ValueError, match="log2-contiguous"):
        TwoWayFPN(EFF, in_features=("res3", "res2"))
    with pytest.raises(ValueError, match="extra_level"):
        TwoWayFPN(EFF, extra_level="p6p7")
    with pytest.raises(ValueError, match="norm"):
        TwoWayFPN(EFF, norm="iABN")
    with pytest.raises(ValueError, match="features"):
        TwoWayFPN(EFF, out_channels=8)({"res2": torch.zeros(1, 10, 8, 8)})


# ------------------------------------------------------------------------------------------ semantic FPN

PYR = {f"p{k}": ShapeSpec(8, 2**k) for k in range(2, 6)}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("norm", ["GN", "BN", ""])
@pytest.mark.parametrize("coord", [False, True])
def test_semantic_fpn_shapes_and_gradients(coord, norm, size):
    torch.manual_seed(0)
    head = SemanticFPN(PYR, conv_dims=16, norm=norm, coord_conv=coord).train()
    assert head.output_shape() == ShapeSpec(16, 4)
    out = head(make_features(PYR, size))
    assert tuple(out.shape) == (2, 16, ceil_div(size[0], 4), ceil_div(size[1], 4))
    check_all_gradients(head, [out])
    # one conv for p2 and p3, two for p4, three for p5; coordinates only at the coarsest level's input
    assert [len(h) for h in head.scale_heads] == [1, 1, 2, 3]
    first_in = [h[0][0].in_channels for h in head.scale_heads]
    assert first_in == [8, 8, 8, 10 if coord else 8]


def test_semantic_fpn_matches_detectron2_at_divisible_size():
    torch.manual_seed(0)
    head = SemanticFPN(PYR, conv_dims=16).eval()
    feats = make_features(PYR, (64, 96))
    ref = 0
    for name, tower in zip(("p2", "p3", "p4", "p5"), head.scale_heads):
        x = feats[name]
        for conv in tower:
            x = conv(x)
            if name != "p2":
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        ref = ref + x
    torch.testing.assert_close(head(feats), ref)


def test_semantic_fpn_with_coord_conv_uses_coordinates():
    """The coarsest level's first conv sees [p5, x, y]; constant features still give a position-dependent map."""
    torch.manual_seed(0)
    head = SemanticFPN(PYR, conv_dims=8, norm="", coord_conv=True).eval()
    feats = {k: torch.zeros(1, 8, ceil_div(33, s.stride), ceil_div(47, s.stride)) for k, s in PYR.items()}
    out = head(feats)
    assert out.shape[-2:] == (9, 12)
    assert out.std() > 0
    conv = head.scale_heads[3][0]
    torch.testing.assert_close(conv(add_coords(feats["p5"])), conv(torch.cat([feats["p5"], coord_grid(1, 2, 2)], 1)))


def test_semantic_fpn_bad_arguments():
    with pytest.raises(ValueError, match="in_features"):
        SemanticFPN(PYR, in_features=("p2", "p7"))
    with pytest.raises(ValueError, match="common_stride"):
        SemanticFPN(PYR, common_stride=8)  # p2 is finer than the output
    with pytest.raises(ValueError, match="common_stride"):
        SemanticFPN(PYR, common_stride=3)
    with pytest.raises(ValueError, match="conv_dims"):
        SemanticFPN(PYR, conv_dims=0)
    with pytest.raises(ValueError, match="features"):
        SemanticFPN(PYR, conv_dims=8)({"p2": torch.zeros(1, 8, 4, 4)})


# ------------------------------------------------------------------------------------------ CoordConv


def test_coord_channels_exact_values():
    x = torch.arange(12.0).view(1, 2, 2, 3)
    out = add_coords(x)
    assert out.shape == (1, 4, 2, 3)
    assert torch.equal(out[:, :2], x)
    assert out[0, 2].tolist() == [[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]  # x: along the width
    assert out[0, 3].tolist() == [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]  # y: along the height
    # SOLO's construction: meshgrid(y_range, x_range), cat([x, y])
    y, xx = torch.meshgrid(torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 7), indexing="ij")
    assert torch.equal(coord_grid(3, 5, 7), torch.stack([xx, y]).expand(3, -1, -1, -1))
    # Panoptic FCN's order: the height-varying channel first
    yx = add_coords(torch.zeros(1, 0, 2, 3), order="yx")
    assert yx[0, 0].tolist() == [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]
    assert yx[0, 1].tolist() == [[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]
    half = add_coords(torch.zeros(2, 1, 1, 5, dtype=torch.float64))
    assert half.dtype == torch.float64 and half.shape == (2, 3, 1, 5)
    assert half[1, 2].tolist() == [[-1.0] * 5]  # a size-1 axis is linspace(-1, 1, 1) = [-1]
    with pytest.raises(ValueError, match="order"):
        add_coords(x, order="xz")
    with pytest.raises(ValueError, match="x"):
        add_coords(torch.zeros(2, 3, 4))


def test_coord_conv2d():
    torch.manual_seed(0)
    conv = CoordConv2d(5, 7, 3)
    assert conv.weight.shape == (7, 7, 3, 3) and conv.padding == (1, 1)
    x = torch.randn(2, 5, 9, 11, requires_grad=True)
    out = conv(x)
    assert out.shape == (2, 7, 9, 11)
    torch.testing.assert_close(out, F.conv2d(add_coords(x), conv.weight, conv.bias, padding=1))
    out.sum().backward()
    assert x.grad is not None and conv.weight.grad is not None
    strided = CoordConv2d(5, 4, 3, stride=2, order="yx")
    assert strided(x).shape == (2, 4, 5, 6)
    with pytest.raises(ValueError, match="order"):
        CoordConv2d(5, 4, order="z")


# ------------------------------------------------------------------------------------------ heads


def test_conv_tower():
    torch.manual_seed(0)
    tower = ConvTower(6, 16, 3, norm="GN", coord=True)
    assert tower.out_channels == 16
    convs = [m for m in tower.modules() if isinstance(m, nn.Conv2d)]
    assert [c.in_channels for c in convs] == [8, 16, 16] and all(c.kernel_size == (3, 3) for c in convs)
    assert all(c.bias is None for c in convs)
    x = torch.randn(2, 6, 13, 9)
    out = tower(x)
    assert out.shape == (2, 16, 13, 9) and (out >= 0).all()
    check_all_gradients(tower, [out])
    assert 0.005 < convs[1].weight.std() < 0.015  # N(0, 0.01)
    ident = ConvTower(6, 16, 0, coord=True)
    assert ident.out_channels == 8 and torch.equal(ident(x), add_coords(x))
    plain = ConvTower(6, 4, 2, norm="", init_std=None)
    assert all(c.bias is not None for c in plain.modules() if isinstance(c, nn.Conv2d))
    with pytest.raises(ValueError, match="num_convs"):
        ConvTower(6, 4, -1)


def test_scale():
    s = Scale(2.5)
    assert s.scale.shape == (1,) and s.scale.item() == 2.5
    x = torch.randn(3, 4)
    torch.testing.assert_close(s(x), 2.5 * x)


STRIDES = (8, 16, 32, 64, 128)


def fcos_features(size=(97, 131), channels=16, batch=2):
    g = torch.Generator().manual_seed(3)
    return [torch.randn(batch, channels, ceil_div(size[0], s), ceil_div(size[1], s), generator=g) for s in STRIDES]


def test_fcos_head_shapes_init_and_gradients():
    torch.manual_seed(0)
    head = FCOSHead(16, num_classes=5, num_convs=2).train()
    feats = fcos_features()
    out = head(feats)
    assert set(out) == {"cls_logits", "box_reg", "centerness"}
    for key, channels in (("cls_logits", 5), ("box_reg", 4), ("centerness", 1)):
        assert len(out[key]) == 5
        for level, (pred, x) in enumerate(zip(out[key], feats)):
            assert pred.shape == (2, channels, *x.shape[-2:]), (key, level)
    prior = -math.log((1 - 0.01) / 0.01)
    assert math.isclose(prior, -4.59511985, rel_tol=1e-7)
    assert torch.allclose(head.cls_logits.bias, torch.full((5,), prior))
    assert math.isclose(head.prior_bias, prior)
    for conv in (head.bbox_pred, head.centerness):
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))
    assert 0.008 < head.cls_tower.convs[0][0].weight.std() < 0.012
    # at init, logits are close to the prior: sigmoid ~ 0.01
    assert abs(torch.sigmoid(out["cls_logits"][0]).mean().item() - 0.01) < 0.002
    assert all((r >= 0).all() for r in out["box_reg"])
    assert len(head.scales) == 5
    check_all_gradients(head, [t for v in out.values() for t in v])


def test_fcos_head_regression_scaling():
    torch.manual_seed(0)
    head = FCOSHead(16, num_classes=3, num_convs=1)
    with torch.no_grad():
        for i, s in enumerate(head.scales):
            s.scale.fill_(1.0 + i)  # distinct per-level scales
        head.bbox_pred.bias.fill_(0.5)
    feats = fcos_features(size=(64, 64))
    with torch.no_grad():
        train = head.train()(feats)["box_reg"]
        evaluated = head.eval()(feats)["box_reg"]
        for level, (tr, ev) in enumerate(zip(train, evaluated)):
            torch.testing.assert_close(ev, tr * STRIDES[level])  # normalised in training, pixels in eval
            raw = head.bbox_pred(head.bbox_tower(feats[level]))
            torch.testing.assert_close(tr, F.relu(raw * (1.0 + level)))

    exp_head = FCOSHead(16, num_classes=3, num_convs=1, norm_reg_targets=False)
    with torch.no_grad():
        tr = exp_head.train()(feats)["box_reg"]
        ev = exp_head.eval()(feats)["box_reg"]
        for level in range(5):
            torch.testing.assert_close(ev[level], tr[level])
            raw = exp_head.bbox_pred(exp_head.bbox_tower(feats[level]))
            torch.testing.assert_close(tr[level], torch.exp(raw))


def test_fcos_head_centerness_branch():
    torch.manual_seed(0)
    feats = fcos_features(size=(32, 32))
    for on_reg in (True, False):
        head = FCOSHead(16, num_classes=2, num_convs=1, centerness_on_reg=on_reg).eval()
        with torch.no_grad():
            head.centerness.weight.normal_()
            got = head(feats)["centerness"][2]
            tower = head.bbox_tower if on_reg else head.cls_tower
            torch.testing.assert_close(got, head.centerness(tower(feats[2])))


def test_fcos_head_bad_input():
    with pytest.raises(ValueError, match="prior_prob"):
        FCOSHead(16, 3, prior_prob=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        FCOSHead(16, 0)
    with pytest.raises(ValueError, match="strides"):
        FCOSHead(16, 3, strides=())
    head = FCOSHead(16, 3, num_convs=1)
    with pytest.raises(ValueError, match="levels"):
        head(fcos_features()[:4])
