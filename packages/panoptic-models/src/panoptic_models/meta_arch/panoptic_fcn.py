"""Panoptic FCN (Li et al., CVPR 2021), as dvlab-research/PanopticFCN (``panoptic_seg.py``, ``head.py``, ``loss.py``).

Head outputs (:meth:`PanopticFCN.predict`), lists over the kernel generator's levels (P3..P7):

* ``center`` [Tensor[B, C_thing, Hl, Wl]]: thing-center logits.
* ``region`` [Tensor[B, C_st, Hl, Wl]]: stuff-region logits (channel 0: all things, when ``with_thing``).
* ``thing_kernels`` / ``stuff_kernels`` [Tensor[B, E, Hl, Wl]]: the kernel head's output through the
  thing / stuff 1x1 embeddings (the stuff one without bias), see
  :class:`~panoptic_models.heads.panoptic_fcn.KernelHead`.
* ``stuff_bias`` (Tensor[E]): the stuff embedding's bias.
* ``features`` (Tensor[B, E, H/4, W/4]): the feature encoder's output.

A kernel ``K`` (Tensor[E]) predicts the mask logits ``K . features`` (a 1x1 conv).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from panoptic_core.data import Categories
from panoptic_core.losses import sigmoid_focal_loss, weighted_dice_loss
from panoptic_core.targets import guided_positions
from panoptic_ops import kernel_fusion

from ..config import PanopticFCNConfig
from ..heads.panoptic_fcn import KernelHead, PositionHead
from ..heads.towers import ConvTower
from ..necks import FPN, LastLevelP6P7, SemanticFPN
from ..structures import PanopticResult
from .base import PanopticModel

__all__ = [
    "PanopticFCN",
    "fuse_stuff_kernels",
    "level_stuff_candidates",
    "level_thing_candidates",
    "panoptic_fcn_combine",
    "panoptic_fcn_losses",
    "panoptic_fcn_oracle_outputs",
    "panoptic_fcn_postprocess",
    "rescore_things",
]

# The oracle's probabilities are clamped to [ORACLE_EPS, 1 - ORACLE_EPS] before taking logits.
ORACLE_EPS = 1e-4


def _fit(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero-pad (or crop) the last two dims to ``size``: the targets' 1/4 maps are ``int(H/4 + 0.5)``
    wide, the encoder's ``ceil(H/4)``; upstream pads its targets the same way."""
    h, w = x.shape[-2:]
    x = x[..., : size[0], : size[1]]
    return F.pad(x, (0, max(size[1] - w, 0), 0, max(size[0] - h, 0)))


