"""Panoptic-DeepLab: the generic model tests, detectron2's losses and post-processing, the overfit test."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_tester import ModelTester

from panoptic_core.data import Categories, CocoPanopticDataset, SyntheticConfig
from panoptic_core.data import synthetic_categories as synthetic_category_list
from panoptic_core.losses import bootstrapped_cross_entropy
from panoptic_eval import PanopticQuality
from panoptic_models import BackboneConfig, PanopticDeepLabConfig, PanopticResult, build_model
from panoptic_models.meta_arch.panoptic_deeplab import (
    LABEL_DIVISOR,
    panoptic_deeplab_losses,
    panoptic_deeplab_postprocess,
)
from panoptic_ops import get_panoptic_segmentation


def synthetic_categories() -> Categories:
    return Categories.from_list(synthetic_category_list())


TINY = PanopticDeepLabConfig(
    backbone=BackboneConfig("resnet18", options={"res5_dilation": 2}),
    project_channels=(8, 8),
    aspp_channels=16,
    semantic_decoder_channels=16,
    semantic_head_channels=16,
    instance_decoder_channels=8,
    instance_head_channels=8,
    stuff_area=16,
)


class TestPanopticDeepLab(ModelTester):
    config = TINY


class TestPanopticDeepLabTwoConvHeads(ModelTester):
    """detectron2's non-separable variant (two 3x3 convs per fusion and head), GroupNorm."""

    config = PanopticDeepLabConfig(**{**TINY.__dict__, "depthwise_separable": False, "norm": "GN"})


def test_output_shapes_and_strides():
    cats = synthetic_categories()
    torch.manual_seed(0)
    model = build_model(TINY, cats).eval()
    x = torch.randn(2, 3, 67, 93)
    with torch.no_grad():
        out = model.predict(x)
    assert out["semantic"].shape == (2, cats.num_classes, 67, 93)
    assert out["center"].shape == (2, 1, 67, 93)
    assert out["offset"].shape == (2, 2, 67, 93)
    assert model.common_stride == 4
    assert model.size_divisibility == 16  # resnet18 with res5 dilation 2: output stride 16


def test_paper_configs():
    city, coco = PanopticDeepLabConfig.cityscapes(), PanopticDeepLabConfig.coco()
    assert (city.center_loss_weight, city.offset_loss_weight, city.semantic_loss_top_k) == (200.0, 0.01, 0.2)
    assert (city.stuff_area, city.center_threshold, city.nms_kernel, city.top_k) == (2048, 0.1, 7, 200)
    assert city.backbone.options == {"stem": "deeplab", "res5_dilation": 2, "res5_multi_grid": (1, 2, 4)}
    assert (coco.semantic_loss_top_k, coco.stuff_area, coco.nms_kernel) == (1.0, 4096, 41)
    assert (coco.center_sigma, coco.size_divisibility, coco.aspp_pool_kernel_size) == (8.0, 640, (40, 40))
    gen = city.target_generator()
    assert (gen.sigma, gen.small_instance_area, gen.small_instance_weight, gen.ignore_label) == (10.0, 4096, 3.0, 255)


def test_r52_presets_build_and_run():
    """The paper models: separable semantic and offset heads, a two-conv center head (as detectron2),
    COCO batches padded to 640."""
    from panoptic_models.layers import SeparableConv2d

    cats = synthetic_categories()
    city = build_model(PanopticDeepLabConfig.cityscapes(), cats).eval()
    assert isinstance(city.semantic_head.tower, SeparableConv2d)
    assert isinstance(city.offset_head.tower, SeparableConv2d)
    assert not isinstance(city.center_head.tower, SeparableConv2d)
    assert city.backbone.output_shape()["res5"].stride == 16 and city.size_divisibility == 16
    with torch.no_grad():
        out = city.predict(torch.randn(1, 3, 64, 96))
    assert out["semantic"].shape == (1, cats.num_classes, 64, 96)
    coco = build_model(PanopticDeepLabConfig.coco(), cats)
    assert coco.size_divisibility == 640


