"""Loads the compiled library that registers ``torch.ops.panoptic_ops``.

Importing :mod:`panoptic_ops` never needs the library (constants such as ``UNBOXED``, the pure-torch
:mod:`panoptic_ops.reference` and the argument checks stay usable); calling a compiled op without it
raises :func:`assert_has_ops`'s error, which names the command that builds it (as torchvision's
``_assert_has_ops``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

_PACKAGE_DIR = Path(__file__).resolve().parent
BUILD_HELP = (
    "panoptic-ops: the compiled library (_C.so) is missing. Build it against the installed torch with\n"
    "    pip install --no-build-isolation -e packages/panoptic-ops      (from a checkout), or\n"
    "    pip install --no-build-isolation panoptic-ops\n"
    "or set PANOPTIC_OPS_JIT=1 in a checkout to compile the CPU kernels on import."
)
_loaded = False
_load_error: str | None = None


def _checkout_csrc() -> Path | None:
    candidate = _PACKAGE_DIR.parents[3] / "csrc" if len(_PACKAGE_DIR.parents) > 3 else None
    return candidate if candidate is not None and (candidate / "deeplab").is_dir() else None


def _jit_build(csrc: Path) -> None:
    from torch.utils import cpp_extension

    sources = sorted(str(p) for p in csrc.rglob("*.cpp") if not p.name.endswith("_cuda.cpp"))
    cpp_extension.load(
        name="panoptic_ops_jit",
        sources=sources,
        extra_include_paths=[str(csrc)],
        extra_cflags=["-O3", "-std=c++20", "-ffp-contract=off"],
        is_python_module=False,
    )


def load() -> bool:
    """Load ``_C.so`` (or JIT-compile it with ``PANOPTIC_OPS_JIT=1``); False when there is none.

    A library that exists but fails to load (built against another torch) is remembered and its
    error is shown by :func:`assert_has_ops`.
    """
    global _loaded, _load_error
    library = _PACKAGE_DIR / "_C.so"
    csrc = _checkout_csrc()
    if os.environ.get("PANOPTIC_OPS_JIT") == "1" and csrc is not None:
        _jit_build(csrc)
        _loaded = True
    elif library.exists():
        try:
            torch.ops.load_library(str(library))
            _loaded = True
        except OSError as error:  # e.g. undefined symbols: built against another torch
            _load_error = f"{library} failed to load ({error}); rebuild it.\n"
    return _loaded


def has_ops() -> bool:
    """Whether ``torch.ops.panoptic_ops`` is registered."""
    return _loaded


def assert_has_ops() -> None:
    """Raise the error that says how to build the library when it is not loaded."""
    if not _loaded:
        raise RuntimeError((_load_error or "") + BUILD_HELP)
