"""Argument checks of the Python wrappers: what the op schemas cannot express.

The compiled ops check tensor shapes, dtypes, devices and value ranges themselves, with one
message for every device (``csrc/common/checks.h``); the wrappers check the kind of each
argument (a tensor, an integer that is not a bool, a number), where the schema would accept a
bool or answer with a RuntimeError, and the shapes of the Python-only batched helper.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

FLOAT_TYPES = (torch.float32, torch.float64)
INT_TYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def check_tensor(
    name: str,
    value: object,
    *,
    dims: int | None = None,
    shape: Sequence[int | None] | None = None,
) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dims is not None and value.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions, got shape {_fmt(value.shape)}")
    if shape is not None:
        if value.dim() != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
            raise ValueError(f"{name} must have shape {_fmt(shape)}, got {_fmt(value.shape)}")
    return value


def check_tensors(**tensors: object) -> None:
    """Each keyword argument is a torch.Tensor (the op checks its shape, dtype and device)."""
    for name, value in tensors.items():
        check_tensor(name, value)


def _fmt(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("*" if s is None else str(int(s)) for s in shape) + "]"


def int_list(name: str, values: Iterable[int]) -> list[int]:
    """Sorted distinct integers; floats, bools and strings are refused (never truncated)."""
    try:
        items = list(values)
    except TypeError as error:
        raise TypeError(f"{name} must be an iterable of integers, got {values!r}") from error
    for v in items:
        if isinstance(v, torch.Tensor) and v.dim() == 0 and not v.is_floating_point() and v.dtype != torch.bool:
            continue
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise TypeError(f"{name} must be an iterable of integers, got {v!r} in {values!r}")
    return sorted({int(v) for v in items})


def check_int(name: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """An integer argument (Python or numpy int; not bool or float) within [low, high]."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value}")
    return value


def check_threshold(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)
