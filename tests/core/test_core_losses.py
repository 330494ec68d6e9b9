import io
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from panoptic_core.losses import (
    BootstrappedCrossEntropy,
    CategoryMemory,
    CenternessLoss,
    CIAELoss,
    DiceLoss,
    IoULoss,
    SigmoidFocalLoss,
    WeightedDiceLoss,
    WeightedL1Loss,
    WeightedMSELoss,
    bootstrapped_cross_entropy,
    centerness_loss,
    ciae_loss,
    dice_loss,
    iou_loss,
    memory_momentum,
    segment_sums,
    sigmoid_focal_loss,
    triplet_log_loss,
    weighted_dice_loss,
    weighted_l1_loss,
    weighted_mse_loss,
)
from panoptic_ops import UNBOXED

LN2 = math.log(2)


def test_bootstrapped_cross_entropy_by_hand():
    ln3 = math.log(3)
    logits = torch.tensor([[0.0, ln3, 0.0, 0.0], [0.0, 0.0, ln3, 0.0]]).view(1, 2, 1, 4)
    labels = torch.tensor([[[0, 0, 0, 255]]])
    weights = torch.tensor([[[1.0, 3.0, 1.0, 1.0]]])
    pixel = [LN2, 3 * -math.log(0.75), -math.log(0.25), 0.0]
    got = bootstrapped_cross_entropy(logits, labels, weights, top_k_percent_pixels=0.5)
    assert math.isclose(float(got), (pixel[2] + pixel[1]) / 2, rel_tol=1e-6)
    got = bootstrapped_cross_entropy(logits, labels, weights, top_k_percent_pixels=1.0)
    assert math.isclose(float(got), sum(pixel) / 4, rel_tol=1e-6)
    assert torch.equal(
        BootstrappedCrossEntropy(top_k_percent_pixels=0.5)(logits, labels, weights),
        bootstrapped_cross_entropy(logits, labels, weights, top_k_percent_pixels=0.5),
    )
    with pytest.raises(ValueError, match="top_k_percent_pixels"):
        bootstrapped_cross_entropy(logits, labels, top_k_percent_pixels=0)


def test_weighted_mse_and_l1_by_hand():
    pred = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3)
    w = torch.tensor([1.0, 0.0, 2.0]).view(1, 1, 1, 3)
    assert math.isclose(float(weighted_mse_loss(pred, torch.zeros_like(pred), w)), 19 / 3, rel_tol=1e-6)
    p = pred.clone().requires_grad_()
    zero = weighted_mse_loss(p, torch.zeros_like(pred), torch.zeros_like(w))
    zero.backward()
    assert float(zero.detach()) == 0 and torch.equal(p.grad, torch.zeros_like(p))
    off = torch.tensor([[1.0, -1.0], [2.0, 0.0]]).view(1, 2, 1, 2)
    ow = torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)
    assert math.isclose(float(weighted_l1_loss(off, torch.zeros_like(off), ow)), (1 * 3 + 3 * 1) / 4, rel_tol=1e-6)
    assert torch.equal(WeightedL1Loss()(off, torch.zeros_like(off), ow), weighted_l1_loss(off, off * 0, ow))
    assert torch.equal(WeightedMSELoss()(pred, pred * 0, w), weighted_mse_loss(pred, pred * 0, w))


def test_sigmoid_focal_by_hand():
    logits = torch.zeros(3)
    targets = torch.tensor([1.0, 0.0, 1.0])
    got = sigmoid_focal_loss(logits, targets)
    assert torch.allclose(got, torch.tensor([0.25, 0.75, 0.25]) * 0.25 * LN2)
    logit = torch.tensor([2.0])
    p = 1 / (1 + math.exp(-2))
    assert math.isclose(
        float(sigmoid_focal_loss(logit, torch.ones(1), alpha=-1, gamma=2)), (1 - p) ** 2 * -math.log(p), rel_tol=1e-6
    )
    assert math.isclose(float(SigmoidFocalLoss()(logits, targets)), float(got.sum()), rel_tol=1e-6)


