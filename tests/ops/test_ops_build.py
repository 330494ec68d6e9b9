"""The build: CUDA kernels compile and register (no GPU needed), wheels carry the library,
and a missing library gives an error that says how to build it."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import panoptic_ops

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "packages" / "panoptic-ops"
OPS = [
    "find_instance_center",
    "group_pixels",
    "merge_semantic_and_instance",
    "get_panoptic_segmentation",
    "nms",
    "batched_nms",
    "box_filtered_similarity",
    "box_filtered_assign",
]

sys.path.insert(0, str(PACKAGE))
import hatch_build  # noqa: E402

sys.path.pop(0)


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})


def test_every_cuda_kernel_compiles_and_registers():
    """nvcc (sm_80, sm_90, PTX) compiles every .cu; the CUDA build links and its CUDA kernels
    register even in a CPU torch. A CUDA compile error fails this test on machines without GPUs."""
    if hatch_build.find_nvcc() is None:
        pytest.skip("no CUDA toolkit (nvcc) on this machine: the CUDA build cannot be compiled here")
    library = hatch_build.build_library(PACKAGE / "build" / "cuda-check", with_cuda=True)
    checks = "; ".join(
        f"assert C._dispatch_has_kernel_for_dispatch_key('panoptic_ops::{op}', 'CUDA'), '{op}'" for op in OPS
    )
    result = run_python(f"import torch, torch._C as C; torch.ops.load_library({str(library)!r}); {checks}")
    assert result.returncode == 0, result.stderr


def test_missing_library_error_says_how_to_build(tmp_path):
    copy = tmp_path / "panoptic_ops"
    shutil.copytree(Path(panoptic_ops.__file__).parent, copy, ignore=shutil.ignore_patterns("_C.so", "__pycache__"))
    result = run_python("import panoptic_ops", PYTHONPATH=str(tmp_path))
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "pip install --no-build-isolation -e packages/panoptic-ops" in result.stderr


def test_wheel_carries_the_library(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(PACKAGE),
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PANOPTIC_OPS_CUDA": "0"},
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("panoptic_ops-*.whl")
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert f"-{tag}-{tag}-" in wheel.name and "none-any" not in wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "panoptic_ops/_C.so" in names and "panoptic_ops/reference.py" in names
        archive.extractall(tmp_path / "site")
    loaded = run_python(
        "import panoptic_ops, torch; print(panoptic_ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5).tolist())",
        PYTHONPATH=str(tmp_path / "site"),
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[0]"
