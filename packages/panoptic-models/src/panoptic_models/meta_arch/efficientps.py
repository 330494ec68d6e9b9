"""EfficientPS (Mohan & Valada, IJCV 2021) with a SOLOv2 instance head in place of Mask R-CNN (seed 001).

EfficientNet backbone -> 2-way FPN (P4..P32, plus a max-pooled P64 for SOLOv2's fifth level) ->
EfficientPS's semantic head (DPC, LSFE, MC) and SOLOv2's category / kernel branches and unified
mask-feature branch; SOLOv2's inference (mmdetection ``SOLOV2Head.predict_by_feat``) feeds
EfficientPS's panoptic fusion (authors' ``EfficientPS.simple_test_mask_``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from panoptic_core.data import Categories
from panoptic_core.losses import bootstrapped_cross_entropy, dice_loss, sigmoid_focal_loss
from panoptic_ops import matrix_nms

from ..config.efficientps import TARGET_KEYS, EfficientPSConfig
from ..heads.efficientps import EfficientPSSemanticHead
from ..heads.solov2 import SOLOv2Head, SOLOv2MaskFeatures, dynamic_masks
from ..necks.two_way_fpn import TwoWayFPN
from ..structures import PanopticResult
from .base import PanopticModel

__all__ = [
    "EfficientPS",
    "efficientps_fusion",
    "efficientps_losses",
    "efficientps_oracle_outputs",
    "efficientps_postprocess",
    "solov2_instances",
]

# Magnitude of the oracle's logits: sigmoid(10) = 1 - 4.5e-5, far above every threshold.
_ORACLE_LOGIT = 10.0


def efficientps_losses(
    outputs: Mapping[str, Any], targets: Mapping[str, Any], config: EfficientPSConfig
) -> dict[str, torch.Tensor]:
    """EfficientPS's semantic loss and SOLOv2's losses as mmdetection computes them.

    * ``loss_sem_seg = w_sem * mean(top-k CE_i)``: EfficientPS's weighted per-pixel loss
      ``L_pp = sum_ij w_ij CE_ij`` with ``w_ij = 4 / (H W)`` on the 25 % of pixels with the largest
      loss and 0 elsewhere, over the batch (ignored pixels count with CE 0, as the authors' code;
      :func:`~panoptic_core.losses.bootstrapped_cross_entropy`, unweighted, k = ``semantic_loss_top_k``).
    * ``loss_category = w_cls * sum FL(p, y) / (N_pos + 1)``: sigmoid focal loss (alpha 0.25,
      gamma 2) over every cell and thing class of every level, y the one-hot of
      ``location_classes`` (background all zero), N_pos the number of positive cells.
    * ``loss_mask = w_mask * sum_pairs Dice(sigmoid(K_c * F), M_n) / N_pos`` (w_mask = 3): one dice
      term per ``location_pairs`` entry (cell c, instance n), ``K_c * F`` the dynamic 1x1 conv of the
      cell's kernel over the mask features; a cell shared by two instances gives two terms, and the
      sum is still divided by the positive cells, as mmdetection's ``loss_by_feat``. Zero (with
      gradients of zero into both branches) when no cell is positive.

    Args:
        outputs: :meth:`EfficientPS.predict`'s ``semantic`` (Tensor[B, C, H, W]), ``category``
            ([Tensor[B, C_thing, S, S]] per level), ``kernel`` ([Tensor[B, E, S, S]]) and
            ``mask_features`` (Tensor[B, E, h, w], h x w the size of ``instance_masks``).
        targets: the collated output of :meth:`EfficientPSConfig.target_generator`.
    """
    semantic = bootstrapped_cross_entropy(
        outputs["semantic"], targets["semantic"], None,
        ignore_index=config.ignore_label, top_k_percent_pixels=config.semantic_loss_top_k,
    )  # fmt: skip
    category = outputs["category"]
    num_things = category[0].shape[1]
    logits = torch.cat([c.permute(0, 2, 3, 1).reshape(-1, num_things) for c in category])
    labels = torch.cat([t.reshape(-1) for t in targets["location_classes"]])
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"targets['location_classes']: {labels.shape[0]} cells for {logits.shape[0]} predicted cells; "
            "build the targets with the model config's target_generator()"
        )
    num_pos = int((labels != num_things).sum())
    onehot = F.one_hot(labels, num_things + 1)[:, :num_things].to(logits.dtype)
    focal = sigmoid_focal_loss(logits, onehot, config.focal_alpha, config.focal_gamma, reduction="sum")
    mask_features = outputs["mask_features"]
    dice = []
    for b, (pairs_b, masks_b) in enumerate(zip(targets["location_pairs"], targets["instance_masks"], strict=True)):
        if masks_b.shape[-2:] != mask_features.shape[-2:]:
            raise ValueError(
                f"targets['instance_masks'][{b}] is {tuple(masks_b.shape[-2:])} but the mask features are "
                f"{tuple(mask_features.shape[-2:])}; collate the batch with the model's size_divisibility"
            )
        for level, pairs in enumerate(pairs_b):
            if not len(pairs):
                continue
            kernels = outputs["kernel"][level][b].flatten(1)[:, pairs[:, 0]].t()
            probs = torch.sigmoid(dynamic_masks(kernels, mask_features[b]))
            dice.append(dice_loss(probs, masks_b[pairs[:, 1]]))
    if num_pos > 0 and dice:
        mask = torch.cat(dice).sum() / num_pos
    else:  # keeps every parameter in the graph (DDP) with a zero gradient
        mask = mask_features.sum() * 0 + sum(k.sum() for k in outputs["kernel"]) * 0
    return {
        "loss_sem_seg": config.semantic_loss_weight * semantic,
        "loss_category": config.category_loss_weight * focal / (num_pos + 1),
        "loss_mask": config.mask_loss_weight * mask,
    }


def solov2_instances(
    category: Sequence[torch.Tensor],
    kernel: Sequence[torch.Tensor],
    mask_features: torch.Tensor,
    config: EfficientPSConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SOLOv2's inference on one image, as mmdetection's ``SOLOV2Head`` (``predict_by_feat``).

    1. ``p = sigmoid(category)``, kept where it equals its 2x2 local maximum
       (``max_pool2d(p, 2, stride=1, padding=1)[:-1, :-1]``, so plateaus survive), else 0.
    2. (cell, class) pairs with ``p > score_threshold``; each cell's kernel gives mask logits
       ``K * F`` (dynamic 1x1 conv) and probabilities ``m = sigmoid(K * F)``.
    3. Binary masks ``m > mask_threshold``; candidates whose mask area (at the mask features'
       stride) is not above their level's ``instance_strides`` entry are dropped.
    4. Maskness rescoring: ``score = p * sum(m * mask) / sum(mask)``.
    5. :func:`panoptic_ops.matrix_nms` (``nms_kernel``, ``nms_sigma``, ``nms_pre``,
       ``max_per_image``, ``update_threshold``) per class.

    Args:
        category: per level Tensor[C_thing, S, S] logits; kernel: per level Tensor[E, S, S].
        mask_features: Tensor[E, h, w].

    Returns:
        (scores Tensor[K], thing indices Tensor[K] int64, mask logits Tensor[K, h, w]), by
        decreasing score.
    """
    num_things = category[0].shape[0]
    e, h, w = mask_features.shape
    cells_scores, cells_kernels, cells_strides = [], [], []
    for cat, ker, stride in zip(category, kernel, config.instance_strides, strict=True):
        p = torch.sigmoid(cat.float())
        local_max = F.max_pool2d(p[None], 2, stride=1, padding=1)[0, :, :-1, :-1]
        p = p * (local_max == p)
        cells_scores.append(p.permute(1, 2, 0).reshape(-1, num_things))
        cells_kernels.append(ker.float().permute(1, 2, 0).reshape(-1, e))
        cells_strides.append(torch.full((p.shape[1] * p.shape[2],), float(stride), device=p.device))
    scores = torch.cat(cells_scores)
    empty = (scores.new_zeros(0), torch.zeros(0, dtype=torch.int64, device=scores.device), scores.new_zeros(0, h, w))
    cell, label = torch.nonzero(scores > config.score_threshold, as_tuple=True)
    if not len(cell):
        return empty
    scores = scores[cell, label]
    logits = dynamic_masks(torch.cat(cells_kernels)[cell], mask_features.float())
    probs = torch.sigmoid(logits)
    masks = probs > config.mask_threshold
    area = masks.sum((1, 2)).float()
    keep = area > torch.cat(cells_strides)[cell]
    if not keep.any():
        return empty
    logits, probs, masks, area = logits[keep], probs[keep], masks[keep], area[keep]
    scores, label = scores[keep], label[keep]
    scores = scores * (probs * masks).sum((1, 2)) / area
    scores, label, _, kept = matrix_nms(
        masks, label, scores, kernel=config.nms_kernel, sigma=config.nms_sigma, filter_thr=config.update_threshold,
        nms_pre=config.nms_pre, max_num=config.max_per_image, mask_area=area,
    )  # fmt: skip
    return scores, label, logits[kept]


