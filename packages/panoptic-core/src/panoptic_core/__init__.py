"""panoptic-core: datasets, synthetic data, transforms, target generators and losses.

Subpackages:
    panoptic_core.data      CocoPanopticDataset, synthetic dataset writer, transforms, PanopticCollate
    panoptic_core.targets   one target generator per method (Panoptic-DeepLab, CIAE, Panoptic FCN, SOLOv2, EINet)
    panoptic_core.losses    loss functions and modules, the CIAE loss with its category memory
"""

from .__about__ import __version__
from .errors import DatasetError

__all__ = ["DatasetError", "__version__"]
