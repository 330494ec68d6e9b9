"""COCO panoptic categories: the one parser and check of a category list.

panoptic-core builds its ``Categories`` from :func:`parse_categories`, so a category list is
refused for the same reasons, with the same message, by the evaluator and by the datasets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import PanopticEvalError

__all__ = ["Category", "parse_categories"]


@dataclass(frozen=True)
class Category:
    """One COCO panoptic category.

    Attributes:
        id: the dataset's category id (``category_id`` in ``segments_info``).
        name: the category's ``name`` (its id as text where the JSON gives none).
        isthing: whether it is a thing (countable, has instances) rather than stuff.
    """

    id: int
    name: str
    isthing: bool


def _is_integer(value: Any) -> bool:
    """An integer value; a bool, float or string is refused, never converted."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_flag(value: Any) -> bool:
    """False / True, 0 / 1, or 0.0 / 1.0 (which panopticapi's ``isthing == 1`` reads the same);
    not "0", which is truthy, nor 2 or None, which it would take for stuff."""
    if isinstance(value, (bool, np.bool_)):
        return True
    return (_is_integer(value) or isinstance(value, (float, np.floating))) and value in (0, 1)


def parse_categories(categories: Any, *, where: str = "categories") -> list[Category]:
    """COCO category dicts (a list, or a dict keyed by id) -> :class:`Category` list, in order.

    Each entry needs an integer ``id`` (unique) and ``isthing`` (0, 1, False, True, 0.0 or 1.0); ``name``
    is optional. :class:`Category` objects are accepted as entries too (and checked the same way).

    Raises:
        PanopticEvalError: naming ``where`` and the entry, e.g. a missing ``isthing``, an id
            that is a float, string or bool, ``isthing`` "0", 2 or None, a repeated id.
    """
    if isinstance(categories, Mapping):
        categories = list(categories.values())
    if not isinstance(categories, Sequence) or isinstance(categories, (str, bytes)):
        raise PanopticEvalError(f"{where}: expected a list of category objects")
    out: list[Category] = []
    seen: set[int] = set()
    for k, cat in enumerate(categories):
        if isinstance(cat, Category):
            cat = dataclasses.asdict(cat)
        if not isinstance(cat, Mapping) or "id" not in cat or "isthing" not in cat:
            raise PanopticEvalError(f"{where}[{k}]: a category needs 'id' and 'isthing', got {cat!r}")
        cid = cat["id"]
        if not _is_integer(cid):
            raise PanopticEvalError(f"{where}[{k}]: category id must be an integer, got {cid!r}")
        if int(cid) in seen:
            raise PanopticEvalError(f"{where}: duplicate category id {cid}")
        if not _is_flag(cat["isthing"]):
            raise PanopticEvalError(f"{where}[{k}]: isthing must be 0 or 1, got {cat['isthing']!r}")
        seen.add(int(cid))
        out.append(Category(id=int(cid), name=str(cat.get("name", cid)), isthing=bool(cat["isthing"])))
    return out
