"""EINet: the generic model tests, its loss formulas, the dictionary update, grouping rules, oracle, overfit."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_tester import ModelTester

from panoptic_core.data import (
    Categories,
    CocoPanopticDataset,
    Normalize,
    PanopticCollate,
    SyntheticConfig,
)
from panoptic_core.data import synthetic_categories as synthetic_category_list
from panoptic_core.losses import (
    centernet_focal_loss,
    centroid_alignment_loss,
    centroid_contrast_loss,
    dictionary_triplet_loss,
)
from panoptic_models import BackboneConfig, EINetConfig, build_model
from panoptic_models.heads.einet import EINetInstanceDecoder, SemanticCenterDictionary
from panoptic_models.meta_arch.einet import (
    LABEL_DIVISOR,
    class_peaks,
    einet_postprocess,
    group_thing_pixels,
)
from panoptic_ops import find_instance_center

REPO = Path(__file__).resolve().parents[2]

TINY = EINetConfig(
    backbone=BackboneConfig("resnet18", options={"res5_dilation": 2}),
    project_channels=(8, 8),
    aspp_channels=16,
    semantic_decoder_channels=16,
    instance_project_channels=16,
    instance_decoder_channels=8,
    embedding_dim=8,
    heatmap_head_channels=8,
    stuff_area=16,
)


def synthetic_categories() -> Categories:
    return Categories.from_list(synthetic_category_list())


class TestEINet(ModelTester):
    config = TINY


# ------------------------------------------------------------------------------------------ structure


def test_output_shapes_presets_and_ablation_switch():
    cats = synthetic_categories()
    torch.manual_seed(0)
    model = build_model(TINY, cats).eval()
    with torch.no_grad():
        out = model.predict(torch.randn(2, 3, 64, 96))
    assert out["semantic"].shape == (2, cats.num_classes, 64, 96)
    assert out["heatmap"].shape == (2, cats.num_things, 16, 24)
    assert out["embedding"].shape == (2, 8, 16, 24)
    assert 0 < float(out["heatmap"].min()) and float(out["heatmap"].max()) < 1
    assert model.instance_decoder.out_channels == 16 and model.dictionary is not None
    plain = build_model(EINetConfig(**{**TINY.__dict__, "interaction": False}), cats)
    assert plain.dictionary is None
    assert plain.instance_branch.attention is None and plain.semantic_branch.attention is None
    assert not any(k.startswith("dictionary.") for k in plain.state_dict())
    assert {"dictionary.centers", "dictionary.updates"} <= set(model.state_dict())
    assert model.state_dict()["dictionary.centers"].dtype == torch.float32
    city, coco = EINetConfig.cityscapes(), EINetConfig.coco()
    assert city.aspp_dilations == (6, 12, 18) and city.aspp_pool_kernel_size == (32, 64)
    assert (city.semantic_decoder_channels, city.instance_project_channels, city.instance_decoder_channels) == (
        256, 256, 128,
    )  # fmt: skip
    assert (coco.semantic_loss_top_k, coco.size_divisibility, coco.stuff_area) == (1.0, 640, 4096)
    gen = city.target_generator(cats)
    assert gen.stride == 4 and gen.min_overlap == 0.7
    with pytest.raises(ValueError, match="dictionary_momentum"):
        EINetConfig(dictionary_momentum=0.0)
    with pytest.raises(ValueError, match="unknown key 'interactoin'"):
        EINetConfig.from_dict({"interactoin": False})


def test_instance_decoder_follows_the_figure():
    """1/16 -> 256 -> 1/8; two 128 branches (one with the 1/8 skip added) concatenated at 1/4;
    then two 128 branches again (one with the 1/4 skip added): 256 channels at 1/4."""
    from panoptic_models.backbones.base import ShapeSpec

    shape = {"res2": ShapeSpec(24, 4), "res3": ShapeSpec(40, 8), "res5": ShapeSpec(80, 16)}
    dec = EINetInstanceDecoder(shape, ("res5", "res2", "res3"), depthwise_separable=False)
    feats = {"res2": torch.randn(1, 24, 16, 20), "res3": torch.randn(1, 40, 8, 10), "res5": torch.randn(1, 80, 4, 5)}
    assert dec(feats).shape == (1, 256, 16, 20) and dec.output_stride == 4
    assert dec.project16[0].out_channels == 256 and dec.project8[0].out_channels == 256
    assert dec.project4[0].out_channels == 256  # added to the 128 + 128 concatenation
    assert dec.fuse8[0].kernel_size == (5, 5)
    with pytest.raises(ValueError, match="three features"):
        EINetInstanceDecoder(shape, ("res2", "res5"))


# ------------------------------------------------------------------------------------------ losses


def _centernet_neg_loss(pred, gt):
    """CenterNet's ``_neg_loss`` (src/lib/models/losses.py), transcribed."""
    pos_inds = gt.eq(1).float()
    neg_inds = gt.lt(1).float()
    neg_weights = torch.pow(1 - gt, 4)
    pos_loss = (torch.log(pred) * torch.pow(1 - pred, 2) * pos_inds).sum()
    neg_loss = (torch.log(1 - pred) * torch.pow(pred, 2) * neg_weights * neg_inds).sum()
    num_pos = pos_inds.sum()
    return -neg_loss if num_pos == 0 else -(pos_loss + neg_loss) / num_pos


