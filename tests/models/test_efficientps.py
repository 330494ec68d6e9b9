"""EfficientPS + SOLOv2: the generic model tests, the semantic head and 2-way FPN at B5, the losses
against mmdetection's / EfficientPS's formulas, SOLOv2's inference steps, the panoptic fusion
against a transcription of the authors' ``simple_test_mask_``, the oracle and the overfit test."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_tester import ModelTester

from panoptic_core.data import Categories, CocoPanopticDataset, Normalize, PanopticCollate, SyntheticConfig
from panoptic_core.data import synthetic_categories as synthetic_category_list
from panoptic_models import BackboneConfig, EfficientPS, EfficientPSConfig, build_model
from panoptic_models.backbones import build_backbone
from panoptic_models.heads.efficientps import DPC, EfficientPSSemanticHead
from panoptic_models.meta_arch.efficientps import (
    efficientps_fusion,
    efficientps_losses,
    efficientps_oracle_outputs,
    efficientps_postprocess,
    solov2_instances,
)
from panoptic_models.necks import TwoWayFPN
from panoptic_ops import matrix_nms

REPO = Path(__file__).resolve().parents[2]


def synthetic_categories() -> Categories:
    return Categories.from_list(synthetic_category_list())


TINY = EfficientPSConfig(
    backbone=BackboneConfig("efficientnet_b0", options={"se": False}),
    fpn_channels=16,
    semantic_channels=8,
    num_grids=(12, 10, 8, 6, 4),
    instance_channels=16,
    instance_num_convs=1,
    mask_feature_channels=8,
    mask_channels=8,
    instance_strides=(2, 2, 4, 8, 8),
    min_stuff_area=16,
)


class TestEfficientPS(ModelTester):
    config = TINY


def test_output_shapes():
    cats = synthetic_categories()
    torch.manual_seed(0)
    model = build_model(TINY, cats).eval()
    with torch.no_grad():
        out = model.predict(torch.randn(2, 3, 64, 96))
    assert out["semantic"].shape == (2, cats.num_classes, 64, 96)
    assert [tuple(c.shape) for c in out["category"]] == [(2, cats.num_things, s, s) for s in TINY.num_grids]
    assert [tuple(k.shape) for k in out["kernel"]] == [(2, 8, s, s) for s in TINY.num_grids]
    assert out["mask_features"].shape == (2, 8, 16, 24)
    assert list(model.fpn.output_shape()) == ["p2", "p3", "p4", "p5", "p6"]
    assert model.size_divisibility == 32


def test_paper_defaults_and_presets():
    cfg = EfficientPSConfig()
    assert cfg.backbone.name == "efficientnet_b5" and cfg.backbone.options == {"se": False}
    assert (cfg.fpn_channels, cfg.semantic_channels, cfg.semantic_loss_top_k) == (256, 128, 0.25)
    assert cfg.dpc_dilations == ((1, 6), (1, 1), (6, 21), (18, 15), (6, 3))
    assert cfg.num_grids == (40, 36, 24, 16, 12) and cfg.instance_strides == (8, 8, 16, 32, 32)
    assert cfg.scale_ranges == ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
    assert (cfg.instance_channels, cfg.instance_num_convs, cfg.mask_feature_channels, cfg.mask_channels) == (
        512, 4, 128, 256)  # fmt: skip
    assert (cfg.focal_alpha, cfg.focal_gamma, cfg.mask_loss_weight) == (0.25, 2.0, 3.0)
    assert (cfg.score_threshold, cfg.mask_threshold, cfg.nms_pre, cfg.max_per_image) == (0.1, 0.5, 500, 100)
    assert (cfg.nms_kernel, cfg.nms_sigma, cfg.update_threshold) == ("gaussian", 2.0, 0.05)
    assert (cfg.overlap_threshold, cfg.min_stuff_area, cfg.instance_score_threshold) == (0.5, 2048, 0.5)
    assert EfficientPSConfig.cityscapes() == cfg and EfficientPSConfig.coco().min_stuff_area == 4096
    gen = cfg.target_generator(synthetic_categories())
    solo = gen.generators[1]
    assert (solo.num_grids, solo.sigma, solo.mask_stride) == (cfg.num_grids, 0.2, 4)


def test_config_errors():
    with pytest.raises(ValueError, match="one entry per SOLOv2 level"):
        EfficientPSConfig(num_grids=(40, 36))
    with pytest.raises(ValueError, match="unknown key 'num_grid'"):
        EfficientPSConfig.from_dict({"num_grid": [4]})
    with pytest.raises(ValueError, match=r"dpc_dilations\[0\]"):
        EfficientPSConfig.from_dict({"dpc_dilations": [[1, "x"]]})
    stuff_only = [c for c in synthetic_category_list() if not c["isthing"]]
    with pytest.raises(ValueError, match="at least one thing"):
        build_model(TINY, stuff_only)


@pytest.mark.parametrize("name", ["synthetic", "cityscapes", "coco"])
def test_example_configs_are_the_presets(name):
    from common import load_experiment

    experiment = load_experiment(REPO / "examples" / "configs" / f"efficientps_{name}.yaml")
    model = experiment.model
    assert experiment.method == "efficientps" and isinstance(model, EfficientPSConfig)
    if name != "synthetic":  # multi-GPU recipes: SyncBN for the authors' iABN sync
        assert model.norm == model.backbone.norm == "SyncBN" and experiment.train.sync_bn
        assert experiment.solver.clip_grad_norm == 35.0 and experiment.solver.optimizer == "sgd"
        model = dataclasses.replace(model, norm="BN", backbone=dataclasses.replace(model.backbone, norm="BN"))
    assert model == getattr(EfficientPSConfig, name)()


def test_backbone_and_two_way_fpn_parameters_at_b5():
    """Our B5 with SE and a classifier is torchvision's ``efficientnet_b5`` (30,389,784 parameters,
    torchvision's model table); EfficientPS's B5 drops SE, and the 2-way FPN on its
    (40, 64, 176, 2048) levels adds 2 x 4 laterals, 4 separable output convs and their norms."""
    with_se = build_backbone("efficientnet_b5", se=True)
    features = sum(p.numel() for p in with_se.parameters())
    assert features + 2048 * 1000 + 1000 == 30_389_784
    backbone = build_backbone("efficientnet_b5", se=False)
    shape = backbone.output_shape()
    assert [shape[f].channels for f in ("res2", "res3", "res4", "res5")] == [40, 64, 176, 2048]
    fpn = TwoWayFPN(shape, out_channels=256)
    n_backbone = sum(p.numel() for p in backbone.parameters())
    n_fpn = sum(p.numel() for p in fpn.parameters())
    laterals = 2 * sum(c * 256 + 2 * 256 for c in (40, 64, 176, 2048))  # 1x1 conv (no bias) + BN
    outputs = 4 * (256 * 9 + 2 * 256 + 256 * 256 + 2 * 256)  # depthwise 3x3 + BN, pointwise + BN
    assert n_fpn == laterals + outputs == 1_471_488
    assert n_backbone == 23_148_912  # documented in the README (EfficientPS section)


def test_dpc_branches_and_dilations():
    dpc = DPC(16, 8)
    dil = [tuple(m[0].dilation) for m in dpc.convs]
    assert dil == [(1, 6), (1, 1), (6, 21), (18, 15), (6, 3)]
    assert all(m[0].groups == 16 and m[0].padding == m[0].dilation for m in dpc.convs)
    assert dpc.fuse[0].in_channels == 80 and dpc(torch.randn(1, 16, 9, 13)).shape == (1, 8, 9, 13)


def test_semantic_head_wiring():
    """The head's output equals the authors' wiring rebuilt from its own modules."""
    from panoptic_models.backbones import ShapeSpec

    shape = {f"p{k}": ShapeSpec(8, 2**k) for k in (2, 3, 4, 5)}
    torch.manual_seed(0)
    head = EfficientPSSemanticHead(shape, ("p2", "p3", "p4", "p5"), 5, channels=4).eval()
    feats = {f"p{k}": torch.randn(1, 8, 64 // 2**k, 96 // 2**k) for k in (2, 3, 4, 5)}

    def up(x, like):
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    with torch.no_grad():
        d32, d16 = head.dpc32(feats["p5"]), head.dpc16(feats["p4"])
        m16 = head.mc16.convs(d16 + up(d32, d16))
        m16 = F.interpolate(m16, scale_factor=2, mode="bilinear", align_corners=False)
        l8 = head.lsfe8(feats["p3"]) + m16
        m8 = F.interpolate(head.mc8.convs(l8), scale_factor=2, mode="bilinear", align_corners=False)
        l4 = head.lsfe4(feats["p2"]) + m8
        x = torch.cat([l4, up(l8, l4), up(d16, l4), up(d32, l4)], 1)
        want = F.interpolate(head.predictor(x), scale_factor=4, mode="bilinear", align_corners=False)
        got = head(feats, (64, 96))
    torch.testing.assert_close(got, want)
    assert isinstance(head.lsfe4[0][2], torch.nn.LeakyReLU) and head.lsfe4[0][2].negative_slope == 0.01


# ----------------------------------------------------------------------------------------- losses


def _batch(cfg: EfficientPSConfig, dataset: CocoPanopticDataset, n: int = 2):
    torch.manual_seed(0)
    model = build_model(cfg, dataset.categories)
    collate = PanopticCollate(model.size_divisibility, target_generator=model.target_generator())
    return model, collate([dataset[i] for i in range(n)])


def _mmdet_solo_losses(outputs, targets, num_things):
    """mmdetection's ``SOLOV2Head.loss_by_feat`` with ``FocalLoss(use_sigmoid, 2, 0.25)`` and
    ``DiceLoss(use_sigmoid, eps=1e-3, naive_dice=False, loss_weight=3)``, transcribed."""
    mask_feats = outputs["mask_features"]
    num_pos = sum(int((lvl != num_things).sum()) for lvl in targets["location_classes"])
    loss_mask = []
    for level, lvl_kernels in enumerate(outputs["kernel"]):
        preds, tgts = [], []
        for img, kernels in enumerate(lvl_kernels):
            pairs = targets["location_pairs"][img][level]
            pos_index = pairs[:, 0].tolist()
            img_kernels = kernels.view(kernels.shape[0], -1)[:, pos_index]
            if img_kernels.shape[-1] == 0:
                continue
            h, w = mask_feats.shape[-2:]
            n = img_kernels.shape[1]
            preds.append(F.conv2d(mask_feats[[img]], img_kernels.permute(1, 0).view(n, -1, 1, 1)).view(-1, h, w))
            tgts.append(targets["instance_masks"][img][pairs[:, 1]])
        if preds:
            pred = torch.cat(preds).sigmoid().flatten(1)
            tgt = torch.cat(tgts).flatten(1).float()
            a = (pred * tgt).sum(1)
            b = (pred * pred).sum(1) + 1e-3
            c = (tgt * tgt).sum(1) + 1e-3
            loss_mask.append(3.0 * (1 - 2 * a / (b + c)))
    loss_mask = torch.cat(loss_mask).sum() / num_pos
    labels = torch.cat([lvl.flatten() for lvl in targets["location_classes"]])
    preds = torch.cat([c.permute(0, 2, 3, 1).reshape(-1, num_things) for c in outputs["category"]])
    target = F.one_hot(labels, num_things + 1)[:, :num_things].float()
    p = preds.sigmoid()
    pt = (1 - p) * target + p * (1 - target)
    weight = (0.25 * target + 0.75 * (1 - target)) * pt.pow(2)
    loss_cls = (F.binary_cross_entropy_with_logits(preds, target, reduction="none") * weight).sum() / (num_pos + 1)
    return loss_mask, loss_cls


def test_losses_equal_mmdetection_and_efficientps_formulas(synthetic_models_root):
    dataset = CocoPanopticDataset.from_root(synthetic_models_root, "train", transforms=Normalize())
    model, batch = _batch(TINY, dataset, 3)
    targets = batch.method_targets
    torch.manual_seed(1)
    with torch.no_grad():
        outputs = model.train().predict(batch.images)
    outputs = {k: ([torch.randn_like(t) for t in v] if isinstance(v, list) else torch.randn_like(v))
               for k, v in outputs.items()}  # fmt: skip
    losses = efficientps_losses(outputs, targets, TINY)
    loss_mask, loss_cls = _mmdet_solo_losses(outputs, targets, dataset.categories.num_things)
    torch.testing.assert_close(losses["loss_mask"], loss_mask)
    torch.testing.assert_close(losses["loss_category"], loss_cls)
    # EfficientPSSemanticHead.loss: CE (reduction none, ignore 255) over all pixels, top ceil(25 %), mean
    ce = F.cross_entropy(outputs["semantic"], targets["semantic"], ignore_index=255, reduction="none").view(-1)
    top = ce.topk(math.ceil(ce.numel() * 0.25)).values.mean()
    torch.testing.assert_close(losses["loss_sem_seg"], top)


def test_mask_loss_counts_shared_cells_twice():
    """Two instances sharing one cell: two dice terms for that cell's kernel, divided by one positive cell."""
    num_things = 2
    outputs = {
        "semantic": torch.zeros(1, 3, 8, 8),
        "category": [torch.zeros(1, num_things, 2, 2)],
        "kernel": [torch.zeros(1, 2, 2, 2)],
        "mask_features": torch.zeros(1, 2, 2, 2),
    }
    outputs["kernel"][0][0, :, 0, 1] = torch.tensor([1.0, -1.0])
    outputs["mask_features"][0, 0] = torch.tensor([[4.0, -4.0], [-4.0, -4.0]])
    masks = torch.tensor([[[1, 0], [0, 0]], [[0, 1], [1, 1]]], dtype=torch.uint8)
    classes = torch.full((1, 2, 2), num_things)
    classes[0, 0, 1] = 1
    targets = {
        "semantic": torch.zeros(1, 8, 8, dtype=torch.int64),
        "location_classes": [classes],
        "location_pairs": [[torch.tensor([[1, 0], [1, 1]])]],
        "instance_masks": [masks],
    }
    cfg = EfficientPSConfig(num_grids=(2,) * 5, instance_strides=(8,) * 5, scale_ranges=((0, 1),) * 5)
    loss = efficientps_losses(outputs, targets, cfg)["loss_mask"]
    logits = torch.tensor([[4.0, -4.0], [-4.0, -4.0]])
    p = torch.sigmoid(logits).flatten()

    def dice(q):
        return 1 - 2 * (p * q).sum() / ((p * p).sum() + 1e-3 + (q * q).sum() + 1e-3)

    want = 3.0 * (dice(masks[0].flatten().float()) + dice(masks[1].flatten().float())) / 1
    torch.testing.assert_close(loss, want)


