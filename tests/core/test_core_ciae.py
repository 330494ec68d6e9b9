"""CIAE fixes in panoptic-core (issue 12, "Fix on the way"): FCOS positives strictly inside boxes,
crowd regions as FCOS negatives, float32 sums under half precision, a finite memory, a loss without
queries, and processes that disagree on the memory step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from panoptic_core.data import Categories, PanopticTarget, Segment
from panoptic_core.losses import CategoryMemory, CIAELoss, ciae_loss, segment_sums
from panoptic_core.targets import CIAETargets

CATS = Categories.from_list(
    [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 1}, {"id": 10, "isthing": 0}, {"id": 11, "isthing": 0}]
)


def _target(ids: np.ndarray, categories: dict[int, int], crowd=()) -> PanopticTarget:
    segs = []
    for seg_id, cat in categories.items():
        ys, xs = np.nonzero(ids == seg_id)
        bbox = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        k = CATS.class_index(cat)
        segs.append(Segment(seg_id, cat, k, CATS.isthing[k], seg_id in crowd, len(ys), bbox))
    return PanopticTarget(torch.from_numpy(ids.astype(np.int64)), segs, image_id=0)


def test_fcos_positives_lie_strictly_inside_the_box():
    """A mask pixel on the box's left / top edge is a location with l = 0 or t = 0: not positive
    (FCOS's ``min(l, t, r, b) > 0``), so no positive has centerness 0."""
    ids = np.full((48, 48), 3, dtype=np.int64)  # stuff everywhere
    ids[4:21, 4:21] = 5  # box (4, 4, 21, 21): location (4, 4) of stride 8 sits on its corner
    out = CIAETargets(CATS)(_target(ids, {3: 10, 5: 1}))
    labels, ltrb, ctr = out["location_classes"][0], out["box_targets"][0], out["centerness"][0]
    assert labels[0, 0] == CATS.num_things  # (4, 4): l = t = 0, background
    assert labels[1, 1] == 0 and labels[2, 2] == 0  # (12, 12) and (20, 20): inside
    for level in range(len(out["location_classes"])):
        pos = out["location_instance"][level] >= 0
        assert (out["box_targets"][level][pos].min(dim=-1).values > 0).all()
        assert (out["centerness"][level][pos] > 0).all()
    assert ltrb[1, 1].tolist() == [8.0, 8.0, 9.0, 9.0] and ctr[1, 1] > 0


def test_crowd_regions_are_fcos_negatives_with_their_thing_category():
    ids = np.full((32, 32), 3, dtype=np.int64)
    ids[0:16, 0:16] = 7  # crowd of class 2
    ids[16:30, 16:30] = 5
    out = CIAETargets(CATS)(_target(ids, {3: 10, 5: 1, 7: 2}, crowd={7}))
    assert out["location_classes"][0][0, 0] == CATS.num_things  # negative, not ignored
    assert (out["location_classes"][0] >= 0).all()
    assert out["segment_map"][4, 4] == -1  # no instance: outside L_IAE
    assert out["category_map"][4, 4] == CATS.num_stuff  # merged thing category: inside L_CAE
    split = CIAETargets(CATS, merge_things=False)(_target(ids, {3: 10, 5: 1, 7: 2}, crowd={7}))
    assert split["category_map"][4, 4] == CATS.num_stuff + 1
    assert len(out["instance_boxes"]) == 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_segment_sums_accumulate_in_float32(dtype):
    """800 x 1333 pixels of one label: the fp16 sum would overflow (65504), the bf16 one stall at 256."""
    emb = torch.ones(1, 2, 800, 1333, dtype=dtype)
    labels = torch.zeros(1, 800, 1333, dtype=torch.int64)
    sums, counts = segment_sums(emb, labels, 1)
    assert sums.dtype == torch.float32 and sums.tolist() == [[800 * 1333.0] * 2] and counts.tolist() == [800 * 1333]
    assert segment_sums(emb.double(), labels, 1)[0].dtype == torch.float64


def test_memory_never_takes_non_finite_rows():
    torch.manual_seed(0)
    mem = CategoryMemory(3, 2, total_steps=10)
    before = mem.memory.clone()
    sums = torch.tensor([[float("inf"), 1.0], [float("nan"), 0.0], [0.0, 2.0]])
    mem.update(sums, torch.tensor([5, 3, 2]))
    assert torch.isfinite(mem.memory).all()
    assert torch.equal(mem.memory[:2], before[:2]) and not torch.equal(mem.memory[2], before[2])
    with pytest.raises(ValueError, match="must be"):
        mem.update(torch.zeros(2, 2), torch.zeros(2))


def test_half_precision_loss_and_memory_stay_finite():
    """The loss module on fp16 embeddings of a large map: finite loss, finite memory, same as float32."""
    torch.manual_seed(0)
    h, w = 200, 336
    emb = (torch.randn(1, 4, h, w) * 30).half()
    seg = torch.zeros(1, h, w, dtype=torch.int64)
    seg[:, :, 168:] = 1
    cat = seg.clone()
    boxes = [torch.tensor([[-float("inf"), -float("inf"), float("inf"), float("inf")]] * 2)]
    module = CIAELoss(2, 2, 4, total_steps=10, stride=4)
    out = module(emb, seg, cat, boxes)
    assert torch.isfinite(out["loss_ciae"]) and torch.isfinite(module.memory.memory).all()
    reference = ciae_loss(emb.float(), seg, cat, boxes, module.memory.memory, 2, stride=4)
    torch.testing.assert_close(out["loss_ciae"], reference["loss_ciae"], rtol=2e-3, atol=1e-3)


def test_loss_without_queries_is_zero_and_connected():
    """No stuff class and no instance in the batch (only crowd / VOID for L_IAE): a zero L_IAE that
    backpropagates, instead of an IndexError."""
    emb = torch.randn(2, 3, 8, 8, requires_grad=True)
    seg = torch.full((2, 8, 8), -1, dtype=torch.int64)
    cat = torch.zeros(2, 8, 8, dtype=torch.int64)  # every pixel a (crowd) thing pixel
    memory = F.normalize(torch.randn(1, 3), dim=1)
    out = ciae_loss(emb, seg, cat, [torch.zeros(0, 4), torch.zeros(0, 4)], memory, 0)
    assert out["loss_iae"] == 0 and torch.isfinite(out["loss_ciae"])
    out["loss_ciae"].backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    module = CIAELoss(1, 0, 3, total_steps=5)
    module(emb.detach(), seg, cat, [torch.zeros(0, 4), torch.zeros(0, 4)])["loss_ciae"]
    assert int(module.memory.step) == 1


def _skipping_worker(rank: int, world: int, init: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        mem = CategoryMemory(2, 2, total_steps=10)
        if rank == 1:
            mem.step += 1  # this process updated once more than the other
        mem.update(torch.ones(2, 2), torch.ones(2, dtype=torch.int64))
    finally:
        dist.destroy_process_group()


def test_processes_at_different_memory_steps_fail_loudly(tmp_path):
    import torch.multiprocessing as mp

    init = f"file://{tmp_path / 'rendezvous'}"
    with pytest.raises(Exception, match="different steps"):
        mp.spawn(_skipping_worker, args=(2, init), nprocs=2, join=True)
