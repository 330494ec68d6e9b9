"""A deterministic synthetic panoptic dataset written as real COCO panoptic files.

Every image is drawn from its own random stream (``seed``, split, index), so an image does not
depend on how many others are written. A scene has:

* stuff: 2-4 of the stuff classes, laid out by the argmax of smooth random fields (irregular
  boundaries), each with its own texture (gradient sky, noisy grass, wavy water, brick wall);
* things: 3-9 instances of four shape classes (disc, box, triangle, ring) with a class colour,
  jitter and a stripe or dot texture, sizes log-uniform from 4 px to almost half the image,
  drawn in order so later ones occlude earlier ones (fully hidden instances are dropped);
* crowd: sometimes a cluster of tiny discs annotated as one ``iscrowd`` segment;
* VOID: sometimes an unlabelled blob of clutter, and 1-px unlabelled outlines around some things.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from panoptic_eval.formats import write_id_png, write_panoptic_json

from ..errors import DatasetError

__all__ = ["SyntheticConfig", "make_synthetic_image", "synthetic_categories", "write_synthetic_dataset"]

_THINGS = (
    {"id": 1, "name": "disc", "color": (220, 40, 40)},
    {"id": 2, "name": "box", "color": (40, 90, 220)},
    {"id": 3, "name": "triangle", "color": (240, 200, 30)},
    {"id": 5, "name": "ring", "color": (170, 60, 200)},
)
_STUFF = (
    {"id": 92, "name": "sky", "color": (120, 180, 235)},
    {"id": 95, "name": "grass", "color": (70, 150, 60)},
    {"id": 110, "name": "water", "color": (30, 90, 140)},
    {"id": 150, "name": "wall", "color": (150, 120, 100)},
)


def synthetic_categories() -> list[dict[str, Any]]:
    """The synthetic dataset's COCO panoptic categories (ids are not contiguous, like COCO's)."""
    cats = [
        {"id": c["id"], "name": c["name"], "supercategory": "shape", "isthing": 1, "color": list(c["color"])}
        for c in _THINGS
    ]
    cats += [
        {"id": c["id"], "name": c["name"], "supercategory": "region", "isthing": 0, "color": list(c["color"])}
        for c in _STUFF
    ]
    return cats


# Drawing a scene holds ~100 bytes per pixel (float32 fields, masks and the image), so one
# image of MAX_PIXELS takes ~0.4 GB and about a second; MAX_IMAGES bounds the disk a dataset takes.
MAX_SIDE = 4096
MAX_PIXELS = 1 << 22
MAX_IMAGES = 100_000


@dataclass(frozen=True)
class SyntheticConfig:
    """Size of a synthetic dataset. The defaults train a small model on a CPU in minutes.

    Limits, checked before any work: each side in [16, ``MAX_SIDE`` = 4096], ``height * width``
    at most ``MAX_PIXELS`` = 2**22 (e.g. 2048 x 2048), ``train + val`` at most ``MAX_IMAGES`` =
    100 000.
    """

    train: int = 64
    val: int = 16
    height: int = 128
    width: int = 160
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train", "val", "height", "width", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise DatasetError(f"synthetic dataset: {name} must be an integer, got {value!r}")
        if self.train < 0 or self.val < 0:
            raise DatasetError(f"synthetic dataset: image counts must be >= 0, got train={self.train} val={self.val}")
        if self.seed < 0:
            raise DatasetError(f"synthetic dataset: seed must be >= 0, got {self.seed}")
        if self.train + self.val > MAX_IMAGES:
            raise DatasetError(
                f"synthetic dataset: at most {MAX_IMAGES} images (train + val), got {self.train} + {self.val}"
            )
        if self.height < 16 or self.width < 16:
            raise DatasetError(f"synthetic dataset: size must be at least 16x16, got {self.height}x{self.width}")
        if max(self.height, self.width) > MAX_SIDE or self.height * self.width > MAX_PIXELS:
            raise DatasetError(
                f"synthetic dataset: size {self.height}x{self.width} is above the limit (sides <= {MAX_SIDE}, "
                f"height * width <= {MAX_PIXELS}, e.g. 2048x2048)"
            )


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """A smooth random field: a coarse random grid, bilinearly upsampled, plus finer detail."""
    out = np.zeros((h, w), np.float32)
    for scale, amp in ((cells, 1.0), (cells * 3, 0.35)):
        grid = rng.random((scale + 1, scale + 1)).astype(np.float32)
        img = Image.fromarray(grid, mode="F").resize((w, h), Image.BILINEAR)
        out += amp * np.asarray(img, dtype=np.float32)
    return out


def _stuff_texture(rng: np.random.Generator, k: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    h, w = yy.shape
    base = np.array(_STUFF[k]["color"], np.float32) + rng.normal(0, 12, 3)
    if k == 0:  # sky: vertical gradient
        shade = 30 * (1 - yy / h)[..., None]
    elif k == 1:  # grass: fine noise
        shade = rng.normal(0, 18, (h, w, 1))
    elif k == 2:  # water: horizontal waves
        shade = 22 * np.sin(yy / 2.5 + np.sin(xx / 9.0) * 2)[..., None]
    else:  # wall: bricks
        mortar = ((yy % 8) == 0) | (((xx + 8 * ((yy // 8) % 2)) % 16) == 0)
        shade = np.where(mortar, -50, 0)[..., None] + rng.normal(0, 5, (h, w, 1))
    return base + shade


def _shape_mask(kind: int, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float, angle: float) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    if kind == 0:  # disc
        return dy * dy + dx * dx <= r * r
    if kind == 1:  # box, rotated
        c, s = np.cos(angle), np.sin(angle)
        u, v = c * dx + s * dy, -s * dx + c * dy
        return (np.abs(u) <= r) & (np.abs(v) <= 0.6 * r)
    if kind == 2:  # triangle
        inside = np.ones_like(yy, dtype=bool)
        for j in range(3):
            a = angle + 2 * np.pi * j / 3
            inside &= dx * np.cos(a) + dy * np.sin(a) <= 0.5 * r
        return inside
    d2 = dy * dy + dx * dx  # ring
    return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)


def make_synthetic_image(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Draw one scene.

    Returns:
        (image ndarray[H, W, 3] uint8, ids ndarray[H, W] uint32, segments_info with areas and
        boxes measured on ``ids``).
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    ids = np.zeros((height, width), np.uint32)
    used: set[int] = {0}
    info: list[dict] = []

    def new_id() -> int:
        while True:
            v = int(rng.integers(1, 1 << 24))
            if v not in used:
                used.add(v)
                return v

    # Stuff: argmax of smooth fields.
    chosen = rng.choice(len(_STUFF), size=int(rng.integers(2, len(_STUFF) + 1)), replace=False)
    fields = np.stack([_smooth_field(rng, height, width, int(rng.integers(2, 5))) for _ in chosen])
    region = np.argmax(fields, axis=0)
    for j, k in enumerate(chosen):
        mask = region == j
        seg = new_id()
        ids[mask] = seg
        image[mask] = _stuff_texture(rng, int(k), yy, xx)[mask]
        info.append({"id": seg, "category_id": _STUFF[k]["id"], "iscrowd": 0})

    # Things, painted in order: later ones occlude earlier ones.
    small = min(height, width)
    for _ in range(int(rng.integers(3, 10))):
        kind = int(rng.integers(0, len(_THINGS)))
        r = float(np.exp(rng.uniform(np.log(2.0), np.log(0.45 * small))))
        cy, cx = rng.uniform(-0.1 * height, 1.1 * height), rng.uniform(-0.1 * width, 1.1 * width)
        mask = _shape_mask(kind, yy, xx, cy, cx, r, float(rng.uniform(0, 2 * np.pi)))
        if not mask.any():
            continue
        seg = new_id()
        colour = np.array(_THINGS[kind]["color"], np.float32) + rng.normal(0, 20, 3)
        if rng.random() < 0.5:
            pattern = (((xx + yy) // max(2, int(r / 3))) % 2)[..., None] * 40 - 20
        else:
            pattern = ((((yy % 5) < 2) & ((xx % 5) < 2)) * 45 - 15)[..., None]
        image[mask] = (colour + pattern)[mask]
        ids[mask] = seg
        info.append({"id": seg, "category_id": _THINGS[kind]["id"], "iscrowd": 0})
        if rng.random() < 0.25 and r > 6:  # an unlabelled annotation gap around this thing
            grown = _shape_mask(kind, yy, xx, cy, cx, r + 1.0, 0.0) if kind in (0, 3) else None
            if grown is not None:
                ids[grown & ~mask & (ids != 0)] = 0

    # Crowd: a cluster of tiny discs of one class as a single segment.
    if rng.random() < 0.35:
        kind = int(rng.integers(0, len(_THINGS)))
        cy, cx = rng.uniform(0.2 * height, 0.8 * height), rng.uniform(0.2 * width, 0.8 * width)
        crowd = np.zeros((height, width), bool)
        for _ in range(int(rng.integers(5, 12))):
            crowd |= _shape_mask(
                0,
                yy,
                xx,
                cy + rng.normal(0, small / 12),
                cx + rng.normal(0, small / 12),
                float(rng.uniform(1.5, 3.5)),
                0.0,
            )
        seg = new_id()
        image[crowd] = np.array(_THINGS[kind]["color"], np.float32) + rng.normal(0, 25, 3)
        ids[crowd] = seg
        info.append({"id": seg, "category_id": _THINGS[kind]["id"], "iscrowd": 1})

    # VOID: an unlabelled blob of clutter.
    if rng.random() < 0.5:
        r = float(rng.uniform(0.05, 0.15) * small)
        squash = float(rng.uniform(0.6, 1.4))  # an ellipse: the disc test on rows scaled by `squash`
        blob = _shape_mask(0, yy * squash, xx, rng.uniform(0, height) * squash, rng.uniform(0, width), r, 0.0)
        image[blob] = rng.uniform(0, 255, (int(blob.sum()), 3))
        ids[blob] = 0

    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    return image, ids, _measure(ids, info)


def _measure(ids: np.ndarray, info: list[dict]) -> list[dict]:
    """Keep the segments still visible; set their areas and COCO boxes from the id map."""
    present, counts = np.unique(ids, return_counts=True)
    area = dict(zip(present.tolist(), counts.tolist(), strict=True))
    out = []
    for seg in info:
        a = area.get(seg["id"], 0)
        if a == 0:
            continue
        ys, xs = np.nonzero(ids == seg["id"])
        x0, y0 = int(xs.min()), int(ys.min())
        out.append({**seg, "area": int(a), "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]})
    return out


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Block SIGINT and SIGTERM (POSIX) inside the block; they are delivered after it."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def write_synthetic_dataset(
    out: str | os.PathLike, config: SyntheticConfig | None = None, *, overwrite: bool = False
) -> Path:
    """Write a synthetic dataset in the COCO panoptic layout of DESIGN.md.

    ``OUT/{train,val}/NNNNNN.jpg``, ``OUT/panoptic_{train,val}/NNNNNN.png`` and
    ``OUT/annotations/panoptic_{train,val}.json``. Everything is written into a temporary
    folder beside ``OUT`` and renamed into place at the end, so ``OUT`` is never half-written.

    Args:
        out: the dataset folder; it must not exist (or be empty) unless ``overwrite``.
        config: sizes and seed (:class:`SyntheticConfig` defaults when None).
        overwrite: replace an existing ``OUT``.

    Returns:
        The dataset folder.
    """
    config = config or SyntheticConfig()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"synthetic dataset: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DatasetError(f"synthetic dataset: {out} exists and is not empty (pass overwrite=True / --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (tmp / "annotations").mkdir()
        cats = synthetic_categories()
        for split_no, (split, count) in enumerate((("train", config.train), ("val", config.val))):
            (tmp / split).mkdir()
            (tmp / f"panoptic_{split}").mkdir()
            images, annotations = [], []
            for i in range(count):
                rng = np.random.default_rng([config.seed, split_no, i])
                image, ids, info = make_synthetic_image(rng, config.height, config.width)
                stem = f"{i:06d}"
                Image.fromarray(image).save(tmp / split / f"{stem}.jpg", quality=95)
                write_id_png(tmp / f"panoptic_{split}" / f"{stem}.png", ids)
                images.append({"id": i, "file_name": f"{stem}.jpg", "height": config.height, "width": config.width})
                annotations.append({"image_id": i, "file_name": f"{stem}.png", "segments_info": info})
            write_panoptic_json(tmp / "annotations" / f"panoptic_{split}.json", annotations, cats, images)
        with _signals_deferred():  # never stop between moving OUT aside and moving the new one in
            if out.exists():
                old = out.with_name(f".{out.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(out, old)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
