"""Overlays of COCO panoptic segmentations on their images (Pillow only), GT and prediction side by side.

Colours: a stuff segment gets its category's ``color`` (from the categories of the GT JSON;
categories without one get a fixed colour derived from their id); a thing segment gets the
category colour shifted by up to +-40 per channel, the shift a fixed function of the segment's
position in ``segments_info`` (so instances of one category differ, the same file always looks
the same), and crowd segments are drawn darker. The colour is alpha-blended over the image;
segment borders (a pixel whose right or lower neighbour has another id) are drawn white;
optional labels (category name, and the score where segments_info has one) sit on a dark box at
the segment pixel nearest its centroid. VOID stays the plain image.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from .__about__ import __version__
from .errors import PanopticEvalError
from .formats import open_image, read_id_png, read_json, resolve_in_folder, write_png_atomic

GAP = 8  # pixels between the GT and the prediction panel


def category_color(category: Mapping[str, Any]) -> tuple[int, int, int]:
    """The category's ``color``, or a fixed colour derived from its id."""
    color = category.get("color")
    if isinstance(color, (list, tuple)) and len(color) == 3:
        return tuple(int(v) for v in color)
    rng = np.random.default_rng(int(category["id"]) & 0xFFFFFFFF)
    return tuple(int(v) for v in rng.integers(40, 256, size=3))


def segment_colors(segments_info: Sequence[Mapping], categories: Mapping[int, Mapping]) -> list[tuple[int, int, int]]:
    """One colour per segment (rules in the module docstring)."""
    out = []
    for k, seg in enumerate(segments_info):
        cat = categories.get(seg["category_id"])
        if cat is None:
            raise PanopticEvalError(f"segment {seg.get('id')!r} has unknown category_id {seg['category_id']!r}")
        base = np.array(category_color(cat), dtype=np.int64)
        if cat.get("isthing"):
            shift = np.random.default_rng([int(seg["category_id"]) & 0xFFFFFFFF, k]).integers(-40, 41, size=3)
            base = np.clip(base + shift, 0, 255)
            if seg.get("iscrowd"):
                base = base // 2
        out.append(tuple(int(v) for v in base))
    return out


def overlay(
    image: np.ndarray | None,
    ids: np.ndarray,
    segments_info: Sequence[Mapping],
    categories: Mapping[int, Mapping],
    *,
    alpha: float = 0.5,
    borders: bool = True,
    labels: bool = False,
) -> Image.Image:
    """One panel: the segments of an id map over an image.

    Args:
        image (uint8[H, W, 3] or None): the photo (None: black).
        ids (integer[H, W]): segment ids (0 = VOID).
        segments_info: COCO segments (``id``, ``category_id``, optional ``iscrowd``, ``score``).
        categories: {category id: COCO category dict (``name``, ``isthing``, optional ``color``)}.
        alpha: weight of the segment colour (0 = image only, 1 = colours only).

    Returns:
        An RGB PIL image of size W x H.
    """
    if not 0 <= alpha <= 1:
        raise PanopticEvalError(f"alpha must lie in [0, 1], got {alpha}")
    h, w = ids.shape
    base = np.zeros((h, w, 3), np.uint8) if image is None else np.asarray(image, dtype=np.uint8)
    if base.shape != (h, w, 3):
        raise PanopticEvalError(f"image is {base.shape[1]}x{base.shape[0]} but the segmentation is {w}x{h}")
    colors = segment_colors(segments_info, categories)
    seg_ids = np.array([int(s["id"]) for s in segments_info], dtype=np.int64)
    order = np.argsort(seg_ids, kind="stable")
    flat = ids.reshape(-1).astype(np.int64)
    pos = np.minimum(np.searchsorted(seg_ids[order], flat), max(len(seg_ids) - 1, 0))
    listed = (seg_ids[order][pos] == flat) if len(seg_ids) else np.zeros(flat.shape, bool)
    palette = np.array(colors, dtype=np.float64).reshape(-1, 3)
    out = base.reshape(-1, 3).astype(np.float64)
    if len(seg_ids):
        slot = order[pos[listed]]
        out[listed] = (1 - alpha) * out[listed] + alpha * palette[slot]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(h, w, 3)
    if borders:
        edge = np.zeros((h, w), bool)
        edge[:, :-1] |= ids[:, 1:] != ids[:, :-1]
        edge[:-1] |= ids[1:] != ids[:-1]
        out[edge] = 255
    panel = Image.fromarray(out, mode="RGB")
    if labels:
        _draw_labels(panel, ids, segments_info, categories)
    return panel


def _draw_labels(panel: Image.Image, ids: np.ndarray, segments_info: Sequence[Mapping], categories) -> None:
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default()
    for seg in segments_info:
        ys, xs = np.nonzero(ids == seg["id"])
        if not len(ys):
            continue
        k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
        text = str(categories[seg["category_id"]].get("name", seg["category_id"]))
        if isinstance(seg.get("score"), (int, float)):
            text += f" {seg['score']:.2f}"
        left, top, right, bottom = draw.textbbox((int(xs[k]), int(ys[k])), text, font=font, anchor="mm")
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=(0, 0, 0))
        draw.text((int(xs[k]), int(ys[k])), text, fill=(255, 255, 255), font=font, anchor="mm")


def side_by_side(panels: Sequence[Image.Image]) -> Image.Image:
    """Panels left to right, GAP white pixels apart."""
    width = sum(p.width for p in panels) + GAP * (len(panels) - 1)
    out = Image.new("RGB", (width, max(p.height for p in panels)), (255, 255, 255))
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + GAP
    return out


