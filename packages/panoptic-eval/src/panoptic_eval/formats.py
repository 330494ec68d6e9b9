"""COCO panoptic format helpers: id <-> RGB encoding, PNG and JSON reading and writing.

Every other package of the toolkit reads and writes COCO panoptic files through these
helpers, so they live here, where nothing but numpy and Pillow is needed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import struct
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import PanopticEvalError

__all__ = [
    "check_output_path",
    "id2rgb",
    "open_image",
    "read_id_png",
    "read_json",
    "read_packed_png",
    "resolve_in_folder",
    "rgb2id",
    "write_id_png",
    "write_json_atomic",
    "write_panoptic_json",
    "write_png_atomic",
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


@contextlib.contextmanager
def open_image(
    path: str | os.PathLike,
    *,
    formats: tuple[str, ...] | None = None,
    expected_size: tuple[int, int] | None = None,
    where: str = "",
) -> Iterator[Image.Image]:
    """``PIL.Image.open`` whose decompression-bomb limit is what the annotation says.

    Pillow refuses images above ``2 * PIL.Image.MAX_IMAGE_PIXELS`` pixels (about 179 M), which
    also refuses big but legitimate images. Here an image above that limit is opened only when
    its size equals ``expected_size`` (H, W), the size its JSON announces; any other image
    above the limit is refused with a :class:`PanopticEvalError` before a pixel is decoded.
    ``MAX_IMAGE_PIXELS = None`` turns the limit off, as in Pillow. Pillow's warning between
    1x and 2x the limit is not raised.

    Args:
        path: the image file.
        formats: Pillow format names to try (default: every registered format).
        expected_size: (height, width) from the annotation, or None when it gives none.
        where: text naming the image in error messages.

    Raises:
        FileNotFoundError, UnidentifiedImageError: as ``Image.open``.
        PanopticEvalError: the image is above the limit and its size is not ``expected_size``.
    """
    label = f"{where}: " if where else ""
    with open(path, "rb") as fp:
        img = _open_unchecked(fp, os.fspath(path), formats)
        try:
            limit = Image.MAX_IMAGE_PIXELS
            width, height = img.size
            if limit is not None and width * height > 2 * limit and expected_size != (height, width):
                said = "gives no size" if expected_size is None else f"says {expected_size[1]}x{expected_size[0]}"
                raise PanopticEvalError(
                    f"{label}{path}: {width}x{height} (WxH) is above Pillow's decompression-bomb limit of "
                    f"{2 * limit} pixels and the annotation {said}; refusing to decode it (images of the "
                    "announced height and width are read whatever their size)"
                )
            yield img
        finally:
            img.close()


def _open_unchecked(fp: IO[bytes], filename: str, formats: tuple[str, ...] | None) -> Image.ImageFile.ImageFile:
    # Image.open without its size check (the caller checks): the same plugin lookup, header only.
    Image.preinit()
    if formats is None:
        Image.init()
        by_extension = Image.registered_extensions().get(os.path.splitext(filename)[1].lower())
        formats = tuple(dict.fromkeys(([by_extension] if by_extension else []) + list(Image.ID)))
    prefix = fp.read(16)
    for name in formats:
        if name.upper() not in Image.OPEN:
            Image.init()
        entry = Image.OPEN.get(name.upper())
        if entry is None:
            continue
        factory, accept = entry
        if accept is not None and accept(prefix) is not True:
            continue
        fp.seek(0)
        try:
            return factory(fp, filename)
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue
    raise UnidentifiedImageError(f"cannot identify image file {filename!r}")


def read_id_png(
    path: str | os.PathLike, *, image_label: str = "", expected_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Read a COCO panoptic PNG as a 2-D id map.

    RGB and RGBA PNGs are accepted (alpha is ignored, as panopticapi does); anything else is
    an error, as are missing, truncated and non-PNG files.

    Args:
        path: the PNG file.
        image_label: text naming the image in error messages (e.g. ``"image_id 42"``).
        expected_size: (height, width) the annotation gives; a PNG above Pillow's
            decompression-bomb limit is read only when it has this size (see :func:`open_image`).

    Returns:
        ndarray[H, W] uint32 of segment ids.

    Raises:
        PanopticEvalError: naming the file (and image) and what is wrong.
    """
    return read_packed_png(path, image_label=image_label, expected_size=expected_size) & ID_MASK


def read_packed_png(
    path: str | os.PathLike, *, image_label: str = "", expected_size: tuple[int, int] | None = None
) -> np.ndarray:
    """:func:`read_id_png` without the final masking: ``id + 2**24 * X`` per pixel.

    The top byte X is Pillow's padding (or alpha) byte. Equal values mean equal ids, so
    pixel counting can run on this array and mask only the few values it keeps, which saves
    a full pass over the image.
    """
    where = f"{image_label}: " if image_label else ""
    try:
        with open_image(path, formats=("PNG",), expected_size=expected_size, where=image_label) as img:
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
    """Write an id map as a COCO panoptic RGB PNG, atomically (see :func:`write_json_atomic`)."""
    rgb = id2rgb(ids)
    _write_atomic(path, lambda f: Image.fromarray(rgb, mode="RGB").save(f, format="PNG"), binary=True)


