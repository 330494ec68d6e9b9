"""Backbones: shapes, torchvision parity (keys, parameter counts, features), options, errors.

The torchvision references live in ``fixtures/`` (written by ``fixtures/make_torchvision_fixtures.py`` in a
scratch venv with torchvision; see its docstring). Weights are never stored: both sides build them with the
same deterministic recipe (``recipe_array(key, shape)``).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from panoptic_models.backbones import BACKBONES, Backbone, EfficientNet, ResNet, ShapeSpec, build_backbone
from panoptic_models.backbones.efficientnet import MBConv, SqueezeExcitation, StochasticDepth
from panoptic_models.layers import FrozenBatchNorm2d, GroupNorm

FIXTURES = Path(__file__).resolve().parent / "fixtures"
_spec = importlib.util.spec_from_file_location("make_torchvision_fixtures", FIXTURES / "make_torchvision_fixtures.py")
recipe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recipe)

NAMES = [
    "resnet18", "resnet34", "resnet50", "resnet101",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5",
]  # fmt: skip

#: torchvision's published parameter counts (classifier included).
PUBLISHED_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
}

BN_TYPES = (nn.BatchNorm2d, nn.SyncBatchNorm, FrozenBatchNorm2d)


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    """Run this module's small convolutions on one thread, restoring the setting afterwards.

    With two OpenMP threads on a shared 2-core machine, OpenMP's spin-waiting makes these tiny workloads up to
    100x slower whenever other processes compete for the cores; one thread costs nothing at these sizes.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tv_keys() -> dict:
    return json.loads((FIXTURES / "torchvision_keys.json").read_text())["models"]


@pytest.fixture(scope="module")
def tv_features():
    with np.load(FIXTURES / "torchvision_features.npz") as data:
        return {k: data[k] for k in data.files}


def torchvision_state_dict(tv_keys: dict, arch: str) -> dict[str, torch.Tensor]:
    """A full torchvision-format state dict of ``arch`` (classifier included) with the recipe's values."""
    return {k: torch.from_numpy(recipe.recipe_array(k, tuple(shape))) for k, shape in tv_keys[arch]["state_dict"]}


@pytest.fixture(scope="module")
def torchvision_file(tv_keys, tmp_path_factory):
    """``torchvision_file(arch)``: path of a full torchvision-format state dict file (written once per arch)."""
    folder = tmp_path_factory.mktemp("weights")

    def get(arch: str) -> Path:
        path = folder / f"{arch}.pth"
        if not path.exists():
            torch.save(torchvision_state_dict(tv_keys, arch), path)
        return path

    return get


@pytest.fixture(scope="module")
def resnet18_file(torchvision_file) -> Path:
    return torchvision_file("resnet18")


def train_step(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One SGD step on the mean square of every feature; returns the loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.1) if params else None
    out = model(x)
    loss = sum(f.square().mean() for f in out.values())
    if optimizer is not None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.detach()


# ---------------------------------------------------------------------------------------------- torchvision parity


def test_registry_and_classes():
    assert list(BACKBONES) == NAMES
    assert isinstance(build_backbone("resnet18", out_features=["res2"]), ResNet)
    assert isinstance(build_backbone("efficientnet_b0", out_features=["res2"]), EfficientNet)
    assert issubclass(ResNet, Backbone) and issubclass(EfficientNet, Backbone)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_and_keys_match_torchvision(name, tv_keys):
    with torch.device("meta"):
        model = build_backbone(name)
    classifier = model.output_shape()["res5"].channels * 1000 + 1000  # fc / classifier.1: Linear(C, 1000)
    count = sum(p.numel() for p in model.parameters()) + classifier
    assert count == PUBLISHED_PARAMS[name] == tv_keys[name]["num_parameters"]

    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    theirs = [entry for entry in tv_keys[name]["state_dict"] if not entry[0].startswith(("fc.", "classifier."))]
    assert ours == theirs  # same keys, same order, same shapes
    norms = sorted({(m.eps, m.momentum) for m in model.modules() if isinstance(m, nn.BatchNorm2d)})
    assert [list(n) for n in norms] == tv_keys[name]["batchnorm_eps_momentum"]


