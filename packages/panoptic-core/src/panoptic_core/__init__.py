"""panoptic_core: not built yet; see packages/panoptic-core/README.md."""

__version__ = "0.0.1"
