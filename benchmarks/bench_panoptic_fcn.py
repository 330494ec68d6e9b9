"""Panoptic FCN inference at COCO's test size (800 x 1333) on the CPU: forward, post-processing, combine.

Groups (each against its named peer, same run):

* ``pfcn_inference``: the R50-FPN paper model (random weights, eval) on one 800 x 1333 image:
  forward only (peer) vs forward + post-processing (``model(batch)``); their difference is the
  post-processing share.
* ``pfcn_postprocess[scene]``: :func:`panoptic_fcn_postprocess` with the compiled
  ``panoptic_ops.kernel_fusion`` (ours) vs the same steps with the pure-torch
  ``panoptic_ops.reference.kernel_fusion`` (peer), and the combine alone
  (:func:`panoptic_fcn_combine` on the final masks), on two scenes:
  ``oracle`` (the oracle outputs of a synthetic 800 x 1333 scene: its real instances) and
  ``crowded`` (random outputs with 50 peaks per level over threshold, the most upstream keeps:
  100 instances at full size through the combine).

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest benchmarks/bench_panoptic_fcn.py --benchmark-only -q
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import panoptic_models.meta_arch.panoptic_fcn as pfcn
from panoptic_core.data import Categories, CocoPanopticDataset, PanopticBatch, SyntheticConfig, write_synthetic_dataset
from panoptic_models import PanopticFCNConfig, build_model
from panoptic_ops import reference as ref

SIZE = (800, 1333)


def coco_like_categories() -> Categories:
    """80 things and 53 stuff classes, as COCO panoptic."""
    things = [{"id": i + 1, "name": f"thing{i}", "isthing": 1} for i in range(80)]
    stuff = [{"id": 81 + i, "name": f"stuff{i}", "isthing": 0} for i in range(53)]
    return Categories.from_list(things + stuff)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(PanopticFCNConfig(), coco_like_categories()).eval()


@pytest.fixture(scope="module")
def batch(model):
    return _make_batch(model)


def _make_batch(model) -> PanopticBatch:
    h, w = SIZE
    d = model.size_divisibility
    ph, pw = -(-h // d) * d, -(-w // d) * d
    images = torch.zeros(1, 3, ph, pw)
    images[..., :h, :w] = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    return PanopticBatch(images, torch.zeros(1, ph, pw, dtype=torch.bool), [], [SIZE], {})


def test_forward(benchmark, model, batch):
    benchmark.group = "pfcn_inference"
    benchmark.extra_info["peer"] = "forward only (predict)"
    with torch.no_grad():
        benchmark.pedantic(model.predict, args=(batch.images,), rounds=3, iterations=1, warmup_rounds=1)


def test_forward_and_postprocess(benchmark, model, batch):
    benchmark.group = "pfcn_inference"
    with torch.no_grad():
        results = benchmark.pedantic(model, args=(batch,), rounds=3, iterations=1, warmup_rounds=1)
    assert results[0].ids.shape == SIZE


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return _make_scenes(tmp_path_factory.mktemp("pfcn_bench") / "syn")


def _make_scenes(root):
    """One image's head outputs per scene (see the module docstring) and their categories."""
    write_synthetic_dataset(root, SyntheticConfig(train=0, val=1, height=SIZE[0], width=SIZE[1], seed=3))
    ds = CocoPanopticDataset.from_root(root, "val")
    cfg = PanopticFCNConfig()
    target = ds.load_target(0)
    pad_h, pad_w = -SIZE[0] % 32, -SIZE[1] % 32  # padded as the model's batches (VOID below and right)
    target = target.replace(ids=F.pad(target.ids, (0, pad_w, 0, pad_h)))
    oracle = pfcn.panoptic_fcn_oracle_outputs(cfg.target_generator(ds.categories)(target), ds.categories, cfg)
    g = torch.Generator().manual_seed(0)
    crowded = {key: [] for key in ("center", "region", "thing_kernels", "stuff_kernels")}
    e, things, stuff = 64, ds.categories.num_things, ds.categories.num_stuff + 1
    for heat in oracle["center"]:
        hl, wl = heat.shape[-2:]
        center = torch.full((things, hl, wl), -8.0)
        peaks = torch.randperm(hl * wl, generator=g)[:50]
        center.view(things, -1)[torch.randint(0, things, (len(peaks),), generator=g), peaks] = 3.0
        crowded["center"].append(center)
        crowded["region"].append(torch.randn(stuff, hl, wl, generator=g))
        crowded["thing_kernels"].append(torch.randn(e, hl, wl, generator=g))
        crowded["stuff_kernels"].append(torch.randn(e, hl, wl, generator=g))
    crowded["stuff_bias"] = torch.zeros(e)
    fh, fw = oracle["features"].shape[-2:]
    crowded["features"] = torch.randn(e, fh, fw, generator=g).relu()
    return {"oracle": oracle, "crowded": crowded}, ds.categories, cfg