# -------------------------------------------------------------------------------------- inference


def test_local_maximum_keeps_plateaus_and_drops_lower_neighbours():
    cfg = dataclasses.replace(TINY, num_grids=(4,) * 5, score_threshold=0.5, instance_strides=(0,) * 5,
                              update_threshold=-1.0)  # fmt: skip
    logits = torch.full((1, 4, 4), -20.0)
    logits[0, 1, 1] = logits[0, 1, 2] = 3.0  # a plateau of two cells: both survive
    logits[0, 2, 1] = 2.0  # below its neighbour (1, 1) in the 2x2 window: dropped
    logits[0, 3, 3] = 1.0  # isolated: kept
    kernels = torch.eye(16).reshape(16, 4, 4)  # cell c's kernel reads feature channel c
    feats = torch.full((16, 4, 4), -5.0)
    for c in range(16):
        feats[c].view(-1)[c] = 5.0
    scores, labels, masks = solov2_instances([logits] + [torch.full((1, 4, 4), -20.0)] * 4,
                                             [kernels] * 5, feats, cfg)  # fmt: skip
    cells = sorted(int(torch.argmax(m)) for m in masks)
    assert cells == [5, 6, 15]
    assert labels.tolist() == [0, 0, 0]
    assert float(scores[-1]) == pytest.approx(1 / (1 + math.exp(-1)) / (1 + math.exp(-5)), rel=1e-5)


