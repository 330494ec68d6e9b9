"""Loads the compiled library that registers ``torch.ops.panoptic_ops``."""

from __future__ import annotations

import os
from pathlib import Path

import torch

_PACKAGE_DIR = Path(__file__).resolve().parent
_BUILD_HELP = (
    "panoptic-ops: the compiled library (_C.so) is missing. Build it against the installed torch with\n"
    "    pip install --no-build-isolation -e packages/panoptic-ops      (from a checkout), or\n"
    "    pip install --no-build-isolation panoptic-ops\n"
    "or set PANOPTIC_OPS_JIT=1 in a checkout to compile the CPU kernels on import."
)


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


def load() -> None:
    library = _PACKAGE_DIR / "_C.so"
    if library.exists() and os.environ.get("PANOPTIC_OPS_JIT") != "1":
        torch.ops.load_library(str(library))
        return
    csrc = _checkout_csrc()
    if os.environ.get("PANOPTIC_OPS_JIT") == "1" and csrc is not None:
        _jit_build(csrc)
        return
    raise ImportError(_BUILD_HELP)