def efficientps_fusion(
    semantic: torch.Tensor,
    mask_logits: torch.Tensor,
    classes: torch.Tensor,
    scores: torch.Tensor,
    categories: Categories,
    config: EfficientPSConfig,
) -> PanopticResult:
    """EfficientPS's panoptic fusion (Sec. 3.5; authors' ``simple_test_mask_``) with SOLOv2 instances.

    1. Instances with ``score >= instance_score_threshold``, by decreasing score: the binary mask
       ``sigmoid(A_i) > mask_threshold``; an instance is dropped when more than
       ``overlap_threshold`` of its mask lies on the masks of instances kept before it.
    2. For each kept instance, ``ML_A = mask_logit_scale * A_i`` (its SOLOv2 mask logits) and ``ML_B``
       the semantic head's logit of its class inside its mask region, 0 outside (EfficientPS takes
       its box region; SOLOv2 has no box); fused logits ``FL = (sigmoid(ML_A) + sigmoid(ML_B)) *
       (ML_A + ML_B)``.
    3. ``argmax`` over ``[stuff logits of the semantic head; FL_1..FL_n]`` (ties to the first
       channel, as ``torch.argmax``; upstream's softmax before it changes nothing but float ties):
       a pixel whose maximum is ``FL_i`` belongs to instance i.
    4. The other pixels take the semantic argmax (over all classes) when it is a stuff class and
       VOID when it is a thing class; a stuff class with fewer than ``min_stuff_area`` such
       pixels becomes VOID.

    Segment ids: the instances that got pixels, 1..n by decreasing score, then the stuff segments
    by class. Scores: an instance's score; a stuff segment's mean softmax probability of its class.

    Args:
        semantic: Tensor[C, H, W] semantic logits at the output size.
        mask_logits: Tensor[K, H, W] SOLOv2 mask logits at the output size (any order: they are
            taken by decreasing score, ties in input order).
        classes: Tensor[K] contiguous class index of each instance; scores: Tensor[K].

    Returns:
        the :class:`PanopticResult` (``semantic`` = the semantic argmax).
    """
    num_classes, height, width = semantic.shape
    if mask_logits.shape[1:] != semantic.shape[1:] or not (len(mask_logits) == len(classes) == len(scores)):
        raise ValueError(
            f"efficientps_fusion: mask_logits {tuple(mask_logits.shape)}, classes {tuple(classes.shape)} and "
            f"scores {tuple(scores.shape)} do not match semantic {tuple(semantic.shape)}"
        )
    device = semantic.device
    order = torch.argsort(scores, descending=True, stable=True)
    selected = order[scores[order] >= config.instance_score_threshold]
    kept: list[int] = []
    regions: list[torch.Tensor] = []
    occupied = torch.zeros(height, width, dtype=torch.bool, device=device)
    for k in selected.tolist():
        mask = torch.sigmoid(mask_logits[k]) > config.mask_threshold
        area = mask.sum()
        # upstream: intersection / area > thr, False for an empty mask (0 / 0 is NaN): it is kept
        if area > 0 and (occupied & mask).sum() > config.overlap_threshold * area:
            continue
        occupied |= mask
        kept.append(k)
        regions.append(mask)

    stuff_classes = torch.tensor(categories.stuff_classes, dtype=torch.int64, device=device)
    num_stuff = len(stuff_classes)
    if num_stuff:
        best, best_index = semantic[stuff_classes].max(dim=0)
    else:
        best = torch.full((height, width), float("-inf"), device=device, dtype=semantic.dtype)
        best_index = torch.zeros(height, width, dtype=torch.int64, device=device)
    # Outside its mask region (ML_A <= s * logit(t), ML_B = 0) an instance's FL is at most
    # ``bound`` (FL = (sigmoid(x) + 0.5) x is increasing in x): it can only win where the running
    # maximum is below that, so each instance is fused on the box of its region and of those pixels.
    scale = config.mask_logit_scale
    t = config.mask_threshold
    edge = scale * math.log(t / (1 - t))
    bound = (1 / (1 + math.exp(-edge)) + 0.5) * edge if scale >= 0 else math.inf
    low_box = _box(best < bound)
    semantic_sigmoid: dict[int, torch.Tensor] = {}
    for j, (k, region) in enumerate(zip(kept, regions, strict=True)):
        y0, y1, x0, x1 = _union(_box(region), low_box, height, width)
        if y0 >= y1 or x0 >= x1:
            continue
        cls = int(classes[k])
        if cls not in semantic_sigmoid:
            semantic_sigmoid[cls] = torch.sigmoid(semantic[cls])
        r = region[y0:y1, x0:x1]
        ml_a = scale * mask_logits[k, y0:y1, x0:x1].to(semantic.dtype)
        ml_b = torch.where(r, semantic[cls, y0:y1, x0:x1], 0.0)
        sig_b = torch.where(r, semantic_sigmoid[cls][y0:y1, x0:x1], 0.5)
        fused = (torch.sigmoid(ml_a) + sig_b) * (ml_a + ml_b)
        window = best[y0:y1, x0:x1]
        better = fused > window  # strict: an earlier channel wins a tie, as argmax
        window.copy_(torch.where(better, fused, window))
        best_index[y0:y1, x0:x1].masked_fill_(better, num_stuff + j)
    instance = best_index - num_stuff  # index into ``kept`` where >= 0

    semantic_pred = semantic.argmax(dim=0)
    isstuff = torch.zeros(num_classes, dtype=torch.bool, device=device)
    isstuff[stuff_classes] = True
    info = []
    # new id of each kept instance (0 for those without pixels), then of each stuff class
    instance_ids = torch.zeros(len(kept) + 1, dtype=torch.int64, device=device)
    for k in torch.unique(instance[instance >= 0]).tolist() if kept else []:
        cls = int(classes[kept[k]])
        instance_ids[k] = len(info) + 1
        info.append({"id": len(info) + 1, "category_id": int(categories.ids[cls]), "isthing": True,
                     "score": float(scores[kept[k]])})  # fmt: skip
    free = (instance < 0) & isstuff[semantic_pred]
    stuff_area = torch.bincount(semantic_pred[free], minlength=num_classes)
    stuff_ids = torch.zeros(num_classes, dtype=torch.int64, device=device)
    stuff = torch.nonzero(stuff_area >= max(config.min_stuff_area, 1)).flatten().tolist()
    if stuff:
        prob = torch.softmax(semantic.float(), dim=0).gather(0, semantic_pred[None])[0]
        prob_sum = torch.bincount(semantic_pred[free], weights=prob[free].double(), minlength=num_classes)
    for cls in stuff:
        stuff_ids[cls] = len(info) + 1
        info.append({"id": len(info) + 1, "category_id": int(categories.ids[cls]), "isthing": False,
                     "score": float(prob_sum[cls] / stuff_area[cls])})  # fmt: skip
    ids = torch.where(instance >= 0, instance_ids[instance.clamp(min=0)], 0)
    ids = torch.where(free, stuff_ids[semantic_pred], ids)
    return PanopticResult(ids, info, semantic=semantic_pred)


