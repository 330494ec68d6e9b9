"""COCO panoptic datasets: images, panoptic PNGs and one JSON (Cityscapes, Mapillary and ADE20K too)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import UnidentifiedImageError
from torch.utils.data import Dataset

from panoptic_eval import PanopticEvalError
from panoptic_eval.formats import open_image, read_id_png, read_json, resolve_in_folder

from ..errors import DatasetError
from .structures import Categories, PanopticTarget, Segment, lookup_segments, segment_moments

__all__ = ["CocoPanopticDataset", "read_image"]

Transform = Callable[[torch.Tensor, PanopticTarget], tuple[torch.Tensor, PanopticTarget]]


def read_image(
    path: str | os.PathLike, *, where: str = "", expected_size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Read an image file as Tensor[3, H, W] uint8 (RGB); a clear error naming the file otherwise.

    ``expected_size`` (H, W), the size the JSON gives, lets an image above Pillow's
    decompression-bomb limit be read (see :func:`panoptic_eval.formats.open_image`).
    """
    label = f"{where}: " if where else ""
    try:
        with open_image(path, expected_size=expected_size, where=where) as img:
            img.load()
            rgb = np.asarray(img.convert("RGB"))
    except PanopticEvalError as exc:
        raise DatasetError(str(exc)) from None
    except FileNotFoundError:
        raise DatasetError(f"{label}image {path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{label}image {path}: unreadable or corrupt ({exc})") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