def test_dice_by_hand():
    probs = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert math.isclose(float(dice_loss(probs, targets)[0]), 1 - 2 / 4.002, rel_tol=1e-6)
    assert float(dice_loss(targets, targets)[0]) < 1e-3
    logits = torch.tensor([[20.0, -20.0]])
    assert float(DiceLoss()(logits, torch.tensor([[1.0, 0.0]]))) < 1e-3


def test_weighted_dice_by_hand():
    probs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # N=1, k=2, HW=2
    targets = torch.tensor([[1.0, 0.0]])
    weights = torch.tensor([[3.0, 1.0]])
    assert math.isclose(float(weighted_dice_loss(probs, targets, weights)[0]), 0.25, rel_tol=1e-6)
    big = torch.tensor([[[30.0, -30.0], [-30.0, 30.0]]])
    assert math.isclose(float(WeightedDiceLoss()(big, targets, weights)), 0.25, rel_tol=1e-5)


def test_dice_losses_sum_half_precision_in_float32():
    """Under autocast the mask probabilities come in bfloat16; the sums over 4096 pixels run in
    float32, so the loss equals the float32 loss of the same (rounded) probabilities."""
    torch.manual_seed(0)
    probs = torch.rand(3, 2, 4096).bfloat16()
    targets = (torch.rand(3, 4096) > 0.5).float()
    weights = torch.rand(3, 2).bfloat16()
    got = weighted_dice_loss(probs, targets, weights)
    assert got.dtype == torch.float32
    assert torch.allclose(got, weighted_dice_loss(probs.float(), targets, weights.float()), rtol=0, atol=1e-6)
    plain = dice_loss(probs[:, 0], targets)
    assert plain.dtype == torch.float32
    assert torch.allclose(plain, dice_loss(probs[:, 0].float(), targets), rtol=0, atol=1e-6)


def test_iou_losses_by_hand():
    same = torch.ones(1, 4)
    for kind in ("iou", "linear_iou", "giou"):
        assert abs(float(iou_loss(same, same, loss_type=kind))) < 1e-6
    pred, target = torch.ones(1, 4), torch.full((1, 4), 2.0)
    assert math.isclose(float(iou_loss(pred, target, loss_type="iou")), -math.log(5 / 17), rel_tol=1e-6)
    assert math.isclose(float(iou_loss(pred, target, loss_type="linear_iou")), 12 / 17, rel_tol=1e-6)
    assert math.isclose(float(iou_loss(pred, target, loss_type="giou")), 12 / 17, rel_tol=1e-6)
    a, b = torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert math.isclose(float(iou_loss(a, b, loss_type="giou")), 1 - (1 / 3 - 0.5), rel_tol=1e-6)
    w = torch.tensor([0.5])
    assert math.isclose(float(IoULoss("linear_iou")(pred, target, w)), 6 / 17, rel_tol=1e-6)
    with pytest.raises(ValueError, match="loss_type"):
        iou_loss(a, b, loss_type="diou")


def test_centerness_by_hand():
    assert math.isclose(float(centerness_loss(torch.zeros(2), torch.tensor([0.5, 1.0]))), 2 * LN2, rel_tol=1e-6)
    assert math.isclose(float(CenternessLoss("mean")(torch.zeros(2), torch.tensor([0.5, 1.0]))), LN2, rel_tol=1e-6)


