"""panoptic-eval: Panoptic Quality exactly as panopticapi computes it, faster and streaming.

Public API:
    pq_compute, evaluate          file-based evaluation (COCO panoptic JSON + PNG folders)
    PanopticQuality               streaming accumulator (numpy or torch id maps)
    rgb2id, id2rgb, read_id_png, write_id_png, write_panoptic_json   format helpers
    Category, parse_categories    COCO category list -> checked Category objects (id, name, isthing)
    PanopticEvalError             the error type (a ValueError)

Modules: ``panoptic_eval.converters`` (panopticapi's format converters and its semantic +
instance combination), ``panoptic_eval.visualize`` (overlay PNGs); ``metrics=("pq", "miou",
"ap")`` in pq_compute / PanopticQuality adds mIoU and mask AP (AP needs pycocotools).
"""

from .__about__ import __version__
from .categories import Category, parse_categories
from .errors import PanopticEvalError
from .evaluation import evaluate, pq_compute
from .formats import id2rgb, read_id_png, rgb2id, write_id_png, write_json_atomic, write_panoptic_json
from .metrics import bootstrap_ci, per_image_pq, summarize, summarize_pq_dagger
from .quality import PanopticQuality

__all__ = [
    "Category",
    "PanopticEvalError",
    "PanopticQuality",
    "__version__",
    "bootstrap_ci",
    "evaluate",
    "id2rgb",
    "parse_categories",
    "per_image_pq",
    "pq_compute",
    "read_id_png",
    "rgb2id",
    "summarize",
    "summarize_pq_dagger",
    "write_id_png",
    "write_json_atomic",
    "write_panoptic_json",
]
