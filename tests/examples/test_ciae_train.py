"""examples/train.py with ciae_synthetic.yaml: augmented training, the category memory in the
checkpoints, an exact resume (the memory and its step counter included)."""

from __future__ import annotations

import torch
import train as train_script
from tiny_run import EXAMPLES

CONFIG = str(EXAMPLES / "configs" / "ciae_synthetic.yaml")
TINY = [
    "data.synthetic.train=4", "data.synthetic.val=2", "data.synthetic.height=64", "data.synthetic.width=80",
    "data.short_edge=64", "data.crop=[64, 80]", "dataloader.batch_size=2", "dataloader.num_workers=0",
    "train.log_period=1", "test.vis_images=0", "model.fpn_channels=64", "model.embedding_dim=8",
    "model.total_steps=4", "solver.max_iter=4", "solver.lr_schedule=multistep",  # constant lr: a 2-iteration
    # first part then has the same schedule as the uninterrupted run
]  # fmt: skip


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_ciae_trains_and_resumes_with_its_memory(tiny_data, tmp_path):
    full, split = tmp_path / "full", tmp_path / "split"
    assert train_script.main(["--config", CONFIG, "--output-dir", str(full), *TINY, f"data.root={tiny_data}"]) == 0
    final = _weights(full / "model_final.pt")
    assert int(final["criterion.memory.step"]) == 4 and int(final["criterion.memory.total_steps"]) == 4
    assert torch.isfinite(final["criterion.memory.memory"]).all()
    args = ["--config", CONFIG, "--output-dir", str(split), *TINY, f"data.root={tiny_data}"]
    assert train_script.main([*args, "solver.checkpoint_period=2", "solver.max_iter=2"]) == 0
    assert int(_weights(split / "last.pt")["criterion.memory.step"]) == 2
    assert train_script.main([*args, "--resume"]) == 0
    resumed = _weights(split / "model_final.pt")
    for key, value in final.items():
        assert torch.equal(resumed[key], value), key


def test_memory_schedule_follows_max_iter_unless_set():
    from common import load_experiment

    assert load_experiment(CONFIG, ["solver.max_iter=37"]).model.total_steps == 37
    assert load_experiment(CONFIG, ["solver.max_iter=37", "model.total_steps=5"]).model.total_steps == 5
    coco = load_experiment(EXAMPLES / "configs" / "ciae_coco.yaml")
    assert coco.model.total_steps == coco.solver.max_iter
