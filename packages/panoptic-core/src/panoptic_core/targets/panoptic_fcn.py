"""Panoptic FCN targets: per-level thing center heatmaps, stuff maps, instance masks, top-k positions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..data.structures import Categories, PanopticTarget
from .common import downsample_masks, draw_centernet_gaussian, gaussian_radius, segment_index_map

__all__ = ["PanopticFCNTargets", "guided_positions"]


class PanopticFCNTargets:
    """Targets of Panoptic FCN (Li et al., CVPR 2021), as its ``GenerateGT`` computes them.

    Things (non-crowd thing segments, box = COCO bbox as (x, y, x + w, y + h)):

    * ``instance_masks`` (ragged, Tensor[N, H/4, W/4]): bilinear downsampling of each mask
      to the feature encoder's resolution ``(int(H/4 + 0.5), int(W/4 + 0.5))``.
    * ``instance_classes`` (ragged, Tensor[N]): thing index of each instance.
    * level assignment: instance n goes to every level l whose ``instance_scales[l]`` range
      (inclusive; overlapping by default) holds sqrt(box area).
    * ``thing_heatmap[l]`` (Tensor[C_thing, Hl, Wl]): CenterNet Gaussians of the assigned
      instances at their mass centers (mean of the non-zero pixels of the 1/4 mask, scaled to
      the level and truncated), radius ``gaussian_radius`` of the box scaled to the level with
      ``min_overlap`` 0.7, sigma = (2r + 1) / ``sigma_factor`` (3).
    * ``level_instances[l]`` / ``level_centers[l]`` (ragged, Tensor[n_l]): indices of the
      assigned instances and the flat position ``y * Wl + x`` of their centers.

    Stuff (channel 0 merges all thing classes when ``with_thing``, as Panoptic FCN's stuff
    head does; then one channel per stuff class; VOID belongs to no channel):

    * ``stuff_masks`` (Tensor[C, H/4, W/4]): bilinear downsampling of the one-hot stuff map.
    * ``stuff_heatmap[l]`` (Tensor[C, Hl, Wl]): ``stuff_masks`` resized (bilinear) to the
      level, clamped at 1, values below 0.5 set to 0. A class is a stuff target of level l
      when its heatmap there is non-zero.

    Level sizes are ceil(H / stride) x ceil(W / stride) of the padded input. Everything is
    computed on the padded id map (padding is VOID), element for element what ``GenerateGT``
    gives for an image of the padded size (:func:`~panoptic_core.targets.panoptic_fcn_generate_gt`
    is that computation, kept for tests). Upstream resizes each image's unpadded maps and then
    pads with zeros, which differs only in the 1/4 pixels along the image's bottom and right edges
    when its size is not a multiple of 4. Instances whose mask vanishes at 1/4 get no center
    (upstream averages zero pixels into NaN).

    The per-level entries (``per_level``) are lists over ``strides``; ``level_instances`` and
    ``level_centers`` are also ragged, so a batch keeps one per-level list per image. Key
    meanings: :data:`~panoptic_core.targets.GLOSSARY`.
    """

    keys: frozenset[str] = frozenset(
        {
            "thing_heatmap",
            "stuff_heatmap",
            "level_instances",
            "level_centers",
            "instance_masks",
            "instance_classes",
            "stuff_masks",
        }
    )
    ragged: frozenset[str] = frozenset({"instance_masks", "instance_classes", "level_instances", "level_centers"})
    per_level: frozenset[str] = frozenset({"thing_heatmap", "stuff_heatmap", "level_instances", "level_centers"})

    def __init__(
        self,
        categories: Categories,
        strides: Sequence[int] = (8, 16, 32, 64, 128),
        instance_scales: Sequence[tuple[float, float]] = ((1, 64), (32, 128), (64, 256), (128, 512), (256, 2048)),
        min_overlap: float = 0.7,
        sigma_factor: float = 3.0,
        common_stride: int = 4,
        with_thing: bool = True,
    ) -> None:
        if len(strides) != len(instance_scales):
            raise ValueError(f"PanopticFCNTargets: {len(strides)} strides but {len(instance_scales)} scale ranges")
        self.categories = categories
        self.strides = tuple(int(s) for s in strides)
        self.instance_scales = tuple((float(a), float(b)) for a, b in instance_scales)
        self.min_overlap = min_overlap
        self.sigma_factor = sigma_factor
        self.common_stride = int(common_stride)
        self.with_thing = with_thing

    def __call__(self, target: PanopticTarget) -> dict[str, Any]:
        """The targets of one padded image.

        Args:
            target: the padded target (``ids`` Tensor[H, W] int64, 0 = VOID, and its segments).

        Returns:
            every key of ``keys``, as described above, also for an image without segments.
        """
        cats = self.categories
        height, width = target.ids.shape
        segs = target.segments
        index = segment_index_map(target.ids, segs)
        cs = self.common_stride
        new_h, new_w = int(height / cs + 0.5), int(width / cs + 0.5)

        # Stuff: one-hot (things merged into channel 0), bilinear to 1/4.
        channels = cats.num_stuff + int(self.with_thing)
        lut = torch.full((len(segs) + 1,), -1, dtype=torch.int64)
        for k, s in enumerate(segs):
            if s.isthing:
                lut[k] = 0 if self.with_thing else -1
            else:
                lut[k] = cats.stuff_index[s.class_index] + int(self.with_thing)
        sem = lut[torch.where(index < 0, len(segs), index)]
        stuff_masks = downsample_masks(sem, torch.arange(channels), (new_h, new_w))

        # Things.
        instances = [k for k, s in enumerate(segs) if s.isthing and not s.iscrowd]
        masks = downsample_masks(index, torch.tensor(instances, dtype=torch.int64), (new_h, new_w))
        classes = torch.tensor([cats.thing_index[segs[k].class_index] for k in instances], dtype=torch.int64)
        centers = []
        for m in masks:
            nz = torch.nonzero(m).float()
            centers.append(nz.mean(0)[[1, 0]] if len(nz) else torch.tensor([float("nan")] * 2))
        boxes = torch.tensor([segs[k].xyxy for k in instances], dtype=torch.float32).reshape(-1, 4)
        scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))

        out: dict[str, Any] = {"thing_heatmap": [], "stuff_heatmap": [], "level_instances": [], "level_centers": []}
        for stride, (lo, hi) in zip(self.strides, self.instance_scales, strict=True):
            hl, wl = math.ceil(height / stride), math.ceil(width / stride)
            heat = torch.zeros(cats.num_things, hl, wl)
            chosen = [n for n in range(len(instances)) if lo <= float(scale[n]) <= hi and bool(masks[n].any())]
            level_centers = []
            for n in chosen:
                # float32 products, truncated, as GenerateGT rescales its float32 centers
                cx, cy = (centers[n] * torch.tensor([wl / new_w, hl / new_h])).to(torch.int64).tolist()
                cx, cy = min(max(cx, 0), wl - 1), min(max(cy, 0), hl - 1)
                bw = (boxes[n, 2] - boxes[n, 0]) * (wl / width)
                bh = (boxes[n, 3] - boxes[n, 1]) * (hl / height)
                radius = int(max(float(gaussian_radius(bh, bw, self.min_overlap)), 0.0))
                draw_centernet_gaussian(heat[int(classes[n])], cx, cy, radius, self.sigma_factor)
                level_centers.append(cy * wl + cx)
            stuff = F.interpolate(stuff_masks[None], size=(hl, wl), mode="bilinear", align_corners=False)[0]
            stuff = stuff.clamp(max=1.0)
            stuff[stuff < 0.5] = 0.0
            out["thing_heatmap"].append(heat)
            out["stuff_heatmap"].append(stuff)
            out["level_instances"].append(torch.tensor(chosen, dtype=torch.int64))
            out["level_centers"].append(torch.tensor(level_centers, dtype=torch.int64))
        out["instance_masks"] = masks
        out["instance_classes"] = classes
        out["stuff_masks"] = stuff_masks
        return out


def guided_positions(
    heatmap_logits: torch.Tensor, instance_masks: torch.Tensor, classes: torch.Tensor, k: int = 7
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k positions of each instance used by Panoptic FCN's weighted dice (k = 7).

    Inside the instance's mask (resized bilinearly to the level, kept where > 0.1), the k
    positions with the highest predicted score of the instance's class; their scores are the
    dice weights (normalised in :func:`~panoptic_core.losses.weighted_dice_loss`). As upstream
    (``loss_single_level``), the weights are not detached: the dice gradient reaches the
    position head through them. Positions outside the mask have score 0 and may fill the k
    slots when fewer than k lie inside (their weight 0 removes them from the loss).

    A level with fewer than k positions (upstream's ``topk`` fails there) gets the remaining
    columns padded with position 0 and weight 0, so the result always has k columns.

    Args:
        heatmap_logits (Tensor[C_thing, Hl, Wl]): predicted thing heatmap logits of one level.
        instance_masks (Tensor[N, h, w]): the instances' masks (``instance_masks`` target).
        classes (Tensor[N]): their thing indices.
        k: positions per instance.

    Returns:
        (positions Tensor[N, k] int64 flat indices ``y * Wl + x``, weights Tensor[N, k]
        sigmoid scores, differentiable w.r.t. ``heatmap_logits``; 0 outside the mask).
    """
    hl, wl = heatmap_logits.shape[-2:]
    device = heatmap_logits.device
    if instance_masks.shape[0] == 0:
        empty = heatmap_logits.new_zeros(0, k)
        return torch.zeros(0, k, dtype=torch.int64, device=device), empty
    guide = F.interpolate(instance_masks[None].float(), size=(hl, wl), mode="bilinear", align_corners=False)[0]
    scores = heatmap_logits[classes].sigmoid()
    guided = torch.where(guide > 0.1, scores, torch.zeros((), dtype=scores.dtype, device=device))
    weights, positions = torch.topk(guided.reshape(len(classes), -1), k=min(k, hl * wl), dim=-1)
    if positions.shape[1] < k:
        pad = k - positions.shape[1]
        positions = F.pad(positions, (0, pad))
        weights = F.pad(weights, (0, pad))
    return positions, weights