def _gradient_cases():
    """(name, loss of x, x) with every constant drawn once, so gradcheck sees a fixed function."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.double)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.double)

    w33, w233, boxes, ctr = rand(1, 1, 3, 3), rand(2, 3), rand(5, 4) + 0.5, rand(6)
    labels = torch.tensor([[[0, 1, 2, 255, 1]]])
    binary = (torch.arange(6) % 2).double().view(2, 3)
    masks = (torch.arange(10) % 3 == 0).double().view(2, 5)
    masks6 = (torch.arange(12) % 2).double().view(2, 6)
    return [
        (
            "bootstrapped_ce",
            lambda x: bootstrapped_cross_entropy(x, labels, top_k_percent_pixels=0.4),
            randn(1, 3, 1, 5),
        ),
        ("weighted_mse", lambda x: weighted_mse_loss(x, torch.zeros_like(x), w33), randn(1, 1, 3, 3)),
        ("weighted_l1", lambda x: weighted_l1_loss(x, torch.zeros_like(x), w33), randn(1, 2, 3, 3)),
        ("focal", lambda x: sigmoid_focal_loss(x, binary, reduction="sum"), randn(2, 3)),
        ("dice", lambda x: dice_loss(x.sigmoid(), masks), randn(2, 5)),
        ("weighted_dice", lambda x: weighted_dice_loss(x.sigmoid(), masks6, w233), randn(2, 3, 6)),
        ("iou", lambda x: iou_loss(x.exp(), boxes, loss_type="iou"), randn(5, 4)),
        ("giou", lambda x: iou_loss(x.exp(), boxes, loss_type="giou"), randn(5, 4)),
        ("centerness", lambda x: centerness_loss(x, ctr), randn(6)),
    ]


@pytest.mark.parametrize("case", range(len(_gradient_cases())), ids=[c[0] for c in _gradient_cases()])
def test_loss_gradients(case):
    _, fn, x = _gradient_cases()[case]
    x = x.requires_grad_()
    assert gradcheck(fn, (x,))
    fn(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_triplet_log_loss_by_hand():
    sim = torch.tensor([0.8, 0.5, -0.2]).view(1, 3, 1, 1)
    got = triplet_log_loss(sim, torch.zeros(1, 1, 1, dtype=torch.long))
    assert math.isclose(float(got), -math.log(1 - 0.35 / 2.15), rel_tol=1e-6)
    sim = torch.tensor([0.1, 0.6, 0.3]).view(1, 3, 1, 1)
    pos = torch.zeros(1, 1, 1, dtype=torch.long)
    terms = [-math.log(1 - v / 2.15) for v in (1.05, 0.65, 0.35)]
    assert math.isclose(float(triplet_log_loss(sim, pos, top_k=1)), terms[0], rel_tol=1e-6)
    assert math.isclose(float(triplet_log_loss(sim, pos, top_k=2)), terms[0] + terms[1], rel_tol=1e-6)
    assert math.isclose(float(triplet_log_loss(sim, pos, top_k=5)), sum(terms), rel_tol=1e-6)
    valid = torch.tensor([[True, True, False]])
    assert math.isclose(float(triplet_log_loss(sim, pos, valid_queries=valid)), terms[0] + terms[1], rel_tol=1e-6)
    assert float(triplet_log_loss(sim, torch.full((1, 1, 1), -1))) == 0.0


def _ciae_reference(emb, seg, cat, boxes, memory, num_stuff, stride, margin=0.15, k=5, alpha=2.0, thing_w=5.0):
    """The paper's equations pixel by pixel, with plain loops."""
    b_, _, h_, w_ = emb.shape
    p = F.normalize(emb, dim=1)

    def pixel_loss(pi, queries, positive, inside):
        dist = [1 - (float(pi @ q) if ok else 0.0) for q, ok in zip(queries, inside, strict=True)]
        terms = []
        for j, dj in enumerate(dist):
            dneg = 0.0 if j == positive else dj
            hinge = max(dist[positive] - dneg + margin, 0.0)
            terms.append(-math.log(1 - hinge / (2 + margin)))
        return sum(sorted(terms, reverse=True)[:k])

    cae = iae = 0.0
    n_cae = n_iae = 0
    for b in range(b_):
        n = len(boxes[b])
        means = []
        for s in range(num_stuff, n):
            m = emb[b].permute(1, 2, 0)[seg[b] == s].sum(0)
            means.append(m / m.norm())
        queries = [memory[i] for i in range(num_stuff)] + means
        for y in range(h_):
            for x in range(w_):
                pi = p[b, :, y, x]
                if cat[b, y, x] >= 0:
                    n_cae += 1
                    cae += pixel_loss(pi, memory, int(cat[b, y, x]), [True] * len(memory))
                if seg[b, y, x] >= 0:
                    n_iae += 1
                    cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
                    inside = [bool(bx[0] <= cx <= bx[2] and bx[1] <= cy <= bx[3]) for bx in boxes[b]]
                    weight = thing_w if seg[b, y, x] >= num_stuff else 1.0
                    iae += weight * pixel_loss(pi, queries, int(seg[b, y, x]), inside)
    return cae / n_cae + alpha * iae / n_iae


