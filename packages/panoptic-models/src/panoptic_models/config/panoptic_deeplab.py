"""Panoptic-DeepLab's configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from panoptic_core.data import Categories
from panoptic_core.targets import PanopticDeepLabTargets

from .base import BackboneConfig, from_dict

__all__ = ["PanopticDeepLabConfig"]


def _deeplab_r52() -> BackboneConfig:
    # detectron2 / deeplab2 "R52": ResNet-50 with the deep stem, output stride 16, multi-grid (1, 2, 4).
    return BackboneConfig("resnet50", options={"stem": "deeplab", "res5_dilation": 2, "res5_multi_grid": (1, 2, 4)})


@dataclass(frozen=True)
class PanopticDeepLabConfig:
    """Panoptic-DeepLab (Cheng et al., CVPR 2020) as detectron2's ``projects/Panoptic-DeepLab``.

    Defaults are detectron2's model defaults (R52, output stride 16, depthwise-separable decoders,
    Gaussian sigma 10); :meth:`cityscapes`, :meth:`coco` and :meth:`synthetic` give the presets.

    Attributes:
        backbone: see :class:`BackboneConfig`.
        in_features: backbone features of both decoders, fine to coarse; the coarsest feeds ASPP.
        project_channels: 1x1 projection width of the finer features (32, 64).
        aspp_channels, aspp_dilations, aspp_dropout: ASPP of both decoders.
        aspp_pool_kernel_size: image-pooling window in feature pixels (detectron2 takes the
            training crop divided by the ASPP feature's stride: keep the two in step when changing
            the crop); None pools the whole map.
        size_divisibility: pad every batch to a multiple of this (COCO: 640, so the 40 x 40
            pooling window always sees a 40 x 40 map); 0 uses the backbone's.
        semantic_decoder_channels, semantic_head_channels: semantic branch widths (256, 256).
        instance_decoder_channels, instance_head_channels: instance branch widths (128, 32).
        norm: normalisation of the decoders and heads ("SyncBN" in multi-GPU training).
        depthwise_separable: 5x5 depthwise-separable convs in the decoders and heads, separable ASPP.
        ignore_label: semantic label of VOID pixels, for the targets and the loss.
        semantic_loss_top_k: fraction of hardest pixels in the bootstrapped CE (0.2; COCO 1.0).
        semantic_loss_weight, center_loss_weight, offset_loss_weight: 1, 200, 0.01.
        center_sigma: Gaussian sigma of the center targets (detectron2: 10; 8 on COCO).
        small_instance_area, small_instance_weight, ignore_stuff_in_offset,
            ignore_crowd_in_semantic: target generation (see ``PanopticDeepLabTargets``).
        stuff_area, center_threshold, nms_kernel, top_k: post-processing (2048, 0.1, 7, 200).
        pixel_mean, pixel_std: the normalisation the images were given (used by tools that
            start from raw images; the model itself takes normalised images).
    """

    backbone: BackboneConfig = field(default_factory=_deeplab_r52)
    in_features: tuple[str, ...] = ("res2", "res3", "res5")
    project_channels: tuple[int, ...] = (32, 64)
    aspp_channels: int = 256
    aspp_dilations: tuple[int, ...] = (6, 12, 18)
    aspp_dropout: float = 0.1
    aspp_pool_kernel_size: tuple[int, int] | None = None
    semantic_decoder_channels: int = 256
    semantic_head_channels: int = 256
    instance_decoder_channels: int = 128
    instance_head_channels: int = 32
    norm: str = "BN"
    depthwise_separable: bool = True
    ignore_label: int = 255
    semantic_loss_top_k: float = 0.2
    semantic_loss_weight: float = 1.0
    center_loss_weight: float = 200.0
    offset_loss_weight: float = 0.01
    center_sigma: float = 10.0
    small_instance_area: int = 4096
    small_instance_weight: float = 3.0
    ignore_stuff_in_offset: bool = True
    ignore_crowd_in_semantic: bool = False
    size_divisibility: int = 0
    stuff_area: int = 2048
    center_threshold: float = 0.1
    nms_kernel: int = 7
    top_k: int | None = 200
    pixel_mean: tuple[float, ...] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, ...] = (58.395, 57.12, 57.375)

    method: ClassVar[str] = "panoptic_deeplab"

    @classmethod
    def cityscapes(cls) -> PanopticDeepLabConfig:
        """detectron2's Cityscapes recipe (crop 512 x 1024: image pooling over 32 x 64 feature pixels)."""
        return cls(aspp_pool_kernel_size=(32, 64))

    @classmethod
    def coco(cls) -> PanopticDeepLabConfig:
        """detectron2's COCO recipe: CE averaged over all pixels (top-k 1.0), sigma 8, stuff area 4096,
        NMS kernel 41, 640 x 640 crops, batches padded to 640."""
        return cls(
            semantic_loss_top_k=1.0,
            center_sigma=8.0,
            stuff_area=4096,
            nms_kernel=41,
            aspp_pool_kernel_size=(40, 40),
            size_divisibility=640,
        )

    @classmethod
    def synthetic(cls) -> PanopticDeepLabConfig:
        """A small model for the synthetic dataset (128 x 160 images) that trains on a CPU in minutes."""
        return cls(
            backbone=BackboneConfig("resnet18", options={"res5_dilation": 2}),
            project_channels=(32, 32),
            aspp_channels=64,
            semantic_decoder_channels=64,
            semantic_head_channels=64,
            instance_decoder_channels=64,
            instance_head_channels=32,
            aspp_dropout=0.0,
            center_sigma=4.0,
            stuff_area=64,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PanopticDeepLabConfig:
        return from_dict(cls, data)

    def target_generator(self, categories: Categories | None = None) -> PanopticDeepLabTargets:
        """The target generator with this config's values (``categories`` unused: labels are class indices)."""
        return PanopticDeepLabTargets(
            sigma=self.center_sigma,
            ignore_label=self.ignore_label,
            small_instance_area=self.small_instance_area,
            small_instance_weight=self.small_instance_weight,
            ignore_stuff_in_offset=self.ignore_stuff_in_offset,
            ignore_crowd_in_semantic=self.ignore_crowd_in_semantic,
        )
