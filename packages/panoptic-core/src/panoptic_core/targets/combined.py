"""Several target generators behind one collate: a method that trains two heads on different targets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..data.structures import PanopticTarget
from .base import TargetGenerator

__all__ = ["CombinedTargets"]


class CombinedTargets:
    """The union of several generators' outputs, e.g. EfficientPS's semantic labels
    (``PanopticDeepLabTargets``) and SOLOv2's grid and mask targets (``SOLOv2Targets``), so that
    one :class:`~panoptic_core.data.PanopticCollate` prepares both heads' targets.

    ``keys``, ``ragged`` and ``per_level`` are the unions of the generators' declarations,
    restricted to ``keys`` when given (a generator's other outputs are dropped before batching).

    Args:
        generators: the generators, each following :class:`TargetGenerator` (declaring ``keys``,
            ``ragged`` and ``per_level``).
        keys: the keys to keep (default: all of them).

    Raises:
        ValueError: no generators, a generator without the three declarations, a key declared
            by two generators (after the ``keys`` selection), or a ``keys`` entry no generator
            returns.
    """

    def __init__(self, generators: Iterable[TargetGenerator], keys: Iterable[str] | None = None) -> None:
        self.generators = tuple(generators)
        if not self.generators:
            raise ValueError("CombinedTargets: generators is empty")
        for gen in self.generators:
            if not isinstance(gen, TargetGenerator):
                raise ValueError(
                    f"CombinedTargets: {type(gen).__name__} does not declare keys, ragged and per_level"
                )
        wanted = None if keys is None else frozenset(keys)
        declared = frozenset().union(*(g.keys for g in self.generators))
        if wanted is not None and not wanted <= declared:
            raise ValueError(f"CombinedTargets: keys {sorted(wanted - declared)} are returned by no generator")
        self._selected = tuple(g.keys if wanted is None else g.keys & wanted for g in self.generators)
        seen: dict[str, str] = {}
        for gen, selected in zip(self.generators, self._selected, strict=True):
            for key in sorted(selected):
                if key in seen:
                    raise ValueError(
                        f"CombinedTargets: key {key!r} is returned by both {seen[key]} and {type(gen).__name__}"
                    )
                seen[key] = type(gen).__name__
        self.keys: frozenset[str] = frozenset(seen)
        self.ragged: frozenset[str] = frozenset().union(*(g.ragged for g in self.generators)) & self.keys
        self.per_level: frozenset[str] = frozenset().union(*(g.per_level for g in self.generators)) & self.keys

    def __call__(self, target: PanopticTarget) -> dict[str, Any]:
        """The selected outputs of every generator for one padded target (see :class:`TargetGenerator`)."""
        out: dict[str, Any] = {}
        for gen, selected in zip(self.generators, self._selected, strict=True):
            if selected:
                produced = gen(target)
                out.update({k: produced[k] for k in selected})
        return out

    def __repr__(self) -> str:
        inner = ", ".join(type(g).__name__ for g in self.generators)
        return f"CombinedTargets([{inner}], keys={sorted(self.keys)})"