def _mmdet_predict_single(category, kernel, mask_features, cfg):
    """mmdetection's ``predict_by_feat`` + ``_predict_by_feat_single`` for one image, transcribed."""
    num_levels = len(category)
    cls_scores = []
    for lvl in range(num_levels):
        s = category[lvl][None].sigmoid()
        local_max = F.max_pool2d(s, 2, stride=1, padding=1)
        keep_mask = local_max[:, :, :-1, :-1] == s
        cls_scores.append((s * keep_mask).permute(0, 2, 3, 1)[0].reshape(-1, s.shape[1]))
    kernel_preds = torch.cat([k.permute(1, 2, 0).reshape(-1, k.shape[0]) for k in kernel])
    cls_scores = torch.cat(cls_scores)
    score_mask = cls_scores > cfg.score_threshold
    scores = cls_scores[score_mask]
    inds = score_mask.nonzero()
    cls_labels = inds[:, 1]
    kernel_preds = kernel_preds[inds[:, 0]]
    lvl_interval = cls_labels.new_tensor(cfg.num_grids).pow(2).cumsum(0)
    strides = kernel_preds.new_ones(lvl_interval[-1])
    strides[: lvl_interval[0]] *= cfg.instance_strides[0]
    for lvl in range(1, num_levels):
        strides[lvl_interval[lvl - 1] : lvl_interval[lvl]] *= cfg.instance_strides[lvl]
    strides = strides[inds[:, 0]]
    kernel_preds = kernel_preds.view(kernel_preds.size(0), -1, 1, 1)
    mask_preds = F.conv2d(mask_features[None], kernel_preds, stride=1).squeeze(0).sigmoid()
    masks = mask_preds > cfg.mask_threshold
    sum_masks = masks.sum((1, 2)).float()
    keep = sum_masks > strides
    masks, mask_preds, sum_masks, scores, cls_labels = (
        masks[keep], mask_preds[keep], sum_masks[keep], scores[keep], cls_labels[keep])  # fmt: skip
    mask_scores = (mask_preds * masks).sum((1, 2)) / sum_masks
    scores = scores * mask_scores
    scores, labels, _, keep_inds = matrix_nms(
        masks, cls_labels, scores, mask_area=sum_masks, nms_pre=cfg.nms_pre, max_num=cfg.max_per_image,
        kernel=cfg.nms_kernel, sigma=cfg.nms_sigma, filter_thr=cfg.update_threshold,
    )  # fmt: skip
    return scores, labels, mask_preds[keep_inds]