def panoptic_fcn_losses(
    outputs: Mapping[str, Any], targets: Mapping[str, Any], config: PanopticFCNConfig
) -> dict[str, torch.Tensor]:
    """Upstream's four losses (``PanopticFCN.losses`` / ``loss_single_level``).

    With ``M`` the number of (instance, level) assignments and ``N`` the number of (image, level,
    stuff channel) entries whose stuff heatmap is non-zero in the batch of ``B`` images:

    * ``loss_pos_th = w_pos * sum_l FL(L_l^th, Y_l^th) / max(M, 1)`` (focal loss summed over classes and
      positions, soft Gaussian targets);
    * ``loss_pos_st = w_pos * sum_{l, b, c} mean_{Hl Wl} FL(L_l^st, Y_l^st) / B`` (the slides' ``/ W_i H_i``);
    * ``loss_seg_th = w_seg * sum_j WDice(P_j, Y_j) / max(M, 1)`` over the k = ``weighted_num`` guided
      positions of each assignment (:func:`~panoptic_core.targets.guided_positions`, weights
      not detached);
    * ``loss_seg_st = w_seg * sum_j Dice(P_j, Y_j) / max(N, 1)``, each stuff kernel the mean over
      the level of (binary stuff heatmap x stuff kernel map) plus the embedding bias.

    ``w_pos = 1``, ``w_seg = 3``; focal alpha 0.25, gamma 2. Masks are ``sigmoid(K . features)``
    against the 1/4 targets (zero-padded to the encoder's size).

    Args:
        outputs: the head outputs (module docstring) of a batch.
        targets: the collated ``PanopticFCNTargets`` of the batch.
    """
    features = outputs["features"]
    batch, _, fh, fw = features.shape
    flat = features.flatten(2)
    k = config.weighted_num
    alpha, gamma = config.focal_alpha, config.focal_gamma
    # Zero-valued terms tied to every output keep the graph whole when a batch has no things or stuff.
    anchor = sum(t.sum() for key in ("thing_kernels", "stuff_kernels") for t in outputs[key]) * 0.0
    anchor = anchor + outputs["stuff_bias"].sum() * 0.0
    pos_th, pos_st, seg_th, seg_st = anchor, anchor, anchor, anchor
    num_things = num_stuff = 0
    for level in range(len(outputs["center"])):
        center, region = outputs["center"][level], outputs["region"][level]
        pos_th = pos_th + sigmoid_focal_loss(center, targets["thing_heatmap"][level], alpha, gamma, "sum")
        focal_st = sigmoid_focal_loss(region, targets["stuff_heatmap"][level], alpha, gamma, "none")
        pos_st = pos_st + focal_st.flatten(2).mean(-1).sum()
        hl, wl = center.shape[-2:]
        for b in range(batch):
            chosen = targets["level_instances"][b][level]
            if len(chosen):
                masks = _fit(targets["instance_masks"][b][chosen].to(flat.dtype), (fh, fw))
                classes = targets["instance_classes"][b][chosen]
                positions, weights = guided_positions(center[b], masks, classes, k)
                kernels = outputs["thing_kernels"][level][b].flatten(1)[:, positions.reshape(-1)].t()
                probs = torch.sigmoid(kernels @ flat[b]).reshape(len(chosen), k, -1)
                seg_th = seg_th + weighted_dice_loss(probs, masks.flatten(1), weights).sum()
                num_things += len(chosen)
            heat = targets["stuff_heatmap"][level][b]
            present = heat.flatten(1).sum(-1) > 0
            if present.any():
                area = (heat[present] > 0).to(flat.dtype).flatten(1)
                stuff_map = outputs["stuff_kernels"][level][b].flatten(1)
                kernels = area @ stuff_map.t() / (hl * wl) + outputs["stuff_bias"]
                probs = torch.sigmoid(kernels @ flat[b]).unsqueeze(1)
                goal = _fit(targets["stuff_masks"][b][present].to(flat.dtype), (fh, fw)).flatten(1)
                seg_st = seg_st + weighted_dice_loss(probs, goal, torch.ones_like(probs[:, :, 0])).sum()
                num_stuff += int(present.sum())
    w_pos, w_seg = config.position_loss_weight, config.segment_loss_weight
    return {
        "loss_pos_th": w_pos * pos_th / max(num_things, 1),
        "loss_pos_st": w_pos * pos_st / max(batch, 1),
        "loss_seg_th": w_seg * seg_th / max(num_things, 1),
        "loss_seg_st": w_seg * seg_st / max(num_stuff, 1),
    }


# ------------------------------------------------------------------------------------------- inference


