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


def test_import_needs_no_library_and_a_call_says_how_to_build(tmp_path):
    """Without _C.so: panoptic_ops, its constants and reference, and panoptic_core's targets and
    losses import; a compiled op raises the error naming the build command (torchvision's
    ``_assert_has_ops``)."""
    copy = tmp_path / "panoptic_ops"
    shutil.copytree(Path(panoptic_ops.__file__).parent, copy, ignore=shutil.ignore_patterns("_C.so", "__pycache__"))
    code = (
        "import torch, panoptic_ops, panoptic_ops.reference, panoptic_core.targets, panoptic_core.losses\n"
        f"assert panoptic_ops.__file__.startswith({str(tmp_path)!r}), panoptic_ops.__file__\n"
        "assert panoptic_ops.UNBOXED[0] == float('-inf') and not panoptic_ops._library.has_ops()\n"
        "try:\n"
        "    panoptic_ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5)\n"
        "except RuntimeError as error:\n"
        "    print(error)\n"
    )
    result = run_python(code, PYTHONPATH=str(tmp_path), PANOPTIC_OPS_JIT="0")
    assert result.returncode == 0, result.stderr
    assert "the compiled library (_C.so) is missing" in result.stdout
    assert "pip install --no-build-isolation -e packages/panoptic-ops" in result.stdout


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


def test_build_without_torch_says_what_to_do():
    code = (
        f"import sys; sys.modules['torch'] = None; sys.path.insert(0, {str(PACKAGE)!r}); import hatch_build\n"
        "try:\n"
        "    hatch_build.want_cuda()\n"
        "except RuntimeError as error:\n"
        "    print(error)\n"
    )
    result = run_python(code, PANOPTIC_OPS_CUDA="auto")
    assert result.returncode == 0, result.stderr
    assert "torch is not importable in the build environment" in result.stdout
    assert "pip install --no-build-isolation panoptic-ops" in result.stdout