def _is_int(value: Any) -> bool:
    """An integer JSON value (not a bool, float or string: those are refused, never converted)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_flag(value: Any) -> bool:
    """0, 1, False or True (not "0", which is truthy, nor 0.0)."""
    return (isinstance(value, bool) or _is_int(value)) and value in (0, 1)


def _image_id(value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DatasetError(f"{where}: image id must be an integer or a string, got {value!r}")
    return value


class CocoPanopticDataset(Dataset):
    """A panoptic dataset in COCO panoptic format.

    Each item is ``(image, target)``: ``image`` is Tensor[3, H, W] uint8 (RGB) and ``target``
    a :class:`PanopticTarget` (id map as Tensor[H, W] int64, 0 = VOID, and the segments with
    category id, contiguous class index, isthing and iscrowd). ``transforms(image, target)``,
    if given, is applied to both together.

    The JSON is checked when the dataset is built (categories, annotations, segment ids and
    category ids); each image is checked when it is read (sizes of image and PNG agree, every
    id in the PNG is listed, every listed segment is in the PNG). Areas and boxes are taken
    from the PNG. File names from the JSON may name subfolders but never leave their folder.

    Args:
        json_file: the panoptic JSON (``annotations``, ``categories``, optional ``images``).
        image_dir: folder of the images; an annotation's image is found through the JSON's
            ``images`` entry with the same ``id``, else by its PNG name with ``.jpg``.
        panoptic_dir: folder of the panoptic PNGs (defaults to ``json_file`` without ``.json``).
        transforms: callable ``(image, target) -> (image, target)``.
        image_subfolder: maps an image file name to the subfolder of ``image_dir`` holding it
            (Cityscapes keeps images in one folder per city; see :meth:`from_cityscapes`).
    """

    def __init__(
        self,
        json_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        panoptic_dir: str | os.PathLike | None = None,
        transforms: Transform | None = None,
        image_subfolder: Callable[[str], str] | None = None,
    ) -> None:
        self.json_file = Path(json_file)
        self.image_dir = Path(image_dir)
        self.panoptic_dir = Path(panoptic_dir) if panoptic_dir is not None else self.json_file.with_suffix("")
        self.transforms = transforms
        try:
            data = read_json(self.json_file, what="panoptic JSON")
        except PanopticEvalError as exc:
            raise DatasetError(str(exc)) from None
        where = f"panoptic JSON {self.json_file}"
        if not isinstance(data, Mapping):
            raise DatasetError(f"{where}: expected a JSON object at the top level")
        for key in ("annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise DatasetError(f"{where}: missing or malformed '{key}' list")
        try:  # panoptic_eval.parse_categories checks them: integer ids, isthing 0 or 1
            self.categories = Categories.from_list(data["categories"])
        except DatasetError as exc:
            raise DatasetError(f"{where}: {exc}") from None
        images, self._sizes = {}, {}
        if not isinstance(data.get("images", []), list):
            raise DatasetError(f"{where}: 'images' must be a list")
        for n, img in enumerate(data.get("images") or []):
            if not isinstance(img, Mapping) or "id" not in img or "file_name" not in img:
                raise DatasetError(f"{where}: images[{n}] needs 'id' and 'file_name'")
            image_id = _image_id(img["id"], f"{where}: images[{n}]")
            if image_id in images:
                raise DatasetError(f"{where}: images[{n}] repeats id {image_id!r}; each image needs its own id")
            images[image_id] = img["file_name"]
            h, w = img.get("height"), img.get("width")
            if _is_int(h) and _is_int(w):
                self._sizes[image_id] = (int(h), int(w))
        if image_subfolder is not None:
            images = {k: f"{image_subfolder(str(v))}/{v}" for k, v in images.items()}
        self._records = [self._parse_annotation(n, ann, images, where) for n, ann in enumerate(data["annotations"])]
        first: dict[Any, int] = {}
        for n, rec in enumerate(self._records):
            image_id = rec["image_id"]
            if image_id in first:
                raise DatasetError(
                    f"{where}: annotations[{n}] repeats image_id {image_id!r} of annotations[{first[image_id]}]; "
                    "each image needs one annotation"
                )
            first[image_id] = n

    @classmethod
    def from_root(cls, root: str | os.PathLike, split: str, transforms: Transform | None = None) -> CocoPanopticDataset:
        """The DESIGN.md layout: ``ROOT/<split>/``, ``ROOT/panoptic_<split>/``,
        ``ROOT/annotations/panoptic_<split>.json`` (what ``panoptic-core synth`` writes)."""
        root = Path(root)
        return cls(
            root / "annotations" / f"panoptic_{split}.json",
            root / split,
            root / f"panoptic_{split}",
            transforms=transforms,
        )

    @classmethod
    def from_cityscapes(
        cls, root: str | os.PathLike, split: str, transforms: Transform | None = None
    ) -> CocoPanopticDataset:
        """Cityscapes after cityscapesScripts' ``csCreatePanopticImgs``: JSON and PNGs in
        ``ROOT/gtFine/cityscapes_panoptic_<split>{.json,/}``, images in ``ROOT/leftImg8bit/<split>/<city>/``
        (the city is the file name's first ``_`` field)."""
        root = Path(root)
        return cls(
            root / "gtFine" / f"cityscapes_panoptic_{split}.json",
            root / "leftImg8bit" / split,
            root / "gtFine" / f"cityscapes_panoptic_{split}",
            transforms=transforms,
            image_subfolder=lambda name: name.split("_")[0],
        )

    def _parse_annotation(self, n: int, ann: Any, images: Mapping[Any, str], where: str) -> dict[str, Any]:
        if not isinstance(ann, Mapping):
            raise DatasetError(f"{where}: annotations[{n}] is not an object")
        for key in ("image_id", "file_name", "segments_info"):
            if key not in ann:
                raise DatasetError(f"{where}: annotations[{n}] has no '{key}'")
        _image_id(ann["image_id"], f"{where}: annotations[{n}]")
        label = f"{where}, image_id {ann['image_id']!r}"
        if not isinstance(ann["segments_info"], list):
            raise DatasetError(f"{label}: 'segments_info' is not a list")
        segments, seen = [], set()
        for k, seg in enumerate(ann["segments_info"]):
            if not isinstance(seg, Mapping) or "id" not in seg or "category_id" not in seg:
                raise DatasetError(f"{label}: segments_info[{k}] needs 'id' and 'category_id'")
            if not (_is_int(seg["id"]) and _is_int(seg["category_id"])):
                raise DatasetError(
                    f"{label}: segments_info[{k}] needs integer id and category_id, got {seg['id']!r} and "
                    f"{seg['category_id']!r}"
                )
            seg_id, cat_id = int(seg["id"]), int(seg["category_id"])
            if not 0 < seg_id < 1 << 24:
                raise DatasetError(f"{label}: segment id {seg_id} is outside [1, 2**24)")
            if seg_id in seen:
                raise DatasetError(f"{label}: segment id {seg_id} is listed twice")
            if cat_id not in self.categories:
                raise DatasetError(f"{label}: segment {seg_id} has unknown category_id {cat_id}")
            crowd = seg.get("iscrowd", 0)
            if not _is_flag(crowd):
                raise DatasetError(f"{label}: segment {seg_id} iscrowd must be 0 or 1, got {crowd!r}")
            seen.add(seg_id)
            segments.append((seg_id, cat_id, bool(crowd)))
        image_name = images.get(ann["image_id"]) or str(Path(str(ann["file_name"])).with_suffix(".jpg"))
        return {
            "image_id": ann["image_id"],
            "png": ann["file_name"],
            "image": image_name,
            "segments": segments,
            "label": label,
        }

    def __len__(self) -> int:
        return len(self._records)

    @property
    def image_ids(self) -> list:
        """The JSON's ``image_id`` of every item, in item order."""
        return [rec["image_id"] for rec in self._records]

    def load(self, index: int) -> tuple[torch.Tensor, PanopticTarget]:
        """The untransformed ``(image, target)`` of item ``index``."""
        rec = self._records[index]
        label = rec["label"]
        try:
            img_path = resolve_in_folder(self.image_dir, rec["image"], where=label)
        except PanopticEvalError as exc:
            raise DatasetError(str(exc)) from None
        image = read_image(img_path, where=label, expected_size=self._sizes.get(rec["image_id"]))
        target = self.load_target(index)
        if tuple(image.shape[1:]) != tuple(target.ids.shape):
            png = self.panoptic_dir / str(rec["png"])
            raise DatasetError(
                f"{label}: image {img_path} is {image.shape[2]}x{image.shape[1]} but its panoptic PNG {png} "
                f"is {target.ids.shape[1]}x{target.ids.shape[0]} (width x height)"
            )
        return image, target

    def load_target(self, index: int) -> PanopticTarget:
        """The untransformed target of item ``index``, without reading its image."""
        rec = self._records[index]
        label = rec["label"]
        try:
            png = resolve_in_folder(self.panoptic_dir, rec["png"], where=label)
            ids_np = read_id_png(
                png, image_label=f"image_id {rec['image_id']!r}", expected_size=self._sizes.get(rec["image_id"])
            )
        except PanopticEvalError as exc:
            raise DatasetError(str(exc)) from None
        ids = torch.from_numpy(ids_np.astype(np.int64))
        listed = [s[0] for s in rec["segments"]]
        index_map = lookup_segments(ids, listed)
        unlisted = (index_map < 0) & (ids != 0)
        if unlisted.any():
            extra = torch.unique(ids[unlisted])[:5].tolist()
            raise DatasetError(f"{label}: PNG {png} has segment ids {extra} that segments_info does not list")
        stats = segment_moments(index_map, len(listed)).areas_and_boxes()
        missing = [seg for seg, (area, _) in zip(listed, stats, strict=True) if area == 0]
        if missing:
            raise DatasetError(f"{label}: segments {sorted(missing)[:5]} of segments_info are absent from PNG {png}")
        segments = []
        for (seg_id, cat_id, crowd), (area, bbox) in zip(rec["segments"], stats, strict=True):
            k = self.categories.class_index(cat_id)
            segments.append(Segment(seg_id, cat_id, k, self.categories.isthing[k], crowd, area, bbox))
        return PanopticTarget(ids, segments, rec["image_id"], str(rec["png"]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, PanopticTarget]:
        image, target = self.load(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target
