"""EINet: embedding-interaction based panoptic segmentation, built from its README and figures.

No paper text or code is public; panoptic-models' README ("EINet as implemented") maps every
box and arrow of the figures to the code below and says which choices are ours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from panoptic_core.data import Categories
from panoptic_core.losses import (
    bootstrapped_cross_entropy,
    centernet_focal_loss,
    centroid_alignment_loss,
    centroid_contrast_loss,
    dictionary_triplet_loss,
)
from panoptic_ops import find_instance_center

from ..config import EINetConfig
from ..heads.einet import (
    CenterHeatmapHead,
    EINetInstanceDecoder,
    EmbeddingBranch,
    SemanticCenterDictionary,
    embedding_segment_mean,
)
from ..necks.aspp import DeepLabV3PlusDecoder
from ..structures import PanopticResult
from .base import PanopticModel
from .panoptic_deeplab import LABEL_DIVISOR

__all__ = ["EINet", "class_peaks", "einet_oracle_outputs", "einet_postprocess", "group_thing_pixels"]


def class_peaks(
    heatmap: torch.Tensor, threshold: float, nms_kernel: int, top_k: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peaks of a multi-channel heatmap: one instance per peak, its class the channel.

    The channels are stacked vertically with ``nms_kernel // 2`` zero rows between them and
    handed to :func:`panoptic_ops.find_instance_center` in one call, which equals running it per
    channel (the zero rows are never peaks and never above one: thresholds are >= 0) except that
    ``top_k`` applies over all classes, as CenterNet's top-100. Peaks come channel by channel,
    each channel's in raster order.

    Args:
        heatmap (Tensor[C, H, W]): probabilities.
        threshold: peaks are strictly above it (>= 0); nms_kernel: odd max-pool window; top_k: or None.

    Returns:
        (channel Tensor[K] int64, y Tensor[K] int64, x Tensor[K] int64, value Tensor[K] float32).
    """
    if heatmap.dim() != 3:
        raise ValueError(f"heatmap: expected Tensor[C, H, W], got shape {tuple(heatmap.shape)}")
    if threshold < 0:
        raise ValueError(f"threshold: must be >= 0 (the channel separators are 0), got {threshold}")
    channels, height, width = heatmap.shape
    empty = torch.zeros(0, dtype=torch.int64, device=heatmap.device)
    if channels == 0 or height == 0 or width == 0:
        return empty, empty, empty, heatmap.new_zeros(0)
    gap = nms_kernel // 2
    rows = height + gap
    stacked = F.pad(heatmap, (0, 0, 0, gap)).reshape(1, channels * rows, width)
    points = find_instance_center(stacked.contiguous(), threshold, nms_kernel, top_k)
    ys, xs = points[:, 0], points[:, 1]
    channel = torch.div(ys, rows, rounding_mode="floor")
    y = ys - channel * rows
    return channel, y, xs, heatmap[channel, y, xs].float()