@pytest.mark.parametrize("seed", range(4))
def test_solov2_inference_equals_mmdetection(seed):
    g = torch.Generator().manual_seed(seed)
    cfg = dataclasses.replace(TINY, max_per_image=30, nms_pre=60)
    category = [torch.randn(4, s, s, generator=g) * 2 - 1 for s in cfg.num_grids]
    kernel = [torch.randn(8, s, s, generator=g) for s in cfg.num_grids]
    feats = torch.randn(8, 20, 24, generator=g) * 2
    scores, labels, logits = solov2_instances(category, kernel, feats, cfg)
    want_scores, want_labels, want_probs = _mmdet_predict_single(category, kernel, feats, cfg)
    assert len(scores) > 5
    torch.testing.assert_close(scores, want_scores)
    assert torch.equal(labels, want_labels)
    torch.testing.assert_close(torch.sigmoid(logits), want_probs)


# ----------------------------------------------------------------------------------------- fusion


def authors_fusion(semantic, mask_logits, classes, scores, cats, cfg):
    """The authors' ``EfficientPS.simple_test_mask_`` on SOLOv2 instances, transcribed: classes in
    Cityscapes' stuff-first order, ``ML_B`` inside the instance's mask (the box upstream), the
    dense concatenation and ``argmax(softmax)``, the stuff filling and the minimum stuff area."""
    perm = list(cats.stuff_classes) + list(cats.thing_classes)
    num_stuff = len(cats.stuff_classes)
    to_perm = {c: i for i, c in enumerate(perm)}
    semantic_logits = semantic[perm][None]
    sem_pred = torch.argmax(semantic_logits, dim=1)[0]
    keep = scores >= cfg.instance_score_threshold
    mask_pred, labels, confidence = mask_logits[keep], classes[keep], scores[keep]
    cat = [255]
    idx = torch.argsort(confidence, descending=True, stable=True)
    ml_a = mask_pred.new_zeros(mask_pred.shape)
    ml_b = ml_a.clone()
    occupied = torch.zeros_like(sem_pred, dtype=torch.bool)
    i = 0
    for id_i in idx:
        label_i = to_perm[int(labels[id_i])] - num_stuff
        mask_i = mask_pred[id_i].sigmoid() > cfg.mask_threshold
        region = mask_i.clone()
        intersection = occupied & mask_i
        if intersection.float().sum() / mask_i.float().sum() > cfg.overlap_threshold:
            continue
        mask_i = mask_i ^ intersection
        occupied += mask_i
        ml_a[i] = cfg.mask_logit_scale * mask_pred[id_i]
        ml_b[i][region] = semantic_logits[0, label_i + num_stuff][region]
        cat.append(label_i + num_stuff)
        i += 1
    ml_a, ml_b = ml_a[:i], ml_b[:i]
    fl = (ml_a.sigmoid() + ml_b.sigmoid()) * (ml_a + ml_b)
    intermediate_logits = torch.cat([semantic_logits[0, :num_stuff], fl], dim=0)
    cat = torch.tensor(cat, dtype=torch.long)
    intermediate_mask = torch.argmax(F.softmax(intermediate_logits, dim=0), dim=0) + 1
    intermediate_mask = intermediate_mask - num_stuff
    intermediate_mask[intermediate_mask <= 0] = 0
    unique = torch.unique(intermediate_mask)
    ignore_val = intermediate_mask.max().item() + 1
    ignore_arr = torch.ones((ignore_val,), dtype=unique.dtype) * ignore_val
    total_unique = unique.shape[0]
    ignore_arr[unique] = torch.arange(total_unique)
    panoptic_mask = ignore_arr[intermediate_mask]
    panoptic_mask[intermediate_mask == ignore_val] = 0
    cat_ = cat[unique].long()
    sem_pred[panoptic_mask > 0] = num_stuff
    sem_pred[sem_pred >= num_stuff] = num_stuff
    cls_stuff, area = torch.unique(sem_pred, return_counts=True)
    cls_stuff[area < cfg.min_stuff_area] = num_stuff
    cls_stuff = cls_stuff[cls_stuff != num_stuff]
    tmp = torch.ones((num_stuff + 1,), dtype=cls_stuff.dtype) * num_stuff
    tmp[cls_stuff] = torch.arange(cls_stuff.shape[0])
    new_sem_pred = tmp[sem_pred]
    cat_ = torch.cat((cat_, cls_stuff.long()), -1)
    bool_mask = new_sem_pred != num_stuff
    panoptic_mask[bool_mask] = new_sem_pred[bool_mask] + total_unique
    return panoptic_mask, [perm[int(c)] if int(c) != 255 else None for c in cat_]


