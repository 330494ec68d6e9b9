"""Datasets, synthetic data, transforms and batching."""

from .coco_panoptic import CocoPanopticDataset, read_image
from .collate import PanopticBatch, PanopticCollate, stack_targets
from .structures import (
    Categories,
    PanopticTarget,
    Segment,
    SegmentMoments,
    lookup_segments,
    segment_moments,
    segment_stats,
)
from .synthetic import SyntheticConfig, make_synthetic_image, synthetic_categories, write_synthetic_dataset
from .transforms import (
    ColorJitter,
    Compose,
    Normalize,
    PadToDivisible,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    resize_pair,
)

__all__ = [
    "Categories",
    "CocoPanopticDataset",
    "ColorJitter",
    "Compose",
    "Normalize",
    "PadToDivisible",
    "PanopticBatch",
    "PanopticCollate",
    "PanopticTarget",
    "RandomCrop",
    "RandomHorizontalFlip",
    "ResizeShortestEdge",
    "Segment",
    "SegmentMoments",
    "SyntheticConfig",
    "lookup_segments",
    "make_synthetic_image",
    "read_image",
    "resize_pair",
    "segment_moments",
    "segment_stats",
    "stack_targets",
    "synthetic_categories",
    "write_synthetic_dataset",
]
