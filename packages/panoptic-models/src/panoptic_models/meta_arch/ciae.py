"""CIAE (Gao et al., "Learning Category- and Instance-Aware Pixel Embedding for Fast Panoptic
Segmentation", IEEE TIP 2021): an FCOS proposal head and a pixel-embedding branch whose pixels are
assigned to stuff memory embeddings and instance query embeddings (Sec. IV)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from panoptic_core.data import Categories
from panoptic_core.losses import CIAELoss, centerness_loss, iou_loss, sigmoid_focal_loss
from panoptic_ops import UNBOXED, batched_nms, box_filtered_assign

from ..config import CIAEConfig
from ..heads.towers import FCOSHead
from ..necks.fpn import FPN, LastLevelP6P7
from ..necks.semantic_fpn import SemanticFPN
from ..structures import PanopticResult
from .base import PanopticModel

__all__ = [
    "CIAE",
    "LABEL_DIVISOR",
    "ciae_detection_losses",
    "ciae_fuse",
    "ciae_oracle_outputs",
    "ciae_postprocess",
    "ciae_proposals",
    "level_locations",
]

# class * LABEL_DIVISOR + instance between the fusion and PanopticResult; above any detection count.
LABEL_DIVISOR = 1 << 16
# Common stride of the predicted embedding map (P2, Sec. IV-A); 4x up-sampled before the fusion.
EMBEDDING_STRIDE = 4
# Pixels re-examined at once when the box rule is enforced (bounds the [M, Q] similarity block).
_CHUNK = 1 << 16


def level_locations(
    sizes: Sequence[tuple[int, int]], strides: Sequence[int], device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """FCOS locations of every level, flattened level after level in row-major order.

    Location (i, j) of level l with stride s is the image point (x, y) = (j s + s // 2, i s + s // 2),
    the convention of ``CIAETargets``.

    Returns:
        (Tensor[L, 2] float32 (x, y) points, Tensor[L] int64 level index).
    """
    points, levels = [], []
    for level, ((h, w), s) in enumerate(zip(sizes, strides, strict=True)):
        ys = torch.arange(h, device=device, dtype=torch.float32) * s + s // 2
        xs = torch.arange(w, device=device, dtype=torch.float32) * s + s // 2
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))
        levels.append(torch.full((h * w,), level, dtype=torch.int64, device=device))
    return torch.cat(points), torch.cat(levels)


def _reduce_sum(values: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(sum over processes, world size): FCOS's ``reduce_sum`` for its loss normalisers."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
        return values, dist.get_world_size()
    return values, 1


def _flat(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """[Tensor[B, C, h_l, w_l]] -> Tensor[B * sum(h_l w_l), C], image-major within each level, level after level."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]) for m in maps])


def ciae_detection_losses(
    head: Mapping[str, Sequence[torch.Tensor]], targets: Mapping[str, Any], num_things: int, config: CIAEConfig
) -> dict[str, torch.Tensor]:
    """FCOS's losses (AdelaiDet ``FCOSOutputs.fcos_losses``) on CIAE's mask-based positives.

    With ``num_pos_avg = max(sum_processes(num_pos) / world, 1)`` and
    ``ctr_avg = max(sum_processes(sum of positive centerness targets) / world, 1e-6)``:

    * ``loss_fcos_cls = sum(sigmoid_focal(logits, onehot)) / num_pos_avg`` over every location
      not labelled -1 (alpha 0.25, gamma 2);
    * ``loss_fcos_box = sum(centerness* . IoU loss(ltrb / s, ltrb* / s)) / ctr_avg`` over positives,
      distances divided by the level's stride (``norm_reg_targets``);
    * ``loss_fcos_ctr = sum(BCE(ctr, centerness*)) / num_pos_avg`` over positives.

    Both normalisers are all-reduced on every call (also without positives), as FCOS does.

    Args:
        head: the training output of :class:`~panoptic_models.heads.FCOSHead` (per-level lists;
            ``box_reg`` divided by the stride).
        targets: collated ``CIAETargets`` (``location_classes``, ``box_targets``, ``centerness``).
    """
    if len(head["cls_logits"]) != len(targets["location_classes"]):
        raise ValueError(f"CIAE: {len(head['cls_logits'])} head levels but {len(targets['location_classes'])} "
                         f"target levels; build the targets with the model's target_generator()")  # fmt: skip
    for level, (p, t) in enumerate(zip(head["cls_logits"], targets["location_classes"], strict=True)):
        if tuple(p.shape[-2:]) != tuple(t.shape[-2:]) or p.shape[0] != t.shape[0]:
            raise ValueError(
                f"CIAE: level {level} head output {tuple(p.shape)} does not match targets['location_classes'] "
                f"{tuple(t.shape)}; pad batches to the model's size_divisibility"
            )
    logits = _flat(head["cls_logits"]).float()
    reg = _flat(head["box_reg"]).float()
    ctr = _flat(head["centerness"]).float()[:, 0]
    labels = torch.cat([t.reshape(-1) for t in targets["location_classes"]])
    box_t = torch.cat([(t.float() / s).reshape(-1, 4) for t, s in zip(targets["box_targets"], config.strides,
                                                                        strict=True)])  # fmt: skip
    ctr_t = torch.cat([t.reshape(-1) for t in targets["centerness"]]).float()
    valid = labels >= 0
    pos = valid & (labels < num_things)
    onehot = torch.zeros_like(logits)
    onehot[pos, labels[pos]] = 1.0
    pos_ctr = ctr_t[pos]
    totals, world = _reduce_sum(torch.stack([pos.sum().to(logits), pos_ctr.sum()]).detach())
    num_pos_avg = torch.clamp(totals[0] / world, min=1.0)
    ctr_avg = torch.clamp(totals[1] / world, min=1e-6)
    loss_cls = sigmoid_focal_loss(logits[valid], onehot[valid], config.focal_alpha, config.focal_gamma, "sum")
    if bool(pos.any()):
        loss_box = iou_loss(reg[pos], box_t[pos], pos_ctr, config.iou_loss_type, "sum") / ctr_avg
        loss_ctr = centerness_loss(ctr[pos], pos_ctr, "sum") / num_pos_avg
    else:
        loss_box, loss_ctr = reg.sum() * 0, ctr.sum() * 0
    return {"loss_fcos_cls": loss_cls / num_pos_avg, "loss_fcos_box": loss_box, "loss_fcos_ctr": loss_ctr}


def _upsample_embeddings(embeddings: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """P of Sec. IV-A: the stride-4 map (Tensor[D, h, w]) 4x bilinearly up-sampled, covering at least
    ``size`` (edge-replicated when a stride-4 map of an odd-sized image falls short), cropped to it
    and L2-normalised over D. Returns Tensor[D, size[0], size[1]] float32."""
    up = F.interpolate(embeddings[None].float(), scale_factor=EMBEDDING_STRIDE, mode="bilinear", align_corners=False)
    short_h, short_w = max(0, size[0] - up.shape[-2]), max(0, size[1] - up.shape[-1])
    if short_h or short_w:
        up = F.pad(up, (0, short_w, 0, short_h), mode="replicate")
    return F.normalize(up[0, :, : size[0], : size[1]], dim=0)


def ciae_proposals(outputs: Mapping[str, torch.Tensor], image_size: tuple[int, int], config: CIAEConfig):
    """FCOS inference of one image (AdelaiDet ``FCOSOutputs.predict_proposals``).

    Per level: locations whose class probability exceeds ``pre_nms_threshold``, the
    ``pre_nms_top_n`` best by ``prob * centerness``; boxes ``(x - l, y - t, x + r, y + b)`` clipped
    to the image; score ``sqrt(prob * centerness)``; class-wise NMS (``nms_threshold``), the best
    ``max_detections``; then those scoring at least ``instance_score_threshold``.

    Args:
        outputs: ``cls_logits`` (Tensor[L, C_th]), ``box_reg`` (Tensor[L, 4] pixels),
            ``centerness`` (Tensor[L] logits), ``locations`` (Tensor[L, 2] (x, y)),
            ``levels`` (Tensor[L] int64).
        image_size: (h, w) of the image inside the padded input.

    Returns:
        (boxes Tensor[N, 4], scores Tensor[N], classes Tensor[N] thing indices, locations Tensor[N, 2]),
        in decreasing score order.
    """
    h, w = image_size
    prob = torch.sigmoid(outputs["cls_logits"].float())
    ctr = torch.sigmoid(outputs["centerness"].float())
    reg, points, levels = outputs["box_reg"].float(), outputs["locations"].float(), outputs["levels"]
    picked = []
    for level in range(len(config.strides)):
        sel = (levels == level).nonzero()[:, 0]
        if sel.numel() == 0:
            continue
        p = prob[sel]
        candidates = (p > config.pre_nms_threshold).nonzero()
        if candidates.numel() == 0:
            continue
        loc, cls = sel[candidates[:, 0]], candidates[:, 1]
        score = p[candidates[:, 0], cls] * ctr[loc]
        if score.numel() > config.pre_nms_top_n:
            score, top = score.topk(config.pre_nms_top_n)
            loc, cls = loc[top], cls[top]
        picked.append((loc, cls, score))
    empty = prob.new_zeros(0)
    if not picked:
        return empty.view(0, 4), empty, torch.zeros(0, dtype=torch.int64, device=prob.device), empty.view(0, 2)
    loc, cls, score = (torch.cat(t) for t in zip(*picked, strict=True))
    xy, ltrb = points[loc], reg[loc]
    boxes = torch.cat([xy - ltrb[:, :2], xy + ltrb[:, 2:]], dim=1)
    boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w),
                         boxes[:, 3].clamp(0, h)], dim=1)  # fmt: skip
    score = score.sqrt()
    keep = batched_nms(boxes, score, cls, config.nms_threshold)[: config.max_detections]
    keep = keep[score[keep] >= config.instance_score_threshold]
    return boxes[keep], score[keep], cls[keep], xy[keep]