def _random_scene(seed: int, cats: Categories, k: int, size=(40, 56)):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    semantic = torch.randn(cats.num_classes, h, w, generator=g) * 2
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    logits = []
    for _ in range(k):
        cy, cx = torch.rand(2, generator=g) * torch.tensor([h, w])
        r = 4 + torch.rand(1, generator=g) * 10
        logits.append(1.5 * (r - torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)) + torch.randn(h, w, generator=g) * 0.3)
    scores, _ = torch.sort(torch.rand(k, generator=g) * 0.6 + 0.3, descending=True)
    classes = torch.tensor(cats.thing_classes)[torch.randint(0, cats.num_things, (k,), generator=g)]
    return semantic, torch.stack(logits), classes, scores


@pytest.mark.parametrize("seed", range(8))
def test_fusion_equals_the_authors_fusion(seed):
    cats = synthetic_categories()
    cfg = dataclasses.replace(TINY, min_stuff_area=30, mask_logit_scale=4.0 if seed % 2 else 1.0)
    semantic, logits, classes, scores = _random_scene(seed, cats, k=6)
    if seed >= 4:  # stuff logits positive everywhere: each instance is fused on its region's box only
        semantic = semantic + 8.0
        assert (semantic[list(cats.stuff_classes)].max(0).values > 0).all()
    result = efficientps_fusion(semantic, logits, classes, scores, cats, cfg)
    want_ids, want_classes = authors_fusion(semantic, logits, classes, scores, cats, cfg)
    assert 0 in want_ids  # (upstream's relabelling assumes some non-instance pixel)
    assert torch.equal(result.ids, want_ids)
    by_id = {s["id"]: s for s in result.segments_info}
    assert sorted(by_id) == sorted(set(want_ids.unique().tolist()) - {0})
    for seg_id, seg in by_id.items():
        assert seg["category_id"] == cats.ids[want_classes[seg_id]]
        assert seg["isthing"] == cats.isthing[want_classes[seg_id]]
    assert any(s["isthing"] for s in result.segments_info) and any(not s["isthing"] for s in result.segments_info)
    shuffled = torch.randperm(len(scores), generator=torch.Generator().manual_seed(seed))
    again = efficientps_fusion(semantic, logits[shuffled], classes[shuffled], scores[shuffled], cats, cfg)
    assert torch.equal(again.ids, result.ids) and again.segments_info == result.segments_info


