"""CIAE on CPU at 800 x 1333 (COCO test scale): the network and the fusing step timed separately
(as the paper's Table IX does), the fusing step against a named peer, and the CIAE loss per image.

* ``network``: ``model.predict`` of CIAE R50-FPN (``CIAEConfig.coco()``, random weights) on one
  3 x 800 x 1344 input (800 x 1333 padded to 32), eval mode, ``torch.no_grad()``.
* ``fusing``: the post-processing of one image's head outputs, 53 stuff + 100 instance queries,
  32-d: ours (``ciae_postprocess``: FCOS proposals, 4x up-sampling and L2 norm of P, the queries,
  ``panoptic_ops.box_filtered_assign`` and the box rule) vs the same step in plain torch (the peer:
  the similarity materialised as a [Q, H, W] tensor, the box mask applied, an argmax, the same
  proposals and up-sampling), and ``ciae_fuse`` alone (assignment + result, P given).
* ``loss``: ``ciae_loss`` forward + backward for one 800 x 1344 image at the default stride-4 map
  (200 x 336), 53 stuff + 100 instances; its peak memory is measured in a subprocess
  (``LOSS_MEMORY_SCRIPT``: VmHWM after ``clear_refs``, glibc's mmap threshold fixed so freed
  buffers are returned, as ``bench_models.py`` does).

Run: ``.venv/bin/python -m pytest benchmarks/bench_ciae.py -p no:randomly -o python_files="bench_*.py"``;
``PANOPTIC_BENCH_QUICK=1`` runs at 200 x 336 (a smoke test; the recorded figures are at 800 x 1333).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from panoptic_core.data import Categories
from panoptic_core.losses import ciae_loss
from panoptic_models import CIAEConfig, build_model
from panoptic_models.meta_arch.ciae import ciae_fuse, ciae_postprocess, ciae_proposals
from panoptic_models.structures import PanopticResult
from panoptic_ops import UNBOXED

QUICK = os.environ.get("PANOPTIC_BENCH_QUICK", "") not in ("", "0")
HEIGHT, WIDTH = (200, 336) if QUICK else (800, 1333)
PADDED = (-(-HEIGHT // 32) * 32, -(-WIDTH // 32) * 32)
NUM_STUFF, NUM_THINGS, NUM_INSTANCES, DIM = 53, 80, 100, 32
# COCO's vocabulary size: 80 things, then 53 stuff (order does not matter for timing).
CATEGORIES = Categories.from_list(
    [{"id": i + 1, "isthing": int(i < NUM_THINGS)} for i in range(NUM_THINGS + NUM_STUFF)]
)
CONFIG = CIAEConfig.coco()


def _head_outputs(seed: int = 0) -> dict[str, torch.Tensor]:
    """One image's head outputs: a smooth random stride-4 map and logits giving ~100 confident,
    mostly distinct proposals (instance_score_threshold passed), as a trained model's would."""
    g = torch.Generator().manual_seed(seed)
    h4, w4 = PADDED[0] // 4, PADDED[1] // 4
    coarse = torch.randn(1, DIM, h4 // 8, w4 // 8, generator=g)
    embeddings = F.interpolate(coarse, size=(h4, w4), mode="bilinear", align_corners=False)[0]
    embeddings = embeddings + 0.2 * torch.randn(DIM, h4, w4, generator=g)
    from panoptic_models.meta_arch.ciae import level_locations

    sizes = [(-(-PADDED[0] // s), -(-PADDED[1] // s)) for s in CONFIG.strides]
    points, levels = level_locations(sizes, CONFIG.strides)
    n = len(points)
    logits = torch.full((n, NUM_THINGS), -8.0)
    chosen = torch.randperm(n, generator=g)[:NUM_INSTANCES]
    logits[chosen, torch.randint(0, NUM_THINGS, (NUM_INSTANCES,), generator=g)] = 4.0
    reg = torch.rand(n, 4, generator=g) * 120 + 8
    stuff = F.normalize(torch.randn(NUM_STUFF, DIM, generator=g), dim=1)
    return {"cls_logits": logits, "box_reg": reg, "centerness": torch.full((n,), 4.0), "locations": points,
            "levels": levels, "embeddings": embeddings, "stuff_queries": stuff}  # fmt: skip


def torch_fusing(outputs, image_size, output_size, categories, config) -> PanopticResult:
    """The peer: the same fusing step in plain torch, the [Q, H, W] similarity materialised."""
    boxes, _, classes, points = ciae_proposals(outputs, image_size, config)
    h, w = image_size
    up = F.interpolate(outputs["embeddings"][None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    p = F.normalize(up, dim=0)[:, :h, :w]
    ys, xs = points[:, 1].long().clamp(0, h - 1), points[:, 0].long().clamp(0, w - 1)
    queries = torch.cat([outputs["stuff_queries"], p[:, ys, xs].T])
    all_boxes = torch.cat([torch.tensor(UNBOXED).expand(len(outputs["stuff_queries"]), 4), boxes])
    sim = torch.einsum("dhw,qd->qhw", p, queries)
    ys, xs = torch.arange(h) + 0.5, torch.arange(w) + 0.5
    inside = ((xs >= all_boxes[:, 0:1]) & (xs <= all_boxes[:, 2:3]))[:, None, :] & (
        (ys >= all_boxes[:, 1:2]) & (ys <= all_boxes[:, 3:4])
    )[:, :, None]
    ids = sim.masked_fill(~inside, -torch.inf).argmax(dim=0)
    num_stuff = len(outputs["stuff_queries"])
    stuff_classes = torch.tensor(categories.stuff_classes)
    thing_classes = torch.tensor(categories.thing_classes)
    label_of = torch.cat([stuff_classes * 65536, thing_classes[classes] * 65536 + torch.arange(1, len(boxes) + 1)])
    labels = label_of[ids]
    counts = torch.bincount(ids.reshape(-1), minlength=len(queries))
    small = torch.zeros(len(queries), dtype=torch.bool)
    small[:num_stuff] = counts[:num_stuff] < config.stuff_area * (min(h, w) / config.stuff_area_short_edge) ** 2
    labels = torch.where(small[ids], -1, labels)
    return PanopticResult.from_label_map(labels, categories.ids, categories.thing_classes, 65536, -1)


@pytest.fixture(scope="module")
def outputs():
    return _head_outputs()


@pytest.mark.benchmark(group=f"ciae fusing {HEIGHT}x{WIDTH}, 53 stuff + 100 instances")
def test_fusing_torch_peer(benchmark, outputs):
    benchmark.extra_info["peer"] = "plain torch, [Q, H, W] similarity materialised"
    result = benchmark.pedantic(torch_fusing, args=(outputs, (HEIGHT, WIDTH), (HEIGHT, WIDTH), CATEGORIES, CONFIG),
                                rounds=3, iterations=1, warmup_rounds=1)  # fmt: skip
    ours = ciae_postprocess(outputs, (HEIGHT, WIDTH), (HEIGHT, WIDTH), CATEGORIES, CONFIG)
    agree = float((result.ids > 0).eq(ours.ids > 0).float().mean())
    benchmark.extra_info["pixels_agreeing_on_void"] = agree
    assert len(ours.segments_info) > NUM_STUFF // 2


@pytest.mark.benchmark(group=f"ciae fusing {HEIGHT}x{WIDTH}, 53 stuff + 100 instances")
def test_fusing_ours(benchmark, outputs):
    benchmark.pedantic(ciae_postprocess, args=(outputs, (HEIGHT, WIDTH), (HEIGHT, WIDTH), CATEGORIES, CONFIG),
                       rounds=5, iterations=1, warmup_rounds=1)  # fmt: skip


@pytest.mark.benchmark(group=f"ciae fusing {HEIGHT}x{WIDTH}, 53 stuff + 100 instances")
def test_fuse_only_ours(benchmark, outputs):
    boxes, scores, classes, points = ciae_proposals(outputs, (HEIGHT, WIDTH), CONFIG)
    up = F.interpolate(outputs["embeddings"][None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    p = F.normalize(up, dim=0)
    ys, xs = points[:, 1].long().clamp(0, p.shape[1] - 1), points[:, 0].long().clamp(0, p.shape[2] - 1)
    queries = p[:, ys, xs].T
    benchmark.extra_info["instances"] = len(boxes)
    benchmark.pedantic(ciae_fuse, args=(p, outputs["stuff_queries"], queries, boxes, classes, scores, (HEIGHT, WIDTH),
                                        (HEIGHT, WIDTH), CATEGORIES, CONFIG), rounds=5, iterations=1)  # fmt: skip


@pytest.mark.benchmark(group=f"ciae network {HEIGHT}x{WIDTH}")
def test_network_forward(benchmark):
    torch.manual_seed(0)
    model = build_model(CONFIG, CATEGORIES).eval()
    images = torch.randn(1, 3, *PADDED)
    benchmark.extra_info["peer"] = "eager R50-FPN CIAE predict (the whole network)"
    with torch.no_grad():
        benchmark.pedantic(model.predict, args=(images,), rounds=2, iterations=1, warmup_rounds=1)


def _loss_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = PADDED[0] // 4, PADDED[1] // 4
    emb = torch.randn(1, DIM, h, w, generator=g)
    seg = torch.randint(0, NUM_STUFF + NUM_INSTANCES, (1, h, w), generator=g)
    cat = torch.where(seg >= NUM_STUFF, NUM_STUFF, seg)
    xy = torch.rand(NUM_INSTANCES, 2, generator=g) * torch.tensor([PADDED[1], PADDED[0]]) * 0.8
    boxes = torch.cat([torch.tensor(UNBOXED).expand(NUM_STUFF, 4), torch.cat([xy, xy + 200], dim=1)])
    memory = F.normalize(torch.randn(NUM_STUFF + 1, DIM, generator=g), dim=1)
    return emb, seg, cat, [boxes], memory


def _loss_step(emb, seg, cat, boxes, memory):
    x = emb.clone().requires_grad_(True)
    ciae_loss(x, seg, cat, boxes, memory, NUM_STUFF, stride=4)["loss_ciae"].backward()


@pytest.mark.benchmark(group=f"ciae loss per image ({PADDED[0] // 4}x{PADDED[1] // 4} map, 153 queries)")
def test_loss_forward_backward(benchmark):
    benchmark.extra_info["peer"] = "ciae_loss forward + backward (panoptic-core)"
    benchmark.pedantic(_loss_step, args=_loss_inputs(), rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["peak_mib"] = loss_peak_memory()


LOSS_MEMORY_SCRIPT = """
import gc, json, sys
sys.path.insert(0, {bench_dir!r})
import bench_ciae as b

def mib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

inputs = b._loss_inputs()
b._loss_step(*inputs)
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = mib("VmRSS")
b._loss_step(*inputs)
print(json.dumps({{"peak": mib("VmHWM") - before}}))
"""


def loss_peak_memory() -> float:
    """MiB above the resident set at the start of one loss forward + backward (second call)."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
    script = LOSS_MEMORY_SCRIPT.format(bench_dir=os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    peak = json.loads(done.stdout.strip().splitlines()[-1])["peak"]
    print(f"\nciae_loss peak memory per image: {peak:.0f} MiB")
    return peak
