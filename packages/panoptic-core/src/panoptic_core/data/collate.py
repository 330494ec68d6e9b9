"""Batching: pad images and id maps to one size, record padding, generate method targets."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .structures import PanopticTarget

__all__ = ["PanopticBatch", "PanopticCollate", "stack_targets"]


@dataclass
class PanopticBatch:
    """A padded batch.

    Attributes:
        images (Tensor[B, 3, H, W]): images padded bottom/right with ``pad_value``.
        padding_mask (Tensor[B, H, W] bool): True on padded pixels.
        targets: per-image targets, id maps padded with VOID (0) to H x W.
        image_sizes: (h, w) of each image before padding.
        method_targets: the target generator's output (tensors stacked over the batch,
            per-level entries as lists of per-level Tensor[B, ...], per-image ragged entries
            as lists of length B), empty without a generator. Key names:
            :data:`panoptic_core.targets.GLOSSARY`.
    """

    images: torch.Tensor
    padding_mask: torch.Tensor
    targets: list[PanopticTarget]
    image_sizes: list[tuple[int, int]]
    method_targets: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.targets)

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> PanopticBatch:
        """A new batch with ``fn`` applied to every tensor (id maps and method targets included)."""

        def walk(x: Any) -> Any:
            if isinstance(x, torch.Tensor):
                return fn(x)
            if isinstance(x, list):
                return [walk(v) for v in x]
            if isinstance(x, tuple):
                return tuple(walk(v) for v in x)
            if isinstance(x, dict):
                return {k: walk(v) for k, v in x.items()}
            return x

        return PanopticBatch(
            fn(self.images),
            fn(self.padding_mask),
            [t.replace(ids=fn(t.ids)) for t in self.targets],
            list(self.image_sizes),
            walk(self.method_targets),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PanopticBatch:
        """The batch with every tensor on ``device``."""
        return self.apply(lambda x: x.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> PanopticBatch:
        """Called by DataLoader(pin_memory=True): every tensor in page-locked memory."""
        return self.apply(torch.Tensor.pin_memory)


def stack_targets(
    per_image: Sequence[dict[str, Any]],
    ragged: frozenset[str] = frozenset(),
    per_level: frozenset[str] | None = None,
) -> dict[str, Any]:
    """Batch per-image target dicts (the outputs of a target generator).

    Each key, in the order of the first image's dict, becomes:

    * ``ragged`` keys: the list of the images' values (per-level lists stay per image);
    * ``per_level`` keys: a list over levels of Tensor[B, ...], each level stacked;
    * other tensors: Tensor[B, ...] stacked along a new batch dim;
    * anything else: the list of the images' values.

    Args:
        per_image: one dict per image, all with the same keys.
        ragged: keys kept as per-image lists (the generator's ``ragged``).
        per_level: keys holding lists of per-level tensors (the generator's ``per_level``).
            ``None`` (a generator that does not declare it) infers them: values that are
            non-empty lists or tuples of tensors.

    Returns:
        the batched dict, same keys.

    Raises:
        ValueError: an image's dict lacks a key of the first one, or a declared per-level entry
            is not a list or tuple.
    """
    if not per_image:
        return {}
    out: dict[str, Any] = {}
    for key in per_image[0]:
        try:
            values = [d[key] for d in per_image]
        except KeyError:
            raise ValueError(f"stack_targets: {key!r} is missing from some images' targets") from None
        first = values[0]
        if key in ragged:
            out[key] = values
        elif per_level is not None and key in per_level:
            if not all(isinstance(v, (list, tuple)) for v in values):
                raise ValueError(f"stack_targets: {key!r} is declared per level but is not a list of tensors")
            out[key] = [torch.stack(level) for level in zip(*values, strict=True)]
        elif isinstance(first, torch.Tensor):
            out[key] = torch.stack(values)
        elif per_level is None and isinstance(first, (list, tuple)) and first and isinstance(first[0], torch.Tensor):
            out[key] = [torch.stack(level) for level in zip(*values, strict=True)]
        else:
            out[key] = values
    return out


class PanopticCollate:
    """``collate_fn`` for a DataLoader over ``(image, PanopticTarget)`` items.

    Pads every image and id map of the batch to the largest height and width, rounded up to
    ``size_divisibility``, then runs ``target_generator`` (if any) on each padded target, in
    the worker processes. Picklable, so it works with any number of workers.

    Args:
        size_divisibility: pad sizes up to a multiple of this (the backbone's largest stride).
        pad_value: value of padded image pixels (0 is the mean after :class:`Normalize`).
        target_generator: a :class:`~panoptic_core.targets.TargetGenerator`, or any callable
            ``PanopticTarget -> dict``. Its ``ragged`` keys stay per-image lists and its
            ``per_level`` keys are stacked level by level (see :func:`stack_targets`); a callable
            without ``per_level`` gets it inferred (lists of tensors), one without ``ragged``
            none. When it declares ``keys``, every image's dict must have exactly those.

    Raises:
        ValueError: on an empty batch, an id map whose size differs from its image's, or
            generator outputs whose keys differ from the declared ``keys``.
    """

    def __init__(
        self,
        size_divisibility: int = 32,
        pad_value: float = 0.0,
        target_generator: Callable[[PanopticTarget], dict[str, Any]] | None = None,
    ) -> None:
        self.size_divisibility = int(size_divisibility)
        self.pad_value = pad_value
        self.target_generator = target_generator

    def __call__(self, items: Sequence[tuple[torch.Tensor, PanopticTarget]]) -> PanopticBatch:
        if not items:
            raise ValueError("PanopticCollate: empty batch")
        d = max(1, self.size_divisibility)
        height = math.ceil(max(img.shape[-2] for img, _ in items) / d) * d
        width = math.ceil(max(img.shape[-1] for img, _ in items) / d) * d
        images, masks, targets, sizes = [], [], [], []
        for img, tgt in items:
            h, w = img.shape[-2:]
            if tuple(tgt.ids.shape) != (h, w):
                raise ValueError(
                    f"PanopticCollate: image {tgt.image_id!r} is {h}x{w} but its id map is "
                    f"{tgt.ids.shape[0]}x{tgt.ids.shape[1]}"
                )
            pad = (0, width - w, 0, height - h)
            images.append(F.pad(img, pad, value=self.pad_value))
            mask = torch.ones((height, width), dtype=torch.bool)
            mask[:h, :w] = False
            masks.append(mask)
            targets.append(tgt.replace(ids=F.pad(tgt.ids, pad, value=0)))
            sizes.append((int(h), int(w)))
        method_targets: dict[str, Any] = {}
        if self.target_generator is not None:
            gen = self.target_generator
            generated = [gen(t) for t in targets]
            keys = getattr(gen, "keys", None)
            if keys is not None:
                for t, out in zip(targets, generated, strict=True):
                    if set(out) != set(keys):
                        raise ValueError(
                            f"PanopticCollate: {type(gen).__name__} returned keys {sorted(out)} for image "
                            f"{t.image_id!r} but declares {sorted(keys)}"
                        )
            method_targets = stack_targets(
                generated, getattr(gen, "ragged", frozenset()), getattr(gen, "per_level", None)
            )
        return PanopticBatch(torch.stack(images), torch.stack(masks), targets, sizes, method_targets)