def _enforce_box_rule(
    ids: torch.Tensor, sims: torch.Tensor, embeddings: torch.Tensor, queries: torch.Tensor, boxes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-assign the pixels whose argmax query does not contain them.

    ``box_filtered_assign`` takes the argmax over all similarities, the zeros outside boxes
    included, so a pixel whose in-box similarities are all negative lands on a query whose box
    misses it. Such pixels go to their best query *among those whose box contains them*; a pixel
    no box contains (possible only without stuff queries) becomes void (-1).

    Args:
        ids, sims (Tensor[H, W]); embeddings (Tensor[D, H, W]); queries (Tensor[Q, D]); boxes (Tensor[Q, 4]).
    """
    height, width = ids.shape
    # Pixel centres (k + 0.5) are exact in float32 up to 2**23, so comparing in the boxes' own
    # precision (at least float32) decides exactly as float64 would.
    dtype = torch.promote_types(boxes.dtype, torch.float32)
    ys = torch.arange(height, device=ids.device, dtype=dtype) + 0.5
    xs = torch.arange(width, device=ids.device, dtype=dtype) + 0.5
    bd = boxes.to(dtype)
    b = bd[ids]
    inside = (xs >= b[..., 0]) & (xs <= b[..., 2]) & (ys[:, None] >= b[..., 1]) & (ys[:, None] <= b[..., 3])
    bad = (~inside).reshape(-1).nonzero()[:, 0]
    if bad.numel() == 0:
        return ids, sims
    ids, sims = ids.reshape(-1).clone(), sims.reshape(-1).clone()
    flat = embeddings.reshape(embeddings.shape[0], -1)
    for start in range(0, bad.numel(), _CHUNK):
        pix = bad[start : start + _CHUNK]
        py, px = (pix // width).to(dtype) + 0.5, (pix % width).to(dtype) + 0.5
        contains = (px[:, None] >= bd[:, 0]) & (px[:, None] <= bd[:, 2]) & (py[:, None] >= bd[:, 1]) & (
            py[:, None] <= bd[:, 3]
        )
        s = (flat[:, pix].T @ queries.T).masked_fill(~contains, -torch.inf)
        best, arg = s.max(dim=1)
        none = ~contains.any(dim=1)
        ids[pix] = torch.where(none, -1, arg)
        sims[pix] = torch.where(none, 0.0, best)
    return ids.view(height, width), sims.view(height, width)


def _stuff_area_at(config: CIAEConfig, image_size: tuple[int, int], output_size: tuple[int, int]) -> float:
    """The stuff area threshold in pixels of ``output_size``: ``stuff_area`` counts pixels of the image
    resized to a shorter side of ``stuff_area_short_edge`` (the paper's 800), or of ``image_size``
    (the network input) when that is 0."""
    oh, ow = output_size
    if config.stuff_area_short_edge > 0:
        return config.stuff_area * (min(oh, ow) / config.stuff_area_short_edge) ** 2
    return config.stuff_area * (oh * ow) / (image_size[0] * image_size[1])


def ciae_fuse(
    embeddings: torch.Tensor,
    stuff_queries: torch.Tensor,
    instance_queries: torch.Tensor,
    instance_boxes: torch.Tensor,
    instance_classes: torch.Tensor,
    instance_scores: torch.Tensor,
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    categories: Categories,
    config: CIAEConfig,
) -> PanopticResult:
    """The fusing step of Sec. IV-C: every pixel to its most similar query (eq. 16), inside boxes.

    The queries are the stuff memory embeddings (unboxed) followed by the instance queries
    (boxed). ``embeddings`` (P, unit norm, at the padded input size) are cropped to
    ``image_size``; at another ``output_size`` they are bilinearly resized and re-normalised and
    the boxes scaled. :func:`panoptic_ops.box_filtered_assign` gives the argmax; pixels outside the
    box of their query are re-assigned among the queries that contain them (never to an instance
    whose box misses the pixel; void when no query contains it). Stuff segments smaller than
    ``stuff_area`` (scaled to the output size, see :func:`_stuff_area_at`) become void. Scores: an
    instance's detection score; a stuff segment's mean similarity.

    Args:
        embeddings (Tensor[D, Hp, Wp]): P, L2-normalised, at the padded input size.
        stuff_queries (Tensor[C_st, D]); instance_queries (Tensor[N, D]); instance_boxes
            (Tensor[N, 4], input pixels); instance_classes (Tensor[N], thing indices);
            instance_scores (Tensor[N]).
    """
    h, w = image_size
    oh, ow = output_size
    emb = embeddings[:, :h, :w].float()
    boxes = instance_boxes.float()
    if (oh, ow) != (h, w):
        emb = F.normalize(F.interpolate(emb[None], size=(oh, ow), mode="bilinear", align_corners=False)[0], dim=0)
        boxes = boxes * boxes.new_tensor([ow / w, oh / h, ow / w, oh / h])
    num_stuff = stuff_queries.shape[0]
    queries = torch.cat([stuff_queries.float(), instance_queries.float()])
    if queries.shape[0] == 0:
        return PanopticResult(torch.zeros(oh, ow, dtype=torch.int64, device=emb.device), [])
    all_boxes = torch.cat([boxes.new_tensor(UNBOXED).expand(num_stuff, 4), boxes])
    ids, sims = box_filtered_assign(emb[None].contiguous(), queries[None], all_boxes[None], 1)
    ids, sims = _enforce_box_rule(ids[0], sims[0], emb, queries, all_boxes)
    # A zero embedding has no direction (all similarities tie at 0): void, not the first query.
    # A trained network never gives one; the oracle does on VOID and crowd pixels.
    ids = ids.masked_fill(emb.abs().amax(dim=0) == 0, -1)

    counts = torch.bincount(ids.reshape(-1) + 1, minlength=queries.shape[0] + 1)[1:]
    sim_sums = torch.zeros(queries.shape[0] + 1, dtype=torch.float64, device=ids.device)
    sim_sums.index_add_(0, ids.reshape(-1) + 1, sims.reshape(-1).double())
    sim_sums = sim_sums[1:]
    stuff_min = _stuff_area_at(config, (h, w), (oh, ow))
    stuff_classes = torch.tensor(categories.stuff_classes, dtype=torch.int64, device=ids.device)
    thing_classes = torch.tensor(categories.thing_classes, dtype=torch.int64, device=ids.device)
    n = instance_queries.shape[0]
    label_of = torch.cat([
        stuff_classes * LABEL_DIVISOR,
        thing_classes[instance_classes.long()] * LABEL_DIVISOR + torch.arange(1, n + 1, device=ids.device),
        torch.tensor([-1], device=ids.device),
    ])  # fmt: skip
    small = torch.zeros(queries.shape[0] + 1, dtype=torch.bool, device=ids.device)
    small[:num_stuff] = counts[:num_stuff] < stuff_min
    lookup = torch.where(small, len(label_of) - 1, torch.arange(len(label_of), device=ids.device))
    labels = label_of[lookup[torch.where(ids < 0, len(label_of) - 1, ids)]]
    scores: dict[int, float] = {}
    mean_sim = (sim_sums / counts.clamp(min=1)).tolist()
    for q, label in enumerate(label_of[:-1].tolist()):
        if counts[q] > 0 and not small[q]:
            scores[label] = mean_sim[q] if q < num_stuff else float(instance_scores[q - num_stuff])
    return PanopticResult.from_label_map(labels, categories.ids, categories.thing_classes, LABEL_DIVISOR, -1, scores)


def ciae_postprocess(
    outputs: Mapping[str, torch.Tensor],
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    categories: Categories,
    config: CIAEConfig,
) -> PanopticResult:
    """Head outputs of one image -> :class:`PanopticResult` at ``output_size`` (Sec. IV-C).

    Proposals from :func:`ciae_proposals`; P from the stride-4 map (4x bilinear, L2 norm); each
    proposal's query is P at the location that generated it (clamped into the map); the stuff
    queries are the memory embeddings; :func:`ciae_fuse` assigns the pixels.

    Args:
        outputs: ``cls_logits``, ``box_reg``, ``centerness``, ``locations``, ``levels`` (see
            :func:`ciae_proposals`), ``embeddings`` (Tensor[D, Hp / 4, Wp / 4], before
            normalisation), ``stuff_queries`` (Tensor[C_st, D], the memory's stuff rows) and
            optionally ``embedding_stride`` (a 0-d tensor: 4, the model's; 1 for a full-resolution map).
        image_size: (h, w) of the image inside the padded input.
        output_size: (h, w) of the result.
    """
    boxes, scores, classes, points = ciae_proposals(outputs, image_size, config)
    emb = outputs["embeddings"]
    stride = int(outputs["embedding_stride"]) if "embedding_stride" in outputs else EMBEDDING_STRIDE
    if stride == 1:
        p = F.normalize(emb.float(), dim=0)  # already at the input resolution (the full-resolution oracle)
    else:
        size = (max(image_size[0], emb.shape[-2] * stride), max(image_size[1], emb.shape[-1] * stride))
        p = _upsample_embeddings(emb, size)
    ys = points[:, 1].long().clamp(0, p.shape[1] - 1)
    xs = points[:, 0].long().clamp(0, p.shape[2] - 1)
    queries = p[:, ys, xs].T
    return ciae_fuse(p, outputs["stuff_queries"], queries, boxes, classes, scores, image_size, output_size,
                     categories, config)  # fmt: skip


def oracle_directions(count: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Tensor[count, dim]: fixed distinct unit directions (seeded Gaussian), one per segment of the oracle."""
    generator = torch.Generator().manual_seed(0)
    return F.normalize(torch.randn(count, dim, generator=generator), dim=1).to(device)


def ciae_oracle_outputs(
    targets: Mapping[str, Any], categories: Categories, config: CIAEConfig
) -> dict[str, torch.Tensor]:
    """The ideal head outputs of one image, from its (uncollated) ``CIAETargets``.

    * Embeddings: one fixed unit direction per segment (:func:`oracle_directions`: the C_st stuff
      classes first, then the instances), zero on VOID and crowd pixels, on the stride-4 map
      (``segment_map`` sampled at stride 4), which post-processing up-samples as the model's.
    * Stuff queries: the stuff directions (a perfect memory).
    * Proposals: for every instance with a positive location, the one with the highest
      centerness target: logits +10 for its class (-10 elsewhere and everywhere else), centerness
      logit +10, distances its box targets, so the proposal is the GT box with the GT class.
    """
    dim = config.embedding_dim
    seg = targets["segment_map"]
    ratio = EMBEDDING_STRIDE // config.embedding_stride
    if ratio > 1 and config.embedding_stride != 1:
        seg = seg[..., ratio // 2 :: ratio, ratio // 2 :: ratio]
    num_stuff = categories.num_stuff
    count = num_stuff + len(targets["instance_classes"])
    directions = oracle_directions(count, dim)
    emb = torch.where((seg >= 0)[..., None], directions[seg.clamp(min=0)] if count else 0.0, 0.0)
    sizes = [tuple(t.shape) for t in targets["location_classes"]]
    points, levels = level_locations(sizes, config.strides)
    instance = torch.cat([t.reshape(-1) for t in targets["location_instance"]])
    ctr = torch.cat([t.reshape(-1) for t in targets["centerness"]])
    ltrb = torch.cat([t.reshape(-1, 4) for t in targets["box_targets"]]).float()
    logits = torch.full((len(instance), categories.num_things), -10.0)
    centerness = torch.full((len(instance),), -10.0)
    for n, cls in enumerate(targets["instance_classes"].tolist()):
        at = (instance == n).nonzero()[:, 0]
        if at.numel():
            best = at[ctr[at].argmax()]
            logits[best, cls] = 10.0
            centerness[best] = 10.0
    return {
        "cls_logits": logits,
        "box_reg": ltrb,
        "centerness": centerness,
        "locations": points,
        "levels": levels,
        "embeddings": emb.permute(2, 0, 1).contiguous(),
        "embedding_stride": torch.tensor(1 if config.embedding_stride == 1 else EMBEDDING_STRIDE),
        "stuff_queries": directions[:num_stuff],
    }


class CIAE(PanopticModel):
    """Backbone, FPN (P2-P7), an FCOS proposal head with box embeddings on P3-P7, and the embedding
    branch (P2-P5 aggregation with GN and CoordConv, P' plus P'' from the box embeddings).

    Head outputs (:meth:`predict`, locations flattened level after level in row-major order):

    * ``cls_logits`` (Tensor[B, L, C_th]), ``box_reg`` (Tensor[B, L, 4], pixels), ``centerness``
      (Tensor[B, L]), ``locations`` (Tensor[B, L, 2]), ``levels`` (Tensor[B, L]);
    * ``embeddings`` (Tensor[B, D, Hp / 4, Wp / 4]): P' + P'' before up-sampling and normalisation;
    * ``stuff_queries`` (Tensor[B, C_st, D]): the memory embeddings of the stuff classes.

    Losses: :func:`ciae_detection_losses` (``loss_fcos_cls``, ``loss_fcos_box``, ``loss_fcos_ctr``)
    and the CIAE loss of panoptic-core (``loss_ciae`` = ``loss_cae + alpha * loss_iae``; eq. 15).
    The category memory (``criterion.memory``) is updated in every training forward and saved in
    the state dict.

    Args:
        config: :class:`~panoptic_models.config.CIAEConfig`.
        categories: the dataset's categories (at least one thing class).
    """

    target_keys = frozenset({"location_classes", "box_targets", "centerness", "segment_map", "category_map",
                             "segment_boxes"})  # fmt: skip

    def __init__(self, config: CIAEConfig, categories: Categories | Sequence[Mapping[str, Any]]) -> None:
        super().__init__(config, categories)
        cats = self.categories
        if cats.num_things == 0:
            raise ValueError("CIAE: categories have no thing class; the proposal head needs at least one")
        self.backbone = config.backbone.build()
        channels = config.fpn_channels
        self.fpn = FPN(self.backbone.output_shape(), ("res2", "res3", "res4", "res5"), channels, norm=config.fpn_norm,
                       top_block=LastLevelP6P7(channels, channels, "p5"))  # fmt: skip
        self.head_features = tuple(f"p{s.bit_length() - 1}" for s in config.strides)
        shapes = self.fpn.output_shape()
        for name, stride in zip(self.head_features, config.strides, strict=True):
            if name not in shapes or shapes[name].stride != stride:
                raise ValueError(f"CIAE: strides {config.strides} must be FPN levels P3-P7 (8 .. 128)")
        dim = config.embedding_dim
        self.proposal_head = FCOSHead(
            channels, cats.num_things, num_convs=config.head_convs, norm=config.head_norm,
            prior_prob=config.prior_prob, strides=config.strides, embedding_dim=dim if config.box_embedding else 0,
        )  # fmt: skip
        self.embedding_fpn = SemanticFPN(shapes, ("p2", "p3", "p4", "p5"), config.embedding_channels, EMBEDDING_STRIDE,
                                         norm=config.embedding_norm, coord_conv=config.coord_conv)  # fmt: skip
        self.embedding_pred = nn.Conv2d(config.embedding_channels, dim, 1)
        self.box_embedding_fuse = nn.Conv2d(dim, dim, 1) if config.box_embedding else None
        generator = config.target_generator(cats)
        self.criterion = CIAELoss(
            generator.num_categories, cats.num_stuff, dim, config.total_steps, margin=config.margin,
            top_k=config.top_k, alpha=config.alpha, thing_weight=config.thing_weight, stride=config.embedding_stride,
        )  # fmt: skip

    def _forward(self, images: torch.Tensor) -> tuple[dict[str, list[torch.Tensor]], torch.Tensor]:
        features = self.fpn(self.backbone(images))
        head = self.proposal_head([features[f] for f in self.head_features])
        x = self.embedding_fpn(features)
        embeddings = self.embedding_pred(x)
        if self.box_embedding_fuse is not None:
            size = x.shape[-2:]
            fused = sum(F.interpolate(e, size=size, mode="bilinear", align_corners=False)
                        for e in head["box_embedding"])  # fmt: skip
            embeddings = embeddings + self.box_embedding_fuse(fused)
        return head, embeddings

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        was_training = self.proposal_head.training
        self.proposal_head.eval()  # box_reg in pixels
        try:
            head, embeddings = self._forward(images)
        finally:
            self.proposal_head.train(was_training)
        batch = images.shape[0]
        sizes = [tuple(m.shape[-2:]) for m in head["cls_logits"]]
        points, levels = level_locations(sizes, self.config.strides, images.device)

        def flat(maps):
            return torch.cat([m.permute(0, 2, 3, 1).reshape(batch, -1, m.shape[1]) for m in maps], dim=1)

        stuff = self.criterion.memory.memory[: self.categories.num_stuff]
        return {
            "cls_logits": flat(head["cls_logits"]).float(),
            "box_reg": flat(head["box_reg"]).float(),
            "centerness": flat(head["centerness"])[..., 0].float(),
            "locations": points.expand(batch, -1, -1),
            "levels": levels.expand(batch, -1),
            "embeddings": embeddings.float(),
            "embedding_stride": torch.full((batch,), EMBEDDING_STRIDE, dtype=torch.int64),
            "stuff_queries": stuff.expand(batch, -1, -1),
        }

    def losses(self, images: torch.Tensor, targets: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        head, embeddings = self._forward(images)
        losses = ciae_detection_losses(head, targets, self.categories.num_things, self.config)
        seg = targets["segment_map"]
        if tuple(embeddings.shape[-2:]) != tuple(seg.shape[-2:]):
            embeddings = F.interpolate(embeddings, size=seg.shape[-2:], mode="bilinear", align_corners=False)
        ciae = self.criterion(embeddings.float(), seg, targets["category_map"], targets["segment_boxes"])
        losses["loss_ciae"] = ciae["loss_ciae"]
        return losses

    postprocess = staticmethod(ciae_postprocess)
    oracle_outputs = staticmethod(ciae_oracle_outputs)