def test_fusion_formula_on_one_pixel():
    """FL = (sigmoid(A) + sigmoid(B)) * (A + B) against the stuff logit decides the pixel."""
    cats = synthetic_categories()
    thing, stuff = cats.thing_classes[0], cats.stuff_classes[0]
    cfg = dataclasses.replace(TINY, min_stuff_area=1)
    a, b = 2.0, 1.0
    fused = (1 / (1 + math.exp(-a)) + 1 / (1 + math.exp(-b))) * (a + b)  # 4.8357
    for stuff_logit, wins in ((fused - 0.01, "thing"), (fused + 0.01, "stuff")):
        semantic = torch.full((cats.num_classes, 1, 2), -9.0)
        semantic[thing] = b
        semantic[stuff] = stuff_logit
        logits = torch.tensor([[[a, -3.0]]])  # the second pixel is outside the mask
        result = efficientps_fusion(semantic, logits, torch.tensor([thing]), torch.tensor([0.9]), cats, cfg)
        first = next(s for s in result.segments_info if s["id"] == int(result.ids[0, 0]))
        assert first["isthing"] == (wins == "thing")
        second = next(s for s in result.segments_info if s["id"] == int(result.ids[0, 1]))
        assert not second["isthing"] and second["category_id"] == cats.ids[stuff]