def test_centernet_focal_loss_equals_centernet():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 9, 11) * 4
    logits[0, 0, 0, 0] = 30.0  # beyond CenterNet's clamp
    target = torch.rand(2, 3, 9, 11) ** 3
    target[0, 1, 4, 5] = target[1, 2, 0, 0] = 1.0
    pred = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    torch.testing.assert_close(centernet_focal_loss(logits, target), _centernet_neg_loss(pred, target))
    no_pos = target.clamp(max=0.9)
    torch.testing.assert_close(centernet_focal_loss(logits, no_pos), _centernet_neg_loss(pred, no_pos))
    # a hand value: one positive pixel at p = 0.5 and one negative pixel at Y = 0.5, p = 0.5
    two = centernet_focal_loss(torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 0.5]]]]))
    expected = -(math.log(0.5) * 0.25 + 0.0625 * 0.25 * math.log(0.5))
    assert two.item() == pytest.approx(expected, rel=1e-6)


def test_dictionary_triplet_loss_by_hand():
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # anchor 0 (class 0): d_pos 0; negatives 1 (d 1), 2 (d 2): max(0, 0 - 1 + m) + max(0, 0 - 2 + m)
    # anchor 1 (class 2): d_pos 1; negatives 0 (d 1), 1 (d 0): max(0, m) + max(0, 1 + m)
    m = 1.5
    want = ((0.5 + 0.0) / 2 + (1.5 + 2.5) / 2) / 2
    loss = dictionary_triplet_loss(e, torch.tensor([0, 2]), q, margin=m)
    assert loss.item() == pytest.approx(want)
    # entry 1 not initialised: no negative 1, anchor of an invalid class is skipped
    valid = torch.tensor([True, False, True])
    assert dictionary_triplet_loss(e, torch.tensor([0, 2]), q, valid, m).item() == pytest.approx((0 + 1.5) / 2)
    assert dictionary_triplet_loss(e, torch.tensor([1, 1]), q, valid, m).item() == 0.0


def test_centroid_losses_by_hand():
    o = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    e = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    assert centroid_alignment_loss(o, e).item() == pytest.approx((0 + (1 - 1 / math.sqrt(2))) / 2)
    assert centroid_alignment_loss(o[:0], e[:0]).item() == 0.0
    # two instances of class 5, one of class 7; pixels 0, 1 of instance 0, pixel 2 of instance 1
    pix = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    cent = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    inst = torch.tensor([0, 0, 1, 2])
    groups = torch.tensor([5, 5, 7])
    tau = 0.5
    out = centroid_contrast_loss(pix, inst, cent, groups, tau)

    def ce(own, other):
        return -math.log(math.exp(own / tau) / (math.exp(own / tau) + math.exp(other / tau)))

    c = 1 / math.sqrt(2)
    assert out[0].item() == pytest.approx((ce(1, 0) + ce(c, c)) / 2, rel=1e-5)
    assert out[1].item() == pytest.approx(ce(1, 0), rel=1e-5)
    assert out[2].item() == pytest.approx(0.0, abs=1e-6)  # alone in its group


