"""File-based evaluation: a drop-in for panopticapi's ``pq_compute``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._image import parse_segments
from .categories import parse_categories
from .errors import PanopticEvalError
from .formats import ID_MASK, read_json, read_packed_png, resolve_in_folder
from .quality import PanopticQuality


def _default_folder(json_file: str | os.PathLike) -> str:
    # panopticapi: json_file.replace('.json', '')
    return str(json_file).replace(".json", "")


def _annotations(data: Any, *, what: str, path: Any) -> list[Mapping]:
    if not isinstance(data, Mapping) or not isinstance(data.get("annotations"), list):
        raise PanopticEvalError(f"{what} {path}: missing the 'annotations' list")
    anns = data["annotations"]
    seen: set = set()
    for k, ann in enumerate(anns):
        if not isinstance(ann, Mapping):
            raise PanopticEvalError(f"{what} {path}: annotations[{k}] must be an object")
        for key in ("image_id", "file_name", "segments_info"):
            if key not in ann:
                raise PanopticEvalError(f"{what} {path}: annotations[{k}] has no {key!r}")
        image_id = ann["image_id"]
        if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
            raise PanopticEvalError(f"{what} {path}: annotations[{k}] image_id must be an int or string")
        if image_id in seen:
            raise PanopticEvalError(f"{what} {path}: duplicate image_id {image_id!r}")
        seen.add(image_id)
    return anns


def _image_sizes(gt_json: Mapping) -> dict[Any, tuple[int, int]]:
    """image id -> (height, width) from the GT JSON's ``images`` (where both are integers).

    Only used to let PNGs above Pillow's decompression-bomb limit be read, so an id listed twice
    with different sizes announces no size (panopticapi ignores ``images``: no error here).
    """
    sizes: dict[Any, tuple[int, int] | None] = {}
    images = gt_json.get("images")
    for img in images if isinstance(images, list) else ():
        if isinstance(img, Mapping) and isinstance(img.get("id"), (int, str)):
            h, w = img.get("height"), img.get("width")
            if isinstance(h, int) and isinstance(w, int) and not isinstance(h, bool) and not isinstance(w, bool):
                size = (h, w)
                sizes[img["id"]] = size if sizes.get(img["id"], size) == size else None
    return {k: v for k, v in sizes.items() if v is not None}


def evaluate(
    gt_json_file: str | os.PathLike,
    pred_json_file: str | os.PathLike,
    gt_folder: str | os.PathLike | None = None,
    pred_folder: str | os.PathLike | None = None,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    metrics: Any = ("pq",),
) -> PanopticQuality:
    """Evaluate COCO panoptic files; returns the filled :class:`PanopticQuality`.

    Per-image statistics are kept, so :meth:`~PanopticQuality.per_image`,
    :meth:`~PanopticQuality.bootstrap` and :meth:`~PanopticQuality.compute_pq_dagger` work on it.

    Args:
        gt_json_file, pred_json_file: COCO panoptic JSON files.
        gt_folder, pred_folder: PNG folders; default to the JSON path without ``.json``,
            as panopticapi does.
        workers: threads decoding and counting images in parallel (default: CPU count).
            Results do not depend on it: per-image statistics are summed in GT order. Each
            worker holds about 10 bytes per pixel of the image it counts (GT and prediction maps
            and the counting arrays: ~600 MB for 8000 x 8000 PNGs); lower it when memory is short.
        progress: called as ``progress(done, total)`` after each image.
        metrics: any of ``"pq"``, ``"miou"``, ``"ap"``, counted from one decode of each PNG pair
            (see :class:`PanopticQuality`).

    Raises:
        PanopticEvalError: on any bad input, naming the file and image.
    """
    gt_json = read_json(gt_json_file, what="GT JSON")
    pred_json = read_json(pred_json_file, what="prediction JSON")
    gt_folder = _default_folder(gt_json_file) if gt_folder is None else gt_folder
    pred_folder = _default_folder(pred_json_file) if pred_folder is None else pred_folder
    for what, folder in (("GT", gt_folder), ("prediction", pred_folder)):
        if not os.path.isdir(folder):
            raise PanopticEvalError(f"{what} folder {folder} does not exist")
    if not isinstance(gt_json, Mapping) or "categories" not in gt_json:
        raise PanopticEvalError(f"GT JSON {gt_json_file}: missing the 'categories' list")
    categories = parse_categories(gt_json["categories"], where=f"GT JSON {gt_json_file}: categories")
    metric = PanopticQuality(categories, keep_per_image=True, sync_dist=False, metrics=metrics)
    gt_anns = _annotations(gt_json, what="GT JSON", path=gt_json_file)
    pred_by_image = {a["image_id"]: a for a in _annotations(pred_json, what="prediction JSON", path=pred_json_file)}
    pairs = []
    for gt_ann in gt_anns:
        pred_ann = pred_by_image.get(gt_ann["image_id"])
        if pred_ann is None:
            raise PanopticEvalError(
                f"image_id {gt_ann['image_id']!r}: no prediction in {pred_json_file}"
            )
        pairs.append((gt_ann, pred_ann))

    cat_index = metric.category_index
    gt_sizes = _image_sizes(gt_json)

    def one_image(pair: tuple[Mapping, Mapping]) -> tuple:
        try:
            return image_stats(pair)
        except MemoryError:
            raise PanopticEvalError(
                f"image_id {pair[0]['image_id']!r}: out of memory; each worker holds about 10 bytes per pixel of "
                f"the image it counts, so lower workers (now {workers}; CLI --workers)"
            ) from None

    def image_stats(pair: tuple[Mapping, Mapping]) -> tuple:
        gt_ann, pred_ann = pair
        where = f"image_id {gt_ann['image_id']!r}"
        gt_where, pred_where = f"{where} (GT {gt_json_file})", f"{where} (prediction {pred_json_file})"
        gt_path = resolve_in_folder(gt_folder, gt_ann["file_name"], where=gt_where)
        pred_path = resolve_in_folder(pred_folder, pred_ann["file_name"], where=pred_where)
        gt = parse_segments(gt_ann["segments_info"], cat_index, where=gt_where, is_gt=True, strict=True)
        pred = parse_segments(pred_ann["segments_info"], cat_index, where=pred_where, is_gt=False, strict=True,
                              scores="ap" in metric.metrics)
        gt_ids = read_packed_png(gt_path, image_label=f"{where} (GT)", expected_size=gt_sizes.get(gt_ann["image_id"]))
        pred_ids = read_packed_png(pred_path, image_label=f"{where} (prediction)", expected_size=gt_ids.shape)
        if gt_ids.shape != pred_ids.shape:
            raise PanopticEvalError(
                f"{where}: prediction PNG {pred_path} is {pred_ids.shape[1]}x{pred_ids.shape[0]} "
                f"(WxH) but GT PNG {gt_path} is {gt_ids.shape[1]}x{gt_ids.shape[0]}"
            )
        return metric.measure_image(gt_ids, gt, pred_ids, pred, void_id=0, where=f"{where} ({pred_path})",
                                    id_mask=int(ID_MASK))

    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise PanopticEvalError(f"workers must be a positive integer, got {workers!r}")
    workers = min(workers, max(1, len(pairs)))
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    interrupted = False
    try:
        results = pool.map(one_image, pairs) if pool is not None else map(one_image, pairs)
        for done, (pair, (stats, extras)) in enumerate(zip(pairs, results), 1):
            metric.add_image_stats(stats, image_id=pair[0]["image_id"], extras=extras)
            if progress:
                progress(done, len(pairs))
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if pool is not None:
            # On an error, drop the images not started yet instead of decoding them all; on
            # Ctrl-C do not wait either (the images being counted end with their thread).
            pool.shutdown(wait=not interrupted, cancel_futures=True)
    return metric


def pq_compute(
    gt_json_file: str | os.PathLike,
    pred_json_file: str | os.PathLike,
    gt_folder: str | os.PathLike | None = None,
    pred_folder: str | os.PathLike | None = None,
    *,
    workers: int | None = None,
    metrics: Any = ("pq",),
) -> dict:
    """Drop-in for panopticapi's ``pq_compute``: same arguments, return structure and numbers.

    ``metrics=("pq", "miou", "ap")`` adds top-level ``"mIoU"``, ``"per_class_iou"``, ``"AP"``,
    ``"AP50"``, ``"AP75"`` (see :meth:`PanopticQuality.compute`), the PQ part unchanged.

    Returns:
        ``{"All"|"Things"|"Stuff": {"pq", "sq", "rq", "n"}, "per_class": {cat_id: {"pq", "sq", "rq"}}}``,
        fractions in 0..1. Where a group has no category with TP + FP + FN > 0 (panopticapi
        raises ZeroDivisionError), its pq, sq and rq are 0.0 and n is 0.
    """
    return evaluate(gt_json_file, pred_json_file, gt_folder, pred_folder, workers=workers, metrics=metrics).compute()
