from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COCO_SAMPLE = REPO.parent / "shared" / "data" / "coco-panoptic-sample"


@pytest.fixture
def coco_sample() -> Path:
    """The real COCO panoptic sample shipped beside the repository (../shared/data)."""
    if not (COCO_SAMPLE / "panoptic_examples.json").is_file():
        pytest.skip(f"real COCO sample not present at {COCO_SAMPLE} (it ships beside the repo in CI only)")
    return COCO_SAMPLE
