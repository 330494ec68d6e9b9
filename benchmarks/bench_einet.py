"""EINet inference on CPU next to Panoptic-DeepLab with the same backbone, same run.

The EINet README positions EINet against Panoptic-DeepLab; both run here with the same encoder
(torchvision ResNet-50, output stride 16: EINet's default) and Cityscapes' 19 classes.

* Network forward (``model.predict``, eval mode, ``torch.no_grad()``) of one 3x1024x2048 image:
  Panoptic-DeepLab (the peer: its two DeepLabV3+ decoders and three heads, upsampled to the
  input) vs EINet (semantic decoder, the instance decoder of the figure, two embeddings, the
  class-wise heatmap, the re-calibration with an initialised dictionary Q).
* Post-processing of one image's head outputs (each method's oracle outputs of the same
  synthetic scene plus noise): ``panoptic_deeplab_postprocess`` (the peer) vs
  ``einet_postprocess`` (per-class heatmap peaks, embedding grouping, stuff by area).
* The share of post-processing in each method's whole inference (``share_of_inference_pct`` in
  the post-processing benchmarks' extra_info, from the forward median measured before them).

Run: ``.venv/bin/python -m pytest benchmarks/bench_einet.py -p no:randomly -o python_files="bench_*.py"``
(file order: the share reads the forward medians measured before it). ``PANOPTIC_BENCH_QUICK=1``
runs at 128x256 (a smoke test; the recorded figures are at 1024x2048).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from panoptic_core.data import Categories, PanopticTarget, Segment, make_synthetic_image, segment_stats
from panoptic_core.data.synthetic import synthetic_categories
from panoptic_models import BackboneConfig, EINetConfig, PanopticDeepLabConfig, build_model
from panoptic_models.meta_arch.einet import einet_oracle_outputs, einet_postprocess
from panoptic_models.meta_arch.panoptic_deeplab import panoptic_deeplab_oracle_outputs, panoptic_deeplab_postprocess

QUICK = os.environ.get("PANOPTIC_BENCH_QUICK", "") not in ("", "0")
HEIGHT, WIDTH = (128, 256) if QUICK else (1024, 2048)
SIZE = f"{HEIGHT}x{WIDTH}"

CITYSCAPES = Categories.from_list([{"id": i, "name": f"c{i}", "isthing": int(i >= 11)} for i in range(19)])
BACKBONE = BackboneConfig("resnet50", options={"res5_dilation": 2})
EINET = EINetConfig.cityscapes()
DEEPLAB = dataclasses.replace(PanopticDeepLabConfig.cityscapes(), backbone=BACKBONE)
MEDIANS: dict[str, float] = {}


def record(benchmark, key: str) -> None:
    """Keep the median; a post-processing benchmark also reports its share of one inference when the
    forward benchmark of its method ran before it (extra_info ``share_of_inference_pct``)."""
    if benchmark.stats is None:  # None under --benchmark-disable
        return
    MEDIANS[key] = benchmark.stats.stats.median
    kind, method = key.split(" ", 1)
    if kind == "post" and f"forward {method}" in MEDIANS:
        fwd, post = MEDIANS[f"forward {method}"], MEDIANS[key]
        benchmark.extra_info["share_of_inference_pct"] = round(100 * post / (fwd + post), 2)


def no_grad(fn):
    def run(*args):
        with torch.no_grad():
            return fn(*args)

    return run


@pytest.fixture(scope="module")
def images():
    return torch.randn(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0))


FORWARD_GROUP = f"forward 1x3x{SIZE}, ResNet-50 OS16, 19 classes (CPU)"
ROUNDS = dict(rounds=3, iterations=1, warmup_rounds=1)


def test_forward_panoptic_deeplab(benchmark, images):
    torch.manual_seed(0)
    model = build_model(DEEPLAB, CITYSCAPES).eval()
    benchmark.group = FORWARD_GROUP
    benchmark.extra_info["peer"] = "Panoptic-DeepLab model.predict (same backbone)"
    benchmark.pedantic(no_grad(model.predict), args=(images,), **ROUNDS)
    record(benchmark, "forward panoptic_deeplab")


def test_forward_einet(benchmark, images):
    torch.manual_seed(0)
    model = build_model(EINET, CITYSCAPES).eval()
    with torch.no_grad():  # an initialised dictionary, so the re-calibration runs as after training
        model.dictionary.centers.copy_(torch.nn.functional.normalize(torch.randn_like(model.dictionary.centers), dim=1))
        model.dictionary.updates.fill_(1)
    benchmark.group = FORWARD_GROUP
    out = benchmark.pedantic(no_grad(model.predict), args=(images,), **ROUNDS)
    record(benchmark, "forward einet")
    assert out["semantic"].shape == (1, 19, HEIGHT, WIDTH)
    assert out["heatmap"].shape == (1, 8, HEIGHT // 4, WIDTH // 4)


def _scene() -> tuple[PanopticTarget, Categories]:
    """A synthetic scene at the benchmark size (its own 8 categories: 4 things, 4 stuff)."""
    cats = Categories.from_list(synthetic_categories())
    _, ids, info = make_synthetic_image(np.random.default_rng(3), HEIGHT, WIDTH)
    t_ids = torch.from_numpy(ids.astype(np.int64))
    present = sorted(int(i) for i in np.unique(ids) if i)
    by_id = {s["id"]: s for s in info}
    segs = []
    for i, (area, bbox) in zip(present, segment_stats(t_ids, present), strict=True):
        k = cats.class_index(by_id[i]["category_id"])
        segs.append(Segment(i, by_id[i]["category_id"], k, cats.isthing[k], bool(by_id[i]["iscrowd"]), area, bbox))
    return PanopticTarget(t_ids, segs, 0, "scene.png"), cats


@pytest.fixture(scope="module")
def scene():
    return _scene()


def _noisy(outputs: dict, scale: dict) -> dict:
    g = torch.Generator().manual_seed(1)
    return {k: v + scale.get(k, 0.0) * torch.randn(v.shape, generator=g) for k, v in outputs.items()}


POST_GROUP = f"post-processing, one {SIZE} image (CPU)"
POST_ROUNDS = dict(rounds=7, iterations=1, warmup_rounds=1)


def test_postprocess_panoptic_deeplab(benchmark, scene):
    target, cats = scene
    cfg = dataclasses.replace(DEEPLAB, stuff_area=64)
    outputs = _noisy(panoptic_deeplab_oracle_outputs(cfg.target_generator(cats)(target), cats, cfg),
                     {"semantic": 0.3, "center": 0.01, "offset": 0.5})  # fmt: skip
    benchmark.group = POST_GROUP
    benchmark.extra_info["peer"] = "panoptic_deeplab_postprocess"
    result = benchmark.pedantic(
        panoptic_deeplab_postprocess, args=(outputs, target.size, target.size, cats, cfg), **POST_ROUNDS
    )
    record(benchmark, "post panoptic_deeplab")
    benchmark.extra_info["segments"] = len(result.segments_info)


def test_postprocess_einet(benchmark, scene):
    target, cats = scene
    cfg = dataclasses.replace(EINET, stuff_area=64)
    outputs = _noisy(einet_oracle_outputs(cfg.target_generator(cats)(target), cats, cfg),
                     {"semantic": 0.3, "heatmap": 0.01, "embedding": 0.05})  # fmt: skip
    outputs["heatmap"] = outputs["heatmap"].clamp(0, 1)
    benchmark.group = POST_GROUP
    result = benchmark.pedantic(einet_postprocess, args=(outputs, target.size, target.size, cats, cfg), **POST_ROUNDS)
    record(benchmark, "post einet")
    things = sum(s.isthing and not s.iscrowd for s in target.segments)
    benchmark.extra_info["segments"] = len(result.segments_info)
    assert sum(s["isthing"] for s in result.segments_info) >= things - 1