def _box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), end exclusive, of the True pixels of Tensor[H, W] bool; None when there are none."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    if not len(rows):
        return None
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _union(a, b, height: int, width: int) -> tuple[int, int, int, int]:
    boxes = [x for x in (a, b) if x is not None]
    if not boxes:
        return 0, 0, 0, 0
    return (min(x[0] for x in boxes), max(x[1] for x in boxes), min(x[2] for x in boxes), max(x[3] for x in boxes))


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]


def efficientps_postprocess(
    outputs: Mapping[str, Any],
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    categories: Categories,
    config: EfficientPSConfig,
) -> PanopticResult:
    """Head outputs of one image -> :class:`PanopticResult` at ``output_size``.

    :func:`solov2_instances`, then the kept mask logits are upsampled bilinearly to the mask
    features' full size (``h * mask_stride``), cropped to ``image_size`` and resized to
    ``output_size``, as mmdetection does with the probabilities (the fusion needs logits, so
    they are resized before the sigmoid); the semantic logits are cropped and resized the same
    way; then :func:`efficientps_fusion` at ``output_size``.

    Args:
        outputs: ``semantic`` (Tensor[C, H, W] logits at the padded input size), ``category``
            ([Tensor[C_thing, S, S]] per level), ``kernel`` ([Tensor[E, S, S]]), ``mask_features``
            (Tensor[E, h, w]).
        image_size: (h, w) of the image inside the padded input; output_size: (h, w) of the result.
    """
    h, w = image_size
    size = (int(output_size[0]), int(output_size[1]))
    semantic = _resize(outputs["semantic"][:, :h, :w].float(), size)
    scores, labels, logits = solov2_instances(outputs["category"], outputs["kernel"], outputs["mask_features"], config)
    stride = config.mask_stride
    if len(logits):
        logits = F.interpolate(logits[None], size=(logits.shape[1] * stride, logits.shape[2] * stride),
                               mode="bilinear", align_corners=False)[0, :, :h, :w]  # fmt: skip
        logits = _resize(logits, size)
    else:
        logits = semantic.new_zeros(0, *size)
    thing_classes = torch.tensor(categories.thing_classes, dtype=torch.int64, device=semantic.device)
    return efficientps_fusion(semantic, logits, thing_classes[labels], scores, categories, config)


