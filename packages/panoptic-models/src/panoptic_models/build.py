"""Build a method from its config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from panoptic_core.data import Categories

from .config import CIAEConfig, EfficientPSConfig, EINetConfig, PanopticDeepLabConfig, PanopticFCNConfig
from .meta_arch import CIAE, EfficientPS, EINet, PanopticDeepLab, PanopticFCN, PanopticModel

__all__ = ["CONFIGS", "METHODS", "build_model"]

# method name -> (config class, model class)
METHODS: dict[str, tuple[type, type[PanopticModel]]] = {
    "panoptic_deeplab": (PanopticDeepLabConfig, PanopticDeepLab),
    "ciae": (CIAEConfig, CIAE),
    "panoptic_fcn": (PanopticFCNConfig, PanopticFCN),
    "efficientps": (EfficientPSConfig, EfficientPS),
    "einet": (EINetConfig, EINet),
}
CONFIGS = {name: pair[0] for name, pair in METHODS.items()}


def build_model(config: Any, categories: Categories | Sequence[Mapping[str, Any]]) -> PanopticModel:
    """The model of a method config (e.g. ``PanopticDeepLabConfig.synthetic()``) for ``categories``."""
    for config_cls, model_cls in METHODS.values():
        if isinstance(config, config_cls):
            return model_cls(config, categories)
    known = ", ".join(c.__name__ for c, _ in METHODS.values())
    raise ValueError(f"build_model: unknown config type {type(config).__name__} (known: {known})")
