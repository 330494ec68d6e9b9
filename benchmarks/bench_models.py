"""Panoptic-DeepLab R52 inference on CPU, each part against a named peer in the same run.

* Network forward (``model.predict``: backbone, decoders, heads, upsampling; no post-processing)
  of one 3x512x1024 image, eval mode, ``torch.no_grad()``: eager (the peer) vs channels_last vs
  ``torch.compile`` (default; inductor's ``freezing``; the eager layout, see ``COMPILE_VARIANTS``).
* Peak memory of the same forward, one subprocess per variant (see ``MEMORY_SCRIPT``).
* Post-processing of one image's head outputs (the method's oracle outputs of a synthetic scene
  plus noise): ours (``panoptic_deeplab_postprocess``) vs detectron2's inference branch as written
  (``PanopticDeepLab.forward`` after the heads), and its share of the whole inference.

Run: ``make bench`` or ``.venv/bin/python -m pytest benchmarks/bench_models.py -p no:randomly
-o python_files="bench_*.py"`` (tests run in file order: the share table at the end reads the
medians measured before it). ``PANOPTIC_BENCH_QUICK=1`` runs everything at 128x256 (a CI smoke
test; the recorded figures are at 512x1024).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from panoptic_core.data import (
    Categories,
    CocoPanopticDataset,
    PanopticTarget,
    Segment,
    SyntheticConfig,
    segment_stats,
    write_synthetic_dataset,
)
from panoptic_models import PanopticDeepLabConfig, build_model
from panoptic_models.meta_arch.panoptic_deeplab import PanopticDeepLab, panoptic_deeplab_postprocess
from panoptic_ops import reference as ref

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ops"))
from test_ops_deeplab import detectron2_transcription

QUICK = os.environ.get("PANOPTIC_BENCH_QUICK", "") not in ("", "0")
HEIGHT, WIDTH = (128, 256) if QUICK else (512, 1024)
SIZE = f"{HEIGHT}x{WIDTH}"

# Cityscapes' 19 training classes: 11 stuff, then 8 things.
CITYSCAPES_CATEGORIES = [{"id": i, "name": f"c{i}", "isthing": int(i >= 11)} for i in range(19)]
CITYSCAPES = Categories.from_list(CITYSCAPES_CATEGORIES)
THINGS = list(CITYSCAPES.thing_classes)
CONFIG = PanopticDeepLabConfig.cityscapes()
DETECTRON2_LABEL_DIVISOR = 1000  # detectron2's Cityscapes metadata

# Medians (seconds) of the benchmarks above the share table, by name.
MEDIANS: dict[str, float] = {}


def record(benchmark, key: str) -> None:
    if benchmark.stats is not None:  # None under --benchmark-disable
        MEDIANS[key] = benchmark.stats.stats.median


# ---------------------------------------------------------------------------------------------
# Network forward


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(CONFIG, CITYSCAPES).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0))  # normalised image


@pytest.fixture(scope="module")
def eager_outputs(model, images):
    with torch.no_grad():
        return model.predict(images)


def no_grad(fn):
    def run(*args):
        with torch.no_grad():
            return fn(*args)

    return run


def assert_close(got: dict, want: dict) -> None:
    for key, value in want.items():
        torch.testing.assert_close(got[key].contiguous(), value, rtol=1e-3, atol=1e-3 * value.abs().max().item())


FORWARD_GROUP = f"Panoptic-DeepLab R52 forward 1x3x{SIZE}, 19 classes (CPU)"
FORWARD_ROUNDS = dict(rounds=7, iterations=1, warmup_rounds=1)


def test_forward_eager(benchmark, model, images):
    benchmark.group = FORWARD_GROUP
    benchmark.extra_info["peer"] = "eager model.predict (contiguous, float32)"
    benchmark.pedantic(no_grad(model.predict), args=(images,), **FORWARD_ROUNDS)
    record(benchmark, "forward eager")


def test_forward_channels_last(benchmark, model, images, eager_outputs):
    benchmark.group = FORWARD_GROUP
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    cl_images = images.to(memory_format=torch.channels_last)
    out = benchmark.pedantic(no_grad(cl_model.predict), args=(cl_images,), **FORWARD_ROUNDS)
    record(benchmark, "forward channels_last")
    assert_close(out, eager_outputs)


def compiled_predict(model, images, **inductor_options):
    """``torch.compile(model.predict)``, compiled by a first call (timed) under ``inductor_options``."""
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    fn = torch.compile(model.predict)
    start = time.perf_counter()
    with torch.no_grad(), inductor_config.patch(**inductor_options):
        fn(images)
    return fn, time.perf_counter() - start


# Inductor options of the compiled variants. On CPU, inductor runs every convolution in
# channels_last (``GraphLowering.decide_layout_opt``); ``layout_optimization=False`` keeps the
# eager layout and still fuses the rest. ``freezing`` is inductor's inference mode: parameters
# become constants (BN folded into the convolutions, oneDNN weights prepacked); it needs
# ``no_grad`` and parameters that do not change afterwards.
COMPILE_VARIANTS = {
    "default": {},
    "freezing": {"freezing": True},
    "contiguous": {"layout_optimization": False},
}


@pytest.mark.parametrize("variant", COMPILE_VARIANTS)
def test_forward_compile(benchmark, model, images, eager_outputs, variant):
    benchmark.group = FORWARD_GROUP
    fn, compile_s = compiled_predict(copy.deepcopy(model), images, **COMPILE_VARIANTS[variant])
    benchmark.extra_info["first_call_with_compilation_s"] = compile_s
    out = benchmark.pedantic(no_grad(fn), args=(images,), **FORWARD_ROUNDS)
    record(benchmark, f"forward torch.compile ({variant})")
    assert_close(out, eager_outputs)


# Peak resident memory of one forward, measured in a fresh process per variant (Linux).
#
# The CPU tensors of torch come from malloc (no caching allocator), oneDNN's scratchpads and
# inductor's buffers too, so the process's resident set is what a deployment pays and what a
# memory limit sees. Resetting the kernel's high-water mark (`/proc/self/clear_refs` "5": VmHWM :=
# VmRSS) right before the call gives the peak that call added. glibc keeps freed heap memory for
# reuse and raises its mmap threshold after large frees, so a second call could reuse memory
# still resident from the first and show a smaller peak; a fixed MALLOC_MMAP_THRESHOLD_ (which
# also turns the dynamic threshold off) makes every buffer of 128 KiB or more its own mapping,
# returned to the kernel on free, so the steady-state call starts from its live set.
MEMORY_SCRIPT = """
import copy, gc, json, sys, time
import torch
from panoptic_core.data import Categories
from panoptic_models import PanopticDeepLabConfig, build_model

