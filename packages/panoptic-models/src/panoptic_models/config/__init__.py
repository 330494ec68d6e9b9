"""Method configurations: one frozen dataclass per method (one module each), with the paper's defaults.

Every size a method's target generator and heads share (strides, ignore label, Gaussian sigma,
...) is a field of its config, defined once: each config's ``target_generator`` builds the
generator from the same values the model reads. ``from_dict`` maps a plain mapping (e.g. the
``model:`` section of a YAML file) onto a config and names the first unknown or ill-typed key.
"""

from .base import BackboneConfig, from_dict, to_dict
from .ciae import CIAEConfig
from .efficientps import EfficientPSConfig
from .einet import EINetConfig
from .panoptic_deeplab import PanopticDeepLabConfig
from .panoptic_fcn import PanopticFCNConfig

__all__ = [
    "BackboneConfig",
    "CIAEConfig",
    "EINetConfig",
    "EfficientPSConfig",
    "PanopticDeepLabConfig",
    "PanopticFCNConfig",
    "from_dict",
    "to_dict",
]
