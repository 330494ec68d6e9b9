"""panoptic-eval stands alone: numpy and Pillow only, importable and working without torch."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "packages" / "panoptic-eval"


def test_wheel_requires_only_numpy_and_pillow(tmp_path):
    pytest.importorskip("hatchling")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(PACKAGE)], check=True)
    wheel = next(tmp_path.glob("panoptic_eval-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith("METADATA"))).decode()
    required = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    unconditional = sorted(r.split(">")[0].split("=")[0].split(";")[0].strip().lower()
                           for r in required if "extra ==" not in r)
    assert unconditional == ["numpy", "pillow"]
    assert any("torch" in r and "extra ==" in r for r in required)
    assert any("pycocotools" in r and "extra == 'coco'" in r for r in required)  # mask AP only
    names = zipfile.ZipFile(wheel).namelist()
    assert "panoptic_eval/cli.py" in names and not any(n.endswith(".so") for n in names)


def test_works_when_torch_cannot_be_imported(tmp_path):
    script = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from panoptic_eval import pq_compute
from panoptic_eval.testing import write_set
p = write_set({str(tmp_path)!r}, seed=1, n_images=3)
r = pq_compute(p["gt_json"], p["pred_json"], p["gt_folder"], p["pred_folder"], workers=2)
assert 0 < r["All"]["pq"] < 1, r
assert "torch" not in [m for m, v in sys.modules.items() if v is not None]
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
