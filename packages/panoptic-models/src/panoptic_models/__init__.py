"""panoptic_models: not built yet; see packages/panoptic-models/README.md."""

__version__ = "0.0.1"
