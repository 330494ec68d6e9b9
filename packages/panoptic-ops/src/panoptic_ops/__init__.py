"""panoptic_ops: not built yet; see packages/panoptic-ops/README.md."""

__version__ = "0.0.1"
