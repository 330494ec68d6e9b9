"""What every method shares: categories, the batch contract, training vs inference dispatch."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from panoptic_core.data import Categories, PanopticBatch

from ..backbones.base import Backbone
from ..structures import PanopticResult

__all__ = ["PanopticModel", "as_categories"]


def as_categories(categories: Categories | Sequence[Mapping[str, Any]]) -> Categories:
    """Categories from a :class:`Categories` or COCO category dicts."""
    if isinstance(categories, Categories):
        return categories
    return Categories.from_list(categories)


class PanopticModel(nn.Module, metaclass=ABCMeta):
    """A panoptic method: a backbone, the method's necks and heads, its losses and inference.

    ``forward(batch)`` takes a :class:`~panoptic_core.data.PanopticBatch` whose images are
    normalised float tensors (the ``Normalize`` transform) padded by ``PanopticCollate``.

    * training: ``batch.method_targets`` must hold the output of :meth:`target_generator`
      (at least :attr:`target_keys`); returns a dict of scalar ``loss_*`` tensors.
    * eval: returns one :class:`~panoptic_models.structures.PanopticResult` per image, at
      ``output_sizes`` (default: each image's size before padding, ``batch.image_sizes``).

    Subclasses set :attr:`target_keys` and implement :meth:`predict`, :meth:`losses`,
    :meth:`postprocess` and :meth:`oracle_outputs` (the last two also serve ``examples/oracle.py``).
    """

    target_keys: ClassVar[frozenset[str]] = frozenset()
    backbone: Backbone

    def __init__(self, config: Any, categories: Categories | Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        self.config = config
        self.categories = as_categories(categories)
        if self.categories.num_classes == 0:
            raise ValueError("categories: a model needs at least one category")

    @property
    def size_divisibility(self) -> int:
        """Pad batches to multiples of this (``PanopticCollate(size_divisibility=...)``): the config's
        ``size_divisibility`` when positive (e.g. 640 for Panoptic-DeepLab on COCO), else the backbone's."""
        fixed = int(getattr(self.config, "size_divisibility", 0) or 0)
        return fixed if fixed > 0 else self.backbone.size_divisibility

    def target_generator(self):
        """The method's target generator, built from the same config values as the heads."""
        return self.config.target_generator(self.categories)

    def forward(
        self, batch: PanopticBatch, output_sizes: Sequence[tuple[int, int]] | None = None
    ) -> dict[str, torch.Tensor] | list[PanopticResult]:
        images = batch.images
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            raise ValueError(
                f"{type(self).__name__}: batch.images must be a float tensor of normalised images "
                f"(use the Normalize transform), got {getattr(images, 'dtype', type(images).__name__)}"
            )
        self.backbone.check_input(images)
        if self.training:
            missing = self.target_keys - set(batch.method_targets)
            if missing:
                raise ValueError(
                    f"{type(self).__name__}: batch.method_targets lacks {sorted(missing)}; collate the batch "
                    f"with PanopticCollate(target_generator=model.target_generator())"
                )
            return self.losses(images, batch.method_targets)
        sizes = list(batch.image_sizes)
        outputs = list(output_sizes) if output_sizes is not None else sizes
        if len(outputs) != len(sizes):
            raise ValueError(f"output_sizes: {len(outputs)} sizes for a batch of {len(sizes)} images")
        return self.inference(images, sizes, [(int(h), int(w)) for h, w in outputs])

    @abstractmethod
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network's head outputs for normalised images (Tensor[B, 3, H, W]), before post-processing."""

    @staticmethod
    @abstractmethod
    def postprocess(
        outputs: Mapping[str, torch.Tensor],
        image_size: tuple[int, int],
        output_size: tuple[int, int],
        categories: Categories,
        config: Any,
    ) -> PanopticResult:
        """One image's head outputs (at the padded input size) -> its result at ``output_size``."""

    @staticmethod
    @abstractmethod
    def oracle_outputs(targets: Mapping[str, Any], categories: Categories, config: Any) -> dict[str, torch.Tensor]:
        """The ideal head outputs of one image, from its (uncollated) targets: what :meth:`postprocess` takes."""

    @abstractmethod
    def losses(self, images: torch.Tensor, targets: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Training: ``{"loss_*": scalar}`` for normalised images (Tensor[B, 3, H, W]) and collated targets."""

    def inference(
        self, images: torch.Tensor, image_sizes: list[tuple[int, int]], output_sizes: list[tuple[int, int]]
    ) -> list[PanopticResult]:
        """Eval: one result per image; ``image_sizes`` are the unpadded sizes, ``output_sizes`` the sizes wanted.

        :meth:`predict` on the batch, then :meth:`postprocess` on each image's outputs (:meth:`image_outputs`).
        """
        outputs = self.predict(images)
        return [
            self.postprocess(self.image_outputs(outputs, b), image_size, output_size, self.categories, self.config)
            for b, (image_size, output_size) in enumerate(zip(image_sizes, output_sizes, strict=True))
        ]

    @staticmethod
    def image_outputs(outputs: Mapping[str, Any], index: int) -> dict[str, Any]:
        """Image ``index`` of batched head outputs: ``Tensor[B, ...]`` -> its row, a list of per-level
        ``Tensor[B, ...]`` -> the list of its rows. Methods with unbatched outputs override this."""
        return {k: v[index] if torch.is_tensor(v) else [x[index] for x in v] for k, v in outputs.items()}
