"""Checks shared by the necks: feature names against a backbone's output shape, stride ladders."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch

from ..backbones.base import ShapeSpec


def select_features(input_shape: Mapping[str, ShapeSpec], in_features: Sequence[str], owner: str) -> list[ShapeSpec]:
    """The :class:`ShapeSpec` of each of ``in_features``, in order.

    Raises:
        ValueError: ``in_features`` is empty, a plain string, repeats a name, or names a feature
            missing from ``input_shape``.
    """
    if isinstance(in_features, str):
        raise ValueError(f"{owner}: in_features must be a sequence of names, got the string {in_features!r}")
    in_features = tuple(in_features)
    if not in_features:
        raise ValueError(f"{owner}: in_features is empty")
    if len(set(in_features)) != len(in_features):
        raise ValueError(f"{owner}: in_features repeats a name: {in_features}")
    missing = [f for f in in_features if f not in input_shape]
    if missing:
        raise ValueError(f"{owner}: in_features {missing} not in input_shape (available: {sorted(input_shape)})")
    return [input_shape[f] for f in in_features]


def check_log2_contiguous(strides: Sequence[int], owner: str, arg: str = "in_features") -> None:
    """Raise ValueError unless ``strides`` are powers of two, each twice the one before (e.g. 4, 8, 16, 32)."""
    for s in strides:
        if s < 1 or s & (s - 1):
            raise ValueError(f"{owner}: {arg} strides must be powers of two, got {list(strides)}")
    for a, b in itertools.pairwise(strides):
        if b != 2 * a:
            raise ValueError(
                f"{owner}: {arg} strides must be log2-contiguous, fine to coarse (each twice the one before), "
                f"got {list(strides)}"
            )


def require_features(features: Mapping[str, torch.Tensor], names: Sequence[str], owner: str) -> None:
    """Raise ValueError naming the entries of ``names`` absent from the ``features`` dict."""
    missing = [f for f in names if f not in features]
    if missing:
        raise ValueError(f"{owner}: features lacks {missing} (got {sorted(features)})")
