"""panoptic-ops against the pure-torch references (``panoptic_ops.reference``), same run.

Run: ``make bench`` or ``.venv/bin/python -m pytest benchmarks/bench_ops.py -o python_files="bench_*.py"``.
GPU rows run where CUDA is available.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import panoptic_ops
from panoptic_ops import reference as ref
from panoptic_ops.testing import deeplab_scene

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ops"))
from test_ops_deeplab import detectron2_transcription

THINGS = (11, 12, 13, 14, 15, 16, 17, 18)
SIZES = {"512x1024": (512, 1024), "1024x2048": (1024, 2048)}
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def deeplab_args(size, k=40, device="cpu"):
    sem, hm, off = deeplab_scene(*SIZES[size], k, seed=1)
    return (sem.to(device), hm.to(device), off.to(device), THINGS, 1000, 2048, 0, 0.1, 7, 200)


@pytest.mark.parametrize("size", SIZES)
def test_deeplab_reference(benchmark, size):
    benchmark.group = f"get_panoptic_segmentation {size} K=40 (CPU)"
    benchmark.extra_info["peer"] = "panoptic_ops.reference (detectron2's algorithm in torch)"
    benchmark.pedantic(ref.get_panoptic_segmentation, args=deeplab_args(size), rounds=3, iterations=1)


@pytest.mark.parametrize("size", SIZES)
def test_deeplab_detectron2_transcription(benchmark, size):
    benchmark.group = f"get_panoptic_segmentation {size} K=40 (CPU)"
    benchmark.pedantic(detectron2_transcription, args=deeplab_args(size), rounds=2, iterations=1)


@pytest.mark.parametrize("size", SIZES)
def test_deeplab_ops(benchmark, size):
    benchmark.group = f"get_panoptic_segmentation {size} K=40 (CPU)"
    args = deeplab_args(size)
    got = benchmark.pedantic(
        panoptic_ops.get_panoptic_segmentation, args=args, rounds=20, iterations=1, warmup_rounds=2
    )
    want = ref.get_panoptic_segmentation(*args)
    assert torch.equal(got[0], want[0])


def cuda_timed(fn, *args):
    """fn(*args) followed by a device synchronisation, so the benchmark times the kernels."""

    def run():
        out = fn(*args)
        torch.cuda.synchronize()
        return out

    return run


def cuda_deeplab_args():
    sem, hm, off = deeplab_scene(1025, 2049, 40, seed=1)
    return (sem.cuda(), hm.cuda(), off.cuda(), THINGS, 1000, 2048, 0, 0.1, 7, 200)


@CUDA
def test_deeplab_cuda_1025x2049(benchmark):
    benchmark.group = "get_panoptic_segmentation 1025x2049 K=40 (CUDA)"
    benchmark.extra_info["peer"] = "panoptic_ops.reference on the same GPU"
    benchmark.pedantic(
        cuda_timed(ref.get_panoptic_segmentation, *cuda_deeplab_args()), rounds=3, iterations=1, warmup_rounds=1
    )


@CUDA
def test_deeplab_cuda_ops_1025x2049(benchmark):
    benchmark.group = "get_panoptic_segmentation 1025x2049 K=40 (CUDA)"
    benchmark.pedantic(
        cuda_timed(panoptic_ops.get_panoptic_segmentation, *cuda_deeplab_args()),
        rounds=50,
        iterations=1,
        warmup_rounds=5,
    )


MEMORY_SCRIPT = """
import sys, torch
import panoptic_ops
from panoptic_ops import reference as ref

def status(key):  # kB, from /proc/self/status
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])