@pytest.mark.parametrize(
    ("fixture", "norm"),
    [(f, "BN") for f in recipe.FIXTURES] + [("resnet18", "FrozenBN"), ("efficientnet_b0", "FrozenBN")],
)
def test_features_equal_torchvision(fixture, norm, tv_features, torchvision_file):
    arch, _, options, _ = recipe.FIXTURES[fixture]
    path = torchvision_file(arch)  # classifier included: ignored by the loader
    model = build_backbone(arch, norm=norm, weights=path, **options).eval()
    x = torch.from_numpy(tv_features[f"{fixture}/input"])
    with torch.no_grad():
        out = model(x)
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for name, feature in out.items():
        expected = torch.from_numpy(tv_features[f"{fixture}/{name}"])
        assert feature.shape == expected.shape, (fixture, name)
        # float32 through up to ~100 layers (FrozenBN folds the BN differently): 1e-5 of the feature's range
        torch.testing.assert_close(feature, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


# ----------------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("name", "options", "strides"),
    [
        ("resnet18", {}, (4, 8, 16, 32)),
        ("resnet18", {"res5_dilation": 2}, (4, 8, 16, 16)),
        ("resnet34", {"res4_dilation": 2, "res5_dilation": 4}, (4, 8, 8, 8)),
        ("resnet50", {"res5_dilation": 2, "res5_multi_grid": (1, 2, 4), "stem": "deeplab"}, (4, 8, 16, 16)),
        ("efficientnet_b0", {}, (4, 8, 16, 32)),
        ("efficientnet_b1", {"se": False}, (4, 8, 16, 32)),
    ],
)
def test_output_shapes_at_odd_sizes(name, options, strides):
    model = build_backbone(name, **options).eval()
    h, w = 97, 131
    with torch.no_grad():
        out = model(torch.randn(2, 3, h, w))
    shapes = model.output_shape()
    assert list(out) == list(shapes) == ["res2", "res3", "res4", "res5"]
    assert tuple(s.stride for s in shapes.values()) == strides
    assert model.size_divisibility == max(strides)
    for key, feature in out.items():
        spec = shapes[key]
        assert isinstance(spec, ShapeSpec)
        assert feature.shape == (2, spec.channels, math.ceil(h / spec.stride), math.ceil(w / spec.stride)), key


def test_resnet_channels_and_dilation_options():
    assert [s.channels for s in build_backbone("resnet34").output_shape().values()] == [64, 128, 256, 512]
    assert [s.channels for s in build_backbone("resnet101").output_shape().values()] == [256, 512, 1024, 2048]
    # torchvision's replace_stride_with_dilation: the first block of a dilated stage keeps the previous dilation
    model = build_backbone("resnet50", res4_dilation=2, res5_dilation=4)
    assert [b.conv2.dilation[0] for b in model.layer3] == [1] + [2] * 5
    assert [b.conv2.dilation[0] for b in model.layer4] == [2, 4, 4]
    assert all(b.conv2.stride == (1, 1) for b in model.layer4)
    # DeepLab multi-grid: every res5 block at res5_dilation * grid, paddings following
    model = build_backbone("resnet50", res5_dilation=2, res5_multi_grid=(1, 2, 4))
    assert [b.conv2.dilation[0] for b in model.layer4] == [2, 4, 8]
    assert [b.conv2.padding[0] for b in model.layer4] == [2, 4, 8]
    model = build_backbone("resnet18", res5_dilation=2, res5_multi_grid=[1, 2])
    assert [(b.conv1.dilation[0], b.conv2.dilation[0]) for b in model.layer4] == [(2, 2), (4, 4)]
    with pytest.raises(ValueError, match="res5_multi_grid needs 3"):
        build_backbone("resnet50", res5_multi_grid=(1, 2))
    with pytest.raises(ValueError, match="res5_dilation must be 2"):
        build_backbone("resnet50", res4_dilation=2)
    with pytest.raises(ValueError, match="res4_dilation must be 1 or 2"):
        build_backbone("resnet50", res4_dilation=4, res5_dilation=8)