def efficientps_oracle_outputs(
    targets: Mapping[str, Any], categories: Categories, config: EfficientPSConfig
) -> dict[str, Any]:
    """The ideal head outputs of one image, from its (uncollated) ``target_generator`` targets.

    * ``semantic``: +10 for the GT class, -10 for the others (all 0 on VOID). The fusion weighs
      these against the mask logits, so both get the same confidence: a thing pixel just outside
      the instance's 1/4 mask then still goes to the instance (its ``FL`` beats the stuff logits
      of -10), a stuff pixel inside it stays stuff (+10 beats ``FL``), and the full-resolution
      semantic map draws the boundaries the 1/4 masks cannot.
    * ``mask_features`` (Tensor[N, h, w], one channel per instance, E = N): +10 on the instance's
      1/4 mask target, -10 elsewhere.
    * ``kernel`` (per level Tensor[N, S, S]): the one-hot of instance n at each cell of
      ``location_pairs`` (a shared cell keeps the later instance, whose class the cell has).
    * ``category`` (per level Tensor[C_thing, S, S]): +10 at each cell's class in
      ``location_classes``, -10 elsewhere.

    Duplicates (the 3 x 3 cells of an instance, two levels) are what SOLOv2's inference removes:
    matrix NMS decays them (IoU 1) to about exp(-2) = 0.135 of the score and the fusion's score
    threshold and overlap test drop them.
    """
    masks = targets["instance_masks"]
    n = len(masks)
    channels = max(n, 1)
    features = torch.full((channels, *masks.shape[-2:]), -_ORACLE_LOGIT)
    if n:
        features[:n][masks.bool()] = _ORACLE_LOGIT
    num_things = categories.num_things
    category, kernel = [], []
    for classes, pairs in zip(targets["location_classes"], targets["location_pairs"], strict=True):
        grid = classes.shape[-1]
        positive = classes != num_things
        logits = torch.full((num_things, grid, grid), -_ORACLE_LOGIT)
        logits.permute(1, 2, 0)[positive] = torch.where(
            F.one_hot(classes[positive], num_things).bool(), _ORACLE_LOGIT, -_ORACLE_LOGIT
        )
        ker = torch.zeros(channels, grid * grid)
        for cell, inst in pairs.tolist():  # later pairs overwrite earlier ones, as the class labels
            ker[:, cell] = 0.0
            ker[inst, cell] = 1.0
        category.append(logits)
        kernel.append(ker.reshape(channels, grid, grid))
    semantic = targets["semantic"]
    void = semantic == config.ignore_label
    onehot = F.one_hot(semantic.masked_fill(void, 0), categories.num_classes).permute(2, 0, 1).bool()
    logits = torch.where(onehot, _ORACLE_LOGIT, -_ORACLE_LOGIT).masked_fill_(void[None], 0.0)
    return {"semantic": logits, "category": category, "kernel": kernel, "mask_features": features}