# ------------------------------------------------------------------------------------------ dictionary


def test_dictionary_update_rule():
    d = SemanticCenterDictionary(3, 2, momentum=0.5)
    v = torch.zeros(2, 3, 2)
    v[0, 0] = torch.tensor([2.0, 0.0])  # image 0: class 0
    v[1, 0] = torch.tensor([0.0, 1.0])  # image 1: class 0 too
    v[1, 1] = torch.tensor([1.0, 1.0])  # and class 1 (stuff, no instances)
    present = torch.tensor([[True, False, False], [True, True, False]])
    e = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # two instances of class 0 in image 0
    q = d.update(v, present, e, torch.tensor([0, 0]), torch.tensor([0, 0]))
    # class 0: initialised from the mean of the normalised V (0.5, 0.5) -> unit; then the
    # instances with w = max(0, cos(V_00, E)) = (1, 0): e_0 = (1, 0); Q = norm(0.5 q + 0.5 e)
    init = F.normalize(torch.tensor([0.5, 0.5]), dim=0)
    want0 = F.normalize(0.5 * init + 0.5 * torch.tensor([1.0, 0.0]), dim=0)
    torch.testing.assert_close(q[0], want0)
    torch.testing.assert_close(q[1], F.normalize(torch.tensor([1.0, 1.0]), dim=0))
    assert q[2].abs().sum() == 0
    assert d.updates.tolist() == [1, 1, 0] and d.valid.tolist() == [True, True, False]
    torch.testing.assert_close(d.centers, q)
    # a second step: moving average from the initialised entry
    v2 = torch.zeros(1, 3, 2)
    v2[0, 1] = torch.tensor([0.0, -3.0])
    q2 = d.update(v2, torch.tensor([[False, True, False]]), torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64),
                  torch.zeros(0, dtype=torch.int64))  # fmt: skip
    torch.testing.assert_close(q2[1], F.normalize(0.5 * q[1] + 0.5 * torch.tensor([0.0, -1.0]), dim=0))
    torch.testing.assert_close(q2[0], q[0])
    assert d.updates.tolist() == [1, 2, 0]


def _dictionary_inputs():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(4, 3, 5, generator=g)
    present = torch.tensor([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=torch.bool)
    e = torch.randn(6, 5, generator=g)
    image = torch.tensor([0, 0, 1, 2, 3, 3])
    classes = torch.tensor([0, 1, 2, 1, 0, 0])
    return v, present, e, image, classes


def _dictionary_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    v, present, e, image, classes = _dictionary_inputs()
    mine = torch.arange(4)[rank::world]  # images of this process
    keep = torch.isin(image, mine)
    local_image = torch.searchsorted(mine, image[keep])
    d = SemanticCenterDictionary(3, 5, momentum=0.3)
    for _ in range(2):
        d.update(v[mine], present[mine], e[keep], classes[keep], local_image * 3 + classes[keep])
    if rank == 0:
        torch.save({"centers": d.centers, "updates": d.updates}, out)
    dist.destroy_process_group()


def test_dictionary_is_all_reduced_under_torch_distributed(tmp_path):
    """Two gloo processes with half the batch each end with the dictionary of one process with all of it."""
    import torch.multiprocessing as mp

    out = tmp_path / "q.pt"
    mp.spawn(_dictionary_worker, args=(2, f"file://{tmp_path / 'init'}", str(out)), nprocs=2)
    v, present, e, image, classes = _dictionary_inputs()
    d = SemanticCenterDictionary(3, 5, momentum=0.3)
    for _ in range(2):
        d.update(v, present, e, classes, image * 3 + classes)
    got = torch.load(out, weights_only=True)
    torch.testing.assert_close(got["centers"], d.centers)
    assert torch.equal(got["updates"], d.updates)


def test_dictionary_gradient_reaches_the_batch_and_recalibration():
    d = SemanticCenterDictionary(2, 3, momentum=0.1)
    v = torch.randn(1, 2, 3, requires_grad=True)
    q = d.update(v, torch.tensor([[True, True]]), torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64),
                 torch.zeros(0, dtype=torch.int64))  # fmt: skip
    emb = torch.randn(1, 3, 4, 5)
    r = d.recalibrate(emb, q, 0.1)
    r.sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
    assert not d.centers.requires_grad
    # r = e + sum_c softmax(cos / tau) Q_c
    a = torch.softmax(torch.einsum("bdhw,cd->bchw", F.normalize(emb, dim=1), q.detach()) / 0.1, dim=1)
    torch.testing.assert_close(r.detach(), emb + torch.einsum("bchw,cd->bdhw", a, q.detach()))
    empty = SemanticCenterDictionary(2, 3)
    assert torch.equal(empty.recalibrate(emb, empty.centers, 0.1), emb)