def test_deeplab_stem():
    model = build_backbone("resnet50", stem="deeplab", freeze_at=1)
    convs = [model.conv1, model.conv2, model.conv3]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 64, (3, 3), (2, 2)), (64, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1))
    ]  # fmt: skip
    assert model.layer1[0].conv1.in_channels == 128 and model.layer1[0].downsample[0].in_channels == 128
    assert all(isinstance(getattr(model, f"bn{i}"), FrozenBatchNorm2d) for i in (1, 2, 3))
    assert not any(c.weight.requires_grad for c in convs) and model.layer1[0].conv1.weight.requires_grad
    out = build_backbone("resnet18", stem="deeplab").eval()(torch.randn(1, 3, 64, 64))
    assert out["res2"].shape == (1, 64, 16, 16) and out["res5"].shape == (1, 512, 2, 2)
    with pytest.raises(ValueError, match="stem must be 'basic' or 'deeplab'"):
        build_backbone("resnet18", stem="deep")


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_out_features_subset(name, torchvision_file):
    model = build_backbone(name, out_features=["res3", "res2"])
    assert list(model.output_shape()) == ["res2", "res3"] and model.size_divisibility == 8
    out = model(torch.randn(1, 3, 24, 40))
    assert list(out) == ["res2", "res3"] and out["res3"].shape[-2:] == (3, 5)
    if name == "resnet18":
        assert not hasattr(model, "layer3") and not hasattr(model, "layer4")
    else:
        assert len(model.features) == 4
    # the stages not built are skipped when loading a full torchvision state dict
    model = build_backbone(name, out_features=["res3"], weights=torchvision_file(name))
    key = "layer2.1.bn2.running_var" if name == "resnet18" else "features.3.1.block.1.1.running_var"
    value = model.state_dict()[key]
    assert torch.equal(value, torch.from_numpy(recipe.recipe_array(key, tuple(value.shape))))
    with pytest.raises(ValueError, match="out_features must be a non-empty subset of res2, res3, res4, res5"):
        build_backbone(name, out_features=["res3", "res6"])


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_channels_last_gives_the_same_features(name):
    torch.manual_seed(0)
    model = build_backbone(name).eval()
    x = torch.randn(1, 3, 67, 83)
    with torch.no_grad():
        ref = model(x)
        got = model(x.contiguous(memory_format=torch.channels_last))
        model_cl = model.to(memory_format=torch.channels_last)
        got_cl = model_cl(x.contiguous(memory_format=torch.channels_last))
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got_cl[key], ref[key], rtol=1e-4, atol=1e-5)
    # training with channels_last: see test_every_norm_trains_one_step


# ---------------------------------------------------------------------------------------------- norms and freezing

FREEZE_GROUPS = {
    "resnet18": [("conv1.", "bn1."), ("layer1.",), ("layer2.",), ("layer3.",), ("layer4.",)],
    "efficientnet_b0": [
        ("features.0.",), ("features.1.", "features.2."), ("features.3.",), ("features.4.", "features.5."),
        ("features.6.", "features.7.", "features.8."),
    ],
}  # fmt: skip


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 4, 5])
@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_freeze_at(name, freeze_at):
    torch.manual_seed(0)
    model = build_backbone(name, freeze_at=freeze_at).train()
    frozen_prefixes = tuple(p for group in FREEZE_GROUPS[name][:freeze_at] for p in group)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for key, p in model.named_parameters():
        assert p.requires_grad == (not key.startswith(frozen_prefixes)), key
    for key, m in model.named_modules():
        if isinstance(m, BN_TYPES):
            frozen = f"{key}.".startswith(frozen_prefixes)
            assert isinstance(m, FrozenBatchNorm2d if frozen else nn.BatchNorm2d), key
    train_step(model, torch.randn(2, 3, 32, 32))
    after = model.state_dict()
    lost = [k for k in before if k.endswith("num_batches_tracked") and k.startswith(frozen_prefixes)]
    assert list(after) == [k for k in before if k not in lost]  # FrozenBatchNorm2d has no counter
    for key, value in after.items():
        if key.startswith(frozen_prefixes):
            assert torch.equal(value, before[key]), key  # weights and FrozenBN statistics untouched
    trainable = [k for k in after if not k.startswith(frozen_prefixes) and k.endswith(".weight")]
    assert all(not torch.equal(after[k], before[k]) for k in trainable[-3:])


def test_freeze_at_rejects_out_of_range():
    for bad in (-1, 6, 1.0, True):
        with pytest.raises(ValueError, match=r"freeze_at must be an int in 0\.\.5"):
            build_backbone("resnet18", freeze_at=bad)


@pytest.mark.parametrize("norm", ["BN", "FrozenBN", "SyncBN", "GN"])
@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_every_norm_trains_one_step(name, norm):
    """One step in channels_last: the backward of every layer accepts it (no .view on non-contiguous tensors)."""
    torch.manual_seed(0)
    model = build_backbone(name, norm=norm).train().to(memory_format=torch.channels_last)
    expected = {"BN": nn.BatchNorm2d, "FrozenBN": FrozenBatchNorm2d, "SyncBN": nn.SyncBatchNorm, "GN": GroupNorm}
    norms = [m for m in model.modules() if isinstance(m, (*BN_TYPES, nn.GroupNorm))]
    assert norms and all(type(m) is expected[norm] for m in norms)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = train_step(model, torch.randn(2, 3, 32, 48).contiguous(memory_format=torch.channels_last))
    assert torch.isfinite(loss)
    after = model.state_dict()
    conv = "conv1.weight" if name == "resnet18" else "features.0.0.weight"
    assert not torch.equal(after[conv], before[conv])
    stats = "bn1.running_mean" if name == "resnet18" else "features.0.1.running_mean"
    if norm in ("BN", "SyncBN"):
        assert not torch.equal(after[stats], before[stats])  # statistics updated in training
    elif norm == "FrozenBN":
        assert torch.equal(after[stats], before[stats])
        owners = [m for m in model.modules() if list(m.parameters(recurse=False))]
        assert all(isinstance(m, nn.Conv2d) for m in owners)  # only convs train; norms hold buffers
    else:
        assert stats not in after
    with pytest.raises(ValueError, match="unknown norm 'LN'"):
        build_backbone(name, norm="LN")


