import sys
from pathlib import Path

import pytest

from panoptic_core.data import SyntheticConfig, write_synthetic_dataset

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

# A tiny run of the synthetic config: 64 x 80 images, batch 2, a few iterations.
TINY = [
    "data.synthetic.train=4",
    "data.synthetic.val=2",
    "data.synthetic.height=64",
    "data.synthetic.width=80",
    "data.short_edge=64",
    "data.crop=[64, 80]",
    "dataloader.batch_size=2",
    "dataloader.num_workers=0",
    "solver.warmup_iters=2",
    "train.log_period=1",
    "test.vis_images=2",
    "model.aspp_channels=16",
    "model.semantic_decoder_channels=16",
    "model.semantic_head_channels=16",
    "model.instance_decoder_channels=16",
    "model.instance_head_channels=8",
    "model.project_channels=[8, 8]",
]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The tiny synthetic dataset the example tests train on (written once)."""
    root = tmp_path_factory.mktemp("examples") / "synthetic"
    write_synthetic_dataset(root, SyntheticConfig(train=4, val=2, height=64, width=80, seed=0))
    return root