def test_ablation_switch_trains_without_the_dictionary(synthetic_models_root):
    data = CocoPanopticDataset.from_root(synthetic_models_root, "train", transforms=Normalize())
    for interaction in (True, False):
        torch.manual_seed(0)
        model = build_model(EINetConfig(**{**TINY.__dict__, "interaction": interaction}), data.categories).train()
        collate = PanopticCollate(size_divisibility=16, target_generator=model.target_generator())
        losses = model(collate([data[0], data[1]]))
        assert ("loss_ins" in losses) == interaction
        assert {"loss_sem", "loss_hm", "loss_cen", "loss_grp"} <= set(losses)
        if interaction:
            assert model.dictionary.valid.any() and not model.dictionary.valid.all()
        sum(losses.values()).backward()


# ------------------------------------------------------------------------------------------ inference


def test_class_peaks_equal_per_channel_find_instance_center():
    torch.manual_seed(1)
    heat = torch.rand(3, 12, 15) ** 4
    heat[1, 0, 3] = heat[1, 11, 3] = 0.99  # peaks on the channel borders
    heat[2, 5, 5] = heat[2, 5, 6] = 0.97  # a plateau: both survive
    channel, ys, xs, values = class_peaks(heat, 0.1, 3, None)
    want = []
    for c in range(3):
        for y, x in find_instance_center(heat[c : c + 1], 0.1, 3, None).tolist():
            want.append((c, y, x))
    assert list(zip(channel.tolist(), ys.tolist(), xs.tolist(), strict=True)) == want
    assert torch.equal(values, heat[channel, ys, xs])
    assert (1, 0, 3) in want and (1, 11, 3) in want and (2, 5, 5) in want and (2, 5, 6) in want
    _, _, _, top = class_peaks(heat, 0.1, 3, 4)
    assert len(top) <= 4 and top.min() > heat[channel, ys, xs].sort(descending=True).values[4]
    with pytest.raises(ValueError, match="threshold"):
        class_peaks(heat, -0.5, 3, None)