def write_png_atomic(path: str | os.PathLike, image: Image.Image | np.ndarray) -> None:
    """Write any image (a PIL image, or a uint8 array [H, W] / [H, W, 3]) as a PNG, atomically."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    _write_atomic(path, lambda f: img.save(f, format="PNG"), binary=True)


def write_json_atomic(path: str | os.PathLike, data: Any, *, indent: int | None = 2) -> None:
    """Write JSON to ``path`` through a temporary file in the same folder and a rename.

    A symbolic link is followed (its target is replaced, the link stays); a path that exists
    and is not a regular file (a folder, FIFO or device) is refused, as are ``""`` and names
    ending in a path separator. The file gets the mode ``open()`` would give it (an existing
    file's mode, else ``0o666`` less the umask). NaN and infinities are refused (they are not
    JSON): the error names the first such entry. Nothing is left behind on an error.

    Raises:
        PanopticEvalError: a bad path or a non-finite number; OSError from the file system.
    """
    try:
        text = json.dumps(data, indent=indent, default=_json_default, allow_nan=False)
    except ValueError:
        raise PanopticEvalError(
            f"{path}: refusing to write a non-finite number ({_first_non_finite(data)}); JSON has no NaN or infinity"
        ) from None
    _write_atomic(path, lambda f: f.write(text + "\n"), binary=False)


def _first_non_finite(data: Any, key: str = "") -> str:
    """The dotted key of the first NaN / infinity in ``data`` (error messages only)."""
    if isinstance(data, Mapping):
        items = data.items()
    elif isinstance(data, (list, tuple)):
        items = enumerate(data)
    else:
        if isinstance(data, (float, np.floating)) and not math.isfinite(data):
            return f"{key or 'value'} = {float(data)}"
        return ""
    for k, v in items:
        found = _first_non_finite(v, f"{key}.{k}" if key else str(k))
        if found:
            return found
    return ""


def _umask() -> int:
    # /proc tells the umask without changing it (os.umask would race with other threads).
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output_path(path: str | os.PathLike) -> Path:
    """The regular file an atomic write of ``path`` replaces (symlinks followed).

    Raises:
        PanopticEvalError: ``path`` is empty, ends in a separator, exists and is not a regular
            file, or its folder does not exist.
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        raise PanopticEvalError("output path is empty")
    if "\x00" in text:
        raise PanopticEvalError(f"output path {text!r} contains a NUL byte")
    if text.endswith((os.sep, "/")) or (os.altsep and text.endswith(os.altsep)):
        raise PanopticEvalError(f"output path {text!r} names a folder; give a file name")
    target = Path(os.path.realpath(text))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (FIFO, device or socket)"
        shown = text if str(target) == text else f"{text} (-> {target})"
        raise PanopticEvalError(f"output path {shown} exists and is {kind}; refusing to replace it")
    if not target.parent.is_dir():
        raise PanopticEvalError(f"output path {text}: folder {target.parent} does not exist")
    return target


def _write_atomic(path: str | os.PathLike, write: Callable[[IO], Any], *, binary: bool) -> None:
    target = check_output_path(path)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            if hasattr(os, "fchmod"):  # POSIX; mkstemp made the file 0o600
                os.fchmod(f.fileno(), mode)
        os.replace(tmp, target)
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
    if "\x00" in os.fsdecode(os.fspath(path)):
        raise PanopticEvalError(f"{what} {path!r}: the path contains a NUL byte")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise PanopticEvalError(f"{what} {path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise PanopticEvalError(f"{what} {path}: malformed JSON ({exc})") from None
    except RecursionError:
        raise PanopticEvalError(f"{what} {path}: JSON nested too deeply to read") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PanopticEvalError(f"{what} {path}: unreadable ({exc})") from None


def resolve_in_folder(folder: str | os.PathLike, file_name: Any, *, where: str) -> str:
    """Join ``folder`` and a ``file_name`` from a JSON, refusing names that leave the folder.

    Absolute names, ``..`` components and symbolic links resolving outside ``folder`` are
    rejected, so a crafted JSON cannot make the evaluator read arbitrary files.
    """
    if not isinstance(file_name, str) or not file_name:
        raise PanopticEvalError(f"{where}: file_name must be a non-empty string, got {file_name!r}")
    if "\x00" in file_name:
        raise PanopticEvalError(f"{where}: file_name {file_name!r} contains a NUL byte")
    if os.path.isabs(file_name) or ".." in Path(file_name).parts:
        raise PanopticEvalError(f"{where}: file_name {file_name!r} leaves its folder {folder}")
    root = os.path.realpath(folder)
    full = os.path.realpath(os.path.join(root, file_name))
    if os.path.commonpath([root, full]) != root:
        raise PanopticEvalError(f"{where}: file_name {file_name!r} resolves outside {folder}")
    return full
