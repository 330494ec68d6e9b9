"""panoptic-ops: compiled torch ops (CPU and CUDA) for panoptic segmentation post-processing.

Every op is registered as ``torch.ops.panoptic_ops.<name>`` (works under
``torch.compile(fullgraph=True)``); the functions here validate arguments and call them.
``panoptic_ops.reference`` holds a readable pure-torch implementation of each op.
"""

from panoptic_ops.__about__ import __version__
from panoptic_ops._library import load as _load

_load()

from panoptic_ops import _registrations  # noqa: E402,F401  (fake kernels and autograd)
from panoptic_ops.deeplab import (  # noqa: E402
    find_instance_center,
    get_panoptic_segmentation,
    get_panoptic_segmentation_batched,
    group_pixels,
    merge_semantic_and_instance,
)
from panoptic_ops.nms import batched_nms, kernel_fusion, matrix_nms, nms  # noqa: E402
from panoptic_ops.similarity import UNBOXED, box_filtered_assign, box_filtered_similarity, box_mask  # noqa: E402

__all__ = [
    "UNBOXED",
    "__version__",
    "batched_nms",
    "box_filtered_assign",
    "box_filtered_similarity",
    "box_mask",
    "find_instance_center",
    "get_panoptic_segmentation",
    "get_panoptic_segmentation_batched",
    "group_pixels",
    "kernel_fusion",
    "matrix_nms",
    "merge_semantic_and_instance",
    "nms",
]
