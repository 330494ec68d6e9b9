"""COCO panoptic format helpers: id <-> RGB encoding, PNG and JSON reading and writing.

Every other package of the toolkit reads and writes COCO panoptic files through these
helpers, so they live here, where nothing but numpy and Pillow is needed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import PanopticEvalError

__all__ = [
    "id2rgb",
    "read_id_png",
    "read_json",
    "read_packed_png",
    "resolve_in_folder",
    "rgb2id",
    "write_id_png",
    "write_json_atomic",
    "write_panoptic_json",
]

ID_MASK = np.uint32(0xFFFFFF)


def rgb2id(color: np.ndarray) -> np.ndarray:
    """Decode a COCO panoptic RGB image into segment ids: ``id = R + 256 G + 256^2 B``.

    Args:
        color (ndarray[H, W, 3] or [H, W, 4] uint8): RGB (or RGBA, alpha ignored) image.

    Returns:
        ndarray[H, W] uint32: the segment id of every pixel.
    """
    color = np.asarray(color)
    if color.ndim != 3 or color.shape[2] not in (3, 4):
        raise PanopticEvalError(f"rgb2id: expected an array of shape [H, W, 3], got {color.shape}")
    c = color.astype(np.uint32, copy=False)
    return c[..., 0] | (c[..., 1] << 8) | (c[..., 2] << 16)


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """Encode segment ids (``0 <= id < 2**24``) as a COCO panoptic RGB image.

    Args:
        ids (ndarray[H, W] integer): segment ids.

    Returns:
        ndarray[H, W, 3] uint8.
    """
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise PanopticEvalError(f"id2rgb: expected an integer id map, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise PanopticEvalError("id2rgb: segment ids must lie in [0, 2**24) to fit an RGB PNG")
    ids = ids.astype(np.uint32, copy=False)
    out = np.empty((*ids.shape, 3), dtype=np.uint8)
    out[..., 0] = ids & 0xFF
    out[..., 1] = (ids >> 8) & 0xFF
    out[..., 2] = (ids >> 16) & 0xFF
    return out


def read_id_png(path: str | os.PathLike, *, image_label: str = "") -> np.ndarray:
    """Read a COCO panoptic PNG as a 2-D id map.

    RGB and RGBA PNGs are accepted (alpha is ignored, as panopticapi does); anything else is
    an error, as are missing, truncated and non-PNG files.

    Args:
        path: the PNG file.
        image_label: text naming the image in error messages (e.g. ``"image_id 42"``).

    Returns:
        ndarray[H, W] uint32 of segment ids.

    Raises:
        PanopticEvalError: naming the file (and image) and what is wrong.
    """
    return read_packed_png(path, image_label=image_label) & ID_MASK


def read_packed_png(path: str | os.PathLike, *, image_label: str = "") -> np.ndarray:
    """:func:`read_id_png` without the final masking: ``id + 2**24 * X`` per pixel.

    The top byte X is Pillow's padding (or alpha) byte. Equal values mean equal ids, so
    pixel counting can run on this array and mask only the few values it keeps, which saves
    a full pass over the image.
    """
    where = f"{image_label}: " if image_label else ""
    try:
        with Image.open(path, formats=["PNG"]) as img:
            if img.mode not in ("RGB", "RGBA"):
                raise PanopticEvalError(
                    f"{where}{path}: PNG mode {img.mode!r} is not RGB; panoptic PNGs encode ids "
                    "as id = R + 256*G + 256^2*B"
                )
            return _decode_packed(img)
    except FileNotFoundError:
        raise PanopticEvalError(f"{where}{path}: PNG file not found") from None
    except PanopticEvalError:
        raise
    except UnidentifiedImageError:
        raise PanopticEvalError(f"{where}{path}: unreadable, not a PNG file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise PanopticEvalError(f"{where}{path}: unreadable or truncated PNG ({exc})") from None


def _decode_packed(img: Image.Image) -> np.ndarray:
    # Pillow keeps RGB pixels as 4 bytes (R, G, B, pad), so the little-endian uint32 view of its
    # pixel memory is R + 256 G + 256^2 B + 256^3 pad. Decoding straight into a numpy buffer
    # (the mapping Image.frombuffer uses) saves a copy of the image; where that is not
    # possible, tobytes() gives the same bytes.
    width, height = img.size
    packed = np.empty((height, width), dtype="<u4")
    try:
        target = Image.core.map_buffer(packed, (width, height), "raw", 0, (img.mode, 0, 1))
        img.im = target
    except (AttributeError, TypeError, ValueError):
        target = None
    img.load()
    if target is not None and img.im is target:
        return packed
    raw = img.tobytes("raw", "RGBX" if img.mode == "RGB" else "RGBA")
    return np.frombuffer(raw, dtype="<u4").reshape(height, width)


def write_id_png(path: str | os.PathLike, ids: np.ndarray) -> None:
    """Write an id map as a COCO panoptic RGB PNG, atomically (temporary file, then rename)."""
    rgb = id2rgb(ids)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(rgb, mode="RGB").save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any, *, indent: int | None = 2) -> None:
    """Write JSON to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_panoptic_json(
    path: str | os.PathLike,
    annotations: list[Mapping[str, Any]],
    categories: list[Mapping[str, Any]],
    images: list[Mapping[str, Any]] | None = None,
) -> None:
    """Write a COCO panoptic JSON (``annotations``, ``categories``, ``images``) atomically."""
    data = {"annotations": list(annotations), "categories": list(categories)}
    if images is not None:
        data["images"] = list(images)
    write_json_atomic(path, data, indent=None)


def read_json(path: str | os.PathLike, *, what: str) -> Any:
    """Read a JSON file, turning every failure into one clear :class:`PanopticEvalError`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise PanopticEvalError(f"{what} {path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise PanopticEvalError(f"{what} {path}: malformed JSON ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PanopticEvalError(f"{what} {path}: unreadable ({exc})") from None


def resolve_in_folder(folder: str | os.PathLike, file_name: Any, *, where: str) -> str:
    """Join ``folder`` and a ``file_name`` from a JSON, refusing names that leave the folder.

    Absolute names, ``..`` components and symbolic links resolving outside ``folder`` are
    rejected, so a crafted JSON cannot make the evaluator read arbitrary files.
    """
    if not isinstance(file_name, str) or not file_name:
        raise PanopticEvalError(f"{where}: file_name must be a non-empty string, got {file_name!r}")
    if os.path.isabs(file_name) or ".." in Path(file_name).parts:
        raise PanopticEvalError(f"{where}: file_name {file_name!r} leaves its folder {folder}")
    root = os.path.realpath(folder)
    full = os.path.realpath(os.path.join(root, file_name))
    if os.path.commonpath([root, full]) != root:
        raise PanopticEvalError(f"{where}: file_name {file_name!r} resolves outside {folder}")
    return full
