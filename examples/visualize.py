"""Draw panoptic segmentations over their images: predictions (COCO panoptic files) or ground truth.

    python examples/visualize.py --json predictions.json --folder predictions/ --images data/val \\
        --categories-json annotations/panoptic_val.json --output-dir vis/ [--limit 20]

Each segment is filled with its category's colour (the JSON's ``color``, else a fixed palette;
thing instances get a lighter or darker shade of it), blended with the image, and outlined
where the segment id changes. VOID stays the image. Files are written atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from panoptic_core.data import Categories
from panoptic_eval import PanopticEvalError, read_id_png
from panoptic_eval.formats import read_json, resolve_in_folder

__all__ = ["category_colors", "overlay", "write_overlay"]


def category_colors(categories: Categories) -> np.ndarray:
    """uint8[C, 3]: each category's ``color`` when the JSON gives one, else a fixed well-spread palette."""
    rng = np.random.default_rng(0)
    colors = rng.integers(40, 256, size=(len(categories), 3)).astype(np.uint8)
    for k, cat in enumerate(categories.items):
        color = cat.get("color")
        if isinstance(color, Sequence) and len(color) == 3:
            colors[k] = np.clip(np.asarray(color, dtype=np.int64), 0, 255)
    return colors


def overlay(
    image: np.ndarray,
    ids: np.ndarray,
    segments_info: Sequence[Mapping[str, Any]],
    categories: Categories,
    alpha: float = 0.55,
) -> np.ndarray:
    """Blend a panoptic segmentation over an image.

    Args:
        image (uint8[H, W, 3]): RGB image.
        ids (int[H, W]): segment ids, 0 = VOID.
        segments_info: ``id`` and ``category_id`` per segment (``isthing`` optional).
        categories: the dataset's categories.

    Returns:
        uint8[H, W, 3].
    """
    if image.shape[:2] != ids.shape:
        raise ValueError(
            f"overlay: image of {image.shape[1]}x{image.shape[0]} but id map of {ids.shape[1]}x{ids.shape[0]}"
        )
    base = category_colors(categories).astype(np.float32)
    color = np.zeros((*ids.shape, 3), np.float32)
    painted = np.zeros(ids.shape, bool)
    for n, seg in enumerate(segments_info):
        k = categories.class_index(seg["category_id"])
        shade = base[k]
        if categories.isthing[k]:
            shade = np.clip(shade * (0.7 + 0.6 * ((n * 0.618) % 1.0)), 0, 255)
        mask = ids == seg["id"]
        color[mask] = shade
        painted |= mask
    out = image.astype(np.float32)
    out[painted] = (1 - alpha) * out[painted] + alpha * color[painted]
    border = np.zeros(ids.shape, bool)
    border[:-1] |= ids[:-1] != ids[1:]
    border[1:] |= ids[:-1] != ids[1:]
    border[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    border[:, 1:] |= ids[:, :-1] != ids[:, 1:]
    out[border] = 255.0
    return out.round().astype(np.uint8)


def _save_png(array: np.ndarray, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(array).save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_overlay(path: str | os.PathLike, image: torch.Tensor, result, categories: Categories) -> None:
    """Write the overlay of a ``PanopticResult`` over a uint8 image (Tensor[3, H, W]) as a PNG."""
    rgb = image.permute(1, 2, 0).cpu().numpy()
    _save_png(overlay(rgb, result.ids.cpu().numpy(), result.segments_info, categories), Path(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, type=Path, help="COCO panoptic JSON (predictions or ground truth)")
    parser.add_argument("--folder", type=Path, help="its PNG folder (default: the JSON's name without .json)")
    parser.add_argument("--images", required=True, type=Path, help="folder of the images")
    parser.add_argument("--categories-json", type=Path, help="JSON with the categories (default: --json)")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--limit", type=int, default=None, help="draw at most this many images")
    args = parser.parse_args(argv)
    folder = args.folder or args.json.with_suffix("")
    try:
        data = read_json(args.json, what="panoptic JSON")
        cats_data = data if args.categories_json is None else read_json(args.categories_json, what="categories JSON")
        if not isinstance(cats_data, Mapping) or not isinstance(cats_data.get("categories"), list):
            raise PanopticEvalError(f"{args.categories_json or args.json}: no 'categories' list")
        if not isinstance(data, Mapping) or not isinstance(data.get("annotations"), list):
            raise PanopticEvalError(f"{args.json}: no 'annotations' list")
        categories = Categories.from_list(cats_data["categories"])
        args.output_dir.mkdir(parents=True, exist_ok=True)
        images = {img["id"]: img["file_name"] for img in data.get("images") or [] if "id" in img}
        annotations = data["annotations"][: args.limit]
        for ann in annotations:
            where = f"{args.json}, image_id {ann.get('image_id')!r}"
            png = resolve_in_folder(folder, ann.get("file_name"), where=where)
            name = images.get(ann.get("image_id")) or str(Path(ann["file_name"]).with_suffix(".jpg"))
            img_path = resolve_in_folder(args.images, name, where=where)
            try:
                with Image.open(img_path) as img:
                    rgb = np.asarray(img.convert("RGB"))
            except OSError as exc:
                raise PanopticEvalError(f"{where}: cannot read image {img_path} ({exc})") from None
            ids = read_id_png(png, image_label=where)
            out = overlay(rgb, ids, ann["segments_info"], categories)
            _save_png(out, args.output_dir / (Path(ann["file_name"]).stem + ".png"))
    except (PanopticEvalError, ValueError, KeyError) as exc:
        print(f"visualize.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(annotations)} overlays written to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
