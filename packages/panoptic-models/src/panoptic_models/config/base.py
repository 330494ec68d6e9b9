"""What every method config shares: the backbone arguments and the mapping <-> dataclass conversion.

``from_dict`` maps a plain mapping (e.g. the ``model:`` section of a YAML file) onto the
dataclass: nested dataclasses from nested mappings, lists to tuples, and a ``ValueError`` that
names the first unknown key or ill-typed value with its dotted path.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["BackboneConfig", "from_dict", "to_dict"]

T = TypeVar("T")


@dataclass(frozen=True)
class BackboneConfig:
    """Arguments of :func:`panoptic_models.backbones.build_backbone`.

    Attributes:
        name: resnet18/34/50/101 or efficientnet_b0..b5.
        weights: a local torchvision-format state-dict file, or None (random init).
        norm: "BN", "FrozenBN", "SyncBN", "GN".
        freeze_at: 0 trains everything; 1 freezes the stem; k freezes the stem and k - 1 stages.
        options: further keyword arguments of the backbone (e.g. ``stem``, ``res5_dilation``,
            ``res5_multi_grid`` for ResNet; ``se`` for EfficientNet).
    """

    name: str = "resnet50"
    weights: str | None = None
    norm: str = "BN"
    freeze_at: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def build(self):
        from ..backbones import build_backbone

        return build_backbone(self.name, weights=self.weights, norm=self.norm, freeze_at=self.freeze_at, **self.options)


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain data (tuples as lists), the inverse of :func:`from_dict`."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def from_dict(cls: type[T], data: Mapping[str, Any], *, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking every key and value type.

    Raises:
        ValueError: naming the dotted key (``where`` + key) that is unknown or ill-typed.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ValueError(f"unknown key {path!r} (known: {', '.join(sorted(fields))})")
        values[key] = _coerce(hints[key], value, path)
    return cls(**values)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if errors else f"{path}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where=path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{path}: expected {len(args)} values, got {list(value)}")
        return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin in (Mapping, dict) or hint in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise ValueError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{path}: expected a string, got {value!r}")
        return value
    return value
