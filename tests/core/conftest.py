from pathlib import Path

import pytest

from panoptic_core.data import SyntheticConfig, write_synthetic_dataset


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic dataset written once per test session."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth") / "ds", SyntheticConfig(train=6, val=4, seed=3))