# ---------------------------------------------------------------------------------------------------- EfficientNet


def test_stochastic_depth_only_in_training():
    blocks = [m for m in build_backbone("efficientnet_b0").modules() if isinstance(m, MBConv)]
    assert [b.stochastic_depth.p for b in blocks] == [0.2 * i / 16 for i in range(16)]  # torchvision's schedule

    model = build_backbone("efficientnet_b0", norm="FrozenBN", stochastic_depth_prob=0.8)
    model.load_state_dict(recipe.recipe_state_dict(model.state_dict()))  # features of order 1 (not the init's 1e-14)
    plain = build_backbone("efficientnet_b0", norm="FrozenBN", stochastic_depth_prob=0.0)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference = plain.train()(x)["res5"]
        eval_out = model.eval()(x)["res5"]
        torch.manual_seed(1)
        train_a = model.train()(x)["res5"]
        torch.manual_seed(2)
        train_b = model(x)["res5"]
    torch.testing.assert_close(eval_out, reference, rtol=0, atol=0)
    assert not torch.allclose(train_a, train_b) and not torch.allclose(train_a, reference)

    drop = StochasticDepth(1.0).train()
    assert torch.equal(drop(torch.ones(3, 2, 1, 1)), torch.zeros(3, 2, 1, 1))
    assert torch.equal(drop.eval()(torch.ones(3, 2, 1, 1)), torch.ones(3, 2, 1, 1))
    with pytest.raises(ValueError, match="drop probability"):
        StochasticDepth(1.5)


def test_efficientnet_without_se_loads_torchvision_weights(tv_keys, torchvision_file, tmp_path):
    model = build_backbone("efficientnet_b0", se=False, weights=torchvision_file("efficientnet_b0")).eval()
    assert not any(isinstance(m, SqueezeExcitation) for m in model.modules())
    theirs = dict((k, s) for k, s in tv_keys["efficientnet_b0"]["state_dict"])
    ours = model.state_dict()
    assert all(list(v.shape) == theirs[k] for k, v in ours.items())  # every key at torchvision's name
    skipped = [k for k in theirs if k not in ours and not k.startswith("classifier.")]
    assert skipped and all(".fc1." in k or ".fc2." in k for k in skipped)
    key = "features.7.0.block.3.0.weight"  # the projection conv keeps its index after the (absent) SE
    assert torch.equal(ours[key], torch.from_numpy(recipe.recipe_array(key, tuple(theirs[key]))))
    assert sum(p.numel() for p in model.parameters()) < 4_007_548
    assert model(torch.randn(1, 3, 64, 64))["res5"].shape == (1, 1280, 2, 2)
    # the other way round: an SE network needs the SE keys
    path = tmp_path / "no_se.pth"
    torch.save(ours, path)
    with pytest.raises(ValueError, match=r"missing key 'features\.1\.0\.block\.1\.fc1\.weight'"):
        build_backbone("efficientnet_b0", weights=path)


# -------------------------------------------------------------------------------------------------------- weights


def test_weights_wrappers_and_group_norm(resnet18_file, tmp_path):
    state = torch.load(resnet18_file, weights_only=True)
    reference = build_backbone("resnet18", weights=resnet18_file).eval()
    x = torch.randn(1, 3, 64, 64)
    expected = reference(x)["res5"]
    for i, wrapped in enumerate(
        [
            {"state_dict": state},
            {"model": state, "iteration": torch.tensor(3)},
            {f"module.{k}": v for k, v in state.items()},
            {k: v.half() for k, v in state.items()},
        ]
    ):
        path = tmp_path / f"w{i}.pt"
        torch.save(wrapped, path)
        got = build_backbone("resnet18", weights=path).eval()(x)["res5"]
        torch.testing.assert_close(got, expected, rtol=1e-2 if i == 3 else 0, atol=1e-2 if i == 3 else 0)
    # GroupNorm takes the BatchNorm affine parameters; the running statistics are ignored
    gn = build_backbone("resnet18", norm="GN", weights=resnet18_file)
    assert torch.equal(gn.layer3[1].bn2.weight.detach(), state["layer3.1.bn2.weight"])
    # frozen stages receive the values in their FrozenBatchNorm2d buffers
    frozen = build_backbone("resnet18", freeze_at=2, weights=resnet18_file)
    assert isinstance(frozen.layer1[0].bn1, FrozenBatchNorm2d)
    assert torch.equal(frozen.layer1[0].bn1.running_var, state["layer1.0.bn1.running_var"])
    assert torch.equal(frozen.bn1.weight, state["bn1.weight"])