def test_fusion_overlap_threshold_and_min_stuff_area():
    cats = synthetic_categories()
    thing, stuff = cats.thing_classes[0], cats.stuff_classes[0]
    semantic = torch.full((cats.num_classes, 10, 10), -5.0)
    semantic[stuff] = 1.0
    semantic[thing, :, :6] = 3.0
    logits = torch.full((3, 10, 10), -6.0)
    logits[0, :, :4] = 6.0  # 40 px
    logits[1, :, 1:6] = 6.0  # 50 px, 30 on instance 0: 60 % > 0.5: dropped
    logits[2, 8:, 8:] = 6.0  # 4 px on the stuff region: FL = (s(6) + s(-5)) * 1 = 1.004 beats the stuff logit 1
    scores = torch.tensor([0.9, 0.8, 0.6])
    classes = torch.tensor([thing] * 3)
    cfg = dataclasses.replace(TINY, min_stuff_area=36)  # the 40 stuff px less instance 2's 4
    result = efficientps_fusion(semantic, logits, classes, scores, cats, cfg)
    things = [s for s in result.segments_info if s["isthing"]]
    assert [s["score"] for s in things] == pytest.approx([0.9, 0.6])
    first = result.ids == things[0]["id"]
    assert first[:, :4].all() and not first[:, 4:].any()
    # columns 4-5: the semantic argmax is the thing class and no instance covers them: VOID
    assert (result.ids[:, 4:6] == 0).all()
    stuff_seg = [s for s in result.segments_info if not s["isthing"]]
    assert len(stuff_seg) == 1 and stuff_seg[0]["category_id"] == cats.ids[stuff]
    cfg = dataclasses.replace(TINY, min_stuff_area=37)  # one pixel short: VOID
    assert not any(not s["isthing"] for s in efficientps_fusion(semantic, logits, classes, scores, cats,
                                                                cfg).segments_info)  # fmt: skip


