"""EfficientPS + SOLOv2 inference at Cityscapes' size (1024 x 2048) on the CPU, with the fusion share.

Groups (each against its named peer, same run):

* ``eps_inference``: the B5 paper model (Cityscapes' 19 classes, 8 things; random weights, eval)
  on one 1024 x 2048 image: forward only (``model.predict``, peer) vs forward + SOLOv2 inference +
  panoptic fusion (``model(batch)``); their difference is the post-processing share.
* ``eps_fusion[scene]``: the panoptic fusion alone (:func:`efficientps_fusion`: overlap filter,
  fused logits, argmax, stuff filling) vs the authors' ``simple_test_mask_`` transcribed (peer:
  every instance's ML_A / ML_B stacked at full size, concatenated with the stuff logits,
  ``softmax`` then ``argmax``; ``tests/models/test_efficientps.py`` proves both give the same
  map), on ``oracle`` (the instances of a synthetic 1024 x 2048 scene, from its oracle outputs
  through SOLOv2's inference) and ``crowded`` (40 random instances).
* ``eps_postprocess``: :func:`efficientps_postprocess` on the oracle scene (SOLOv2's inference,
  mask upsampling, fusion) vs the fusion alone (peer), to split the post-processing.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest benchmarks/bench_efficientps.py --benchmark-only -q \\
        -p no:randomly -o python_files="bench_*.py"

``PANOPTIC_BENCH_QUICK=1`` runs at 256 x 512 (a smoke test; the recorded figures are at 1024 x 2048).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from panoptic_core.data import Categories, PanopticBatch, PanopticTarget, Segment, make_synthetic_image, segment_stats
from panoptic_core.data import synthetic_categories as synthetic_category_list
from panoptic_models import EfficientPSConfig, build_model
from panoptic_models.meta_arch.efficientps import (
    efficientps_fusion,
    efficientps_oracle_outputs,
    efficientps_postprocess,
    solov2_instances,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
from test_efficientps import authors_fusion

QUICK = os.environ.get("PANOPTIC_BENCH_QUICK", "") not in ("", "0")
SIZE = (256, 512) if QUICK else (1024, 2048)
# One B5 forward at 1024 x 2048 takes minutes on the shared 2-core CPU: one round each, no warmup.
FORWARD_ROUNDS = 2 if QUICK else 1

# Cityscapes' 19 training classes: 11 stuff, then 8 things.
CITYSCAPES = Categories.from_list([{"id": i, "name": f"c{i}", "isthing": int(i >= 11)} for i in range(19)])
SYNTHETIC = Categories.from_list(synthetic_category_list())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(EfficientPSConfig.cityscapes(), CITYSCAPES).eval()


@pytest.fixture(scope="module")
def batch():
    h, w = SIZE
    images = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    return PanopticBatch(images, torch.zeros(1, h, w, dtype=torch.bool), [], [SIZE], {})


def test_forward(benchmark, model, batch):
    benchmark.group = "eps_inference"
    benchmark.extra_info["peer"] = "forward only (predict)"
    with torch.no_grad():
        benchmark.pedantic(model.predict, args=(batch.images,), rounds=FORWARD_ROUNDS, iterations=1)


def test_forward_and_postprocess(benchmark, model, batch):
    benchmark.group = "eps_inference"
    with torch.no_grad():
        results = benchmark.pedantic(model, args=(batch,), rounds=FORWARD_ROUNDS, iterations=1)
    benchmark.extra_info["segments"] = len(results[0].segments_info)


def _synthetic_scene() -> PanopticTarget:
    _, ids, info = make_synthetic_image(np.random.default_rng(3), *SIZE)
    t_ids = torch.from_numpy(ids.astype(np.int64))
    present = [s["id"] for s in info]
    segs = []
    for s, (area, bbox) in zip(info, segment_stats(t_ids, present), strict=True):
        k = SYNTHETIC.class_index(s["category_id"])
        segs.append(Segment(s["id"], s["category_id"], k, SYNTHETIC.isthing[k], bool(s["iscrowd"]), area, bbox))
    return PanopticTarget(t_ids, segs, 0, "scene.png")


@pytest.fixture(scope="module")
def scenes():
    """Per scene: the fusion's inputs (semantic, mask logits, classes, scores at the full size)."""
    cfg = EfficientPSConfig.cityscapes()
    g = torch.Generator().manual_seed(1)
    target = _synthetic_scene()
    outputs = efficientps_oracle_outputs(cfg.target_generator(SYNTHETIC)(target), SYNTHETIC, cfg)
    # E = 256 mask-feature channels as the paper model: the oracle's N channels, then noise channels
    # that every kernel ignores; noise on the semantic logits
    n = outputs["mask_features"].shape[0]
    noisy = dict(outputs, semantic=outputs["semantic"] + torch.randn(outputs["semantic"].shape, generator=g))
    noisy["mask_features"] = torch.cat([outputs["mask_features"],
                                        torch.randn(cfg.mask_channels - n, *outputs["mask_features"].shape[1:],
                                                    generator=g)])  # fmt: skip
    noisy["kernel"] = [torch.cat([k, torch.zeros(cfg.mask_channels - n, *k.shape[1:])]) for k in outputs["kernel"]]
    scores, labels, logits = solov2_instances(noisy["category"], noisy["kernel"], noisy["mask_features"], cfg)
    logits = F.interpolate(logits[None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    logits = logits[:, : SIZE[0], : SIZE[1]]
    classes = torch.tensor(SYNTHETIC.thing_classes)[labels]
    oracle = (noisy["semantic"], logits, classes, scores)
    h, w = SIZE
    k = 40
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    centers = torch.rand(k, 2, generator=g) * torch.tensor([h, w])
    radii = (0.02 + 0.08 * torch.rand(k, generator=g)) * h
    crowded_logits = torch.stack([0.2 * (r - torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2))
                                  for (cy, cx), r in zip(centers.tolist(), radii.tolist(), strict=True)])  # fmt: skip
    crowded_scores, _ = torch.sort(0.5 + 0.5 * torch.rand(k, generator=g), descending=True)
    crowded_classes = torch.tensor(SYNTHETIC.thing_classes)[torch.randint(0, SYNTHETIC.num_things, (k,), generator=g)]
    crowded = (torch.randn(SYNTHETIC.num_classes, h, w, generator=g) * 3, crowded_logits, crowded_classes,
               crowded_scores)  # fmt: skip
    return {"oracle": oracle, "crowded": crowded, "outputs": noisy, "config": cfg}


@pytest.mark.parametrize("scene", ["oracle", "crowded"])
@pytest.mark.parametrize("impl", ["ours", "authors"])
def test_fusion(benchmark, scenes, scene, impl):
    benchmark.group = f"eps_fusion[{scene}]"
    cfg = dataclasses.replace(scenes["config"], min_stuff_area=2048)
    args = (*scenes[scene], SYNTHETIC, cfg)
    if impl == "authors":
        benchmark.extra_info["peer"] = "authors' simple_test_mask_ transcribed (dense stack, softmax, argmax)"
        benchmark.pedantic(authors_fusion, args=args, rounds=3, iterations=1, warmup_rounds=1)
    else:
        result = benchmark.pedantic(efficientps_fusion, args=args, rounds=3, iterations=1, warmup_rounds=1)
        benchmark.extra_info["instances in"] = int((scenes[scene][3] >= cfg.instance_score_threshold).sum())
        benchmark.extra_info["segments"] = len(result.segments_info)


def test_postprocess_peer_fusion(benchmark, scenes):
    benchmark.group = "eps_postprocess"
    benchmark.extra_info["peer"] = "the fusion alone (oracle scene)"
    benchmark.pedantic(efficientps_fusion, args=(*scenes["oracle"], SYNTHETIC, scenes["config"]), rounds=3,
                       iterations=1, warmup_rounds=1)  # fmt: skip


def test_postprocess(benchmark, scenes):
    benchmark.group = "eps_postprocess"
    outputs = scenes["outputs"]
    result = benchmark.pedantic(efficientps_postprocess, args=(outputs, SIZE, SIZE, SYNTHETIC, scenes["config"]),
                                rounds=3, iterations=1, warmup_rounds=1)  # fmt: skip
    benchmark.extra_info["segments"] = len(result.segments_info)