class EfficientPS(PanopticModel):
    """EfficientPS with SOLOv2: backbone, 2-way FPN, semantic head, SOLOv2 head and mask features.

    Head outputs (:meth:`predict`):

    * ``semantic`` (Tensor[B, C, H, W]): semantic logits at the (padded) input size.
    * ``category`` ([Tensor[B, C_thing, S_l, S_l]] per level): SOLOv2 category logits.
    * ``kernel`` ([Tensor[B, E, S_l, S_l]]): SOLOv2 dynamic 1x1 kernels.
    * ``mask_features`` (Tensor[B, E, ceil(H / 4), ceil(W / 4)]): the unified mask features.

    Losses (:func:`efficientps_losses`): ``loss_sem_seg``, ``loss_category``, ``loss_mask``.
    Inference: :func:`efficientps_postprocess`.

    Args:
        config: :class:`~panoptic_models.config.EfficientPSConfig`.
        categories: the dataset's categories (at least one thing class).
    """

    target_keys = TARGET_KEYS

    def __init__(self, config: EfficientPSConfig, categories: Categories | Sequence[Mapping[str, Any]]) -> None:
        super().__init__(config, categories)
        if self.categories.num_things == 0:
            raise ValueError("categories: EfficientPS needs at least one thing category for its SOLOv2 head")
        self.backbone = config.backbone.build()
        self.fpn = TwoWayFPN(
            self.backbone.output_shape(), config.in_features, config.fpn_channels, norm=config.norm,
            extra_level="maxpool",
        )  # fmt: skip
        shape = self.fpn.output_shape()
        self._levels = tuple(shape)
        if shape[self._levels[0]].stride != config.mask_stride:
            raise ValueError(
                f"EfficientPSConfig: mask_stride {config.mask_stride} differs from the finest 2-way FPN level's "
                f"stride {shape[self._levels[0]].stride}"
            )
        self.semantic_head = EfficientPSSemanticHead(
            shape, self._levels[:4], self.categories.num_classes, config.semantic_channels, config.dpc_dilations,
            config.norm,
        )  # fmt: skip
        self.mask_features = SOLOv2MaskFeatures(
            shape, self._levels[:4], config.mask_feature_channels, config.mask_channels, config.instance_norm
        )
        self.instance_head = SOLOv2Head(
            config.fpn_channels, self.categories.num_things, config.num_grids, config.mask_channels,
            config.instance_channels, config.instance_num_convs, config.instance_norm, config.prior_prob,
        )  # fmt: skip

    def predict(self, images: torch.Tensor) -> dict[str, Any]:
        features = self.fpn(self.backbone(images))
        heads = self.instance_head([features[name] for name in self._levels])
        return {
            "semantic": self.semantic_head(features, tuple(images.shape[-2:])),
            "category": heads["category"],
            "kernel": heads["kernel"],
            "mask_features": self.mask_features(features),
        }

    def losses(self, images: torch.Tensor, targets: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return efficientps_losses(self.predict(images), targets, self.config)

    postprocess = staticmethod(efficientps_postprocess)
    oracle_outputs = staticmethod(efficientps_oracle_outputs)