@pytest.mark.parametrize("scene", ["oracle", "crowded"])
@pytest.mark.parametrize("fusion", ["python", "compiled"])
def test_postprocess(benchmark, scenes, scene, fusion, monkeypatch):
    outputs, cats, cfg = scenes
    benchmark.group = f"pfcn_postprocess[{scene}]"
    if fusion == "python":
        benchmark.extra_info["peer"] = "same steps, reference.kernel_fusion (pure torch)"
        monkeypatch.setattr(pfcn, "kernel_fusion", ref.kernel_fusion)
    result = benchmark.pedantic(
        pfcn.panoptic_fcn_postprocess, args=(outputs[scene], SIZE, SIZE, cats, cfg), rounds=5, iterations=1,
        warmup_rounds=1,
    )  # fmt: skip
    benchmark.extra_info["segments"] = len(result.segments_info)
    assert result.ids.shape == SIZE


@pytest.mark.parametrize("scene", ["oracle", "crowded"])
def test_combine_only(benchmark, scenes, scene, monkeypatch):
    """The combine on the final masks of the scene (captured from one post-processing call)."""
    outputs, cats, cfg = scenes
    benchmark.group = f"pfcn_postprocess[{scene}]"
    captured = {}
    combine = pfcn.panoptic_fcn_combine

    def capture(*args):
        captured["args"] = args
        return combine(*args)

    monkeypatch.setattr(pfcn, "panoptic_fcn_combine", capture)
    pfcn.panoptic_fcn_postprocess(outputs[scene], SIZE, SIZE, cats, cfg)
    benchmark.extra_info["things"] = int(captured["args"][0].shape[0])
    benchmark.pedantic(combine, args=captured["args"], rounds=5, iterations=1, warmup_rounds=1)


def _cpu_seconds(fn, *args, rounds: int = 3) -> float:
    """Median user + system CPU seconds of ``fn(*args)`` (robust to other processes' load, unlike wall time)."""
    import statistics
    import time

    fn(*args)
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn(*args)
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    """CPU-time table of the steps above (one thread): ``python benchmarks/bench_panoptic_fcn.py``."""
    import tempfile
    from pathlib import Path

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = build_model(PanopticFCNConfig(), coco_like_categories()).eval()
    images = _make_batch(net)
    scene_outputs, cats, cfg = _make_scenes(Path(tempfile.mkdtemp(prefix="pfcn_bench")) / "syn")
    rows = []
    with torch.no_grad():
        forward = _cpu_seconds(net.predict, images.images, rounds=2)
        full = _cpu_seconds(net, images, rounds=2)
    rows.append(("R50-FPN forward, 800 x 1333", forward))
    rows.append(("forward + post-processing (random weights)", full))
    for name, outputs in scene_outputs.items():
        compiled = _cpu_seconds(pfcn.panoptic_fcn_postprocess, outputs, SIZE, SIZE, cats, cfg)
        fused = pfcn.kernel_fusion
        pfcn.kernel_fusion = ref.kernel_fusion
        try:
            python = _cpu_seconds(pfcn.panoptic_fcn_postprocess, outputs, SIZE, SIZE, cats, cfg)
        finally:
            pfcn.kernel_fusion = fused
        captured = {}
        combine = pfcn.panoptic_fcn_combine
        pfcn.panoptic_fcn_combine = lambda *a, _c=captured, _f=combine: _c.setdefault("args", a) and _f(*a)
        try:
            pfcn.panoptic_fcn_postprocess(outputs, SIZE, SIZE, cats, cfg)
        finally:
            pfcn.panoptic_fcn_combine = combine
        things = int(captured["args"][0].shape[0])
        rows.append((f"{name}: post-processing, compiled kernel_fusion", compiled))
        rows.append((f"{name}: post-processing, reference kernel_fusion", python))
        rows.append((f"{name}: combine alone ({things} things)", _cpu_seconds(combine, *captured["args"])))
    for label, seconds in rows:
        print(f"| {label} | {seconds * 1e3:.0f} |")


if __name__ == "__main__":
    main()