def _ciae_scene(seed, stride=2):
    g = torch.Generator().manual_seed(seed)
    num_stuff, h, w = 3, 6, 7
    seg = torch.randint(0, num_stuff, (2, h, w), generator=g)
    seg[0, 1:4, 1:3] = 3
    seg[0, 3:6, 4:7] = 4
    seg[1, 0:2, 0:7] = 3
    seg[1, 5, 6] = -1
    cat = torch.where(seg >= num_stuff, num_stuff, seg)
    cat[1, 5, 6] = -1
    thing_box = [torch.tensor([[2.0, 2.0, 6.0, 8.0], [8.0, 6.0, 14.0, 12.0]]), torch.tensor([[0.0, 0.0, 6.0, 4.0]])]
    boxes = [torch.cat([torch.tensor(UNBOXED).expand(num_stuff, 4), tb]) for tb in thing_box]
    memory = F.normalize(torch.randn(num_stuff + 1, 5, generator=g), dim=1)
    emb = torch.randn(2, 5, h, w, generator=g)
    return emb, seg, cat, boxes, memory, num_stuff, stride


@pytest.mark.parametrize("seed", range(3))
def test_ciae_loss_matches_the_equations(seed):
    emb, seg, cat, boxes, memory, num_stuff, stride = _ciae_scene(seed)
    got = ciae_loss(emb, seg, cat, boxes, memory, num_stuff, stride=stride)
    want = _ciae_reference(emb.double(), seg, cat, boxes, memory.double(), num_stuff, stride)
    assert math.isclose(float(got["loss_ciae"]), want, rel_tol=1e-5)
    assert math.isclose(float(got["loss_cae"] + 2 * got["loss_iae"]), float(got["loss_ciae"]), rel_tol=1e-6)


def test_ciae_box_filter_changes_the_loss():
    emb, seg, cat, boxes, memory, num_stuff, stride = _ciae_scene(0)
    filtered = ciae_loss(emb, seg, cat, boxes, memory, num_stuff, stride=stride)["loss_iae"]
    unboxed = [torch.tensor(UNBOXED).expand(len(b), 4) for b in boxes]
    plain = ciae_loss(emb, seg, cat, unboxed, memory, num_stuff, stride=stride)["loss_iae"]
    want = _ciae_reference(emb.double(), seg, cat, unboxed, memory.double(), num_stuff, stride)
    want_cae = float(ciae_loss(emb, seg, cat, unboxed, memory, num_stuff, stride=stride)["loss_cae"])
    assert math.isclose(float(plain), (want - want_cae) / 2, rel_tol=1e-5)
    assert not math.isclose(float(filtered), float(plain), rel_tol=1e-3)


def test_ciae_loss_gradient():
    emb, seg, cat, boxes, memory, num_stuff, stride = _ciae_scene(1)
    x = emb.double().requires_grad_()
    assert gradcheck(
        lambda e: ciae_loss(e, seg, cat, boxes, memory.double(), num_stuff, stride=stride)["loss_ciae"], (x,)
    )