def group_thing_pixels(
    embedding: torch.Tensor,
    queries: torch.Tensor,
    pixels: torch.Tensor,
    stride: int,
    scale: tuple[float, float] = (1.0, 1.0),
) -> torch.Tensor:
    """The most similar query of each pixel: ``argmax_k <e(p), q_k>`` with e(p) the embedding
    bilinearly interpolated at the pixel (first query on ties), or -1 when no similarity is
    positive (the pixel resembles no centroid: a crowd region, say).

    The dot products are computed on the embedding map and then interpolated, which is the same
    by linearity and costs K values per pixel instead of D. With unit queries the argmax is the
    most cosine-similar query (the pixel's norm does not change it).

    Args:
        embedding (Tensor[D, h, w]): at ``stride`` of the image.
        queries (Tensor[K, D]), K >= 1.
        pixels (Tensor[N, 2] int64): (y, x) of the pixels in output coordinates.
        stride: image pixels per embedding pixel.
        scale: image pixels per output pixel, (y, x) (the output may be resized).

    Returns:
        Tensor[N] int64: query index per pixel, -1 where every ``<e(p), q_k>`` is <= 0.
    """
    if queries.shape[0] == 0:
        raise ValueError("group_thing_pixels: needs at least one query")
    _, h, w = embedding.shape
    sim = torch.einsum("kd,dhw->khw", queries.to(embedding.dtype), embedding)
    y = (pixels[:, 0].to(sim.dtype) + 0.5) * scale[0] / stride - 0.5  # map coordinates, align_corners=False
    x = (pixels[:, 1].to(sim.dtype) + 0.5) * scale[1] / stride - 0.5
    grid = torch.stack([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1], dim=-1).view(1, 1, -1, 2)
    values = F.grid_sample(sim[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0]
    best, index = values.max(dim=0)  # max returns the first maximal index, as argmax
    return torch.where(best > 0, index, -1)


def einet_postprocess(
    outputs: Mapping[str, torch.Tensor],
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    categories: Categories,
    config: EINetConfig,
) -> PanopticResult:
    """Head outputs of one image -> :class:`PanopticResult` at ``output_size`` (bottom-up, no offsets).

    1. Semantic: logits cropped to ``image_size``, resized bilinearly to ``output_size``, argmax.
    2. Instances: the peaks of the centroid heatmap (:func:`class_peaks`, ``center_threshold``,
       ``nms_kernel``, ``top_k``); each peak is an instance of its channel's class with the
       instance embedding at the peak as its centroid embedding O (L2-normalised).
    3. Thing pixels of the semantic map go to the most similar O of their own class
       (:func:`group_thing_pixels`, cosine similarity, ties to the first peak); thing pixels of a
       class without peaks, or with no positive similarity to its peaks, stay VOID.
    4. Stuff: each stuff class's pixels form one segment when at least ``stuff_area`` pixels.

    Scores: a thing's is its peak value, a stuff segment's the mean softmax probability of its
    class over its pixels.

    Args:
        outputs: ``semantic`` (Tensor[C, H, W] logits at the padded input size), ``heatmap``
            (Tensor[C_thing, H/s, W/s] probabilities) and ``embedding`` (Tensor[D, H/s, W/s]) at
            ``config.common_stride`` s.
        image_size: (h, w) of the image inside the padded input.
        output_size: (h, w) of the result.
    """
    h, w = image_size
    oh, ow = output_size
    s = config.common_stride
    semantic = outputs["semantic"][:, :h, :w].float()
    if (oh, ow) != (h, w):
        semantic = F.interpolate(semantic[None], size=(oh, ow), mode="bilinear", align_corners=False)[0]
    labels = semantic.argmax(dim=0)
    hh, ww = math.ceil(h / s), math.ceil(w / s)
    heat = outputs["heatmap"][:, :hh, :ww].float()
    embedding = outputs["embedding"][:, :hh, :ww].float()
    if heat.shape[0] != categories.num_things:
        raise ValueError(f"heatmap: {heat.shape[0]} channels for {categories.num_things} thing classes")
    device = labels.device
    isthing = torch.tensor(categories.isthing, dtype=torch.bool, device=device)
    area = torch.bincount(labels.reshape(-1), minlength=categories.num_classes)
    panoptic = torch.where(~isthing[labels] & (area[labels] >= config.stuff_area), labels * LABEL_DIVISOR, -1)
    channel, ys, xs, peak = class_peaks(heat, config.center_threshold, config.nms_kernel, config.top_k)
    queries = F.normalize(embedding[:, ys, xs].T, dim=1)
    thing_classes = torch.tensor(categories.thing_classes, dtype=torch.int64, device=device)
    for c in torch.unique(channel).tolist():
        cls = int(thing_classes[c])
        pixels = torch.nonzero(labels == cls)
        if len(pixels) == 0:
            continue
        members = torch.nonzero(channel == c)[:, 0]
        best = group_thing_pixels(embedding, queries[members], pixels, s, (h / oh, w / ow))
        pixels, best = pixels[best >= 0], best[best >= 0]
        panoptic[pixels[:, 0], pixels[:, 1]] = cls * LABEL_DIVISOR + members[best] + 1
    unique = torch.unique(panoptic, sorted=True, return_inverse=True)
    scores = _segment_scores(unique, semantic, peak)
    result = PanopticResult.from_label_map(
        panoptic, categories.ids, categories.thing_classes, LABEL_DIVISOR, -1, scores, unique=unique
    )
    result.semantic = labels
    return result


def _segment_scores(
    unique: tuple[torch.Tensor, torch.Tensor], logits: torch.Tensor, peak: torch.Tensor
) -> dict[int, float]:
    """Score of each encoded label of the panoptic map, from its ``(values, inverse)``: the peak of a
    thing's center, the mean semantic probability of a stuff region."""
    values, inverse = unique
    keep = values >= 0
    classes = torch.div(values.clamp(min=0), LABEL_DIVISOR, rounding_mode="floor")
    instance = values.clamp(min=0) % LABEL_DIVISOR
    flat_logits = logits.reshape(logits.shape[0], -1)
    own = flat_logits.gather(0, classes[inverse.reshape(-1)][None])[0]
    prob = torch.exp(own - torch.logsumexp(flat_logits, dim=0)).double()
    area = torch.bincount(inverse.reshape(-1), minlength=len(values)).double()
    mean_prob = torch.bincount(inverse.reshape(-1), weights=prob, minlength=len(values)) / area.clamp(min=1)
    peaks = peak.double()[(instance - 1).clamp(min=0)] if len(peak) else torch.zeros_like(mean_prob)
    score = torch.where(instance > 0, peaks, mean_prob)
    return {v: s for v, s, k in zip(values.tolist(), score.tolist(), keep.tolist(), strict=True) if k}


def einet_oracle_outputs(
    targets: Mapping[str, Any], categories: Categories, config: EINetConfig
) -> dict[str, torch.Tensor]:
    """The ideal head outputs of one image, from its ``EINetTargets``.

    * ``semantic``: one-hot logits of the GT class (all zero on VOID, whose argmax is class 0;
      the evaluator ignores predictions on VOID);
    * ``heatmap``: the target ``class_center``;
    * ``embedding``: one direction per instance (the unit vector e_k, D = the number of
      instances) on its pixels of ``segment_map`` and at its centroid pixel (O_k = E_k), zero on
      stuff, crowd and VOID.

    Args:
        targets: one image's (uncollated) targets.

    Returns:
        ``semantic`` (Tensor[C, H, W]), ``heatmap`` (Tensor[C_thing, H', W']), ``embedding``
        (Tensor[max(K, 1), H', W']).
    """
    semantic = targets["semantic"]
    void = semantic == config.ignore_label
    logits = F.one_hot(semantic.masked_fill(void, 0), categories.num_classes).permute(2, 0, 1).float()
    logits.masked_fill_(void[None], 0.0)
    segment_map = targets["segment_map"]
    centers = targets["segment_centers"]
    inst = targets["segment_isthing"] & ~targets["segment_iscrowd"] & (centers[:, 0] >= 0)
    index = torch.nonzero(inst)[:, 0]
    num = len(index)
    table = torch.zeros(len(inst) + 1, max(num, 1))
    table[index, torch.arange(num)] = 1.0
    embedding = table[torch.where(segment_map < 0, len(inst), segment_map)].permute(2, 0, 1).contiguous()
    for seg in index.tolist():
        embedding[:, centers[seg, 0], centers[seg, 1]] = table[seg]
    return {"semantic": logits, "heatmap": targets["class_center"].float(), "embedding": embedding}


def _fit(t: torch.Tensor, size: tuple[int, int], fill: float) -> torch.Tensor:
    """Crop or pad (with ``fill``) the last two dims of a target map to ``size``: the decoders'
    stride-s maps and the targets' sampled maps differ by one pixel at sizes not divisible by s."""
    h, w = size
    t = t[..., :h, :w]
    if t.shape[-2:] != (h, w):
        t = F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2]), value=fill)
    return t


