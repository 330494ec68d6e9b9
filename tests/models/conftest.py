import json
from pathlib import Path

import pytest

from panoptic_core.data import SyntheticConfig, write_synthetic_dataset

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def synthetic_models_root(tmp_path_factory) -> Path:
    """A small synthetic dataset (odd image size) written once per test session."""
    config = SyntheticConfig(train=4, val=2, height=67, width=93, seed=5)
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth_models") / "ds", config)


@pytest.fixture(scope="session")
def synthetic_val_root(tmp_path_factory) -> Path:
    """The synthetic val split ``make demo`` scores (16 images of 128 x 160, seed 0)."""
    config = SyntheticConfig(train=0, val=16, seed=0)
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth_val") / "ds", config)


@pytest.fixture
def oracle_script(request, tmp_path):
    """``oracle_script(method, data)``: ``examples/oracle.py --method METHOD`` run in this process on
    ``"synthetic"`` (the val split above, ``--preset synthetic``) or ``"coco"`` (the real COCO sample,
    ``--preset coco``; the test skips without it). Returns the pq_compute structure it wrote."""
    import oracle

    def run(method: str, data: str) -> dict:
        if data == "synthetic":
            root = request.getfixturevalue("synthetic_val_root")
            gt_json, gt_folder = root / "annotations" / "panoptic_val.json", root / "panoptic_val"
        else:
            sample = request.getfixturevalue("coco_sample")
            gt_json, gt_folder = sample / "panoptic_examples.json", sample / "panoptic_examples"
        out = tmp_path / f"oracle_{method}_{data}.json"
        args = ["--method", method, "--gt-json", str(gt_json), "--gt-folder", str(gt_folder), "--output", str(out),
                "--preset", data]  # fmt: skip
        assert oracle.main(args) == 0
        return json.loads(out.read_text())

    return run


@pytest.fixture
def overfit_run(tmp_path):
    """``overfit_run(config_name, synthetic, *overrides)``: ``examples/train.py`` in its own process, as a
    user runs it, on a 4-image synthetic train split (``synthetic``: a SyntheticConfig) with
    ``examples/configs/<config_name>.yaml``, batch 4, no augmentation, evaluated on the same images
    at the end. Returns (the final metrics, the run folder, the dataset root)."""
    import subprocess
    import sys

    def run(config_name: str, synthetic: SyntheticConfig, *overrides: str) -> tuple[dict, Path, Path]:
        root = write_synthetic_dataset(tmp_path / "ds", synthetic)
        out = tmp_path / "run"
        common = [
            f"data.root={root}", "data.val_split=train", "data.short_edge=null", "data.crop=null", "data.flip=false",
            "data.color_jitter=false", "dataloader.batch_size=4", "dataloader.num_workers=0", "test.eval_period=0",
            "test.vis_images=0",
        ]  # fmt: skip
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "train.py"), "--config", str(EXAMPLES / "configs" / f"{config_name}.yaml"),
             "--output-dir", str(out), *common, *overrides],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads((out / "metrics.json").read_text()), out, root

    return run
