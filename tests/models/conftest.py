from pathlib import Path

import pytest

from panoptic_core.data import SyntheticConfig, write_synthetic_dataset


@pytest.fixture(scope="session")
def synthetic_models_root(tmp_path_factory) -> Path:
    """A small synthetic dataset (odd image size) written once per test session."""
    config = SyntheticConfig(train=4, val=2, height=67, width=93, seed=5)
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth_models") / "ds", config)
