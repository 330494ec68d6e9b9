"""What the example-script tests share (a module of its own name: `from conftest import` would get
whichever test folder's conftest was imported first)."""

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"  # on sys.path (tests/conftest.py)

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