def test_grouping_rules_and_ties():
    emb = torch.zeros(2, 4, 4)
    emb[0, :, :2] = 1.0  # left half: direction 0
    emb[1, :, 2:] = 1.0  # right half: direction 1
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # query 2 duplicates query 0
    pixels = torch.tensor([[0, 0], [15, 15], [5, 3]])  # at stride 4: cells (0, 0), (3, 3), (1, 0)
    assert group_thing_pixels(emb, queries, pixels, 4).tolist() == [0, 1, 0]  # ties go to the first query
    # an embedding as similar to two different queries: the first of them, in either order
    even = torch.ones(2, 4, 4)
    assert group_thing_pixels(even, queries[[1, 0]], pixels, 4).tolist() == [0, 0, 0]
    assert group_thing_pixels(even, queries[:2], pixels, 4).tolist() == [0, 0, 0]
    # no positive similarity: -1
    assert group_thing_pixels(-even, queries, pixels, 4).tolist() == [-1, -1, -1]
    assert group_thing_pixels(torch.zeros(2, 4, 4), queries, pixels, 4).tolist() == [-1, -1, -1]
    # between two cells the nearer cell's direction wins (map x = (x + 0.5) / 4 - 0.5)
    assert group_thing_pixels(emb, queries[:2], torch.tensor([[0, 7], [0, 8]]), 4).tolist() == [0, 1]
    # interpolation equals the dot product with the bilinearly upsampled embedding
    torch.manual_seed(0)
    emb = torch.randn(5, 6, 7)
    q = F.normalize(torch.randn(4, 5), dim=1)
    up = F.interpolate(emb[None], size=(24, 28), mode="bilinear", align_corners=False)[0]
    pix = torch.nonzero(torch.ones(24, 28, dtype=torch.bool))
    dots = torch.einsum("kd,dn->kn", q, up.reshape(5, -1))
    want = torch.where(dots.max(0).values > 0, dots.argmax(0), -1)
    assert (want == -1).any() and (want >= 0).any()
    assert torch.equal(group_thing_pixels(emb, q, pix, 4), want)


def test_postprocess_groups_by_class_and_keeps_stuff_by_area():
    cats = synthetic_categories()
    t0, t1 = cats.thing_classes[:2]
    sky, other = cats.stuff_classes[:2]
    h, w = 32, 48
    logits = torch.full((cats.num_classes, h, w), -5.0)
    logits[sky, :, :] = 5.0
    logits[t0, 4:12, 4:28] = 9.0  # two class-t0 objects side by side
    logits[t1, 20:28, 8:16] = 9.0  # one class-t1 object
    logits[t1, 20:28, 30:38] = 9.0  # t1 pixels that are nearer the t0 embeddings
    logits[other, 30:32, 40:42] = 9.0  # 4 pixels of stuff: under stuff_area
    heat = torch.zeros(cats.num_things, 8, 12)
    ti0, ti1 = cats.thing_index[t0], cats.thing_index[t1]
    heat[ti0, 2, 2] = heat[ti0, 2, 5] = 0.9
    heat[ti1, 6, 3] = 0.8
    emb = torch.zeros(3, 8, 12)
    emb[0, :, :4] = 1.0  # left t0 object
    emb[1, :, 4:] = 1.0  # right t0 object (and the far t1 pixels)
    emb[2, 5:, :4] = 2.0  # the t1 object
    emb[2, 5:, 7:10] = 0.5  # under the far t1 pixels: less than the t0 direction there, but positive
    cfg = EINetConfig(stuff_area=10)
    result = einet_postprocess({"semantic": logits, "heatmap": heat, "embedding": emb}, (h, w), (h, w), cats, cfg)
    info = {s["id"]: s for s in result.segments_info}
    left, right, obj = (int(result.ids[8, 6]), int(result.ids[8, 26]), int(result.ids[24, 10]))
    assert len({left, right, obj}) == 3
    assert info[left]["category_id"] == cats.ids[t0] and info[right]["category_id"] == cats.ids[t0]
    assert info[obj]["category_id"] == cats.ids[t1] and info[obj]["score"] == pytest.approx(0.8)
    # class-t1 pixels go to the t1 instance even where the t0 embeddings are more similar
    assert int(result.ids[24, 34]) == obj
    emb[2, 5:, 7:10] = 0.0  # no positive similarity to the t1 centroid: VOID
    void = einet_postprocess({"semantic": logits, "heatmap": heat, "embedding": emb}, (h, w), (h, w), cats, cfg)
    assert int(void.ids[24, 34]) == 0 and int(void.ids[24, 10]) == obj
    assert int(result.ids[31, 41]) == 0  # small stuff is VOID
    sky_id = int(result.ids[0, 0])
    assert not info[sky_id]["isthing"] and 0 < info[sky_id]["score"] <= 1
    # a thing class without a peak stays VOID
    heat[ti1] = 0
    none = einet_postprocess({"semantic": logits, "heatmap": heat, "embedding": emb}, (h, w), (h, w), cats, cfg)
    assert int(none.ids[24, 10]) == 0
    # a 2x output: the same segments, plus the small stuff, now 16 output pixels (stuff_area counts output pixels)
    big = einet_postprocess({"semantic": logits, "heatmap": heat, "embedding": emb}, (h, w), (2 * h, 2 * w), cats, cfg)
    assert big.ids.shape == (2 * h, 2 * w) and len(big.segments_info) == len(none.segments_info) + 1
    assert int(big.ids[62, 82]) != 0 and int(big.ids[16, 12]) != int(big.ids[16, 52])
    assert LABEL_DIVISOR > cfg.top_k