class EINet(PanopticModel):
    """EINet: encoder, semantic and instance decoders, embedding interaction, bottom-up grouping.

    * Semantic decoder: :class:`~panoptic_models.necks.DeepLabV3PlusDecoder` (ASPP 6/12/18 +
      image pooling, 1/8 and 1/4 fusion), as Panoptic-DeepLab's; instance decoder:
      :class:`~panoptic_models.heads.einet.EINetInstanceDecoder`.
    * Instance side: embedding (D), attention ``att_ins`` and the class-wise centroid heatmap
      (:class:`~panoptic_models.heads.einet.CenterHeatmapHead`) from the embedding.
    * Semantic side: embedding (D), ``att_sem``; with ``interaction`` the embedding is
      re-calibrated with the dictionary Q
      (:class:`~panoptic_models.heads.einet.SemanticCenterDictionary`), then a 1x1 conv gives
      the class logits.

    Head outputs (:meth:`predict`): ``semantic`` (Tensor[B, C, H, W] logits, upsampled
    bilinearly to the input size), ``heatmap`` (Tensor[B, C_thing, H/4, W/4] sigmoid
    probabilities), ``embedding`` (Tensor[B, D, H/4, W/4], the instance embedding).

    Losses (:meth:`losses`): ``loss_sem`` (bootstrapped CE), ``loss_hm`` (CenterNet focal),
    ``loss_ins`` (R_ins triplet, with ``interaction``), ``loss_cen`` (centroid regularisation)
    and ``loss_grp`` (pixel-to-centroid grouping, ours), each times its config weight.

    Args:
        config: :class:`~panoptic_models.config.EINetConfig`.
        categories: the dataset's categories (``Categories`` or COCO category dicts).
    """

    target_keys = frozenset(
        {"semantic", "semantic_weights", "class_center", "segment_map", "segment_classes", "segment_isthing",
         "segment_iscrowd", "segment_centers"}
    )  # fmt: skip

    def __init__(self, config: EINetConfig, categories: Categories | Sequence[Mapping[str, Any]]) -> None:
        super().__init__(config, categories)
        if self.categories.num_things == 0:
            raise ValueError("categories: EINet needs at least one thing category (its centroid heatmap)")
        self.backbone = config.backbone.build()
        shape = self.backbone.output_shape()
        self.semantic_decoder = DeepLabV3PlusDecoder(
            shape, config.in_features, project_channels=config.project_channels, aspp_channels=config.aspp_channels,
            aspp_dilations=config.aspp_dilations, aspp_dropout=config.aspp_dropout,
            pool_kernel_size=config.aspp_pool_kernel_size, decoder_channels=config.semantic_decoder_channels,
            norm=config.norm, depthwise_separable=config.depthwise_separable,
        )  # fmt: skip
        self.instance_decoder = EINetInstanceDecoder(
            shape, config.in_features, project_channels=config.instance_project_channels,
            decoder_channels=config.instance_decoder_channels, norm=config.norm,
            depthwise_separable=config.depthwise_separable,
        )  # fmt: skip
        for decoder in (self.semantic_decoder, self.instance_decoder):
            if decoder.output_stride != config.common_stride:
                raise ValueError(
                    f"common_stride: {config.common_stride}, but the decoders' finest feature "
                    f"{decoder.in_features[0]!r} has stride {decoder.output_stride}"
                )
        dim = config.embedding_dim
        self.instance_branch = EmbeddingBranch(self.instance_decoder.out_channels, dim, attention=config.interaction)
        self.semantic_branch = EmbeddingBranch(self.semantic_decoder.out_channels, dim, attention=config.interaction)
        self.heatmap_head = CenterHeatmapHead(
            dim, self.categories.num_things, config.heatmap_head_channels, config.norm
        )
        self.classifier = nn.Conv2d(dim, self.categories.num_classes, 1)
        nn.init.normal_(self.classifier.weight, 0, 0.001)
        nn.init.zeros_(self.classifier.bias)
        self.dictionary = (
            SemanticCenterDictionary(self.categories.num_classes, dim, config.dictionary_momentum)
            if config.interaction
            else None
        )

    def _decode(self, images: torch.Tensor) -> dict[str, torch.Tensor | None]:
        features = self.backbone(images)
        ins_emb, ins_att = self.instance_branch(self.instance_decoder(features))
        sem_emb, sem_att = self.semantic_branch(self.semantic_decoder(features))
        return {
            "ins_emb": ins_emb,
            "ins_att": ins_att,
            "sem_emb": sem_emb,
            "sem_att": sem_att,
            "heat_logits": self.heatmap_head(ins_emb),
        }

    def _semantic_logits(self, sem_emb: torch.Tensor, centers: torch.Tensor | None, size) -> torch.Tensor:
        emb = sem_emb.float()
        if self.dictionary is not None and centers is not None:
            emb = self.dictionary.recalibrate(emb, centers, self.config.recalibration_temperature)
        logits = self.classifier(emb.to(sem_emb.dtype))
        return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs (see the class docstring). Args: images (Tensor[B, 3, H, W])."""
        out = self._decode(images)
        centers = None if self.dictionary is None else self.dictionary.centers
        return {
            "semantic": self._semantic_logits(out["sem_emb"], centers, images.shape[-2:]),
            "heatmap": torch.sigmoid(out["heat_logits"].float()),
            "embedding": out["ins_emb"].float(),
        }

    def losses(self, images: torch.Tensor, targets: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        cfg = self.config
        out = self._decode(images)
        ins_emb = out["ins_emb"].float()
        batch, _, h, w = ins_emb.shape
        num_classes = self.categories.num_classes
        device = ins_emb.device
        segment_map = _fit(targets["segment_map"], (h, w), -1)
        heat_target = _fit(targets["class_center"], (h, w), 0.0)

        # Every segment of the batch gets a global row: image b's segments follow image b - 1's.
        sizes = [len(c) for c in targets["segment_classes"]]
        offsets = torch.tensor([0, *sizes], device=device).cumsum(0)
        total = int(offsets[-1])
        labels = torch.where(segment_map >= 0, segment_map + offsets[:-1].view(-1, 1, 1), -1)
        image_of = torch.repeat_interleave(torch.arange(batch, device=device), torch.tensor(sizes, device=device))
        classes = torch.cat(list(targets["segment_classes"])).to(device)
        centers = torch.cat(list(targets["segment_centers"])).to(device).view(-1, 2)
        unit = F.normalize(ins_emb, dim=1)
        weighted = unit if out["ins_att"] is None else unit * out["ins_att"].float()
        means, counts = embedding_segment_mean(weighted, labels, total)
        is_inst = (
            torch.cat(list(targets["segment_isthing"])).to(device)
            & ~torch.cat(list(targets["segment_iscrowd"])).to(device)
            & (counts > 0)
            & (centers[:, 0] >= 0)
        )
        inst = torch.nonzero(is_inst)[:, 0]
        inst_image, inst_classes = image_of[inst], classes[inst]
        cy, cx = centers[inst, 0].clamp(max=h - 1), centers[inst, 1].clamp(max=w - 1)
        centroid = unit.permute(0, 2, 3, 1)[inst_image, cy, cx]  # O: [K, D]
        inst_means = means[inst]  # E: [K, D]

        losses = {
            "loss_hm": cfg.heatmap_loss_weight * centernet_focal_loss(out["heat_logits"], heat_target),
            "loss_cen": cfg.centroid_loss_weight * centroid_alignment_loss(centroid, inst_means),
            "loss_grp": cfg.grouping_loss_weight * self._grouping_loss(unit, labels, inst, inst_image, inst_classes,
                                                                       centroid, total),
        }  # fmt: skip
        q = None
        if self.dictionary is not None:
            seg_class = torch.where(labels >= 0, classes[labels.clamp(min=0)], -1)
            image_class = torch.where(
                seg_class >= 0, seg_class + num_classes * torch.arange(batch, device=device).view(-1, 1, 1), -1
            )
            sem_unit = F.normalize(out["sem_emb"].float(), dim=1) * out["sem_att"].float()
            v, v_counts = embedding_segment_mean(sem_unit, image_class, batch * num_classes)
            q = self.dictionary.update(
                v.view(batch, num_classes, -1), (v_counts > 0).view(batch, num_classes), inst_means, inst_classes,
                inst_image * num_classes + inst_classes,
            )  # fmt: skip
            losses["loss_ins"] = cfg.triplet_loss_weight * dictionary_triplet_loss(
                inst_means, inst_classes, q, self.dictionary.valid, cfg.triplet_margin
            )
        logits = self._semantic_logits(out["sem_emb"], q, images.shape[-2:])
        losses["loss_sem"] = cfg.semantic_loss_weight * bootstrapped_cross_entropy(
            logits, targets["semantic"], targets["semantic_weights"], ignore_index=cfg.ignore_label,
            top_k_percent_pixels=cfg.semantic_loss_top_k,
        )  # fmt: skip
        return losses

    def _grouping_loss(self, unit, labels, inst, inst_image, inst_classes, centroid, total) -> torch.Tensor:
        """Mean of :func:`centroid_contrast_loss` over the instances that share their class with
        another instance of their image (the others have nothing to be told apart from)."""
        row = torch.full((total + 1,), -1, dtype=torch.int64, device=unit.device)
        row[inst] = torch.arange(len(inst), device=unit.device)
        pixel_inst = row[torch.where(labels >= 0, labels, total)]
        per_instance, shared = [], []
        for b in range(unit.shape[0]):
            members = torch.nonzero(inst_image == b)[:, 0]
            if len(members) < 2:
                continue
            mask = pixel_inst[b] >= 0
            first = int(members[0])
            local = centroid_contrast_loss(
                unit[b].permute(1, 2, 0)[mask], pixel_inst[b][mask] - first, centroid[members],
                inst_classes[members], self.config.grouping_temperature,
            )  # fmt: skip
            same = (inst_classes[members][:, None] == inst_classes[members][None, :]).sum(1) > 1
            per_instance.append(local)
            shared.append(same)
        if not per_instance:
            return unit.sum() * 0.0
        values, use = torch.cat(per_instance), torch.cat(shared)
        return values[use].mean() if bool(use.any()) else values.sum() * 0.0

    postprocess = staticmethod(einet_postprocess)
    oracle_outputs = staticmethod(einet_oracle_outputs)