def visualize(
    gt_json_file: str | os.PathLike,
    output_folder: str | os.PathLike,
    *,
    gt_folder: str | os.PathLike | None = None,
    image_folder: str | os.PathLike | None = None,
    pred_json_file: str | os.PathLike | None = None,
    pred_folder: str | os.PathLike | None = None,
    alpha: float = 0.5,
    borders: bool = True,
    labels: bool = False,
    max_images: int | None = None,
    workers: int | None = None,
) -> list[str]:
    """Write one overlay PNG per GT image (GT | prediction when predictions are given).

    Folders default to the JSON path without ``.json``; images are looked up in
    ``image_folder`` by the GT JSON's ``images[].file_name`` (black background without it).

    Returns:
        The written file paths, in GT order.
    """
    gt = read_json(gt_json_file, what="GT JSON")
    if not isinstance(gt, Mapping) or not isinstance(gt.get("annotations"), list):
        raise PanopticEvalError(f"GT JSON {gt_json_file}: missing the 'annotations' list")
    categories = {c["id"]: c for c in gt.get("categories", []) if isinstance(c, Mapping) and "id" in c}
    gt_folder = os.fspath(gt_json_file).replace(".json", "") if gt_folder is None else gt_folder
    preds = None
    if pred_json_file is not None:
        pred = read_json(pred_json_file, what="prediction JSON")
        if not isinstance(pred, Mapping) or not isinstance(pred.get("annotations"), list):
            raise PanopticEvalError(f"prediction JSON {pred_json_file}: missing the 'annotations' list")
        preds = {a.get("image_id"): a for a in pred["annotations"]}
        pred_folder = os.fspath(pred_json_file).replace(".json", "") if pred_folder is None else pred_folder
    images = {img.get("id"): img for img in gt.get("images", []) if isinstance(img, Mapping)}
    anns = gt["annotations"][:max_images] if max_images is not None else gt["annotations"]
    os.makedirs(output_folder, exist_ok=True)

    def one(ann: Mapping) -> str:
        image_id = ann.get("image_id")
        where = f"image_id {image_id!r}"
        try:
            ids = read_id_png(resolve_in_folder(gt_folder, ann.get("file_name"), where=f"{where} (GT)"),
                              image_label=f"{where} (GT)")
            photo = None
            if image_folder is not None:
                name = images.get(image_id, {}).get("file_name") or ann["file_name"].replace(".png", ".jpg")
                path = resolve_in_folder(image_folder, name, where=f"{where} (image)")
                photo = _read_photo(path, where=where)
            panels = [overlay(photo, ids, ann.get("segments_info", []), categories, alpha=alpha, borders=borders,
                              labels=labels)]
            if preds is not None:
                pa = preds.get(image_id)
                if pa is None:
                    raise PanopticEvalError(f"{where}: no prediction in {pred_json_file}")
                pids = read_id_png(resolve_in_folder(pred_folder, pa.get("file_name"), where=f"{where} (prediction)"),
                                   image_label=f"{where} (prediction)")
                panels.append(overlay(photo, pids, pa.get("segments_info", []), categories, alpha=alpha,
                                      borders=borders, labels=labels))
        except PanopticEvalError as exc:
            msg = str(exc)
            raise PanopticEvalError(msg if msg.startswith(where) else f"{where}: {msg}") from None
        out = os.path.join(os.fspath(output_folder), os.path.basename(ann["file_name"]))
        write_png_atomic(out, side_by_side(panels))
        return out

    n = max(1, min(workers or os.cpu_count() or 1, len(anns) or 1))
    if n == 1:
        return [one(a) for a in anns]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, anns))


def _read_photo(path: str, *, where: str) -> np.ndarray:
    try:
        with open_image(path, where=where) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise PanopticEvalError(f"{where}: image {path} not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PanopticEvalError(f"{where}: image {path} is unreadable ({exc})") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="panoptic-visualize",
                                description="Overlay PNGs of COCO panoptic GT (and predictions, side by side).")
    p.add_argument("--gt-json", required=True, help="GT COCO panoptic JSON (its categories give names and colours)")
    p.add_argument("--gt-folder", help="GT PNG folder (default: --gt-json without .json)")
    p.add_argument("--images", dest="image_folder", help="folder of the photos (default: black background)")
    p.add_argument("--pred-json", help="prediction COCO panoptic JSON: GT | prediction panels")
    p.add_argument("--pred-folder", help="prediction PNG folder (default: --pred-json without .json)")
    p.add_argument("--output-dir", required=True, help="where the overlay PNGs go")
    p.add_argument("--alpha", type=float, default=0.5, help="colour weight over the photo (default 0.5)")
    p.add_argument("--no-borders", action="store_true", help="do not draw segment borders")
    p.add_argument("--labels", action="store_true", help="write category names (and scores)")
    p.add_argument("--max-images", type=int, default=None, help="only the first N GT images")
    p.add_argument("--workers", type=int, default=None, help="parallel threads (default: CPU count)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        if a.max_images is not None and a.max_images < 0:
            raise PanopticEvalError("--max-images must be >= 0")
        if a.workers is not None and a.workers < 1:
            raise PanopticEvalError("--workers must be >= 1")
        written = visualize(a.gt_json, a.output_dir, gt_folder=a.gt_folder, image_folder=a.image_folder,
                            pred_json_file=a.pred_json, pred_folder=a.pred_folder, alpha=a.alpha,
                            borders=not a.no_borders, labels=a.labels, max_images=a.max_images, workers=a.workers)
    except (PanopticEvalError, OSError) as exc:
        print(f"panoptic-visualize: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} overlay(s) to {a.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