def test_ciae_loss_falls_as_embeddings_move_to_segment_means():
    emb, seg, cat, boxes, _, num_stuff, stride = _ciae_scene(2)
    centers = F.normalize(torch.randn(6, 5, generator=torch.Generator().manual_seed(9)), dim=1) * 3
    target = torch.zeros_like(emb)
    for b in range(2):
        target[b] = centers[seg[b].clamp(min=0)].permute(2, 0, 1)
    noisy = target + 2.5 * emb
    sums, _ = segment_sums(target, cat, num_stuff + 1)
    memory = F.normalize(sums, dim=1)
    values = []
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        moved = noisy.clone()
        for b in range(2):
            s_sums, _ = segment_sums(noisy[b : b + 1], seg[b : b + 1], 6)
            means = s_sums / torch.bincount(seg[b][seg[b] >= 0].reshape(-1), minlength=6).clamp(min=1)[:, None]
            mean_map = means[seg[b].clamp(min=0)].permute(2, 0, 1)
            moved[b] = (1 - t) * noisy[b] + t * mean_map
        values.append(float(ciae_loss(moved, seg, cat, boxes, memory, num_stuff, stride=stride)["loss_ciae"]))
    assert all(a > b for a, b in itertools.pairwise(values)), values


def test_memory_momentum_schedule():
    assert memory_momentum(0, 1000) == 1 - 1e-4
    assert math.isclose(memory_momentum(500, 1000), 1 - 1e-4 * 0.125, rel_tol=0, abs_tol=1e-15)
    assert math.isclose(memory_momentum(900, 1000), 1 - 1e-4 * 0.001, rel_tol=0, abs_tol=1e-15)
    assert memory_momentum(1000, 1000) == 1.0 and memory_momentum(5000, 1000) == 1.0
    values = [memory_momentum(t, 90_000) for t in range(0, 90_001, 1000)]
    assert values == sorted(values)


def test_category_memory_update_and_checkpoint():
    torch.manual_seed(0)
    mem = CategoryMemory(4, 3, total_steps=10)
    before = mem.memory.clone()
    sums = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    counts = torch.tensor([5, 0, 3, 0])
    lam = 1 - 1e-4
    mem.update(sums, counts)
    want0 = F.normalize(lam * before[0] + (1 - lam) * torch.tensor([1.0, 0.0, 0.0]), dim=0)
    want2 = F.normalize(lam * before[2] + (1 - lam) * torch.tensor([0.0, 1.0, 0.0]), dim=0)
    assert torch.allclose(mem.memory[0], want0) and torch.allclose(mem.memory[2], want2)
    assert torch.equal(mem.memory[[1, 3]], before[[1, 3]])
    assert int(mem.step) == 1 and math.isclose(mem.momentum(), memory_momentum(1, 10))
    buf = io.BytesIO()
    torch.save(mem.state_dict(), buf)
    buf.seek(0)
    restored = CategoryMemory(4, 3, total_steps=99)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(restored.memory, mem.memory) and int(restored.step) == 1 and int(restored.total_steps) == 10


def test_ciae_module_updates_memory_in_training_only():
    emb, seg, cat, boxes, _, num_stuff, stride = _ciae_scene(0)
    module = CIAELoss(num_stuff + 1, num_stuff, 5, total_steps=100, stride=stride)
    start = module.memory.memory.clone()
    out = module(emb, seg, cat, boxes)
    assert int(module.memory.step) == 1 and not torch.equal(module.memory.memory, start)
    want = ciae_loss(emb, seg, cat, boxes, module.memory.memory, num_stuff, stride=stride)
    assert torch.equal(out["loss_ciae"], want["loss_ciae"])
    module.eval()
    frozen = module.memory.memory.clone()
    module(emb, seg, cat, boxes)
    assert int(module.memory.step) == 1 and torch.equal(module.memory.memory, frozen)


