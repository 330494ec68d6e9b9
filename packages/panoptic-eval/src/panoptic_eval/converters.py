"""panopticapi's format converters and its semantic + instance combination, parallel and atomic.

Each function produces what the panopticapi script of the same name produces on the same input
(cocodataset/panopticapi: ``converters/*.py``, ``combine_semantic_and_instance_predictions.py``,
``cityscapes_gt_converter/cityscapes_panoptic_converter.py``), with these differences, all
written down in the package README:

- segment ids of the second and later thing segments of a category in an image are
  panopticapi's random jitter of the category colour; here the draws come from a generator
  seeded with ``(seed, image index)``, so outputs are reproducible and do not depend on the
  number of workers; panopticapi also shares one id generator per process over many images,
  here there is one per image (ids are unique within each image, as the format requires);
- (0, 0, 0) is never handed out as a thing colour (panopticapi's generator could, making a
  segment VOID);
- bad input (a missing or unreadable file, an unknown category, overlapping segments in
  detection-to-coco) is one :class:`PanopticEvalError` naming the file and image, and nothing
  is written for a failed run's JSON; every file is written through a temporary file and a rename.

pycocotools (``pip install 'panoptic-eval[coco]'``) is needed where RLEs are read or written.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import UnidentifiedImageError

from ._rle import column_runs, segment_rles
from .categories import parse_categories
from .errors import PanopticEvalError
from .formats import open_image, read_id_png, read_json, write_id_png, write_json_atomic, write_png_atomic

__all__ = [
    "CITYSCAPES_CATEGORIES",
    "IdGenerator",
    "cityscapes_to_coco",
    "coco_to_detection",
    "coco_to_semantic",
    "combine_semantic_and_instance_predictions",
    "detection_to_coco",
    "two_channels_to_coco",
]

OFFSET_2CH = 1000  # panopticapi's 2-channel converter: pan = 1000 * semantic + instance
OTHER_CLASS_ID = 183  # panoptic2semantic_segmentation --things_other
_JITTER = 30

# cityscapesScripts' labels with ignoreInEval False: (id, name, color, category, hasInstances).
CITYSCAPES_CATEGORIES = [
    {"id": i, "name": n, "color": list(c), "supercategory": s, "isthing": int(t)}
    for i, n, c, s, t in [
        (7, "road", (128, 64, 128), "flat", False), (8, "sidewalk", (244, 35, 232), "flat", False),
        (11, "building", (70, 70, 70), "construction", False), (12, "wall", (102, 102, 156), "construction", False),
        (13, "fence", (190, 153, 153), "construction", False), (17, "pole", (153, 153, 153), "object", False),
        (19, "traffic light", (250, 170, 30), "object", False), (20, "traffic sign", (220, 220, 0), "object", False),
        (21, "vegetation", (107, 142, 35), "nature", False), (22, "terrain", (152, 251, 152), "nature", False),
        (23, "sky", (70, 130, 180), "sky", False), (24, "person", (220, 20, 60), "human", True),
        (25, "rider", (255, 0, 0), "human", True), (26, "car", (0, 0, 142), "vehicle", True),
        (27, "truck", (0, 0, 70), "vehicle", True), (28, "bus", (0, 60, 100), "vehicle", True),
        (31, "train", (0, 80, 100), "vehicle", True), (32, "motorcycle", (0, 0, 230), "vehicle", True),
        (33, "bicycle", (119, 11, 32), "vehicle", True),
    ]
]


# ---------------------------------------------------------------------------- helpers
def _mask_utils():
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise PanopticEvalError(
            "this conversion reads or writes RLEs and needs pycocotools: pip install 'panoptic-eval[coco]'"
        ) from None
    return mask_utils


def read_categories(path: str | os.PathLike, *, need_color: bool = True) -> tuple[list[dict], dict[int, dict]]:
    """A panoptic categories JSON (a list of ``id``, ``isthing``, ``color`` dicts) -> (list, by id)."""
    data = read_json(path, what="categories JSON")
    if isinstance(data, Mapping) and isinstance(data.get("categories"), list):
        data = data["categories"]
    if not isinstance(data, list):
        raise PanopticEvalError(f"categories JSON {path}: expected a list of categories")
    parse_categories(data, where=f"categories JSON {path}: categories")
    by_id: dict[int, dict] = {}
    for cat in data:
        if need_color:
            _check_color(cat.get("color"), where=f"categories JSON {path}: category {cat['id']}")
        by_id[cat["id"]] = dict(cat)
    return list(data), by_id


def _check_color(color: Any, *, where: str) -> None:
    ok = isinstance(color, (list, tuple)) and len(color) == 3
    if not ok or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in color):
        raise PanopticEvalError(f"{where}: 'color' must be three integers in 0..255, got {color!r}")


def _rgb_id(color: Sequence[int]) -> int:
    return int(color[0]) + 256 * int(color[1]) + 256 * 256 * int(color[2])


class IdGenerator:
    """panopticapi's ``IdGenerator``: segment ids whose RGB colour is near the category colour.

    A stuff segment gets its category colour; the first thing segment of a category gets the
    category colour if no stuff category uses it, every later one a colour drawn uniformly within
    +-30 per channel of it (clipped to 0..255) that is not taken yet, as panopticapi draws it
    (``randint(-30, 31, size=3)``), here from ``rng``.

    Args:
        categories: {category id: dict with ``isthing`` and ``color``}.
        rng: the generator of the jitter (``np.random.RandomState``).
    """

    def __init__(self, categories: Mapping[int, Mapping], rng: np.random.RandomState) -> None:
        self.categories = categories
        self.rng = rng
        self.taken: set[tuple[int, int, int]] = {(0, 0, 0)}
        for cat in categories.values():
            if cat["isthing"] == 0:
                self.taken.add(tuple(int(v) for v in cat["color"]))

    def color(self, cat_id: int) -> tuple[int, int, int]:
        cat = self.categories[cat_id]
        base = tuple(int(v) for v in cat["color"])
        if cat["isthing"] == 0:
            return base
        if base not in self.taken:
            self.taken.add(base)
            return base
        while True:
            jitter = self.rng.randint(low=-_JITTER, high=_JITTER + 1, size=3)
            color = tuple(int(v) for v in np.clip(np.array(base) + jitter, 0, 255))
            if color not in self.taken:
                self.taken.add(color)
                return color

    def id_and_color(self, cat_id: int) -> tuple[int, tuple[int, int, int]]:
        color = self.color(cat_id)
        return _rgb_id(color), color


def _png_name(file_name: Any, *, where: str) -> str:
    # panopticapi: '{}.png'.format(file_name.rsplit('.')[0]) -- the part before the first dot.
    if not isinstance(file_name, str) or not file_name:
        raise PanopticEvalError(f"{where}: file_name must be a non-empty string, got {file_name!r}")
    return f"{file_name.rsplit('.')[0]}.png"


def _read_array(path: str, *, where: str) -> np.ndarray:
    try:
        with open_image(path, where=where) as img:
            return np.array(img, dtype=np.uint32)
    except FileNotFoundError:
        raise PanopticEvalError(f"{where}: {path}: PNG file not found") from None
    except UnidentifiedImageError:
        raise PanopticEvalError(f"{where}: {path}: unreadable, not an image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PanopticEvalError(f"{where}: {path}: unreadable or truncated image ({exc})") from None


def _inside(folder: str, name: str, *, where: str) -> str:
    if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        raise PanopticEvalError(f"{where}: file name {name!r} leaves its folder {folder}")
    return os.path.join(folder, name)


def _make_folder(folder: str | os.PathLike) -> str:
    folder = os.fspath(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise PanopticEvalError(f"output folder {folder}: cannot create it ({exc})") from None
    return folder


def _parallel(fn: Callable[[int, Any], Any], items: Sequence[Any], workers: int | None, *, what: str) -> list:
    """``[fn(k, item)]`` in order, over a thread pool (PNG coding and numpy release the GIL).

    A malformed entry (a missing key, a wrong type) becomes a PanopticEvalError naming
    ``what[k]`` (e.g. the JSON file and list).
    """

    def guarded(k: int, item: Any) -> Any:
        try:
            return fn(k, item)
        except PanopticEvalError:
            raise
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise PanopticEvalError(f"{what}[{k}]: malformed entry ({type(exc).__name__}: {exc})") from None

    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise PanopticEvalError(f"workers must be a positive integer, got {workers!r}")
    workers = min(workers, max(1, len(items)))
    if workers == 1:
        return [guarded(k, item) for k, item in enumerate(items)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(guarded, k, item) for k, item in enumerate(items)]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _rng(seed: int, index: int) -> np.random.RandomState:
    return np.random.RandomState([seed & 0xFFFFFFFF, index])


def _list_of(data: Any, key: str, *, what: str, path: Any) -> list:
    if not isinstance(data, Mapping) or not isinstance(data.get(key), list):
        raise PanopticEvalError(f"{what} {path}: missing the {key!r} list")
    return data[key]


def _encode_segments(ids: np.ndarray, seg_ids: Sequence[int]) -> list[dict]:
    """COCO RLEs (counts as str) of ``ids == seg_id`` for each seg_id, from one pass over the map."""
    mask_utils = _mask_utils()
    h, w = ids.shape
    seg_arr = np.asarray(list(seg_ids), dtype=np.int64)
    starts, ends, values = column_runs([ids])
    rles = segment_rles(starts, ends, values[0], seg_arr, np.ones(len(seg_arr), bool), h * w)
    encoded = mask_utils.frPyObjects([{"size": [h, w], "counts": rles[k]} for k in range(len(seg_arr))], h, w)
    for rle in encoded:
        rle["counts"] = rle["counts"].decode("utf8")
    return encoded


# ---------------------------------------------------------------------------- converters
def two_channels_to_coco(
    source_folder: str | os.PathLike,
    images_json_file: str | os.PathLike,
    categories_json_file: str | os.PathLike,
    segmentations_folder: str | os.PathLike | None,
    predictions_json_file: str | os.PathLike,
    *,
    void: int = 0,
    workers: int | None = None,
    seed: int = 0,
) -> dict:
    """2-channel PNGs (channel 0 semantic class, channel 1 instance id) -> COCO panoptic.

    panopticapi ``converters/2channels2panoptic_coco_format.py``: every distinct
    ``1000 * semantic + instance`` value whose semantic class is not ``void`` is one segment, in
    increasing value order; the images JSON is written back with ``annotations`` added.

    Returns:
        The written JSON document.
    """
    source_folder = os.fspath(source_folder)
    d_coco = read_json(images_json_file, what="images JSON")
    images = _list_of(d_coco, "images", what="images JSON", path=images_json_file)
    _, categories = read_categories(categories_json_file)
    if segmentations_folder is None:
        segmentations_folder = os.fspath(predictions_json_file).rsplit(".", 1)[0]
    out_folder = _make_folder(segmentations_folder)

    def one(k: int, image: Mapping) -> dict:
        where = f"image id {image.get('id')!r} ({images_json_file})"
        file_name = _png_name(image.get("file_name"), where=where)
        path = _inside(source_folder, file_name, where=where)
        original = _read_array(path, where=where)
        if original.ndim != 3 or original.shape[2] < 2:
            raise PanopticEvalError(f"{where}: {path}: expected a PNG with at least 2 channels, got {original.shape}")
        pan = OFFSET_2CH * original[:, :, 0] + original[:, :, 1]
        ids = np.zeros(pan.shape, dtype=np.uint32)
        generator = IdGenerator(categories, _rng(seed, k))
        values, inverse = np.unique(pan, return_inverse=True)
        lut = np.zeros(len(values), dtype=np.uint32)
        segments = []
        for j, value in enumerate(values.tolist()):
            sem = value // OFFSET_2CH
            if sem == void:
                continue
            if sem not in categories:
                raise PanopticEvalError(f"{where}: {path}: unknown semantic label {sem}")
            lut[j], _ = generator.id_and_color(sem)
            segments.append({"id": int(lut[j]), "category_id": int(sem)})
        ids = lut[inverse.reshape(pan.shape)]
        write_id_png(os.path.join(out_folder, file_name), ids)
        return {"image_id": image.get("id"), "file_name": file_name, "segments_info": segments}

    d_coco = dict(d_coco)
    d_coco["annotations"] = _parallel(one, images, workers, what=f"images JSON {images_json_file}: images")
    write_json_atomic(predictions_json_file, d_coco, indent=None)
    return d_coco


def coco_to_detection(
    input_json_file: str | os.PathLike,
    segmentations_folder: str | os.PathLike | None,
    output_json_file: str | os.PathLike,
    categories_json_file: str | os.PathLike,
    *,
    things_only: bool = False,
    workers: int | None = None,
) -> dict:
    """COCO panoptic -> COCO detection (one RLE annotation per segment).

    panopticapi ``converters/panoptic2detection_coco_format.py``: every segment (things only
    with ``things_only``) becomes an annotation with its segments_info fields, ``image_id`` and
    an RLE ``segmentation``; annotation ids count from 0; the input's categories lose
    ``isthing`` and ``color``.
    """
    d_coco = read_json(input_json_file, what="panoptic JSON")
    annotations = _list_of(d_coco, "annotations", what="panoptic JSON", path=input_json_file)
    _, categories = read_categories(categories_json_file, need_color=False)
    if segmentations_folder is None:
        segmentations_folder = os.fspath(input_json_file).rsplit(".", 1)[0]
    folder = os.fspath(segmentations_folder)

    def one(k: int, ann: Mapping) -> list[dict]:
        where = f"image_id {ann.get('image_id')!r} ({input_json_file})"
        file_name = _png_name(ann.get("file_name"), where=where)
        pan = read_id_png(_inside(folder, file_name, where=where), image_label=where)
        segments = []
        for seg in ann.get("segments_info", []):
            cat = categories.get(seg.get("category_id"))
            if cat is None:
                raise PanopticEvalError(f"{where}: segment {seg.get('id')!r} has unknown category_id "
                                        f"{seg.get('category_id')!r} (not in {categories_json_file})")
            if things_only and cat["isthing"] != 1:
                continue
            segments.append(seg)
        rles = _encode_segments(pan, [s["id"] for s in segments])
        out = []
        for seg, rle in zip(segments, rles):
            record = {key: value for key, value in seg.items() if key != "id"}
            record["image_id"] = ann.get("image_id")
            record["segmentation"] = rle
            out.append(record)
        return out

    detections = [rec for per_image in _parallel(one, annotations, workers,
                                                 what=f"panoptic JSON {input_json_file}: annotations")
                  for rec in per_image]
    for idx, rec in enumerate(detections):
        rec["id"] = idx
    out_cats = []
    for cat in d_coco.get("categories", []):
        if things_only and cat.get("isthing") != 1:
            continue
        out_cats.append({key: value for key, value in cat.items() if key not in ("isthing", "color")})
    d_coco = dict(d_coco)
    d_coco["annotations"] = detections
    d_coco["categories"] = out_cats
    write_json_atomic(output_json_file, d_coco, indent=None)
    return d_coco


def detection_to_coco(
    input_json_file: str | os.PathLike,
    segmentations_folder: str | os.PathLike | None,
    output_json_file: str | os.PathLike,
    categories_json_file: str | os.PathLike,
    *,
    workers: int | None = None,
    seed: int = 0,
) -> dict:
    """COCO detection (polygons or RLEs, non-overlapping) -> COCO panoptic.

    panopticapi ``converters/detection2panoptic_coco_format.py``: per image (in the order of
    ``images``), each annotation (in file order) becomes a segment painted with its id; its
    fields stay in segments_info, less ``segmentation`` and ``image_id``, with ``id`` the segment
    id. Overlapping annotations are an error (naming the image and the annotations).
    """
    mask_utils = _mask_utils()
    d_coco = read_json(input_json_file, what="detection JSON")
    images = _list_of(d_coco, "images", what="detection JSON", path=input_json_file)
    anns = _list_of(d_coco, "annotations", what="detection JSON", path=input_json_file)
    categories_list, categories = read_categories(categories_json_file)
    if segmentations_folder is None:
        segmentations_folder = os.fspath(output_json_file).rsplit(".", 1)[0]
    out_folder = _make_folder(segmentations_folder)
    by_image: dict[Any, list] = {}
    for ann in anns:
        by_image.setdefault(ann.get("image_id") if isinstance(ann, Mapping) else None, []).append(ann)

    def one(k: int, img: Mapping) -> dict:
        where = f"image id {img.get('id')!r} ({input_json_file})"
        height, width = img.get("height"), img.get("width")
        if not all(isinstance(v, int) and v > 0 for v in (height, width)):
            raise PanopticEvalError(f"{where}: height and width must be positive integers")
        file_name = _png_name(img.get("file_name"), where=where)
        ids = np.zeros((height, width), dtype=np.uint32)
        owner = np.full((height, width), -1, dtype=np.int64)
        generator = IdGenerator(categories, _rng(seed, k))
        segments = []
        for j, ann in enumerate(by_image.get(img.get("id"), [])):
            if ann.get("category_id") not in categories:
                raise PanopticEvalError(f"{where}: annotation {ann.get('id')!r} has category_id "
                                        f"{ann.get('category_id')!r}, not in {categories_json_file}")
            segment_id, _ = generator.id_and_color(ann["category_id"])
            mask = _ann_to_mask(mask_utils, ann, height, width, where=where) == 1
            clash = owner[mask]
            if (clash >= 0).any():
                other = by_image[img.get("id")][int(clash[clash >= 0][0])]
                raise PanopticEvalError(f"{where}: annotations {other.get('id')!r} and {ann.get('id')!r} overlap; "
                                        "panoptic segments must not")
            owner[mask] = j
            ids[mask] = segment_id
            record = {key: value for key, value in ann.items() if key not in ("segmentation", "image_id")}
            record["id"] = segment_id
            segments.append(record)
        write_id_png(_inside(out_folder, file_name, where=where), ids)
        return {"image_id": img.get("id"), "file_name": file_name, "segments_info": segments}

    d_coco = dict(d_coco)
    d_coco["annotations"] = _parallel(one, images, workers, what=f"detection JSON {input_json_file}: images")
    d_coco["categories"] = categories_list
    write_json_atomic(output_json_file, d_coco, indent=None)
    return d_coco


def _ann_to_mask(mask_utils, ann: Mapping, height: int, width: int, *, where: str) -> np.ndarray:
    """pycocotools ``COCO.annToMask``: polygons, uncompressed or compressed RLE -> uint8[H, W]."""
    segm = ann.get("segmentation")
    try:
        if isinstance(segm, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
        elif isinstance(segm, Mapping) and isinstance(segm.get("counts"), list):
            rle = mask_utils.frPyObjects(segm, height, width)
        elif isinstance(segm, Mapping) and "counts" in segm:
            rle = segm
        else:
            raise TypeError("no polygon or RLE")
        mask = mask_utils.decode(rle)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise PanopticEvalError(
            f"{where}: annotation {ann.get('id')!r} has an unreadable segmentation ({exc})"
        ) from None
    if mask.shape != (height, width):
        raise PanopticEvalError(f"{where}: annotation {ann.get('id')!r} segmentation is {mask.shape[1]}x"
                                f"{mask.shape[0]}, the image {width}x{height}")
    return mask


def coco_to_semantic(
    input_json_file: str | os.PathLike,
    segmentations_folder: str | os.PathLike | None,
    categories_json_file: str | os.PathLike,
    *,
    output_json_file: str | os.PathLike | None = None,
    semantic_seg_folder: str | os.PathLike | None = None,
    save_with_color: bool = False,
    things_other: bool = False,
    workers: int | None = None,
) -> dict | None:
    """COCO panoptic -> semantic segmentation, as PNGs or as a COCO-stuff style RLE JSON.

    panopticapi ``converters/panoptic2semantic_segmentation.py``: all segments of one category
    in an image become one region; with ``things_other`` every thing category becomes category
    183 ("other"). PNG output (``semantic_seg_folder``): uint8 category ids (0 where no segment),
    or category colours with ``save_with_color``. JSON output (``output_json_file``): one
    annotation per image and category (first appearance order) with a merged RLE, ``area``,
    ``bbox``, ``iscrowd`` 0, ids from 0. Exactly one of the two outputs must be given.
    """
    if (output_json_file is None) == (semantic_seg_folder is None):
        raise PanopticEvalError("give exactly one of output_json_file (COCO JSON) and semantic_seg_folder (PNGs)")
    d_coco = read_json(input_json_file, what="panoptic JSON")
    annotations = _list_of(d_coco, "annotations", what="panoptic JSON", path=input_json_file)
    categories_list, categories = read_categories(categories_json_file, need_color=save_with_color)
    colors = {}
    for cat in categories_list:  # panopticapi's cat_id2rgb: the first entry of an id wins
        colors.setdefault(cat["id"], cat.get("color"))
    if segmentations_folder is None:
        segmentations_folder = os.fspath(input_json_file).rsplit(".", 1)[0]
    folder = os.fspath(segmentations_folder)
    mask_utils = None if output_json_file is None else _mask_utils()
    out_folder = None if semantic_seg_folder is None else _make_folder(semantic_seg_folder)

    def one(k: int, ann: Mapping) -> list[dict]:
        where = f"image_id {ann.get('image_id')!r} ({input_json_file})"
        file_name = ann.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise PanopticEvalError(f"{where}: file_name must be a non-empty string, got {file_name!r}")
        pan = read_id_png(_inside(folder, file_name, where=where), image_label=where)
        cat_of: list[int] = []
        for seg in ann.get("segments_info", []):
            cat_id = seg.get("category_id")
            if cat_id not in categories:
                raise PanopticEvalError(f"{where}: segment {seg.get('id')!r} has unknown category_id {cat_id!r} "
                                        f"(not in {categories_json_file})")
            if things_other and categories[cat_id]["isthing"] == 1:
                cat_id = OTHER_CLASS_ID
            cat_of.append(cat_id)
        segs = ann.get("segments_info", [])
        if out_folder is not None:
            if save_with_color:
                semantic = np.zeros((*pan.shape, 3), dtype=np.uint8)
            else:
                semantic = np.zeros(pan.shape, dtype=np.uint8)
            for seg, cat_id in zip(segs, cat_of):
                if save_with_color:
                    if colors.get(cat_id) is None:
                        raise PanopticEvalError(f"{where}: category {cat_id} has no colour in {categories_json_file}")
                    value = colors[cat_id]
                else:
                    value = cat_id
                semantic[pan == seg["id"]] = value
            write_png_atomic(_inside(out_folder, file_name, where=where), semantic)
            return []
        rles = _encode_segments(pan, [s["id"] for s in segs])
        per_cat: dict[int, list] = {}
        for rle, cat_id in zip(rles, cat_of):
            per_cat.setdefault(cat_id, []).append(rle)
        records = []
        for cat_id, rle_list in per_cat.items():
            rle = rle_list[0] if len(rle_list) == 1 else mask_utils.merge(rle_list)
            if isinstance(rle["counts"], bytes):
                rle = {"size": rle["size"], "counts": rle["counts"].decode("utf8")}
            records.append({"image_id": ann.get("image_id"), "category_id": cat_id, "segmentation": rle,
                            "area": int(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                            "iscrowd": 0})
        return records

    results = _parallel(one, annotations, workers, what=f"panoptic JSON {input_json_file}: annotations")
    if output_json_file is None:
        return None
    records = [rec for per_image in results for rec in per_image]
    for idx, rec in enumerate(records):
        rec["id"] = idx
    out_cats = []
    for cat in categories_list:
        if things_other and cat["isthing"] == 1:
            continue
        out_cats.append({key: value for key, value in cat.items() if key not in ("isthing", "color")})
    if things_other:
        out_cats.append({"id": OTHER_CLASS_ID, "name": "other", "supercategory": "other"})
    d_coco = dict(d_coco)
    d_coco["annotations"] = records
    d_coco["categories"] = out_cats
    write_json_atomic(output_json_file, d_coco, indent=None)
    return d_coco


def cityscapes_to_coco(
    original_format_folder: str | os.PathLike,
    out_folder: str | os.PathLike,
    out_file: str | os.PathLike,
    *,
    workers: int | None = None,
    seed: int = 0,
) -> dict:
    """Cityscapes ``*_gtFine_instanceIds.png`` -> COCO panoptic GT.

    panopticapi ``cityscapes_gt_converter/cityscapes_panoptic_converter.py``: the files
    ``FOLDER/*/*_gtFine_instanceIds.png`` in sorted order; a value below 1000 is a class id
    (crowd for thing classes), otherwise ``class * 1000 + instance``; classes outside
    :data:`CITYSCAPES_CATEGORIES` (ignoreInEval) are left out; image ids are the file names
    without ``_gtFine_instanceIds.png``; segments carry pixel ``area`` and ``bbox``; the
    annotation's ``file_name`` is the instanceIds file name, as panopticapi writes it.
    """
    folder = os.fspath(original_format_folder)
    if not os.path.isdir(folder):
        raise PanopticEvalError(f"Cityscapes folder {folder} does not exist")
    files = sorted(glob.glob(os.path.join(folder, "*", "*_gtFine_instanceIds.png")))
    if not files:
        raise PanopticEvalError(f"Cityscapes folder {folder}: no */*_gtFine_instanceIds.png files")
    categories = {cat["id"]: cat for cat in CITYSCAPES_CATEGORIES}
    out = _make_folder(out_folder)

    def one(k: int, path: str) -> tuple[dict, dict]:
        file_name = os.path.basename(path)
        image_id = file_name.rsplit("_", 2)[0]
        where = f"image {image_id!r}"
        original = _read_array(path, where=where)
        if original.ndim != 2:
            raise PanopticEvalError(f"{where}: {path}: expected a single-channel instanceIds PNG, got {original.shape}")
        height, width = original.shape
        ids = np.zeros(original.shape, dtype=np.uint32)
        generator = IdGenerator(categories, _rng(seed, k))
        segments = []
        for value in np.unique(original).tolist():
            semantic, crowd = (value, 1) if value < 1000 else (value // 1000, 0)
            if semantic not in categories:
                continue
            if categories[semantic]["isthing"] == 0:
                crowd = 0
            mask = original == value
            segment_id, _ = generator.id_and_color(semantic)
            ids[mask] = segment_id
            cols = np.flatnonzero(mask.any(axis=0))
            rows = np.flatnonzero(mask.any(axis=1))
            bbox = [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
            segments.append({"id": int(segment_id), "category_id": int(semantic), "area": int(mask.sum()),
                             "bbox": bbox, "iscrowd": crowd})
        write_id_png(os.path.join(out, file_name), ids)
        image = {"id": image_id, "width": width, "height": height, "file_name": f"{image_id}_leftImg8bit.png"}
        return image, {"image_id": image_id, "file_name": file_name, "segments_info": segments}

    results = _parallel(one, files, workers, what=f"Cityscapes folder {folder}: files")
    d = {"images": [r[0] for r in results], "annotations": [r[1] for r in results],
         "categories": [dict(c) for c in CITYSCAPES_CATEGORIES]}
    write_json_atomic(out_file, d, indent=None)
    return d


def combine_semantic_and_instance_predictions(
    semseg_json_file: str | os.PathLike,
    instseg_json_file: str | os.PathLike,
    images_json_file: str | os.PathLike,
    categories_json_file: str | os.PathLike,
    segmentations_folder: str | os.PathLike | None,
    panoptic_json_file: str | os.PathLike,
    *,
    confidence_thr: float = 0.5,
    overlap_thr: float = 0.5,
    stuff_area_limit: float = 64 * 64,
    workers: int | None = None,
    seed: int = 0,
) -> dict:
    """panopticapi's heuristic combination (Kirillov et al., Panoptic Segmentation, section 7).

    Instances with ``score >= confidence_thr``, by decreasing score (stable), are pasted where
    no earlier instance lies; an instance whose area overlaps the earlier ones by more than
    ``overlap_thr`` of its area is dropped (empty instances too). Then each stuff region of the
    semantic prediction (thing categories there are ignored) fills the pixels still free, if at
    least ``stuff_area_limit`` of them are. Outputs a COCO panoptic PNG per image of the images
    JSON (``file_name`` with ``.jpg`` replaced by ``.png``) and the JSON.
    """
    mask_utils = _mask_utils()
    sem_results = read_json(semseg_json_file, what="semantic segmentation JSON")
    inst_results = read_json(instseg_json_file, what="instance segmentation JSON")
    for what, data, path in (("semantic segmentation JSON", sem_results, semseg_json_file),
                             ("instance segmentation JSON", inst_results, instseg_json_file)):
        if not isinstance(data, list):
            raise PanopticEvalError(f"{what} {path}: expected a list of results")
    images_d = read_json(images_json_file, what="images JSON")
    images = _list_of(images_d, "images", what="images JSON", path=images_json_file)
    _, categories = read_categories(categories_json_file)
    if segmentations_folder is None:
        segmentations_folder = os.fspath(panoptic_json_file).rsplit(".", 1)[0]
    out_folder = _make_folder(segmentations_folder)

    inst_by_image: dict[Any, list] = {}
    for k, inst in enumerate(inst_results):
        if not isinstance(inst, Mapping) or not {"image_id", "category_id", "score", "segmentation"} <= set(inst):
            raise PanopticEvalError(f"instance segmentation JSON {instseg_json_file}: result [{k}] needs "
                                    "image_id, category_id, score and segmentation")
        if isinstance(inst["score"], bool) or not isinstance(inst["score"], (int, float)):
            raise PanopticEvalError(f"instance segmentation JSON {instseg_json_file}: result [{k}] score must be a "
                                    f"number, got {inst['score']!r}")
        if inst["score"] < confidence_thr:
            continue
        inst_by_image.setdefault(inst["image_id"], []).append(inst)
    for img_id in inst_by_image:
        inst_by_image[img_id] = sorted(inst_by_image[img_id], key=lambda el: -el["score"])
    sem_by_image: dict[Any, list] = {}
    for k, sem in enumerate(sem_results):
        if not isinstance(sem, Mapping) or not {"image_id", "category_id", "segmentation"} <= set(sem):
            raise PanopticEvalError(f"semantic segmentation JSON {semseg_json_file}: result [{k}] needs "
                                    "image_id, category_id and segmentation")
        cat = categories.get(sem["category_id"])
        if cat is None:
            raise PanopticEvalError(f"semantic segmentation JSON {semseg_json_file}: result [{k}] has category_id "
                                    f"{sem['category_id']!r}, not in {categories_json_file}")
        if cat["isthing"] == 1:
            continue
        sem_by_image.setdefault(sem["image_id"], []).append(sem)

    def one(k: int, img: Mapping) -> dict:
        where = f"image id {img.get('id')!r} ({images_json_file})"
        height, width = img.get("height"), img.get("width")
        if not all(isinstance(v, int) and v > 0 for v in (height, width)):
            raise PanopticEvalError(f"{where}: height and width must be positive integers")
        file_name = img.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise PanopticEvalError(f"{where}: file_name must be a non-empty string, got {file_name!r}")
        file_name = file_name.replace(".jpg", ".png")
        pan = np.zeros((height, width), dtype=np.uint32)
        used = np.zeros((height, width), dtype=bool)
        generator = IdGenerator(categories, _rng(seed, k))
        segments = []
        for ann in inst_by_image.get(img.get("id"), []):
            if ann["category_id"] not in categories:
                raise PanopticEvalError(f"{where}: instance of category_id {ann['category_id']!r}, "
                                        f"not in {categories_json_file}")
            mask = _ann_to_mask(mask_utils, ann, height, width, where=f"{where} instance") == 1
            area = int(mask.sum())
            if area == 0:
                continue
            intersect = int(np.count_nonzero(used & mask))
            if intersect / area > overlap_thr:
                continue
            used |= mask
            if intersect:
                mask &= pan == 0
            segment_id, _ = generator.id_and_color(ann["category_id"])
            pan[mask] = segment_id
            segments.append({"id": segment_id, "category_id": ann["category_id"]})
        for ann in sem_by_image.get(img.get("id"), []):
            mask = _ann_to_mask(mask_utils, ann, height, width, where=f"{where} semantic region") == 1
            mask_left = mask & (pan == 0)
            if mask_left.sum() < stuff_area_limit:
                continue
            segment_id, _ = generator.id_and_color(ann["category_id"])
            pan[mask_left] = segment_id
            segments.append({"id": segment_id, "category_id": ann["category_id"]})
        write_id_png(_inside(out_folder, file_name, where=where), pan)
        return {"image_id": img.get("id"), "file_name": file_name, "segments_info": segments}

    coco_d = dict(images_d)
    coco_d["annotations"] = _parallel(one, images, workers, what=f"images JSON {images_json_file}: images")
    coco_d["categories"] = list(categories.values())
    write_json_atomic(panoptic_json_file, coco_d, indent=None)
    return coco_d

