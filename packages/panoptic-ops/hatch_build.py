"""Hatchling build hook that compiles panoptic-ops' C++/CUDA library with ninja.

The library (``_C.so``) holds ``TORCH_LIBRARY`` registrations only (no Python module), so it is
loaded with ``torch.ops.load_library``. Sources live in the repository's ``csrc/`` folder, which
the sdist carries as ``csrc/`` next to this file (override with ``PANOPTIC_OPS_CSRC``).
The library is compiled against the torch already installed, so builds run without isolation.
CUDA kernels are built when ``PANOPTIC_OPS_CUDA`` is ``1``,
skipped when it is ``0``, and otherwise built when torch is a CUDA build and nvcc is found.

The same functions are used by ``python hatch_build.py --check-cuda OUT`` (called by ``make test``),
which compiles and links every kernel with nvcc even where torch is a CPU build.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
CUDA_ARCHS = ("80", "90")  # plus PTX of the newest, so newer GPUs JIT-compile it


def find_csrc() -> Path:
    override = os.environ.get("PANOPTIC_OPS_CSRC")
    candidates = [Path(override)] if override else [PACKAGE_ROOT / "csrc", PACKAGE_ROOT.parent.parent / "csrc"]
    for candidate in candidates:
        if (candidate / "deeplab").is_dir():
            return candidate.resolve()
    raise RuntimeError(
        "panoptic-ops: C++ sources not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "). Build from the sdist or a checkout of the repository, or set PANOPTIC_OPS_CSRC."
    )


def find_ninja() -> str:
    found = shutil.which("ninja")
    if found:
        return found
    try:
        import ninja  # the PyPI wheel ships the binary
    except ImportError as error:
        raise RuntimeError("panoptic-ops: ninja not found; `pip install ninja` or install it with your OS") from error
    return str(Path(ninja.BIN_DIR) / "ninja")


def find_nvcc() -> str | None:
    cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if cuda_home and (Path(cuda_home) / "bin" / "nvcc").exists():
        return str(Path(cuda_home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def cuda_home_for(nvcc: str) -> Path:
    """The toolkit folder holding lib64/libcudart.so (nvcc may be a wrapper script elsewhere)."""
    candidates = [
        os.environ.get("CUDA_HOME"),
        os.environ.get("CUDA_PATH"),
        str(Path(os.path.realpath(nvcc)).parent.parent),
    ]
    candidates.append("/usr/local/cuda")
    for candidate in filter(None, candidates):
        if (Path(candidate) / "lib64" / "libcudart.so").exists():
            return Path(candidate)
    raise RuntimeError(f"panoptic-ops: no CUDA runtime (lib64/libcudart.so) found for {nvcc}; set CUDA_HOME")


TORCH_MISSING = (
    "panoptic-ops: torch is not importable in the build environment. The compiled library is bound to the\n"
    "torch it is built against, so install torch first and build without isolation:\n"
    "    pip install torch --index-url https://download.pytorch.org/whl/cpu     (CPU; or the CUDA index of your GPU)\n"
    "    pip install --no-build-isolation panoptic-ops\n"
    "(pip's default build isolation, and `hatch build` of the wheel, hide the installed torch.)"
)


def import_torch():
    """torch, or a RuntimeError saying how to build when the build environment lacks it."""
    try:
        import torch
    except ImportError as error:
        raise RuntimeError(TORCH_MISSING) from error
    return torch


def want_cuda() -> bool:
    setting = os.environ.get("PANOPTIC_OPS_CUDA", "auto").strip().lower()
    if setting in ("1", "true", "yes", "on"):
        if find_nvcc() is None:
            raise RuntimeError("panoptic-ops: PANOPTIC_OPS_CUDA=1 but nvcc was not found (set CUDA_HOME)")
        return True
    if setting in ("0", "false", "no", "off"):
        return False
    torch = import_torch()
    return torch.version.cuda is not None and find_nvcc() is not None


def sources(csrc: Path, with_cuda: bool) -> tuple[list[Path], list[Path]]:
    cpp = sorted(p for p in csrc.rglob("*.cpp") if with_cuda or not p.name.endswith("_cuda.cpp"))
    cu = sorted(csrc.rglob("*.cu")) if with_cuda else []
    return cpp, cu


def write_ninja(build_dir: Path, csrc: Path, with_cuda: bool, output: Path) -> Path:
    torch = import_torch()
    from torch.utils import cpp_extension

    build_dir.mkdir(parents=True, exist_ok=True)
    includes = [str(csrc), *cpp_extension.include_paths()]
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cflags = [
        "-O3", "-std=c++20", "-fPIC", "-fvisibility=hidden", "-ffp-contract=off",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-DTORCH_API_INCLUDE_EXTENSION_H",
        "-Wall", "-Wno-unused-function", "-Wno-unknown-pragmas",
        *(f"-I{i}" for i in includes),
        f"-I{sysconfig.get_paths()['include']}",
    ]  # fmt: skip
    ldflags = ["-shared", *(f"-L{p}" for p in cpp_extension.library_paths())]
    ldflags += [f"-Wl,-rpath,{p}" for p in cpp_extension.library_paths()]
    ldflags += ["-lc10", "-ltorch_cpu", "-ltorch"]
    nvcc = find_nvcc() if with_cuda else None
    if with_cuda:
        if nvcc is None:
            raise RuntimeError("panoptic-ops: CUDA build requested but nvcc was not found (set CUDA_HOME)")
        lib_dir = cuda_home_for(nvcc) / "lib64"
        ldflags += [f"-L{lib_dir}", f"-Wl,-rpath,{lib_dir}", "-lcudart"]
    lines = [
        "ninja_required_version = 1.3",
        f"cxx = {shlex.quote(os.environ.get('CXX', 'c++'))}",
        "cflags = " + " ".join(shlex.quote(f) for f in cflags),
        "ldflags = " + " ".join(shlex.quote(f) for f in ldflags),
        "rule cxx",
        "  command = $cxx -MMD -MF $out.d $cflags -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = c++ $in",
        "rule link",
        "  command = $cxx $in $ldflags -o $out",
        "  description = link $out",
    ]
    cpp, cu = sources(csrc, with_cuda)
    objects = []
    for src in cpp:
        obj = build_dir / (src.relative_to(csrc).as_posix().replace("/", "__") + ".o")
        lines.append(f"build {obj}: cxx {src}")
        objects.append(obj)
    if with_cuda:
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in CUDA_ARCHS]
        gencode.append(f"-gencode=arch=compute_{CUDA_ARCHS[-1]},code=compute_{CUDA_ARCHS[-1]}")
        nvflags = [
            "-O3", "-std=c++17", "-Xcompiler", "-fPIC", "-fmad=false", f"-I{csrc}", *gencode,
            "--expt-relaxed-constexpr",
        ]  # fmt: skip
        lines += [
            f"nvcc = {shlex.quote(nvcc)}",
            "nvflags = " + " ".join(shlex.quote(f) for f in nvflags),
            "rule nvcc",
            "  command = $nvcc $nvflags -c $in -o $out",
            "  description = nvcc $in",
        ]
        for src in cu:
            obj = build_dir / (src.relative_to(csrc).as_posix().replace("/", "__") + ".o")
            lines.append(f"build {obj}: nvcc {src}")
            objects.append(obj)
    lines.append(f"build {output}: link " + " ".join(str(o) for o in objects))
    lines.append(f"default {output}")
    ninja_file = build_dir / "build.ninja"
    ninja_file.write_text("\n".join(lines) + "\n")
    return ninja_file


def build_library(build_dir: Path, with_cuda: bool) -> Path:
    csrc = find_csrc()
    output = build_dir / "_C.so"
    write_ninja(build_dir, csrc, with_cuda, output)
    jobs = os.environ.get("MAX_JOBS")
    command = [find_ninja(), "-C", str(build_dir)] + (["-j", jobs] if jobs else [])
    subprocess.run(command, check=True)
    return output


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # `python hatch_build.py --check-cuda` needs no hatchling
    BuildHookInterface = object


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        with_cuda = want_cuda()
        flavour = "cuda" if with_cuda else "cpu"
        library = build_library(
            PACKAGE_ROOT / "build" / f"{flavour}-py{sys.version_info[0]}{sys.version_info[1]}", with_cuda
        )
        if version == "editable":
            # dev-mode-dirs puts src/ on the path; the library has to sit next to the sources.
            target = PACKAGE_ROOT / "src" / "panoptic_ops" / "_C.so"
            temporary = target.with_suffix(".so.tmp")
            shutil.copy2(library, temporary)
            os.replace(temporary, target)
        else:
            build_data["force_include"][str(library)] = "panoptic_ops/_C.so"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--check-cuda":
        sys.exit("usage: python hatch_build.py --check-cuda BUILD_DIR")
    print(build_library(Path(sys.argv[2]).resolve(), with_cuda=True))