def _memory_worker(rank: int, world: int, init: str, sums, counts, out) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        mem = CategoryMemory(3, 2, total_steps=10)
        mem.update(sums[rank], counts[rank])
        out[rank] = mem.memory.clone()
    finally:
        dist.destroy_process_group()


def test_category_memory_all_reduces_across_processes(tmp_path):
    import torch.multiprocessing as mp

    sums = [torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 3.0]]), torch.tensor([[0.0, 2.0], [1.0, 1.0], [0.0, 0.0]])]
    counts = [torch.tensor([1, 0, 3]), torch.tensor([2, 2, 0])]
    manager = mp.Manager()
    out = manager.dict()
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_memory_worker, args=(2, init, sums, counts, out), nprocs=2, join=True)
    torch.manual_seed(0)
    single = CategoryMemory(3, 2, total_steps=10)
    single.update(sums[0] + sums[1], counts[0] + counts[1])
    assert torch.equal(out[0], out[1]) and torch.allclose(out[0], single.memory)


def test_losses_train_on_collated_targets(synthetic_root):
    """Targets of a real batch feed the losses: finite values, gradients, and a few SGD steps lower them."""
    from torch.utils.data import DataLoader

    from panoptic_core.data import CocoPanopticDataset, PanopticCollate
    from panoptic_core.targets import CIAETargets, PanopticDeepLabTargets

    ds = CocoPanopticDataset.from_root(synthetic_root, "train")
    cats = ds.categories
    ciae_gen = CIAETargets(cats, embedding_stride=4)
    loader = DataLoader(ds, batch_size=3, collate_fn=PanopticCollate(32, target_generator=ciae_gen))
    batch = next(iter(loader))
    t = batch.method_targets
    b, h, w = t["segment_map"].shape
    assert (b, h, w) == (3, 32, 40)
    emb = torch.randn(b, 8, h, w, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss_fn = CIAELoss(ciae_gen.num_categories, cats.num_stuff, dim=8, total_steps=10, stride=4)
    opt = torch.optim.SGD([emb], lr=20.0)
    values = []
    for _ in range(4):
        out = loss_fn(emb, t["segment_map"], t["category_map"], t["segment_boxes"])
        assert all(torch.isfinite(v) for v in out.values())
        opt.zero_grad()
        out["loss_ciae"].backward()
        assert emb.grad.abs().sum() > 0
        opt.step()
        values.append(out["loss_ciae"].item())
    assert values[-1] < values[0]
    assert int(loss_fn.memory.step) == 4

    loader = DataLoader(ds, batch_size=3, collate_fn=PanopticCollate(32, target_generator=PanopticDeepLabTargets()))
    t = next(iter(loader)).method_targets
    logits = torch.zeros(3, len(cats), 128, 160, requires_grad=True)
    center = torch.zeros(3, 1, 128, 160, requires_grad=True)
    offset = torch.zeros(3, 2, 128, 160, requires_grad=True)
    total = (
        bootstrapped_cross_entropy(logits, t["semantic"], t["semantic_weights"])
        + 200 * weighted_mse_loss(center, t["center"], t["center_weights"])
        + 0.01 * weighted_l1_loss(offset, t["offset"], t["offset_weights"])
    )
    total.backward()
    assert torch.isfinite(total) and total > 0
    assert logits.grad.abs().sum() > 0 and center.grad.abs().sum() > 0 and offset.grad.abs().sum() > 0


def test_bootstrapped_cross_entropy_on_tiny_maps_keeps_one_pixel():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # 1 x 2 classes x 1 x 2 pixels: K = int(0.2 * 2) = 0
    labels = torch.tensor([[[1, 1]]])
    loss = bootstrapped_cross_entropy(logits, labels)
    hardest = torch.nn.functional.cross_entropy(logits, labels, reduction="none").max()
    torch.testing.assert_close(loss, hardest)