def test_postprocess_crops_padding_and_resizes():
    cats = synthetic_categories()
    thing, stuff = cats.thing_classes[1], cats.stuff_classes[0]
    cfg = dataclasses.replace(TINY, num_grids=(4,) * 5, instance_strides=(0,) * 5, min_stuff_area=1)
    semantic = torch.full((cats.num_classes, 32, 48), -10.0)
    semantic[stuff] = 10.0
    semantic[thing, 8:16, 8:16] = 20.0
    feats = torch.full((1, 8, 12), -10.0)
    feats[0, 2:4, 2:4] = 10.0
    category = [torch.full((cats.num_things, 4, 4), -10.0) for _ in range(5)]
    category[0][1, 1, 1] = 10.0
    kernel = [torch.ones(1, 4, 4)] * 5
    out = {"semantic": semantic, "category": category, "kernel": kernel, "mask_features": feats}
    small = efficientps_postprocess(out, (30, 40), (30, 40), cats, cfg)
    assert small.ids.shape == (30, 40)
    inst = [s for s in small.segments_info if s["isthing"]]
    assert len(inst) == 1 and inst[0]["category_id"] == cats.ids[thing]
    mask = small.ids == inst[0]["id"]
    # mask pixels 2..3 at 1/4 cover input pixels 8..15; the upsampled logits cross 0 half-way
    # between pixel centres, so the edge rows and columns sit on the threshold
    assert not mask[:7].any() and not mask[17:].any() and not mask[:, :7].any() and not mask[:, 17:].any()
    assert 49 <= int(mask.sum()) <= 64
    big = efficientps_postprocess(out, (30, 40), (60, 80), cats, cfg)
    assert big.ids.shape == (60, 80)
    big_mask = big.ids == next(s for s in big.segments_info if s["isthing"])["id"]
    assert 4 * 49 <= int(big_mask.sum()) <= 4 * 64 and not big_mask[:14].any() and not big_mask[34:].any()


# ----------------------------------------------------------------------------------------- oracle


def test_oracle_on_synthetic_val(oracle_script):
    results = oracle_script("efficientps", "synthetic")
    assert results["All"]["pq"] >= 0.9 and results["Stuff"]["pq"] == 1.0, results["All"]


def test_oracle_on_real_coco_sample(oracle_script):
    assert oracle_script("efficientps", "coco")["All"]["pq"] >= 0.9


def test_oracle_outputs_through_the_model_inference(synthetic_models_root):
    """The oracle's outputs have the shapes the model predicts and give the GT's segments."""
    ds = CocoPanopticDataset.from_root(synthetic_models_root, "train")
    cfg = EfficientPSConfig.synthetic()
    gen = cfg.target_generator(ds.categories)
    target = ds.load_target(0)
    out = efficientps_oracle_outputs(gen(target), ds.categories, cfg)
    assert [tuple(c.shape[1:]) for c in out["category"]] == [(s, s) for s in cfg.num_grids]
    assert out["mask_features"].shape[1:] == tuple(-(-n // 4) for n in target.size)
    result = EfficientPS.postprocess(out, target.size, target.size, ds.categories, cfg)
    gt_things = sum(s.isthing and not s.iscrowd and s.area >= 64 for s in target.segments)
    assert sum(s["isthing"] for s in result.segments_info) >= gt_things - 1


# ---------------------------------------------------------------------------------------- overfit


@pytest.mark.slow
def test_overfits_four_synthetic_images(overfit_run):
    """PQ >= 0.8 on 4 training images: ``examples/train.py`` as a user runs it, no augmentation,
    evaluated on the training images themselves (as Panoptic-DeepLab's overfit test).

    The images are the synthetic seed 0 ones, whose oracle (the bound of SOLOv2's 1/4 masks and
    stride-area filter) is 0.947 PQ. Panoptic-DeepLab's seed 11 holds many instances of 5-35 px,
    1-2 px at the mask features' stride: the oracle bound there is 0.823, too close to 0.8 to
    measure learning. Measured: PQ 0.827 after the 200 iterations, 116 user-CPU s for the test.
    """
    metrics, _, _ = overfit_run(
        "efficientps_synthetic", SyntheticConfig(train=4, val=0, seed=0),
        "solver.max_iter=200", "solver.warmup_iters=0",
    )
    assert metrics["All"]["pq"] >= 0.8, metrics
