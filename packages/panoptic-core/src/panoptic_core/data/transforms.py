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
import numbers
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


def _int_arg(owner: str, name: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < low:
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _float_arg(owner: str, name: str, value: object, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}")
    out = float(value)
    if not (math.isfinite(out) and low <= out <= high):
        raise ValueError(f"{owner}: {name} must be a finite number in [{low}, {high}], got {value!r}")
    return out


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
        short_edge = _int_arg("ResizeShortestEdge", "short_edge", short_edge)
        if len(scale_range) != 2:
            raise ValueError(f"ResizeShortestEdge: scale_range must be (min, max), got {scale_range!r}")
        lo, hi = (_float_arg("ResizeShortestEdge", "scale_range", v, low=0.0) for v in scale_range)
        if lo <= 0 or lo > hi:
            raise ValueError(f"ResizeShortestEdge: scale_range must satisfy 0 < min <= max, got {scale_range!r}")
        if max_size is not None:
            max_size = _int_arg("ResizeShortestEdge", "max_size", max_size)
        self.short_edge, self.scale_range, self.max_size = short_edge, (lo, hi), max_size

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
        if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
            raise ValueError(f"RandomCrop: size must be (height, width), got {size!r}")
        self.size = (_int_arg("RandomCrop", "height", size[0]), _int_arg("RandomCrop", "width", size[1]))
        self.fill = _float_arg("RandomCrop", "fill", fill)

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
        self.p = _float_arg("RandomHorizontalFlip", "p", p, 0.0, 1.0)

    def __call__(self, image, target):
        if float(torch.rand(())) >= self.p:
            return image, target
        width = image.shape[-1]
        segments = [dataclasses.replace(s, bbox=(width - s.bbox[0] - s.bbox[2], *s.bbox[1:])) for s in target.segments]
        return image.flip(-1), target.replace(ids=target.ids.flip(-1), segments=segments)


class ColorJitter:
    """Random brightness, contrast and saturation (factors drawn from [1 - x, 1 + x]); labels untouched."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2) -> None:
        # Factors 1 +- x stay >= 0 for x <= 1.
        self.brightness, self.contrast, self.saturation = (
            _float_arg("ColorJitter", name, v, 0.0, 1.0)
            for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation))
        )

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
        mean = [_float_arg("Normalize", "mean", v) for v in mean]
        std = [_float_arg("Normalize", "std", v) for v in std]
        if len(mean) != len(std) or not mean or min(std) <= 0:
            raise ValueError(f"Normalize: mean and std need one entry per channel and std > 0, got {mean} / {std}")
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
        self.divisor = _int_arg("PadToDivisible", "divisor", divisor)
        self.fill = _float_arg("PadToDivisible", "fill", fill)

    def __call__(self, image, target):
        h, w = image.shape[-2:]
        d = self.divisor
        return _pad(image, target, math.ceil(h / d) * d, math.ceil(w / d) * d, self.fill)
