from pathlib import Path

import pytest

from panoptic_core.data import SyntheticConfig, write_synthetic_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The tiny synthetic dataset the example tests train on (written once)."""
    root = tmp_path_factory.mktemp("examples") / "synthetic"
    write_synthetic_dataset(root, SyntheticConfig(train=4, val=2, height=64, width=80, seed=0))
    return root