# ------------------------------------------------------------------------------------------ oracle


def test_oracle_outputs_reach_the_oracle_bound(synthetic_models_root):
    import oracle

    ds = CocoPanopticDataset.from_root(synthetic_models_root, "train")
    assert oracle.run_oracle("einet", EINetConfig.synthetic(), ds)["All"]["pq"] >= 0.9


def test_oracle_script_on_synthetic_val(oracle_script):
    results = oracle_script("einet", "synthetic")
    assert results["All"]["pq"] >= 0.9, results["All"]


def test_oracle_script_on_real_coco_sample(oracle_script):
    assert oracle_script("einet", "coco")["All"]["pq"] >= 0.9


@pytest.mark.slow
def test_overfits_four_synthetic_images(overfit_run):
    """PQ >= 0.8 on 4 training images (96 x 128) after 200 Adam steps (measured: PQ 0.857, 102 user-CPU seconds).

    Runs ``examples/train.py`` as a user would (its own process), without augmentation,
    evaluating on the training images themselves.
    """
    metrics, _, _ = overfit_run(
        "einet_synthetic", SyntheticConfig(train=4, val=0, seed=11, height=96, width=128),
        "solver.max_iter=200", "solver.base_lr=0.003", "solver.warmup_iters=0",
    )
    assert metrics["All"]["pq"] >= 0.8, metrics["All"]


def test_clear_errors():
    cats = synthetic_categories()
    with pytest.raises(ValueError, match="common_stride: 8"):
        build_model(EINetConfig(**{**TINY.__dict__, "common_stride": 8}), cats)
    stuff_only = Categories.from_list([c for c in synthetic_category_list() if not c["isthing"]])
    with pytest.raises(ValueError, match="at least one thing category"):
        build_model(TINY, stuff_only)
    outputs = {"semantic": torch.zeros(cats.num_classes, 16, 16), "heatmap": torch.zeros(2, 4, 4),
               "embedding": torch.zeros(3, 4, 4)}  # fmt: skip
    with pytest.raises(ValueError, match="heatmap: 2 channels for 4 thing classes"):
        einet_postprocess(outputs, (16, 16), (16, 16), cats, TINY)
    with pytest.raises(ValueError, match="logits"):
        centernet_focal_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="temperature"):
        centroid_contrast_loss(torch.zeros(1, 2), torch.zeros(1, dtype=torch.int64), torch.ones(1, 2),
                               torch.zeros(1, dtype=torch.int64), 0.0)  # fmt: skip


@pytest.mark.parametrize("name", ["synthetic", "cityscapes", "coco"])
def test_example_configs_are_the_presets(name):
    import dataclasses

    from common import load_experiment

    experiment = load_experiment(REPO / "examples" / "configs" / f"einet_{name}.yaml")
    model = experiment.model
    assert experiment.method == "einet" and isinstance(model, EINetConfig)
    if name != "synthetic":  # multi-GPU recipes: SyncBN, as Panoptic-DeepLab's
        assert model.norm == model.backbone.norm == "SyncBN" and experiment.train.sync_bn
        model = dataclasses.replace(model, norm="BN", backbone=dataclasses.replace(model.backbone, norm="BN"))
    assert model == getattr(EINetConfig, name)()