def test_from_dict_errors():
    cfg = PanopticDeepLabConfig.from_dict({"stuff_area": 10, "backbone": {"name": "resnet18"}, "top_k": None})
    assert cfg.stuff_area == 10 and cfg.backbone.name == "resnet18" and cfg.top_k is None
    with pytest.raises(ValueError, match="unknown key 'stuf_area'"):
        PanopticDeepLabConfig.from_dict({"stuf_area": 10})
    with pytest.raises(ValueError, match=r"backbone\.nam"):
        PanopticDeepLabConfig.from_dict({"backbone": {"nam": "x"}})
    with pytest.raises(ValueError, match="stuff_area: expected an integer"):
        PanopticDeepLabConfig.from_dict({"stuff_area": "big"})
    with pytest.raises(ValueError, match=r"aspp_dilations\[1\]"):
        PanopticDeepLabConfig.from_dict({"aspp_dilations": [6, "x", 18]})


def test_unknown_backbone():
    with pytest.raises(ValueError, match="resnet9"):
        build_model(PanopticDeepLabConfig(backbone=BackboneConfig("resnet9")), synthetic_categories())


def test_losses_equal_detectron2_formulas():
    torch.manual_seed(0)
    b, c, h, w = 2, 5, 12, 16
    outputs = {"semantic": torch.randn(b, c, h, w), "center": torch.rand(b, 1, h, w), "offset": torch.randn(b, 2, h, w)}
    targets = {
        "semantic": torch.randint(0, c, (b, h, w)).masked_fill(torch.rand(b, h, w) < 0.2, 255),
        "semantic_weights": torch.where(torch.rand(b, h, w) < 0.3, 3.0, 1.0),
        "center": torch.rand(b, 1, h, w),
        "center_weights": (torch.rand(b, 1, h, w) < 0.8).float(),
        "offset": torch.randn(b, 2, h, w),
        "offset_weights": (torch.rand(b, 1, h, w) < 0.5).float(),
    }
    cfg = PanopticDeepLabConfig()
    losses = panoptic_deeplab_losses(outputs, targets, cfg)
    pixel = F.cross_entropy(outputs["semantic"], targets["semantic"], ignore_index=255, reduction="none")
    pixel = (pixel * targets["semantic_weights"]).flatten()
    k = int(0.2 * pixel.numel())
    torch.testing.assert_close(losses["loss_sem_seg"], pixel.topk(k).values.mean())
    cw, ow = targets["center_weights"], targets["offset_weights"]
    center = ((outputs["center"] - targets["center"]) ** 2 * cw).sum() / cw.sum()
    offset = ((outputs["offset"] - targets["offset"]).abs() * ow).sum() / ow.sum()
    torch.testing.assert_close(losses["loss_center"], 200 * center)
    torch.testing.assert_close(losses["loss_offset"], 0.01 * offset)
    torch.testing.assert_close(
        losses["loss_sem_seg"], bootstrapped_cross_entropy(outputs["semantic"], targets["semantic"],
                                                           targets["semantic_weights"])
    )  # fmt: skip
    no_weight = {**targets, "center_weights": torch.zeros_like(cw), "offset_weights": torch.zeros_like(ow)}
    zero = panoptic_deeplab_losses(outputs, no_weight, cfg)
    assert zero["loss_center"] == 0 and zero["loss_offset"] == 0


def _detectron2_scores(panoptic, logits, center, divisor, thing_classes):
    """detectron2's per-instance score loop (panoptic_seg.py), transcribed."""
    prob = torch.softmax(logits, dim=0)
    out = {}
    for label in torch.unique(panoptic).tolist():
        if label == -1:
            continue
        cls = label // divisor
        if cls not in thing_classes:
            continue
        mask = panoptic == label
        sem = prob[cls][mask].mean()
        idx = torch.nonzero(mask).float()
        cy, cx = idx[:, 0].mean(), idx[:, 1].mean()
        out[label] = float(sem * center[0, int(cy.item()), int(cx.item())])
    return out


