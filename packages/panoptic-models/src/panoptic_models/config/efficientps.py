"""EfficientPS with a SOLOv2 instance head: configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from panoptic_core.data import Categories
from panoptic_core.targets import CombinedTargets, PanopticDeepLabTargets, SOLOv2Targets

from .base import BackboneConfig, from_dict

__all__ = ["EfficientPSConfig"]

#: The targets the model trains on: semantic labels (from ``PanopticDeepLabTargets``) and SOLOv2's.
TARGET_KEYS = frozenset({"semantic", "location_classes", "location_pairs", "instance_masks", "instance_classes"})


def _efficientnet_b5() -> BackboneConfig:
    # EfficientPS: EfficientNet-B5 without squeeze-and-excitation (geffnet ``se=False``).
    return BackboneConfig("efficientnet_b5", options={"se": False})


@dataclass(frozen=True)
class EfficientPSConfig:
    """EfficientPS (Mohan & Valada, IJCV 2021) with SOLOv2 (Wang et al., NeurIPS 2020) in place of
    Mask R-CNN, as the seed project describes it.

    Defaults: EfficientPS's (authors' ``configs/efficientPS_*_sample.py``: EfficientNet-B5 without SE,
    2-way FPN with 256 channels, semantic head with 128 channels and the 25 % hardest-pixel loss,
    panoptic fusion with overlap 0.5 and minimum stuff area 2048) and mmdetection's SOLOv2 R50
    (``solov2_r50_fpn_1x_coco.py``: grids 40/36/24/16/12, scale ranges, position scale 0.2,
    512-channel branches with 4 GN convs, 128 / 256-channel mask features, focal loss and dice
    weight 3, test thresholds). :meth:`cityscapes`, :meth:`coco` and :meth:`synthetic` give presets.

    Attributes:
        backbone: see :class:`BackboneConfig` (``options={"se": False}``: EfficientPS's SE-free network).
        in_features: backbone levels of the 2-way FPN, strides 4..32.
        fpn_channels: channels of the 2-way FPN (256).
        norm: normalisation of the 2-way FPN and the semantic head (``"BN"``; ``"SyncBN"`` for the
            paper's iABN sync), each followed by LeakyReLU(0.01) as iABN.
        semantic_channels: output channels of DPC, LSFE and MC (128).
        dpc_dilations: (dh, dw) of DPC's five depthwise-separable 3x3 convs.
        semantic_loss_top_k: fraction of the hardest pixels averaged in the semantic loss (0.25).
        semantic_loss_weight: weight of ``loss_sem_seg`` (1).
        ignore_label: semantic label of VOID pixels.
        num_grids: SOLOv2 grid size S of each of the five levels (P4..P64).
        scale_ranges: sqrt(box area) range of each level (inclusive, overlapping).
        position_sigma: scale of the box that makes an instance's center region (0.2, ``pos_scale``).
        instance_strides: stride of each level for the stride-area filter (mmdetection: 8, 8, 16, 32, 32).
        instance_channels, instance_num_convs, instance_norm: SOLOv2 kernel and category branches
            (512 channels, 4 convs, GN).
        mask_feature_channels: channels of the unified mask-feature branch's towers (128).
        mask_channels: channels E of the mask features and of each dynamic 1x1 kernel (256).
        mask_stride: stride of the mask features (4).
        prior_prob: initial foreground probability of the category logits (0.01).
        focal_alpha, focal_gamma, category_loss_weight: sigmoid focal loss of the category grid
            (0.25, 2, 1), averaged over the positive cells + 1.
        mask_loss_weight: weight of the dice loss (3), averaged over the positive cells.
        score_threshold: category score threshold before matrix NMS (0.1).
        mask_threshold: mask probability threshold (0.5).
        nms_pre, max_per_image: candidates kept before (500) and after (100) matrix NMS.
        nms_kernel, nms_sigma: matrix NMS decay (``"gaussian"``, 2).
        update_threshold: minimum decayed score after matrix NMS (0.05, mmdetection's ``filter_thr``).
        instance_score_threshold: minimum instance score entering the panoptic fusion (0.5, as
            EfficientPS's detection ``score_thr``).
        overlap_threshold: an instance whose mask lies more than this fraction on higher-scored
            instances is dropped in the fusion (0.5).
        min_stuff_area: stuff segments smaller than this become VOID (2048 px).
        mask_logit_scale: factor of the SOLOv2 mask logits in ML_A (1: the paper's and the issue's
            formula; the authors' code multiplies Mask R-CNN's logits by 4).
        size_divisibility: pad batches to a multiple of this; 0 uses the backbone's (32).
        pixel_mean, pixel_std: the normalisation the images were given (ImageNet, as torchvision's
            EfficientNet weights expect).
    """

    backbone: BackboneConfig = field(default_factory=_efficientnet_b5)
    in_features: tuple[str, ...] = ("res2", "res3", "res4", "res5")
    fpn_channels: int = 256
    norm: str = "BN"
    semantic_channels: int = 128
    dpc_dilations: tuple[tuple[int, int], ...] = ((1, 6), (1, 1), (6, 21), (18, 15), (6, 3))
    semantic_loss_top_k: float = 0.25
    semantic_loss_weight: float = 1.0
    ignore_label: int = 255
    num_grids: tuple[int, ...] = (40, 36, 24, 16, 12)
    scale_ranges: tuple[tuple[float, float], ...] = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
    position_sigma: float = 0.2
    instance_strides: tuple[int, ...] = (8, 8, 16, 32, 32)
    instance_channels: int = 512
    instance_num_convs: int = 4
    instance_norm: str = "GN"
    mask_feature_channels: int = 128
    mask_channels: int = 256
    mask_stride: int = 4
    prior_prob: float = 0.01
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    category_loss_weight: float = 1.0
    mask_loss_weight: float = 3.0
    score_threshold: float = 0.1
    mask_threshold: float = 0.5
    nms_pre: int = 500
    max_per_image: int = 100
    nms_kernel: str = "gaussian"
    nms_sigma: float = 2.0
    update_threshold: float = 0.05
    instance_score_threshold: float = 0.5
    overlap_threshold: float = 0.5
    min_stuff_area: int = 2048
    mask_logit_scale: float = 1.0
    size_divisibility: int = 0
    pixel_mean: tuple[float, ...] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, ...] = (58.395, 57.12, 57.375)

    method: ClassVar[str] = "efficientps"

    def __post_init__(self) -> None:
        n = len(self.num_grids)
        if not n or len(self.scale_ranges) != n or len(self.instance_strides) != n:
            raise ValueError(
                f"EfficientPSConfig: num_grids ({n}), scale_ranges ({len(self.scale_ranges)}) and "
                f"instance_strides ({len(self.instance_strides)}) need one entry per SOLOv2 level"
            )
        if n != len(self.in_features) + 1:
            raise ValueError(
                f"EfficientPSConfig: {n} SOLOv2 levels, but the 2-way FPN over in_features {self.in_features} "
                f"(plus its max-pooled extra level) gives {len(self.in_features) + 1}"
            )
        if len(self.dpc_dilations) != 5:
            raise ValueError(f"EfficientPSConfig: dpc_dilations needs five (dh, dw) pairs, got {self.dpc_dilations}")
        if not 0 < self.semantic_loss_top_k <= 1:
            raise ValueError(
                f"EfficientPSConfig: semantic_loss_top_k must be in (0, 1], got {self.semantic_loss_top_k}"
            )
        if self.nms_kernel not in ("gaussian", "linear"):
            raise ValueError(f"EfficientPSConfig: nms_kernel must be 'gaussian' or 'linear', got {self.nms_kernel!r}")
        if not 0 < self.mask_threshold < 1:
            raise ValueError(f"EfficientPSConfig: mask_threshold must be in (0, 1), got {self.mask_threshold}")

    @classmethod
    def cityscapes(cls) -> EfficientPSConfig:
        """EfficientPS's Cityscapes recipe (the defaults: B5, minimum stuff area 2048)."""
        return cls()

    @classmethod
    def coco(cls) -> EfficientPSConfig:
        """COCO: minimum stuff area 4096 (detectron2's COCO panoptic fusion; EfficientPS's public code
        has only the Cityscapes / KITTI value 2048), the rest as the defaults."""
        return cls(min_stuff_area=4096)

    @classmethod
    def synthetic(cls) -> EfficientPSConfig:
        """A small model for the synthetic dataset (128 x 160 images) that trains on a CPU in minutes:
        EfficientNet-B0 without SE, narrow FPN and heads, two convs per SOLOv2 branch, coarser grids,
        and the stride-area filter at a quarter of mmdetection's (2, 2, 4, 8, 8 mask pixels: these
        images are 5 to 8 times smaller than COCO's 800 x 1333 training images, and mmdetection's
        values drop 29 of the 71 instances of the synthetic val split before any network runs)."""
        return cls(
            backbone=BackboneConfig("efficientnet_b0", options={"se": False}),
            fpn_channels=64,
            semantic_channels=32,
            num_grids=(24, 20, 16, 12, 8),
            instance_strides=(2, 2, 4, 8, 8),
            instance_channels=64,
            instance_num_convs=2,
            mask_feature_channels=32,
            mask_channels=32,
            min_stuff_area=64,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EfficientPSConfig:
        return from_dict(cls, data)

    def target_generator(self, categories: Categories) -> CombinedTargets:
        """Semantic labels (``PanopticDeepLabTargets``, crowd keeps its class) and SOLOv2's targets
        from one collate, with this config's grids, ranges, sigma, mask stride and ignore label."""
        if categories is None:
            raise ValueError("EfficientPSConfig.target_generator: categories are required (SOLOv2 thing indices)")
        semantic = PanopticDeepLabTargets(ignore_label=self.ignore_label, ignore_crowd_in_semantic=False)
        solo = SOLOv2Targets(
            categories,
            num_grids=self.num_grids,
            scale_ranges=self.scale_ranges,
            sigma=self.position_sigma,
            mask_stride=self.mask_stride,
        )
        return CombinedTargets([semantic, solo], keys=TARGET_KEYS)
