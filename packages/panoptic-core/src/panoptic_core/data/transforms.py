"""Transforms applied to an image and its panoptic target together.

Every transform is a callable ``(image, target) -> (image, target)``. Images are
Tensor[3, H, W] (uint8 until :class:`Normalize`, float after); id maps are resized with
nearest neighbour so segment ids are never blended. Geometric transforms recompute areas and
boxes and drop segments that vanish. Randomness comes from torch's global generator, which
a DataLoader seeds differently in each worker.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .structures import PanopticTarget

__all__ = [
    "ColorJitter",
    "Compose",
    "Normalize",
    "PadToDivisible",
    "RandomCrop",
    "RandomHorizontalFlip",
    "ResizeShortestEdge",
    "resize_pair",
]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: PanopticTarget) -> tuple[torch.Tensor, PanopticTarget]:
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def resize_pair(
    image: torch.Tensor, target: PanopticTarget, size: tuple[int, int]
) -> tuple[torch.Tensor, PanopticTarget]:
    """Resize the image (bilinear, antialiased) and the id map (nearest) to ``size`` = (H, W)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image, target
    dtype = image.dtype
    resized = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    if dtype == torch.uint8:
        resized = resized.round_().clamp_(0, 255).to(torch.uint8)
    ids = F.interpolate(target.ids[None, None].double(), size=size, mode="nearest-exact")[0, 0].to(target.ids.dtype)
    return resized, target.refreshed(ids)


class ResizeShortestEdge:
    """Resize so the shorter side is ``short_edge * scale``, scale drawn uniformly from ``scale_range``.

    The longer side is capped at ``max_size`` (detectron2's ResizeShortestEdge with scale jitter,
    as Panoptic-DeepLab trains with scales 0.5-2.0).

    Args:
        short_edge: target length of the shorter side.
        scale_range: (min, max) jitter factor; (1, 1) for a fixed size.
        max_size: cap on the longer side (None: no cap).
    """

    def __init__(self, short_edge: int, scale_range: tuple[float, float] = (1.0, 1.0), max_size: int | None = None):
        if short_edge <= 0 or scale_range[0] <= 0 or scale_range[0] > scale_range[1]:
            raise ValueError(f"ResizeShortestEdge: bad short_edge={short_edge} / scale_range={scale_range}")
        self.short_edge, self.scale_range, self.max_size = short_edge, tuple(scale_range), max_size

    def output_size(self, height: int, width: int, scale: float) -> tuple[int, int]:
        target = self.short_edge * scale
        ratio = target / min(height, width)
        if self.max_size is not None and max(height, width) * ratio > self.max_size:
            ratio = self.max_size / max(height, width)
        return max(1, int(height * ratio + 0.5)), max(1, int(width * ratio + 0.5))

    def __call__(self, image, target):
        lo, hi = self.scale_range
        scale = lo + (hi - lo) * float(torch.rand(()))
        return resize_pair(image, target, self.output_size(*image.shape[-2:], scale))

    def __repr__(self) -> str:
        return f"ResizeShortestEdge({self.short_edge}, scale_range={self.scale_range}, max_size={self.max_size})"


class RandomCrop:
    """Crop a random ``size`` = (H, W) window; smaller images are padded (image ``fill``, ids VOID).

    Segments cut by the crop keep their ids; areas and boxes are recomputed and segments left
    with no pixel are dropped.
    """

    def __init__(self, size: tuple[int, int], fill: float = 0.0) -> None:
        self.size, self.fill = (int(size[0]), int(size[1])), fill

    def __call__(self, image, target):
        ch, cw = self.size
        h, w = image.shape[-2:]
        if h < ch or w < cw:
            image, target = _pad(image, target, max(ch, h), max(cw, w), self.fill)
            h, w = image.shape[-2:]
        y0 = int(torch.randint(0, h - ch + 1, ()))
        x0 = int(torch.randint(0, w - cw + 1, ()))
        ids = target.ids[y0 : y0 + ch, x0 : x0 + cw].contiguous()
        return image[:, y0 : y0 + ch, x0 : x0 + cw].contiguous(), target.refreshed(ids)


class RandomHorizontalFlip:
    """Mirror image and id map left-right with probability ``p``; boxes are mirrored, areas kept."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image, target):
        if float(torch.rand(())) >= self.p:
            return image, target
        width = image.shape[-1]
        segments = [dataclasses.replace(s, bbox=(width - s.bbox[0] - s.bbox[2], *s.bbox[1:])) for s in target.segments]
        return image.flip(-1), target.replace(ids=target.ids.flip(-1), segments=segments)


class ColorJitter:
    """Random brightness, contrast and saturation (factors drawn from [1 - x, 1 + x]); labels untouched."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2) -> None:
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    @staticmethod
    def _factor(x: float) -> float:
        return 1.0 + x * (2 * float(torch.rand(())) - 1) if x > 0 else 1.0

    def __call__(self, image, target):
        dtype = image.dtype
        img = image.float()
        img = img * self._factor(self.brightness)
        gray = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
        img = (img - gray.mean()) * self._factor(self.contrast) + gray.mean()
        gray = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
        img = (img - gray) * self._factor(self.saturation) + gray
        if dtype == torch.uint8:
            img = img.round_().clamp_(0, 255).to(torch.uint8)
        return img, target


class Normalize:
    """uint8 (or 0-255 float) image to float32 ``(x - mean) / std``, per channel."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image, target):
        return (image.float() - self.mean) / self.std, target


def _pad(image: torch.Tensor, target: PanopticTarget, height: int, width: int, fill: float):
    h, w = image.shape[-2:]
    image = F.pad(image, (0, width - w, 0, height - h), value=fill)
    ids = F.pad(target.ids, (0, width - w, 0, height - h), value=0)
    return image, target.replace(ids=ids)


class PadToDivisible:
    """Pad bottom and right so both sides are multiples of ``divisor`` (image ``fill``, ids VOID)."""

    def __init__(self, divisor: int = 32, fill: float = 0.0) -> None:
        self.divisor, self.fill = int(divisor), fill

    def __call__(self, image, target):
        h, w = image.shape[-2:]
        d = self.divisor
        return _pad(image, target, math.ceil(h / d) * d, math.ceil(w / d) * d, self.fill)
