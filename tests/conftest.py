import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COCO_SAMPLE = REPO.parent / "shared" / "data" / "coco-panoptic-sample"

# The example scripts (train.py, oracle.py, common.py) are imported by the tests as modules.
EXAMPLES = REPO / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))


@pytest.fixture
def coco_sample() -> Path:
    """The real COCO panoptic sample shipped beside the repository (../shared/data)."""
    if not (COCO_SAMPLE / "panoptic_examples.json").is_file():
        pytest.skip(f"real COCO sample not present at {COCO_SAMPLE} (it ships beside the repo in CI only)")
    return COCO_SAMPLE