def mib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

def peak_of(fn, *args):
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = mib("VmRSS")
    with torch.no_grad():
        fn(*args)
    return mib("VmHWM") - before

variant, height, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
model = build_model(PanopticDeepLabConfig.cityscapes(), Categories.from_list({categories!r})).eval()
images = torch.randn(1, 3, height, width)
if variant == "channels_last":
    model = model.to(memory_format=torch.channels_last)
    images = images.to(memory_format=torch.channels_last)
fn = model.predict
if variant.startswith("compile"):
    import torch._inductor.config as inductor_config
    inductor_config.freezing = variant == "compile_freezing"
    inductor_config.layout_optimization = variant != "compile_contiguous"
    fn = torch.compile(model.predict)
first = peak_of(fn, images)  # compiles the compiled variants
steady = peak_of(fn, images)
print(json.dumps({{"first": first, "steady": steady, "baseline": mib("VmRSS")}}))
"""
MEMORY_VARIANTS = ("eager", "channels_last", "compile", "compile_freezing", "compile_contiguous")


def forward_peak_memory(variant: str) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    script = MEMORY_SCRIPT.format(categories=CITYSCAPES_CATEGORIES)
    out = subprocess.run(
        [sys.executable, "-c", script, variant, str(HEIGHT), str(WIDTH)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_forward_peak_memory(benchmark, capsys):
    """MiB of resident memory one forward adds (steady state, after a first call), per variant."""
    benchmark.group = f"forward peak memory {SIZE} (MiB, not time)"
    results = {"eager": benchmark.pedantic(forward_peak_memory, args=("eager",), rounds=1, iterations=1)}
    results.update({v: forward_peak_memory(v) for v in MEMORY_VARIANTS[1:]})
    benchmark.extra_info.update({f"{v}_MiB": r["steady"] for v, r in results.items()})
    eager = results["eager"]["steady"]
    with capsys.disabled():
        print(f"\npeak resident memory added by one R52 forward at {SIZE} (MiB; ratio to eager):")
        for variant, r in results.items():
            print(
                f"    {variant:18s} steady {r['steady']:7.0f}  ({r['steady'] / eager:4.2f}x)   "
                f"first call {r['first']:7.0f}   process baseline {r['baseline']:6.0f}"
            )


# ---------------------------------------------------------------------------------------------
# Post-processing


def to_cityscapes_labels(target: PanopticTarget, categories: Categories) -> PanopticTarget:
    """The synthetic dataset's 4 thing and 4 stuff classes as Cityscapes-like class indices
    (stuff 0..3, things 11..14), so the head outputs have the 19 channels of the network above."""
    things = iter(CITYSCAPES.thing_classes)
    stuff = iter(CITYSCAPES.stuff_classes)
    new = [next(things) if t else next(stuff) for t in categories.isthing]
    segments = [
        dataclasses.replace(s, category_id=new[s.class_index], class_index=new[s.class_index]) for s in target.segments
    ]
    return dataclasses.replace(target, segments=segments)


def street_target(height: int, width: int, num_instances: int = 40, seed: int = 0) -> PanopticTarget:
    """A Cityscapes-like annotation (bench_core.py's, without crowd regions): 11 wavy stuff bands,
    then ``num_instances`` thing discs (radius 8-120 px at 512 rows, later ones occluding earlier ones)."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.arange(height, dtype=torch.float32)[:, None]
    xx = torch.arange(width, dtype=torch.float32)[None, :]
    wave = 0.06 * height * torch.sin(xx / width * 6.28 * 3 + float(torch.rand((), generator=g)) * 6.28)
    ids = (((yy + wave) / height * 11).long().clamp(0, 10) + 1) * 1000  # stuff class k -> id (k + 1) * 1000
    cats = {(k + 1) * 1000: k for k in range(11)}
    scale = height / 512
    for n in range(num_instances):
        cy, cx = (int(torch.randint(0, size, (), generator=g)) for size in (height, width))
        radius = float(torch.randint(8, 121, (), generator=g)) * scale
        ids = torch.where((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2, 100_000 + n, ids)
        cats[100_000 + n] = 11 + int(torch.randint(0, 8, (), generator=g))
    present = sorted(int(i) for i in torch.unique(ids))
    segments = [
        Segment(i, cats[i], cats[i], CITYSCAPES.isthing[cats[i]], False, area, bbox)
        for i, (area, bbox) in zip(present, segment_stats(ids, present), strict=True)
    ]
    return PanopticTarget(ids, segments, 0, "street.png")


def smooth_noise(channels: int, std: float, generator: torch.Generator, stride: int = 4) -> torch.Tensor:
    """Gaussian noise drawn at the heads' stride and upsampled bilinearly, as a network's errors are."""
    small = torch.randn(1, channels, -(-HEIGHT // stride), -(-WIDTH // stride), generator=generator) * std
    return F.interpolate(small, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)[0]


def noisy_oracle_outputs(target: PanopticTarget, seed: int = 0) -> dict[str, torch.Tensor]:
    """The method's oracle head outputs of ``target`` (ideal logits, center heatmap and offsets
    from its ground truth through ``PanopticDeepLabTargets``) plus smooth noise: logits 4 x one-hot
    + N(0, 1), heatmap + N(0, 0.02), offsets + N(0, 2 px), each drawn at stride 4."""
    targets = CONFIG.target_generator(CITYSCAPES)(target)
    outputs = PanopticDeepLab.oracle_outputs(targets, CITYSCAPES, CONFIG)
    g = torch.Generator().manual_seed(seed)
    return {
        "semantic": 4 * outputs["semantic"] + smooth_noise(CITYSCAPES.num_classes, 1.0, g),
        "center": outputs["center"] + smooth_noise(1, 0.02, g),
        "offset": outputs["offset"] + smooth_noise(2, 2.0, g),
    }


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, tuple[PanopticTarget, dict[str, torch.Tensor]]]:
    root = tmp_path_factory.mktemp("synthetic") / "ds"
    write_synthetic_dataset(root, SyntheticConfig(height=HEIGHT, width=WIDTH, train=1, val=0))
    dataset = CocoPanopticDataset.from_root(root, "train")
    synthetic = to_cityscapes_labels(dataset.load_target(0), dataset.categories)
    street = street_target(HEIGHT, WIDTH)
    return {name: (t, noisy_oracle_outputs(t)) for name, t in (("synthetic", synthetic), ("street", street))}


def scene_name(scene: str, target: PanopticTarget) -> str:
    things = sum(s.isthing and not s.iscrowd for s in target.segments)
    return {"synthetic": "synthetic scene", "street": "street scene"}[scene] + f", {things} things"


def sem_seg_postprocess(result, img_size, output_height, output_width):
    """detectron2.modeling.postprocessing.sem_seg_postprocess."""
    result = result[:, : img_size[0], : img_size[1]].expand(1, -1, -1, -1)
    return F.interpolate(result, size=(output_height, output_width), mode="bilinear", align_corners=False)[0]


def detectron2_postprocess(outputs, image_size, output_size, grouping=detectron2_transcription):
    """detectron2's ``PanopticDeepLab.forward`` after the heads, for one image (panoptic_seg.py):
    resize, ``get_panoptic_segmentation`` (``grouping``), softmax, and the per-instance loop over
    ``np.unique`` labels scoring each thing (mean class probability over its mask times the center
    heatmap at its centroid). The ``Instances`` bookkeeping (masks, boxes) is left out: our output
    has no boxes either."""
    height, width = output_size
    r = sem_seg_postprocess(outputs["semantic"], image_size, height, width)
    c = sem_seg_postprocess(outputs["center"], image_size, height, width)
    o = sem_seg_postprocess(outputs["offset"], image_size, height, width)
    panoptic_image, _ = grouping(
        r.argmax(dim=0, keepdim=True), c, o, THINGS, DETECTRON2_LABEL_DIVISOR,
        CONFIG.stuff_area, -1, CONFIG.center_threshold, CONFIG.nms_kernel, CONFIG.top_k,
    )  # fmt: skip
    panoptic_image = panoptic_image.squeeze(0)
    semantic_prob = F.softmax(r, dim=0)
    scores = {}
    for panoptic_label in np.unique(panoptic_image.cpu().numpy()):
        if panoptic_label == -1:
            continue
        pred_class = panoptic_label // DETECTRON2_LABEL_DIVISOR
        if pred_class in list(THINGS):
            mask = panoptic_image == panoptic_label
            sem_scores = torch.mean(semantic_prob[pred_class, ...][mask])
            mask_indices = torch.nonzero(mask).float()
            center_y, center_x = torch.mean(mask_indices[:, 0]), torch.mean(mask_indices[:, 1])
            center_scores = c[0, int(center_y.item()), int(center_x.item())]
            scores[int(panoptic_label)] = float(sem_scores * center_scores)
    return {"sem_seg": r, "panoptic_seg": panoptic_image, "scores": scores}


def reference_postprocess(outputs, image_size, output_size):
    """The same with ``panoptic_ops.reference`` (detectron2's algorithm with vectorised distances)."""
    return detectron2_postprocess(outputs, image_size, output_size, grouping=ref.get_panoptic_segmentation)


def ours(outputs, image_size, output_size):
    return panoptic_deeplab_postprocess(outputs, image_size, output_size, CITYSCAPES, CONFIG)


def assert_same_result(result, want) -> None:
    """Our PanopticResult against detectron2's encoded map and thing scores."""
    pan = want["panoptic_seg"]
    labels = [v for v in torch.unique(pan).tolist() if v != -1]
    assert len(labels) == len(result.segments_info)
    for label, seg in zip(labels, result.segments_info, strict=True):
        assert torch.equal(result.ids == seg["id"], pan == label)
        assert seg["category_id"] == label // DETECTRON2_LABEL_DIVISOR
        if seg["isthing"]:
            assert seg["score"] == pytest.approx(want["scores"][label], rel=1e-4)


SCENES = ("synthetic", "street")
PP_GROUP = "post-processing {scene}, {size} head outputs, 19 classes (CPU)"


def post_args(scenes, scene):
    return (scenes[scene][1], (HEIGHT, WIDTH), (HEIGHT, WIDTH))


@pytest.mark.parametrize("scene", SCENES)
def test_postprocess_detectron2(benchmark, scenes, scene):
    benchmark.group = PP_GROUP.format(scene=scene_name(scene, scenes[scene][0]), size=SIZE)
    benchmark.extra_info["peer"] = "detectron2's inference post-processing as written (torch.norm, torch.mode, loop)"
    benchmark.pedantic(detectron2_postprocess, args=post_args(scenes, scene), rounds=3, iterations=1)
    record(benchmark, f"post-processing {scene}: detectron2 as written")


@pytest.mark.parametrize("scene", SCENES)
def test_postprocess_reference(benchmark, scenes, scene):
    benchmark.group = PP_GROUP.format(scene=scene_name(scene, scenes[scene][0]), size=SIZE)
    benchmark.pedantic(reference_postprocess, args=post_args(scenes, scene), rounds=3, iterations=1)
    record(benchmark, f"post-processing {scene}: detectron2's algorithm (panoptic_ops.reference)")


@pytest.mark.parametrize("scene", SCENES)
def test_postprocess_ours(benchmark, scenes, scene):
    benchmark.group = PP_GROUP.format(scene=scene_name(scene, scenes[scene][0]), size=SIZE)
    args = post_args(scenes, scene)
    result = benchmark.pedantic(ours, args=args, rounds=20, iterations=1, warmup_rounds=2)
    record(benchmark, f"post-processing {scene}: ours (panoptic_deeplab_postprocess)")
    assert_same_result(result, reference_postprocess(*args))
    things = sum(s["isthing"] for s in result.segments_info)
    benchmark.extra_info.update(predicted_things=things, segments=len(result.segments_info))


def test_share_of_inference(capsys):
    """Forward + post-processing = inference: the share each post-processing would take, from the
    medians measured above in this run (no timing of its own)."""
    forwards = {k: v for k, v in MEDIANS.items() if k.startswith("forward")}
    posts = {k: v for k, v in MEDIANS.items() if k.startswith("post-processing")}
    if "forward eager" not in forwards or not posts:
        pytest.skip("needs the forward and post-processing benchmarks of this module in the same run")
    eager = forwards["forward eager"]
    fastest_name, fastest = min(forwards.items(), key=lambda kv: kv[1])
    with capsys.disabled():
        print(
            f"\nshare of one {SIZE} inference spent in post-processing (medians; forward = eager "
            f"{eager * 1e3:.0f} ms, fastest = {fastest_name[8:]} {fastest * 1e3:.0f} ms):"
        )
        for name, t in posts.items():
            print(
                f"    {name[16:]:75s} {t * 1e3:9.1f} ms   {t / (eager + t):6.1%} of eager inference   "
                f"{t / (fastest + t):6.1%} with the fastest forward"
            )