def level_thing_candidates(
    center_logits: torch.Tensor, kernels: torch.Tensor, pool_size: int, top: int, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level's thing candidates (upstream ``inference_single_level``, things part).

    ``p = sigmoid(L)``, smoothed ``p' = (p + avgpool_{pool_size}(p)) / 2`` (zero padding counted),
    peaks where ``p'`` equals its 3x3 max, the ``min(Hl Wl, top)`` best (class, position) pairs of
    the peak map, kept when ``> threshold``.

    Args:
        center_logits (Tensor[C_thing, Hl, Wl]); kernels (Tensor[E, Hl, Wl]): thing kernel map.

    Returns:
        (scores Tensor[n], classes Tensor[n] int64 thing indices, kernels Tensor[n, E]), best first.
    """
    p = center_logits.sigmoid()[None]
    pooled = F.avg_pool2d(p, pool_size, stride=1, padding=(pool_size - 1) // 2)
    p = (p + pooled) / 2.0
    peaks = F.max_pool2d(p, 3, stride=1, padding=1) == p
    p = (p * peaks)[0]
    hl, wl = p.shape[-2:]
    scores, index = p.reshape(-1).topk(min(hl * wl, top))
    keep = scores > threshold
    scores, index = scores[keep], index[keep]
    position = index % (hl * wl)
    return scores, torch.div(index, hl * wl, rounding_mode="floor"), kernels.flatten(1)[:, position].t()


def level_stuff_candidates(
    region_logits: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level's stuff candidates (upstream ``inference_single_level``, stuff part).

    Each channel that is the argmax of ``sigmoid(L)`` somewhere: score = mean of its probability
    over its argmax region, kernel = mean over the level of (region mask x kernel map) + ``bias``;
    kept when the score is ``> threshold``.

    Args:
        region_logits (Tensor[C_st, Hl, Wl]); kernels (Tensor[E, Hl, Wl]): stuff kernel map
        (unbiased); bias (Tensor[E]).

    Returns:
        (scores Tensor[s], channels Tensor[s] int64 in increasing order, kernels Tensor[s, E]).
    """
    p = region_logits.sigmoid()
    cate = p.argmax(0).reshape(-1)
    channels, counts = torch.unique(cate, return_counts=True)
    onehot = (cate[None] == channels[:, None]).to(p.dtype)
    scores = (onehot * p.reshape(len(p), -1)[channels]).sum(-1) / counts
    keep = scores > threshold
    onehot = onehot[keep]
    fused = onehot @ kernels.flatten(1).t() / cate.numel() + bias
    return scores[keep], channels[keep], fused


def fuse_stuff_kernels(
    scores: torch.Tensor, channels: torch.Tensor, kernels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upstream's ``StuffGenerator.kernel_fusion``: average the kernels and scores of each channel over levels.

    Returns:
        (scores Tensor[u], channels Tensor[u] increasing, kernels Tensor[u, E]).
    """
    unique, inverse = torch.unique(channels, return_inverse=True)
    members = (inverse[None] == torch.arange(len(unique), device=channels.device)[:, None]).to(kernels.dtype)
    norm = members.sum(1, keepdim=True)
    return (members @ scores[:, None] / norm)[:, 0], unique, members @ kernels / norm


def rescore_things(
    probs: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, config: PanopticFCNConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upstream's ``process_inst`` before resizing: mask-score rescoring and filtering.

    ``score *= sum(p * [p > t]) / (sum([p > t]) + 1e-6)`` with t = ``mask_threshold``; sorted
    (stable, descending), kept when ``>= score_threshold``, at most ``top_num``.

    Args:
        probs (Tensor[n, h, w]): mask probabilities at 1/4.

    Returns:
        (probs, scores, classes) of the kept instances, best first.
    """
    binary = probs > config.mask_threshold
    area = binary.sum((1, 2)).to(probs.dtype) + 1e-6
    scores = scores * (probs * binary).sum((1, 2)) / area
    order = torch.sort(scores, descending=True, stable=True).indices
    order = order[scores[order] >= config.score_threshold][: config.top_num]
    return probs[order], scores[order], classes[order]


def panoptic_fcn_combine(
    masks: torch.Tensor,
    scores: torch.Tensor,
    semantic: torch.Tensor,
    overlap_threshold: float = 0.5,
    stuff_area: int = 4096,
    instance_threshold: float = 0.2,
) -> tuple[torch.Tensor, list[tuple[bool, int]]]:
    """Upstream's ``combine_thing_and_stuff`` (panopticapi's combine heuristic).

    Things in the given order with ``score >= instance_threshold``: an empty mask, or one whose
    overlap with the segments placed so far is more than ``overlap_threshold`` of its area, is
    skipped; otherwise its free pixels become the next segment. Then each semantic label ``> 0``
    in increasing order: its free pixels become a segment when there are at least ``stuff_area``.

    Args:
        masks (Tensor[N, H, W] bool): thing masks, best first; scores (Tensor[N]).
        semantic (Tensor[H, W] int64): stuff labels (0: things, skipped).

    Returns:
        (ids Tensor[H, W] int64, 0 = VOID, segments 1..S; one ``(isthing, index)`` per segment:
        the thing's index into ``masks`` or the semantic label).
    """
    ids = torch.zeros(semantic.shape, dtype=torch.int64, device=semantic.device)
    taken = torch.zeros(semantic.shape, dtype=torch.bool, device=semantic.device)
    segments: list[tuple[bool, int]] = []
    keep = (scores >= instance_threshold).nonzero().flatten().tolist()
    for n in keep:
        mask = masks[n]
        area = int(mask.sum())
        overlap = int((mask & taken).sum())
        if area == 0 or overlap / area > overlap_threshold:
            continue
        if overlap > 0:
            mask = mask & ~taken
        segments.append((True, n))
        ids[mask] = len(segments)
        taken |= mask
    present = torch.bincount(semantic.reshape(-1)).nonzero().flatten().tolist()  # torch.unique without the sort
    for label in present:
        if label == 0:
            continue
        mask = (semantic == label) & ~taken
        if int(mask.sum()) < stuff_area:
            continue
        segments.append((False, label))
        ids[mask] = len(segments)
        taken |= mask
    return ids, segments


def _to_output(x: torch.Tensor, common_stride: int, image_size: tuple[int, int], output_size: tuple[int, int]):
    """1/4 maps Tensor[n, h, w] -> Tensor[n, *output_size]: upsampled x4, cropped, resized (bilinear)."""
    h, w = x.shape[-2:]
    x = F.interpolate(x[None], size=(h * common_stride, w * common_stride), mode="bilinear", align_corners=False)
    x = x[..., : image_size[0], : image_size[1]]
    if tuple(x.shape[-2:]) != tuple(output_size):
        x = F.interpolate(x, size=output_size, mode="bilinear", align_corners=False)
    return x[0]


def _stuff_labels(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Upstream's ``argmax`` over a zero-initialised map holding ``probs`` (Tensor[u, H, W]) at the
    increasing channels ``labels``, computed over the u present channels only: a running maximum
    (strict, so ties go to the lower channel), and label 0 where every probability is 0 (upstream's
    argmax then lands on channel 0, as every absent channel is 0 too)."""
    best, index = probs[0].clone(), torch.zeros(probs.shape[1:], dtype=torch.int64, device=probs.device)
    for i in range(1, len(probs)):
        better = probs[i] > best
        best = torch.where(better, probs[i], best)
        index.masked_fill_(better, i)
    return torch.where(best > 0, labels[index], torch.zeros((), dtype=torch.int64, device=probs.device))


def panoptic_fcn_postprocess(
    outputs: Mapping[str, Any],
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    categories: Categories,
    config: PanopticFCNConfig,
) -> PanopticResult:
    """One image's head outputs -> :class:`PanopticResult` at ``output_size``, as upstream's ``inference``.

    1. Thing candidates of every level (:func:`level_thing_candidates`, ``top_num // 2`` per
       level, pool sizes ``center_pool_sizes``), concatenated; class-aware kernel fusion at cosine
       ``similarity_threshold`` (:func:`panoptic_ops.kernel_fusion`, which orders by score).
    2. Stuff candidates of every level (:func:`level_stuff_candidates`), averaged per channel
       (:func:`fuse_stuff_kernels`).
    3. Masks ``sigmoid(K . features)``; things rescored and filtered (:func:`rescore_things`).
    4. Thing and stuff probabilities upsampled x4, cropped to ``image_size``, resized to
       ``output_size``; things binarised at ``mask_threshold``; the stuff label map is the argmax
       over the stuff channels (channels without a kernel at 0).
    5. :func:`panoptic_fcn_combine`. Things below ``instance_threshold`` are dropped before the
       resize (the combine would skip them): same result, less work.

    Scores: a thing's rescored score; a stuff segment's fused score.

    Args:
        outputs: one image's head outputs (module docstring, without the batch axis).
        image_size: (h, w) of the image inside the padded input.
        output_size: (h, w) of the result.
    """
    features = outputs["features"]
    flat = features.flatten(1)
    fh, fw = features.shape[-2:]
    cs = config.common_stride
    levels = range(len(outputs["center"]))
    per_level = config.top_num // 2
    things = [
        level_thing_candidates(outputs["center"][i], outputs["thing_kernels"][i], config.center_pool_sizes[i],
                               per_level, config.center_threshold)
        for i in levels
    ]  # fmt: skip
    scores = torch.cat([t[0] for t in things])
    classes = torch.cat([t[1] for t in things])
    kernels = torch.cat([t[2] for t in things])
    if len(scores):
        labels = classes if config.class_specific else torch.zeros_like(classes)
        kernels, scores, _, keep = kernel_fusion(kernels.contiguous(), scores, labels, config.similarity_threshold)
        classes = classes[keep]
        probs = torch.sigmoid(kernels @ flat).reshape(-1, fh, fw)
        probs, scores, classes = rescore_things(probs, scores, classes, config)
        keep = scores >= config.instance_threshold
        probs, scores, classes = probs[keep], scores[keep], classes[keep]
    out_h, out_w = output_size
    if len(scores):
        masks = _to_output(probs, cs, image_size, output_size) > config.mask_threshold
    else:
        masks = torch.zeros(0, out_h, out_w, dtype=torch.bool, device=features.device)

    stuff = [
        level_stuff_candidates(outputs["region"][i], outputs["stuff_kernels"][i], outputs["stuff_bias"],
                               config.stuff_threshold)
        for i in levels
    ]  # fmt: skip
    st_scores = torch.cat([s[0] for s in stuff])
    channels = torch.cat([s[1] for s in stuff])
    st_kernels = torch.cat([s[2] for s in stuff])
    offset = 0 if config.with_thing else 1  # semantic label = channel + offset; label 0 = things
    labels = torch.zeros(output_size, dtype=torch.int64, device=features.device)
    stuff_score: dict[int, float] = {}
    if len(st_scores):
        st_scores, channels, st_kernels = fuse_stuff_kernels(st_scores, channels, st_kernels)
        st_probs = _to_output(torch.sigmoid(st_kernels @ flat).reshape(-1, fh, fw), cs, image_size, output_size)
        labels = _stuff_labels(st_probs, channels + offset)
        stuff_score = dict(zip((channels + offset).tolist(), st_scores.tolist(), strict=True))

    ids, segments = panoptic_fcn_combine(
        masks, scores, labels, config.overlap_threshold, config.stuff_area, config.instance_threshold
    )
    info = []
    for segment_id, (isthing, index) in enumerate(segments, start=1):
        if isthing:
            cls = categories.thing_classes[int(classes[index])]
            score = float(scores[index])
        else:
            cls = categories.stuff_classes[index - 1]
            score = stuff_score[index]
        info.append({"id": segment_id, "category_id": categories.ids[cls], "isthing": isthing, "score": score})
    return PanopticResult(ids, info)


def panoptic_fcn_oracle_outputs(
    targets: Mapping[str, Any], categories: Categories, config: PanopticFCNConfig
) -> dict[str, Any]:
    """The ideal head outputs of one image, from its (uncollated) ``PanopticFCNTargets``.

    * ``features``: one channel per instance and per stuff channel (E = N + C_st), the logit of
      its 1/4 target mask ``m`` (clamped to [1e-4, 1 - 1e-4]), so a one-hot kernel predicts the
      probability ``m`` itself and its x4 bilinear upsampling keeps the sub-pixel boundary;
      instance channels use ``m - (0.5 - mask_threshold)``, so the 0.4 threshold cuts at m = 0.5.
    * ``center`` / ``region``: ``logit(clamp(target heatmap, 1e-4, 1 - 1e-4))``.
    * ``thing_kernels``: at each position of a level, the one-hot kernel of the level's nearest
      assigned instance center (so a peak that moved off its center, where Gaussians of one
      class overlap, still finds its instance); zero on levels without instances.
    * ``stuff_kernels``: on the argmax region of each stuff channel (as the post-processing
      computes it), its one-hot kernel divided by the region's share of the level, so the
      masked average is exactly the one-hot kernel; ``stuff_bias`` zero.

    Returns:
        the head outputs of the module docstring, without the batch axis.
    """
    masks = targets["instance_masks"].float()
    stuff_masks = targets["stuff_masks"].float()
    n = len(masks)
    probs = torch.cat([masks - (0.5 - config.mask_threshold), stuff_masks])
    features = torch.logit(probs.clamp(ORACLE_EPS, 1 - ORACLE_EPS))
    dim = len(features)
    out: dict[str, Any] = {"center": [], "region": [], "thing_kernels": [], "stuff_kernels": [], "features": features}
    for heat, stuff, chosen, centers in zip(
        targets["thing_heatmap"], targets["stuff_heatmap"], targets["level_instances"], targets["level_centers"],
        strict=True,
    ):  # fmt: skip
        hl, wl = heat.shape[-2:]
        out["center"].append(torch.logit(heat.float().clamp(ORACLE_EPS, 1 - ORACLE_EPS)))
        thing = torch.zeros(dim, hl * wl)
        if len(chosen):
            ys, xs = torch.meshgrid(torch.arange(hl), torch.arange(wl), indexing="ij")
            cy, cx = torch.div(centers, wl, rounding_mode="floor"), centers % wl
            dist = (ys.reshape(-1, 1) - cy) ** 2 + (xs.reshape(-1, 1) - cx) ** 2
            owner = chosen[dist.argmin(1)]
            thing[owner, torch.arange(hl * wl)] = 1.0
        out["thing_kernels"].append(thing.reshape(dim, hl, wl))
        region = torch.logit(stuff.float().clamp(ORACLE_EPS, 1 - ORACLE_EPS))
        out["region"].append(region)
        cate = region.sigmoid().argmax(0).reshape(-1)
        share = torch.bincount(cate, minlength=len(region)).float() / cate.numel()
        kernel = torch.zeros(dim, hl * wl)
        kernel[n + cate, torch.arange(hl * wl)] = 1.0 / share[cate]
        out["stuff_kernels"].append(kernel.reshape(dim, hl, wl))
    out["stuff_bias"] = torch.zeros(dim)
    return out


class PanopticFCN(PanopticModel):
    """Backbone, FPN (P2..P7), kernel generator on P3..P7 (position head + kernel head, shared over
    levels), feature encoder on the Semantic FPN of P2..P5; upstream's losses and inference.

    Head outputs and their shapes: module docstring. Losses: :func:`panoptic_fcn_losses`;
    inference: :func:`panoptic_fcn_postprocess`.

    Args:
        config: :class:`~panoptic_models.config.PanopticFCNConfig`.
        categories: the dataset's categories (``Categories`` or COCO category dicts).
    """

    target_keys = frozenset(
        {"thing_heatmap", "stuff_heatmap", "level_instances", "instance_masks", "instance_classes", "stuff_masks"}
    )

    def __init__(self, config: PanopticFCNConfig, categories: Categories | Sequence[Mapping[str, Any]]) -> None:
        super().__init__(config, categories)
        self.backbone = config.backbone.build()
        c = config.fpn_channels
        self.fpn = FPN(self.backbone.output_shape(), config.fpn_in_features, c, norm=config.fpn_norm,
                       top_block=LastLevelP6P7(c, c, "p5"))  # fmt: skip
        shape = self.fpn.output_shape()
        missing = [f for f in (*config.in_features, *config.semantic_fpn_features) if f not in shape]
        if missing:
            raise ValueError(f"PanopticFCN: FPN levels {missing} do not exist (FPN gives {list(shape)})")
        for name, stride in zip(config.in_features, config.strides, strict=True):
            if shape[name].stride != stride:
                raise ValueError(f"PanopticFCN: {name} has stride {shape[name].stride}, config says {stride}")
        self.semantic_fpn = SemanticFPN(shape, config.semantic_fpn_features, config.semantic_fpn_channels,
                                        config.common_stride, norm=config.semantic_fpn_norm)  # fmt: skip
        self.encoder = ConvTower(config.semantic_fpn_channels, config.encoder_channels, config.encoder_convs,
                                 norm=config.encoder_norm, coord=config.encoder_coord, init_std=None)  # fmt: skip
        num_stuff = self.categories.num_stuff + int(config.with_thing)
        self.position_head = PositionHead(c, config.position_channels, config.position_convs,
                                          self.categories.num_things, num_stuff, config.position_norm,
                                          config.prior_bias)  # fmt: skip
        self.kernel_head = KernelHead(c, config.kernel_channels, config.kernel_convs, self.encoder.out_channels,
                                      config.kernel_norm, config.kernel_coord)  # fmt: skip

    @property
    def size_divisibility(self) -> int:
        fixed = int(self.config.size_divisibility or 0)
        return fixed if fixed > 0 else max(self.backbone.size_divisibility, self.fpn.size_divisibility)

    def predict(self, images: torch.Tensor) -> dict[str, Any]:
        features = self.fpn(self.backbone(images))
        out: dict[str, Any] = {"center": [], "region": [], "thing_kernels": [], "stuff_kernels": []}
        for name in self.config.in_features:
            center, region = self.position_head(features[name])
            thing, stuff = self.kernel_head(features[name])
            for key, value in zip(out, (center, region, thing, stuff), strict=True):
                out[key].append(value.float())
        out["stuff_bias"] = self.kernel_head.stuff_bias.float()
        out["features"] = self.encoder(self.semantic_fpn(features)).float()
        return out

    def losses(self, images: torch.Tensor, targets: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return panoptic_fcn_losses(self.predict(images), targets, self.config)

    postprocess = staticmethod(panoptic_fcn_postprocess)
    oracle_outputs = staticmethod(panoptic_fcn_oracle_outputs)

    @staticmethod
    def image_outputs(outputs: Mapping[str, Any], index: int) -> dict[str, Any]:
        """As the base class, except ``stuff_bias`` (Tensor[E]), shared by every image."""
        head = PanopticModel.image_outputs({k: v for k, v in outputs.items() if k != "stuff_bias"}, index)
        return {**head, "stuff_bias": outputs["stuff_bias"]}