sem, hm, off = torch.load(sys.argv[2], weights_only=True)
fn = panoptic_ops.get_panoptic_segmentation if sys.argv[1] == "ops" else ref.get_panoptic_segmentation
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS")
fn(sem, hm, off, {things}, 1000, 2048, 0, 0.1, 7, None)
print((status("VmHWM") - before) / 1024)
"""


@pytest.mark.parametrize("k", [40, 200])
def test_deeplab_peak_memory(benchmark, tmp_path, k):
    """Peak resident memory added by one 1024x2048 call (MiB, inputs excluded; Linux), ours vs the reference."""
    benchmark.group = f"peak memory 1024x2048 K={k} (MiB, not time)"
    scene = tmp_path / "scene.pt"
    torch.save(deeplab_scene(1024, 2048, k, seed=1), scene)
    script = MEMORY_SCRIPT.format(things=THINGS)

    def peak(which):
        out = subprocess.run(
            [sys.executable, "-c", script, which, str(scene)], capture_output=True, text=True, check=True
        )
        return float(out.stdout.strip())

    ours = benchmark.pedantic(peak, args=("ops",), rounds=1, iterations=1)
    reference = peak("reference")
    benchmark.extra_info.update(ours_MiB=ours, reference_MiB=reference)
    print(f"\npeak memory 1024x2048 K={k}: ops {ours:.0f} MiB, reference {reference:.0f} MiB")


def detections(n, seed=0, classes=80):
    """n boxes in clusters of ~10 jittered copies around n/10 objects (a detector's raw output)."""
    g = torch.Generator().manual_seed(seed)
    objects = max(n // 10, 1)
    xy = torch.rand(objects, 2, generator=g) * 1000
    wh = 20 + torch.rand(objects, 2, generator=g) * 200
    which = torch.randint(0, objects, (n,), generator=g)
    jitter = torch.randn(n, 4, generator=g) * 8
    boxes = torch.cat([xy[which], xy[which] + wh[which]], dim=1) + jitter
    scores = torch.rand(n, generator=g)
    idxs = torch.randint(0, classes, (objects,), generator=g)[which]
    return boxes, scores, idxs


@pytest.mark.parametrize("n", [1000, 10000])
def test_nms_reference(benchmark, n):
    benchmark.group = f"nms {n} boxes (CPU)"
    benchmark.extra_info["peer"] = "vectorised pure-torch greedy NMS (panoptic_ops.reference.nms)"
    boxes, scores, _ = detections(n)
    benchmark.pedantic(ref.nms, args=(boxes, scores, 0.5), rounds=3 if n > 1000 else 10, iterations=1)


@pytest.mark.parametrize("n", [1000, 10000])
def test_nms_ops(benchmark, n):
    benchmark.group = f"nms {n} boxes (CPU)"
    boxes, scores, _ = detections(n)
    got = benchmark.pedantic(panoptic_ops.nms, args=(boxes, scores, 0.5), rounds=30, iterations=1, warmup_rounds=2)
    assert torch.equal(got, ref.nms(boxes, scores, 0.5))


# The previous kernel (exhaustive scan of every later box per kept box), compiled from the same
# header the op uses, as the peer of the indexed scan.
_EXHAUSTIVE_SOURCE = r"""
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>
#include <torch/library.h>
#include "nms/nms_greedy.h"

at::Tensor exhaustive_nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  using namespace panoptic_ops::nms_host;
  const int64_t n = boxes.size(0);
  const at::Tensor order = std::get<1>(at::sort(scores, true, 0, true)).contiguous();
  const at::Tensor b = boxes.contiguous();
  const SortedBoxes<float> sorted(b.data_ptr<float>(), order.data_ptr<int64_t>(), nullptr, n);
  std::vector<uint8_t> keep(n, 0);
  greedy_exhaustive(sorted, threshold_in<float>(iou_threshold), keep.data());
  std::vector<int64_t> kept;
  for (int64_t r = 0; r < n; ++r)
    if (keep[r]) kept.push_back(order.data_ptr<int64_t>()[r]);
  at::Tensor out = at::empty({static_cast<int64_t>(kept.size())}, order.options());
  std::copy(kept.begin(), kept.end(), out.data_ptr<int64_t>());
  return out;
}

TORCH_LIBRARY(nms_bench, m) { m.def("exhaustive(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor"); }
TORCH_LIBRARY_IMPL(nms_bench, CPU, m) { m.impl("exhaustive", &exhaustive_nms); }
"""


@pytest.fixture(scope="module")
def exhaustive_nms():
    from torch.utils.cpp_extension import load_inline

    csrc = Path(__file__).resolve().parents[1] / "csrc"
    load_inline("nms_bench_exhaustive", _EXHAUSTIVE_SOURCE, is_python_module=False, extra_include_paths=[str(csrc)],
                extra_cflags=["-O3", "-std=c++20"])  # fmt: skip
    return torch.ops.nms_bench.exhaustive


def disjoint_boxes(n, seed=0):
    """n non-overlapping 8x8 boxes on a 10-px grid, random scores (every box survives)."""
    side = int(n**0.5) + 1
    ij = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).reshape(-1, 2)[:n]
    xy = ij.float() * 10
    return torch.cat([xy, xy + 8], dim=1), torch.rand(n, generator=torch.Generator().manual_seed(seed))


NMS_CASES = {
    "disjoint 20000": lambda: disjoint_boxes(20_000),
    "disjoint 200000": lambda: disjoint_boxes(200_000),
    "detections 1000": lambda: detections(1000)[:2],
    "detections 10000": lambda: detections(10_000)[:2],
    "detections 50000": lambda: detections(50_000)[:2],
}


@pytest.mark.parametrize("case", NMS_CASES)
def test_nms_previous_kernel(benchmark, exhaustive_nms, case):
    benchmark.group = f"nms {case} boxes vs the previous kernel (CPU)"
    benchmark.extra_info["peer"] = "previous kernel: exhaustive scan per kept box (nms_greedy.h greedy_exhaustive)"
    boxes, scores = NMS_CASES[case]()
    rounds = 1 if case == "disjoint 200000" else 5
    got = benchmark.pedantic(exhaustive_nms, args=(boxes, scores, 0.5), rounds=rounds, iterations=1)
    assert torch.equal(got, panoptic_ops.nms(boxes, scores, 0.5))


@pytest.mark.parametrize("case", NMS_CASES)
def test_nms_indexed(benchmark, case):
    benchmark.group = f"nms {case} boxes vs the previous kernel (CPU)"
    boxes, scores = NMS_CASES[case]()
    benchmark.pedantic(panoptic_ops.nms, args=(boxes, scores, 0.5), rounds=10, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("n", [1000, 10000])
def test_batched_nms_reference(benchmark, n):
    benchmark.group = f"batched_nms {n} boxes, 80 classes (CPU)"
    benchmark.extra_info["peer"] = "per-class loop of the pure-torch greedy NMS (panoptic_ops.reference)"
    boxes, scores, idxs = detections(n)
    benchmark.pedantic(ref.batched_nms, args=(boxes, scores, idxs, 0.5), rounds=3, iterations=1)


@pytest.mark.parametrize("n", [1000, 10000])
def test_batched_nms_ops(benchmark, n):
    benchmark.group = f"batched_nms {n} boxes, 80 classes (CPU)"
    boxes, scores, idxs = detections(n)
    benchmark.pedantic(panoptic_ops.batched_nms, args=(boxes, scores, idxs, 0.5), rounds=30, iterations=1)


def ciae_inputs(device="cpu"):
    """One 1024x2048 image, stride 4 (256x512 embeddings), D=32, 60 instances + 20 stuff queries."""
    g = torch.Generator().manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(1, 32, 256, 512, generator=g), dim=1)
    q = torch.nn.functional.normalize(torch.randn(1, 80, 32, generator=g), dim=2)
    xy = torch.rand(1, 80, 2, generator=g) * torch.tensor([2048.0, 1024.0])
    boxes = torch.cat([xy, xy + 40 + torch.rand(1, 80, 2, generator=g) * 300], dim=-1)
    boxes[:, 60:] = torch.tensor(panoptic_ops.UNBOXED)
    return e.to(device), q.to(device), boxes.to(device)


def dense_assign(e, q, boxes):
    s = torch.einsum("bdhw,bnd->bnhw", e, q) * panoptic_ops.box_mask(boxes, e.shape[2], e.shape[3], 4)
    return s.max(dim=1)


def test_assign_dense_peer(benchmark):
    benchmark.group = "box_filtered_assign 256x512 D=32 N=80 (CPU)"
    benchmark.extra_info["peer"] = "dense torch: einsum + box mask + max over N"
    benchmark.pedantic(dense_assign, args=ciae_inputs(), rounds=5, iterations=1)


def test_assign_ops(benchmark):
    benchmark.group = "box_filtered_assign 256x512 D=32 N=80 (CPU)"
    benchmark.pedantic(panoptic_ops.box_filtered_assign, args=(*ciae_inputs(), 4), rounds=10, iterations=1)


def test_similarity_dense_peer(benchmark):
    benchmark.group = "box_filtered_similarity 256x512 D=32 N=80 (CPU)"
    benchmark.extra_info["peer"] = "dense torch: einsum * box mask"
    e, q, b = ciae_inputs()
    benchmark.pedantic(
        lambda: torch.einsum("bdhw,bnd->bnhw", e, q) * panoptic_ops.box_mask(b, 256, 512, 4), rounds=5, iterations=1
    )


def test_similarity_ops(benchmark):
    benchmark.group = "box_filtered_similarity 256x512 D=32 N=80 (CPU)"
    benchmark.pedantic(panoptic_ops.box_filtered_similarity, args=(*ciae_inputs(), 4), rounds=10, iterations=1)


def test_matrix_nms_reference(benchmark):
    benchmark.group = "matrix_nms 500 masks 200x304 (CPU)"
    benchmark.extra_info["peer"] = "mmdetection mask_matrix_nms in torch (panoptic_ops.reference)"
    g = torch.Generator().manual_seed(0)
    masks, labels, scores = torch.rand(500, 200, 304, generator=g) > 0.7, torch.randint(0, 80, (500,)), torch.rand(500)
    benchmark.pedantic(ref.matrix_nms, args=(masks, labels, scores), rounds=5, iterations=1)


def test_matrix_nms_ops(benchmark):
    benchmark.group = "matrix_nms 500 masks 200x304 (CPU)"
    g = torch.Generator().manual_seed(0)
    masks, labels, scores = torch.rand(500, 200, 304, generator=g) > 0.7, torch.randint(0, 80, (500,)), torch.rand(500)
    benchmark.pedantic(panoptic_ops.matrix_nms, args=(masks, labels, scores), rounds=5, iterations=1)
