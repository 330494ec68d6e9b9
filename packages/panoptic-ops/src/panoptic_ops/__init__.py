"""panoptic-ops: compiled torch ops (CPU and CUDA) for panoptic segmentation post-processing.

Every op is registered as ``torch.ops.panoptic_ops.<name>`` (works under
``torch.compile(fullgraph=True)``); the functions here validate arguments and call them.
``panoptic_ops.reference`` holds a readable pure-torch implementation of each op.
Importing the package never needs the compiled library; calling an op without it raises an
error naming the command that builds it.
"""

from panoptic_ops import _library
from panoptic_ops.__about__ import __version__
from panoptic_ops.box_similarity import UNBOXED, box_filtered_assign, box_filtered_similarity, box_mask

if _library.load():
    from panoptic_ops import _registrations  # noqa: F401  (fake kernels and autograd of the registered ops)
from panoptic_ops.deeplab import (
    find_instance_center,
    get_panoptic_segmentation,
    get_panoptic_segmentation_per_image,
    group_pixels,
    merge_semantic_and_instance,
)
from panoptic_ops.fusion import kernel_fusion, matrix_nms
from panoptic_ops.nms import batched_nms, nms

__all__ = [
    "UNBOXED",
    "__version__",
    "batched_nms",
    "box_filtered_assign",
    "box_filtered_similarity",
    "box_mask",
    "find_instance_center",
    "get_panoptic_segmentation",
    "get_panoptic_segmentation_per_image",
    "group_pixels",
    "kernel_fusion",
    "matrix_nms",
    "merge_semantic_and_instance",
    "nms",
]