def test_postprocess_equals_detectron2_at_input_size():
    cats = synthetic_categories()
    torch.manual_seed(3)
    h, w = 45, 61
    logits = torch.randn(cats.num_classes, h, w) * 3
    center = torch.zeros(1, h, w)
    for y, x in [(10, 10), (30, 40), (20, 50)]:
        center[0, y, x] = 0.9
    offset = torch.randn(2, h, w) * 4
    cfg = PanopticDeepLabConfig(stuff_area=20)
    result = panoptic_deeplab_postprocess(
        {"semantic": logits, "center": center, "offset": offset}, (h, w), (h, w), cats, cfg
    )
    panoptic, _ = get_panoptic_segmentation(
        logits.argmax(0, keepdim=True), center, offset, cats.thing_classes, LABEL_DIVISOR, 20, -1, 0.1, 7, 200
    )
    # the result's segments are the encoded labels in increasing order
    labels = [v for v in torch.unique(panoptic[0]).tolist() if v != -1]
    assert len(labels) == len(result.segments_info)
    expected = _detectron2_scores(panoptic[0], logits, center, LABEL_DIVISOR, set(cats.thing_classes))
    for label, seg in zip(labels, result.segments_info, strict=True):
        assert torch.equal(result.ids == seg["id"], panoptic[0] == label)
        assert seg["category_id"] == cats.ids[label // LABEL_DIVISOR]
        if seg["isthing"]:
            assert seg["score"] == pytest.approx(expected[label], rel=1e-5)
    assert any(s["isthing"] for s in result.segments_info)


def test_postprocess_scales_offsets_when_resizing():
    """A 2x larger output: offsets double, so every pixel still reaches its (moved) center."""
    cats = synthetic_categories()
    thing = cats.thing_classes[0]
    h, w = 32, 40
    logits = torch.full((cats.num_classes, h, w), -5.0)
    logits[thing] = 5.0
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    # Gaussian peaks off the pixel grid, as a trained head gives (an exact single-pixel peak
    # upsampled 2x is a 2 x 2 plateau, and every plateau pixel is a center).
    center = torch.maximum(
        torch.exp(-((yy - 8.3) ** 2 + (xx - 10.2) ** 2) / 18), torch.exp(-((yy - 23.8) ** 2 + (xx - 29.7) ** 2) / 18)
    )[None]
    left = xx < 20
    offset = torch.stack([torch.where(left, 8 - yy, 24 - yy), torch.where(left, 10 - xx, 30 - xx)])
    cfg = PanopticDeepLabConfig(stuff_area=0)
    outputs = {"semantic": logits, "center": center, "offset": offset}
    small = panoptic_deeplab_postprocess(outputs, (h, w), (h, w), cats, cfg)
    big = panoptic_deeplab_postprocess(outputs, (h, w), (2 * h, 2 * w), cats, cfg)
    assert len(small.segments_info) == len(big.segments_info) == 2
    up = F.interpolate(small.ids[None, None].float(), size=(2 * h, 2 * w), mode="nearest")[0, 0].long()
    agree = (up == big.ids).float().mean()
    assert agree > 0.97, agree


def test_postprocess_crops_padding():
    cats = synthetic_categories()
    logits = torch.zeros(cats.num_classes, 40, 48)
    logits[cats.stuff_classes[0], :30, :37] = 5.0  # the image; the rest is padding
    logits[cats.stuff_classes[1], 30:, :] = 9.0
    logits[cats.stuff_classes[1], :, 37:] = 9.0
    out = {"semantic": logits, "center": torch.zeros(1, 40, 48), "offset": torch.zeros(2, 40, 48)}
    result = panoptic_deeplab_postprocess(out, (30, 37), (30, 37), cats, PanopticDeepLabConfig(stuff_area=0))
    assert result.ids.shape == (30, 37)
    assert [s["category_id"] for s in result.segments_info] == [cats.ids[cats.stuff_classes[0]]]


def test_oracle_outputs_reach_the_oracle_bound(synthetic_models_root):
    import oracle

    ds = CocoPanopticDataset.from_root(synthetic_models_root, "train")
    assert oracle.run_oracle("panoptic_deeplab", PanopticDeepLabConfig.synthetic(), ds)["All"]["pq"] >= 0.9


def test_result_feeds_panoptic_quality_and_label_divisor():
    cats = synthetic_categories()
    ids = torch.tensor([[0, 1, 1], [2, 2, 3]])
    thing, stuff = cats.thing_classes[0], cats.stuff_classes[0]
    info = [
        {"id": 1, "category_id": cats.ids[thing], "isthing": True, "score": 0.9},
        {"id": 2, "category_id": cats.ids[thing], "isthing": True, "score": 0.8},
        {"id": 3, "category_id": cats.ids[stuff], "isthing": False, "score": 0.7},
    ]
    result = PanopticResult(ids, info)
    encoded = result.to_label_divisor(1000)
    assert encoded.tolist() == [[-1, cats.ids[thing] * 1000 + 1] * 1 + [cats.ids[thing] * 1000 + 1],
                                [cats.ids[thing] * 1000 + 2] * 2 + [cats.ids[stuff] * 1000]]  # fmt: skip
    metric = PanopticQuality(cats.to_list())
    gt = [dict(s, iscrowd=0, area=int((ids == s["id"]).sum())) for s in info]
    metric.update(ids, gt, result.ids, result.segments_info)
    assert metric.compute()["All"]["pq"] == 1.0
    coco = result.to_coco(7, "7.png")
    assert coco["segments_info"][0]["area"] == 2 and coco["segments_info"][0]["bbox"] == [1, 0, 2, 1]


def test_from_label_map():
    labels = torch.tensor([[-1, 5 * 1000 + 1, 5 * 1000 + 1], [2 * 1000, 5 * 1000 + 2, -1]])
    r = PanopticResult.from_label_map(labels, [10, 11, 12, 13, 14, 15], [5], 1000, -1, {5001: 0.5})
    assert r.ids.tolist() == [[0, 2, 2], [1, 3, 0]]
    assert [(s["category_id"], s["isthing"], s["score"]) for s in r.segments_info] == [
        (12, False, 1.0), (15, True, 0.5), (15, True, 1.0)
    ]  # fmt: skip
    unique = torch.unique(labels, sorted=True, return_inverse=True)
    given = PanopticResult.from_label_map(labels, [10, 11, 12, 13, 14, 15], [5], 1000, -1, {5001: 0.5}, unique=unique)
    assert torch.equal(given.ids, r.ids) and given.segments_info == r.segments_info
    with pytest.raises(ValueError, match="outside"):
        PanopticResult.from_label_map(labels, [10, 11], [5], 1000)


@pytest.mark.slow
def test_overfits_four_synthetic_images(overfit_run):
    """Done-when of issue 10: PQ >= 0.8 on 4 training images after a few CPU minutes of Adam.

    Runs ``examples/train.py`` as a user would (its own process: it sets up the CPU threads
    with subnormals flushed before any kernel runs), without augmentation, evaluating on the
    training images themselves: 4 images of 96 x 128, 250 Adam steps (PQ 0.848, ~125 CPU-s on one
    thread; the earlier 128 x 160 x 600-step recipe took ~460 s for the same verdict).
    """
    metrics, _, _ = overfit_run(
        "panoptic_deeplab_synthetic", SyntheticConfig(train=4, val=0, seed=11, height=96, width=128),
        "solver.max_iter=250", "solver.base_lr=0.003", "solver.warmup_iters=0",
    )
    assert metrics["All"]["pq"] >= 0.8, metrics