def test_weights_errors_name_the_file_and_key(resnet18_file, torchvision_file, tmp_path):
    state = torch.load(resnet18_file, weights_only=True)
    bad = tmp_path / "bad.pth"

    missing = {k: v for k, v in state.items() if k != "layer2.0.downsample.0.weight"}
    torch.save(missing, bad)
    with pytest.raises(ValueError, match=r"bad\.pth.*missing key 'layer2\.0\.downsample\.0\.weight'"):
        build_backbone("resnet18", weights=bad)

    renamed = {k.replace("layer3.1.conv1", "layer3.1.conv_1"): v for k, v in state.items()}
    torch.save(renamed, bad)
    with pytest.raises(ValueError, match=r"bad\.pth.*missing key 'layer3\.1\.conv1\.weight'.*\(and 1 more problem"):
        build_backbone("resnet18", weights=bad)

    wrong_shape = dict(state, **{"layer1.1.conv2.weight": torch.zeros(64, 64, 1, 1)})
    torch.save(wrong_shape, bad)
    with pytest.raises(ValueError, match=r"bad\.pth.*'layer1\.1\.conv2\.weight'.*\(64, 64, 1, 1\).*\(64, 64, 3, 3\)"):
        build_backbone("resnet18", weights=bad)

    # every resnet18 key fits in a resnet34 file: the extra blocks must be refused
    with pytest.raises(ValueError, match=r"resnet34\.pth.*unexpected key 'layer1\.2\.conv1\.weight'"):
        build_backbone("resnet18", weights=torchvision_file("resnet34"))

    torch.save(state, bad)
    with pytest.raises(ValueError, match=r"bad\.pth.*EfficientNet-B0: missing key 'features\.0\.0\.weight'"):
        build_backbone("efficientnet_b0", weights=bad)
    with pytest.raises(ValueError, match=r"bad\.pth.*mismatch for 'conv1\.weight'.*\(64, 3, 7, 7\).*\(64, 3, 3, 3\)"):
        build_backbone("resnet18", stem="deeplab", weights=bad)

    bad.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError, match=r"weights file '.*bad\.pth' could not be read"):
        build_backbone("resnet18", weights=bad)
    with pytest.raises(ValueError, match=r"weights file '.*nowhere\.pth' could not be read"):
        build_backbone("resnet18", weights=tmp_path / "nowhere.pth")
    torch.save([torch.zeros(1)], bad)
    with pytest.raises(ValueError, match=r"bad\.pth.*expected a state dict \(a dict of tensors\), got list"):
        build_backbone("resnet18", weights=bad)
    torch.save({"conv1.weight": 3}, bad)
    with pytest.raises(ValueError, match=r"bad\.pth.*entry 'conv1\.weight' holds int"):
        build_backbone("resnet18", weights=bad)
    torch.save(nn.Linear(2, 2), bad)  # a pickled module: refused by weights_only=True
    with pytest.raises(ValueError, match=r"bad\.pth' could not be read"):
        build_backbone("resnet18", weights=bad)


# -------------------------------------------------------------------------------------------------------- bad input


def test_bad_inputs_and_names():
    model = build_backbone("resnet18").eval()
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\), got \(1, 1, 64, 64\)"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 3, H, W\), got \(3, 64, 64\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="image of 31x64 is smaller than the network's stride 32"):
        model(torch.randn(1, 3, 31, 64))
    with pytest.raises(ValueError, match="image of 8x8 is smaller than the network's stride 16"):
        build_backbone("efficientnet_b0", out_features=["res4"])(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet152'; valid names: resnet18, .*efficientnet_b5"):
        build_backbone("resnet152")
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'se'; valid options: .*res5_dilation"):
        build_backbone("resnet18", se=False)
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'res5_dilation'; valid options: .*se"):
        build_backbone("efficientnet_b0", res5_dilation=2)


@pytest.mark.slow  # inductor's C++ compile: ~30 s on 2 cores with a cold cache
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # torch-internal
def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    model = build_backbone("resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        expected = model(x)
        got = compiled(x)
    assert list(got) == list(expected)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-4)
