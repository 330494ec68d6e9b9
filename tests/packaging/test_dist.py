"""Release artifacts: `make dist` builds every package, and each wheel works on its own.

One module-scoped build (`make dist-build` into a temporary folder, CPU flavour): hatch builds
the sdists and the pure wheels; the panoptic-ops wheel is built from its sdist alone, copied into
an empty folder, with `pip wheel --no-build-isolation` against the installed torch (the one
compile of the library here; every venv below reuses that wheel).

Fresh venvs (`python -m venv --without-pip`, driven by this interpreter's pip through
`pip --python`) install one wheel each from the build folder: third-party dependencies (numpy,
pillow, pyyaml) first from the index or pip's cache at the versions of this environment, then
ours with `--no-index --find-links DIST`, so only the wheels just built can satisfy them and an
unrelated upload of the same name on an index never can.

Torch is not reinstalled (a fresh CPU torch costs minutes and 700 MB): the venvs that need it get
a `.pth` file naming a folder of symlinks to torch and its dependency closure only (filelock,
sympy, networkx, jinja2, fsspec, ...; found from the installed metadata). pip sees those
`.dist-info` folders and treats torch as installed; nothing else of the development environment
(our editable packages, numpy, test tools) is visible. The panoptic-eval venv gets no such file and
must end up without torch.

Measured on the 2-core development machine (loaded by other work), 2026-12-01: 90 user-CPU s,
93 s wall (about 55 user s of it the compile); see docs/releasing.md.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("panoptic_eval", "panoptic_ops", "panoptic_core", "panoptic_models")


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PANOPTIC_OPS_JIT")}
    result = subprocess.run(command, capture_output=True, text=True, env={**env, **kwargs.pop("env", {})}, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout}\n{result.stderr}"
    return result


def version(name: str) -> str:
    return metadata.version(name)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dist")
    run(["make", "--no-print-directory", "dist-build", f"DIST={folder}"], cwd=REPO, env={"PANOPTIC_OPS_CUDA": "0"})
    return folder


@pytest.fixture(scope="module")
def torch_only(tmp_path_factory) -> Path:
    """A folder of symlinks to the installed torch and its runtime dependencies, nothing else."""
    folder = tmp_path_factory.mktemp("torch_only")
    seen, todo = set(), ["torch"]
    while todo:
        dist = metadata.distribution(todo.pop())
        name = dist.metadata["Name"].lower()
        if name in seen:
            continue
        seen.add(name)
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        root = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}:
            link = folder / top
            if (root / top).exists() and not link.exists():
                link.symlink_to(root / top)
    return folder


def venv(path: Path, torch_site: Path | None = None) -> Path:
    run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    python = path / "bin" / "python"
    if torch_site is not None:
        purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
        (Path(purelib) / "_torch_only.pth").write_text(f"{torch_site}\n")
    return python


def pip(python: Path, *args: str) -> None:
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--disable-pip-version-check", *args])


def install(python: Path, dist: Path, package: str, third_party: tuple[str, ...] = ()) -> None:
    if third_party:
        pip(python, *(f"{name}=={version(name)}" for name in third_party))
    pip(python, "--no-index", "--find-links", str(dist), package)


def python_code(python: Path, code: str, **kwargs) -> str:
    return run([str(python), "-c", code], **kwargs).stdout


def test_dist_holds_an_sdist_and_a_wheel_of_each_package(dist):
    names = sorted(p.name for p in dist.iterdir())
    for package in PACKAGES:
        assert any(n.startswith(f"{package}-") and n.endswith(".tar.gz") for n in names), names
        assert any(n.startswith(f"{package}-") and n.endswith(".whl") for n in names), names
    (ops_wheel,) = dist.glob("panoptic_ops-*.whl")
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert f"-{tag}-{tag}-linux_" in ops_wheel.name
    (ops_sdist,) = dist.glob("panoptic_ops-*.tar.gz")
    listing = run(["tar", "tzf", str(ops_sdist)]).stdout
    assert "/csrc/deeplab/deeplab.cpp" in listing and "/csrc/nms/nms_kernel.cu" in listing
    assert "_C.so" not in listing


def test_each_wheel_installs_alone_and_works(dist, torch_only, tmp_path):
    # panoptic-eval: numpy and pillow only, no torch anywhere.
    eval_py = venv(tmp_path / "eval")
    install(eval_py, dist, "panoptic-eval", ("numpy", "pillow"))
    out = python_code(
        eval_py,
        "import importlib.util, numpy as np, panoptic_eval\n"
        "assert importlib.util.find_spec('torch') is None, 'panoptic-eval pulled torch'\n"
        "ids = np.array([[1, 1], [2, 2]]); seg = [{'id': 1, 'category_id': 1, 'iscrowd': 0, 'area': 2},"
        " {'id': 2, 'category_id': 2, 'iscrowd': 0, 'area': 2}]\n"
        "m = panoptic_eval.PanopticQuality([{'id': 1, 'isthing': 1}, {'id': 2, 'isthing': 0}])\n"
        "m.update(ids, seg, ids, seg); print(m.compute()['All']['pq'], panoptic_eval.__file__)\n",
    )
    pq, location = out.split()
    assert float(pq) == 1.0 and location.startswith(str(tmp_path))

    # panoptic-ops: torch only; the compiled library from the sdist build loads and runs.
    ops_py = venv(tmp_path / "ops", torch_only)
    install(ops_py, dist, "panoptic-ops")
    out = python_code(
        ops_py,
        "import torch, panoptic_ops\n"
        "print(panoptic_ops.nms(torch.tensor([[0., 0, 2, 2], [0, 0, 2, 2.1]]), torch.tensor([.5, .9]), .5).tolist(),"
        " panoptic_ops.__file__)\n",
    )
    assert out.split() == ["[1]", str(next((tmp_path / "ops").rglob("panoptic_ops/__init__.py")))]

    # panoptic-core: pulls panoptic-eval and panoptic-ops; its CLI writes a synthetic dataset.
    core_py = venv(tmp_path / "core", torch_only)
    install(core_py, dist, "panoptic-core", ("numpy", "pillow"))
    run([str(tmp_path / "core" / "bin" / "panoptic-core"), "synth", str(tmp_path / "synth"), "--train", "1",
         "--val", "2", "--size", "64", "80"])  # fmt: skip
    assert len(list((tmp_path / "synth" / "panoptic_val").glob("*.png"))) == 2


def test_all_four_run_the_oracle_example(dist, torch_only, tmp_path):
    python = venv(tmp_path / "all", torch_only)
    install(python, dist, "panoptic-models", ("numpy", "pillow", "pyyaml"))
    code = f"import {', '.join(PACKAGES)}; " + "; ".join(f"print({p}.__file__)" for p in PACKAGES)
    locations = python_code(python, code)
    assert all(line.startswith(str(tmp_path)) for line in locations.split()), locations
    synth = tmp_path / "synth"
    run([str(tmp_path / "all" / "bin" / "panoptic-core"), "synth", str(synth), "--train", "1", "--val", "2",
         "--size", "64", "80"])  # fmt: skip
    output = tmp_path / "oracle.json"
    run([str(python), str(REPO / "examples" / "oracle.py"), "--method", "panoptic_deeplab", "--preset", "synthetic",
         "--gt-json", str(synth / "annotations" / "panoptic_val.json"), "--gt-folder", str(synth / "panoptic_val"),
         "--output", str(output)], cwd=tmp_path)  # fmt: skip
    results = json.loads(output.read_text())
    assert results["All"]["n"] > 0 and results["All"]["pq"] > 0.9, results["All"]
    print(f"panoptic_deeplab oracle PQ from the installed wheels: {results['All']}")


