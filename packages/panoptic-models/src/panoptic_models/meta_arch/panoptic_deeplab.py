"""Panoptic-DeepLab (Cheng et al., CVPR 2020), as detectron2's ``projects/Panoptic-DeepLab``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from panoptic_core.data import Categories
from panoptic_core.losses import bootstrapped_cross_entropy, weighted_l1_loss, weighted_mse_loss
from panoptic_ops import get_panoptic_segmentation

from ..config import PanopticDeepLabConfig
from ..heads.deeplab import DeepLabPredictionHead
from ..necks.aspp import DeepLabV3PlusDecoder
from ..structures import PanopticResult
from .base import PanopticModel

__all__ = [
    "LABEL_DIVISOR",
    "PanopticDeepLab",
    "panoptic_deeplab_losses",
    "panoptic_deeplab_oracle_outputs",
    "panoptic_deeplab_postprocess",
]

# Encodes class * LABEL_DIVISOR + instance between the merge op and PanopticResult; larger than
# any instance count the grouping can give (one instance per center pixel of a 256 x 256 tile).
LABEL_DIVISOR = 1 << 16


def panoptic_deeplab_losses(
    outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any], config: PanopticDeepLabConfig
) -> dict[str, torch.Tensor]:
    """detectron2's Panoptic-DeepLab losses.

    ``loss_sem_seg = w_sem * mean(top-k% of w_i CE_i)`` (DeepLabCE, k = ``semantic_loss_top_k``,
    ``w_i`` = ``semantic_weights``), ``loss_center = 200 * sum(w (c - c*)^2) / sum(w)``,
    ``loss_offset = 0.01 * sum(w |o - o*|) / sum(w)`` (summed over both channels, weights once).

    Args:
        outputs: ``semantic`` (Tensor[B, C, H, W]), ``center`` (Tensor[B, 1, H, W]), ``offset``
            (Tensor[B, 2, H, W]), at the targets' size.
        targets: the collated output of ``PanopticDeepLabTargets``.
    """
    return {
        "loss_sem_seg": config.semantic_loss_weight
        * bootstrapped_cross_entropy(
            outputs["semantic"],
            targets["semantic"],
            targets["semantic_weights"],
            ignore_index=config.ignore_label,
            top_k_percent_pixels=config.semantic_loss_top_k,
        ),
        "loss_center": config.center_loss_weight
        * weighted_mse_loss(outputs["center"], targets["center"], targets["center_weights"]),
        "loss_offset": config.offset_loss_weight
        * weighted_l1_loss(outputs["offset"], targets["offset"], targets["offset_weights"]),
    }


def panoptic_deeplab_postprocess(
    outputs: Mapping[str, torch.Tensor],
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    categories: Categories,
    config: PanopticDeepLabConfig,
) -> PanopticResult:
    """Head outputs of one image -> :class:`PanopticResult` at ``output_size``.

    The outputs are cropped to ``image_size`` (padding removed) and resized bilinearly to
    ``output_size``; offsets are scaled by the resize ratio of their axis (detectron2 resizes
    them unscaled). Then :func:`panoptic_ops.get_panoptic_segmentation` on the argmax of the
    logits, with ``stuff_area``, ``center_threshold``, ``nms_kernel`` and ``top_k`` of the
    config. Scores as detectron2's instance output: a thing's score is the mean softmax
    probability of its class over its mask times the center heatmap at its mask centroid
    (coordinates truncated to integers); a stuff segment's score is its mean probability.

    Args:
        outputs: ``semantic`` (Tensor[C, H, W] logits), ``center`` (Tensor[1, H, W]),
            ``offset`` (Tensor[2, H, W]) at the padded input size.
        image_size: (h, w) of the image inside the padded input.
        output_size: (h, w) of the result.
    """
    h, w = image_size
    oh, ow = output_size
    semantic = outputs["semantic"][:, :h, :w].float()
    center = outputs["center"][:, :h, :w].float()
    offset = outputs["offset"][:, :h, :w].float()
    if (oh, ow) != (h, w):

        def resize(x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x[None], size=(oh, ow), mode="bilinear", align_corners=False)[0]

        semantic, center = resize(semantic), resize(center)
        scale = torch.tensor([oh / h, ow / w], dtype=offset.dtype, device=offset.device).view(2, 1, 1)
        offset = resize(offset) * scale
    labels = semantic.argmax(dim=0, keepdim=True)
    panoptic, _ = get_panoptic_segmentation(
        labels, center.contiguous(), offset.contiguous(), categories.thing_classes, LABEL_DIVISOR,
        config.stuff_area, -1, config.center_threshold, config.nms_kernel, config.top_k,
    )  # fmt: skip
    panoptic = panoptic[0]
    unique = torch.unique(panoptic, sorted=True, return_inverse=True)
    scores = _segment_scores(panoptic, unique, semantic, center[0])
    result = PanopticResult.from_label_map(
        panoptic, categories.ids, categories.thing_classes, LABEL_DIVISOR, -1, scores, unique=unique
    )
    result.semantic = labels[0]
    return result


def _segment_scores(
    panoptic: torch.Tensor, unique: tuple[torch.Tensor, torch.Tensor], logits: torch.Tensor, center: torch.Tensor
) -> dict[int, float]:
    """{label: score} for every non-void label of an encoded map (see :func:`panoptic_deeplab_postprocess`),
    ``unique`` being its ``torch.unique(..., return_inverse=True)``."""
    values, inverse = unique
    inverse = inverse.reshape(-1)
    n = len(values)
    height, width = panoptic.shape
    classes = torch.div(values, LABEL_DIVISOR, rounding_mode="floor").clamp(min=0)
    # softmax(logits)[own class] as exp(own - logsumexp): one reduction over the class axis, no
    # [C, H, W] probability map (softmax over the outer axis also copies the logits transposed).
    flat_logits = logits.reshape(logits.shape[0], -1)
    own = torch.exp(flat_logits.gather(0, classes[inverse][None])[0] - torch.logsumexp(flat_logits, dim=0)).double()
    area = torch.bincount(inverse, minlength=n).double()
    mean_prob = torch.bincount(inverse, weights=own, minlength=n) / area
    rows = torch.arange(height, device=panoptic.device, dtype=torch.float64).repeat_interleave(width)
    cols = torch.arange(width, device=panoptic.device, dtype=torch.float64).repeat(height)
    cy = (torch.bincount(inverse, weights=rows, minlength=n) / area).long()
    cx = (torch.bincount(inverse, weights=cols, minlength=n) / area).long()
    instance = values % LABEL_DIVISOR
    center_score = torch.where(instance > 0, center[cy, cx].double(), 1.0)
    score = (mean_prob * center_score).tolist()
    return {v: s for v, s in zip(values.tolist(), score, strict=True) if v != -1}


def panoptic_deeplab_oracle_outputs(
    targets: Mapping[str, Any], categories: Categories, config: PanopticDeepLabConfig
) -> dict[str, torch.Tensor]:
    """The ideal head outputs of one image, from its ``PanopticDeepLabTargets``.

    ``semantic`` is one-hot logits of the GT class (all zero on VOID pixels, whose argmax is
    class 0; the evaluator ignores predictions on VOID), ``center`` the target heatmap and
    ``offset`` the target offsets.

    Args:
        targets: one image's (uncollated) targets: ``semantic`` (Tensor[H, W]), ``center``
            (Tensor[1, H, W]), ``offset`` (Tensor[2, H, W]).

    Returns:
        ``semantic`` (Tensor[C, H, W]), ``center`` (Tensor[1, H, W]), ``offset`` (Tensor[2, H, W]).
    """
    semantic = targets["semantic"]
    void = semantic == config.ignore_label
    logits = F.one_hot(semantic.masked_fill(void, 0), categories.num_classes).permute(2, 0, 1).float()
    logits.masked_fill_(void[None], 0.0)
    return {"semantic": logits, "center": targets["center"].float(), "offset": targets["offset"].float()}


class PanopticDeepLab(PanopticModel):
    """Backbone, two DeepLabV3+ decoders (semantic; instance) and three heads (semantic logits,
    center heatmap, center offsets), trained with detectron2's losses and post-processed by
    :func:`panoptic_ops.get_panoptic_segmentation`.

    Head outputs (:meth:`predict`, all upsampled bilinearly from the decoders' stride 4 to the
    padded input size, as detectron2 does):

    * ``semantic`` (Tensor[B, C, H, W]): class logits.
    * ``center`` (Tensor[B, 1, H, W]): center heatmap.
    * ``offset`` (Tensor[B, 2, H, W]): (dy, dx) to the instance center in input pixels
      (the stride-4 prediction times the stride).

    Losses (:func:`panoptic_deeplab_losses`): ``loss_sem_seg`` (bootstrapped CE, top 20 % of the
    weighted pixel losses), ``loss_center`` (weighted MSE, x200), ``loss_offset`` (weighted L1,
    x0.01).

    Args:
        config: :class:`~panoptic_models.config.PanopticDeepLabConfig`.
        categories: the dataset's categories (``Categories`` or COCO category dicts).
    """

    target_keys = frozenset({"semantic", "semantic_weights", "center", "center_weights", "offset", "offset_weights"})

    def __init__(self, config: PanopticDeepLabConfig, categories: Categories | Sequence[Mapping[str, Any]]) -> None:
        super().__init__(config, categories)
        self.backbone = config.backbone.build()
        shape = self.backbone.output_shape()
        decoder = dict(
            project_channels=config.project_channels,
            aspp_channels=config.aspp_channels,
            aspp_dilations=config.aspp_dilations,
            aspp_dropout=config.aspp_dropout,
            pool_kernel_size=config.aspp_pool_kernel_size,
            norm=config.norm,
            depthwise_separable=config.depthwise_separable,
        )
        self.semantic_decoder = DeepLabV3PlusDecoder(
            shape, config.in_features, decoder_channels=config.semantic_decoder_channels, **decoder
        )
        self.instance_decoder = DeepLabV3PlusDecoder(
            shape, config.in_features, decoder_channels=config.instance_decoder_channels, **decoder
        )
        head = dict(norm=config.norm, depthwise_separable=config.depthwise_separable)
        sem_channels, ins_channels = self.semantic_decoder.out_channels, self.instance_decoder.out_channels
        self.semantic_head = DeepLabPredictionHead(
            sem_channels, config.semantic_head_channels, self.categories.num_classes, **head
        )
        # detectron2 keeps the center head's two 3x3 convs even with depthwise-separable convs.
        self.center_head = DeepLabPredictionHead(ins_channels, config.instance_head_channels, 1, norm=config.norm)
        self.offset_head = DeepLabPredictionHead(ins_channels, config.instance_head_channels, 2, **head)
        self.common_stride = self.instance_decoder.output_stride

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs at the input size (see the class docstring). Args: images (Tensor[B, 3, H, W])."""
        features = self.backbone(images)
        size = images.shape[-2:]
        semantic = self.semantic_head(self.semantic_decoder(features))
        instance = self.instance_decoder(features)
        center = self.center_head(instance)
        offset = self.offset_head(instance)

        def up(x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

        # float32 before upsampling: bf16 offsets times the stride would step by 2-4 px above 256 px
        return {
            "semantic": up(semantic.float()),
            "center": up(center.float()),
            "offset": up(offset.float()) * self.common_stride,
        }

    def losses(self, images: torch.Tensor, targets: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return panoptic_deeplab_losses(self.predict(images), targets, self.config)

    postprocess = staticmethod(panoptic_deeplab_postprocess)
    oracle_outputs = staticmethod(panoptic_deeplab_oracle_outputs)

