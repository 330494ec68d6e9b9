"""What a panoptic sample holds: category metadata, segments and the id map."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from panoptic_eval import Category, PanopticEvalError, parse_categories

from ..errors import DatasetError

__all__ = [
    "Categories",
    "PanopticTarget",
    "Segment",
    "SegmentMoments",
    "lookup_segments",
    "segment_moments",
    "segment_stats",
]


@dataclass(frozen=True)
class Categories:
    """COCO panoptic categories with contiguous indices.

    Built from :func:`panoptic_eval.parse_categories`, so a category list is checked once, by the
    same rules and with the same message as the evaluator (an integer ``id``, ``isthing`` 0 or 1;
    a missing ``isthing`` is an error, never stuff), raised here as :class:`DatasetError`.

    ``class_index`` of a category is its position in the JSON's ``categories`` list (what
    detectron2 calls the contiguous id); things and stuff also get their own contiguous
    numbering (``thing_index`` / ``stuff_index``, -1 for the other kind).

    Attributes:
        items: the category dicts as given (``id``, ``name``, ``isthing``, optional ``color``), copied.
        categories: the same categories as :class:`panoptic_eval.Category` (id, name, isthing).
    """

    items: tuple[Mapping[str, Any], ...]
    categories: tuple[Category, ...] = field(init=False)
    ids: tuple[int, ...] = field(init=False)
    isthing: tuple[bool, ...] = field(init=False)
    thing_index: tuple[int, ...] = field(init=False)
    stuff_index: tuple[int, ...] = field(init=False)
    _by_id: Mapping[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        items = self.items.values() if isinstance(self.items, Mapping) else self.items
        if isinstance(items, Iterable) and not isinstance(items, (str, bytes)):
            items = tuple(items)  # any iterable of categories (a generator, dict.values())
        try:
            categories = tuple(parse_categories(items))
        except PanopticEvalError as exc:
            raise DatasetError(str(exc)) from None
        ids = tuple(c.id for c in categories)
        isthing = tuple(c.isthing for c in categories)
        things = stuff = 0
        thing_index, stuff_index = [], []
        for t in isthing:
            thing_index.append(things if t else -1)
            stuff_index.append(-1 if t else stuff)
            things += t
            stuff += not t
        items = tuple(dict(c) if isinstance(c, Mapping) else dataclasses.asdict(c) for c in items)
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "categories", categories)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "isthing", isthing)
        object.__setattr__(self, "thing_index", tuple(thing_index))
        object.__setattr__(self, "stuff_index", tuple(stuff_index))
        object.__setattr__(self, "_by_id", {c: n for n, c in enumerate(ids)})

    @classmethod
    def from_list(cls, categories: Sequence[Mapping[str, Any]]) -> Categories:
        """From COCO category dicts (a JSON's ``categories`` list); :class:`DatasetError` if one is malformed."""
        return cls(categories)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return len(self.ids)

    @property
    def num_things(self) -> int:
        return sum(self.isthing)

    @property
    def num_stuff(self) -> int:
        return len(self.ids) - self.num_things

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    @property
    def thing_classes(self) -> tuple[int, ...]:
        """Class indices of the thing categories, in order."""
        return tuple(n for n, t in enumerate(self.isthing) if t)

    @property
    def stuff_classes(self) -> tuple[int, ...]:
        return tuple(n for n, t in enumerate(self.isthing) if not t)

    def class_index(self, category_id: int) -> int:
        """Contiguous index of a dataset category id; KeyError if unknown."""
        return self._by_id[int(category_id)]

    def __contains__(self, category_id: object) -> bool:
        return category_id in self._by_id

    def to_list(self) -> list[dict[str, Any]]:
        return [dict(c) for c in self.items]


@dataclass(frozen=True)
class Segment:
    """One segment of a panoptic annotation (a COCO ``segments_info`` entry, resolved).

    Attributes:
        id: the segment id in the id map (never 0, which is VOID).
        category_id: the dataset's category id.
        class_index: contiguous index of the category (see :class:`Categories`).
        isthing: whether the category is a thing.
        iscrowd: crowd region (a group of things annotated as one segment).
        area: number of pixels with this id in the current id map.
        bbox: (x, y, w, h) in pixels, COCO style: covers pixels x .. x + w - 1.
    """

    id: int
    category_id: int
    class_index: int
    isthing: bool
    iscrowd: bool
    area: int
    bbox: tuple[int, int, int, int]

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        """The box as (x1, y1, x2, y2) edges: (x, y, x + w, y + h)."""
        x, y, w, h = self.bbox
        return x, y, x + w, y + h

    def to_coco(self) -> dict[str, Any]:
        """The COCO ``segments_info`` entry."""
        return {
            "id": self.id,
            "category_id": self.category_id,
            "iscrowd": int(self.iscrowd),
            "area": self.area,
            "bbox": list(self.bbox),
        }


@dataclass
class PanopticTarget:
    """The panoptic annotation of one image.

    Attributes:
        ids (Tensor[H, W] int64): segment id per pixel, 0 = VOID (unlabelled).
        segments: the segments present in ``ids``, in annotation order.
        image_id: the image's id from the JSON.
        file_name: the panoptic PNG's name (for messages).
    """

    ids: torch.Tensor
    segments: list[Segment]
    image_id: Any = None
    file_name: str = ""

    @property
    def size(self) -> tuple[int, int]:
        return int(self.ids.shape[-2]), int(self.ids.shape[-1])

    def masks(self) -> torch.Tensor:
        """Tensor[N, H, W] bool: one mask per segment, in ``segments`` order."""
        seg_ids = torch.tensor([s.id for s in self.segments], dtype=self.ids.dtype, device=self.ids.device)
        return self.ids.unsqueeze(0) == seg_ids.view(-1, 1, 1)

    def replace(self, **changes: Any) -> PanopticTarget:
        return dataclasses.replace(self, **changes)

    def refreshed(self, ids: torch.Tensor) -> PanopticTarget:
        """This target with a new id map: areas and boxes recomputed, vanished segments dropped."""
        stats = segment_stats(ids, [s.id for s in self.segments])
        segments = [
            dataclasses.replace(s, area=area, bbox=bbox)
            for s, (area, bbox) in zip(self.segments, stats, strict=True)
            if area > 0
        ]
        return dataclasses.replace(self, ids=ids, segments=segments)


def lookup_segments(ids: torch.Tensor, segment_ids: Sequence[int]) -> torch.Tensor:
    """Tensor[H, W] int64: position in ``segment_ids`` of each pixel's id, -1 where the id is not listed."""
    if not len(segment_ids):
        return torch.full(ids.shape, -1, dtype=torch.int64, device=ids.device)
    wanted = torch.as_tensor(segment_ids, dtype=ids.dtype, device=ids.device)
    order = torch.argsort(wanted)
    sorted_ids = wanted[order]
    slot = torch.searchsorted(sorted_ids, ids.contiguous()).clamp_(max=len(wanted) - 1).view(-1)
    # The extra last entry of the lookup table stands for ids that are not listed.
    table = torch.cat([order, order.new_full((1,), -1)])
    miss = sorted_ids.index_select(0, slot).view(ids.shape) != ids
    return table.index_select(0, slot.masked_fill_(miss.view(-1), len(wanted))).view(ids.shape)


@dataclass(frozen=True)
class SegmentMoments:
    """Per-segment pixel statistics of an index map (all Tensor[count]).

    ``area`` (int64); ``sum_y`` / ``sum_x`` (float64, exact: sums of integer coordinates);
    ``y_min``, ``y_max``, ``x_min``, ``x_max`` (int64, 0 for empty segments).
    """

    area: torch.Tensor
    sum_y: torch.Tensor
    sum_x: torch.Tensor
    y_min: torch.Tensor
    y_max: torch.Tensor
    x_min: torch.Tensor
    x_max: torch.Tensor

    def areas_and_boxes(self) -> list[tuple[int, tuple[int, int, int, int]]]:
        """(area, COCO bbox (x, y, w, h)) per segment; (0, (0, 0, 0, 0)) for empty ones."""
        columns = (self.area, self.x_min, self.y_min, self.x_max, self.y_max)
        return [
            (a, (x0, y0, x1 - x0 + 1, y1 - y0 + 1)) if a else (0, (0, 0, 0, 0))
            for a, x0, y0, x1, y1 in zip(*(c.tolist() for c in columns), strict=True)
        ]


def segment_moments(index: torch.Tensor, count: int) -> SegmentMoments:
    """Areas, coordinate sums and extents of segments 0..count-1 of an index map (-1 = none).

    Built from segment-by-row and segment-by-column pixel counts (two ``bincount`` passes over
    the map), taken for as many segments at a time as keeps those tables no larger than the
    map itself.
    """
    height, width = index.shape
    device = index.device
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    chunk = max(1, height * width // (height + width) - 1)
    parts = []
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        local = index
        if n < count:  # segments outside this chunk join the "none" value start - 1
            local = torch.where((index < start) | (index >= start + n), start - 1, index)
        # key (local - start + 1) * size + coordinate, in one fused pass; bin row 0 is "none"
        key = torch.add(rows.view(-1, 1) + (1 - start) * height, local, alpha=height)
        per_row = torch.bincount(key.view(-1), minlength=(n + 1) * height).view(n + 1, height)[1:]
        key = torch.add(cols.view(1, -1) + (1 - start) * width, local, alpha=width)
        per_col = torch.bincount(key.view(-1), minlength=(n + 1) * width).view(n + 1, width)[1:]
        in_row, in_col = per_row > 0, per_col > 0
        parts.append(
            (
                per_row.sum(1),
                (per_row.double() * rows.double()).sum(1),
                (per_col.double() * cols.double()).sum(1),
                in_row.byte().argmax(1),  # first row holding the segment (0 when none)
                (height - 1 - in_row.flip(1).byte().argmax(1)) * in_row.any(1),
                in_col.byte().argmax(1),
                (width - 1 - in_col.flip(1).byte().argmax(1)) * in_col.any(1),
            )
        )
    if not parts:
        empty_i = torch.zeros(0, dtype=torch.int64, device=device)
        empty_f = torch.zeros(0, dtype=torch.float64, device=device)
        return SegmentMoments(empty_i, empty_f, empty_f, empty_i, empty_i, empty_i, empty_i)
    return SegmentMoments(*(torch.cat(column) for column in zip(*parts, strict=True)))


def segment_stats(ids: torch.Tensor, segment_ids: Sequence[int]) -> list[tuple[int, tuple[int, int, int, int]]]:
    """(area, COCO bbox) of each listed segment id in an id map; area 0 and bbox zeros when absent."""
    return segment_moments(lookup_segments(ids, segment_ids), len(segment_ids)).areas_and_boxes()
