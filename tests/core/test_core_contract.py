"""The contract between target generators, the collate and the methods: TargetGenerator, GLOSSARY."""

import re
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from panoptic_core.data import CocoPanopticDataset, PanopticCollate, PanopticTarget, stack_targets
from panoptic_core.targets import (
    GLOSSARY,
    CIAETargets,
    EINetTargets,
    PanopticDeepLabTargets,
    PanopticFCNTargets,
    SOLOv2Targets,
    TargetGenerator,
)

README = Path(__file__).resolve().parents[2] / "packages" / "panoptic-core" / "README.md"

GENERATORS = {
    "deeplab": lambda cats: PanopticDeepLabTargets(),
    "ciae": lambda cats: CIAETargets(cats, embedding_stride=4),
    "panoptic_fcn": lambda cats: PanopticFCNTargets(cats),
    "solov2": lambda cats: SOLOv2Targets(cats),
    "einet": lambda cats: EINetTargets(cats, stride=4),
}


@pytest.fixture(scope="module")
def dataset(synthetic_root) -> CocoPanopticDataset:
    return CocoPanopticDataset.from_root(synthetic_root, "val")


def _empty(height: int = 96, width: int = 128) -> PanopticTarget:
    """An all-VOID image without segments."""
    return PanopticTarget(torch.zeros(height, width, dtype=torch.int64), [], 7, "empty.png")


def _check_output(gen: TargetGenerator, out: dict, name: str) -> None:
    assert set(out) == gen.keys, (name, sorted(set(out) ^ gen.keys))
    for key, value in out.items():
        if key in gen.per_level:
            assert isinstance(value, list) and value, (name, key)
            assert all(isinstance(level, torch.Tensor) for level in value), (name, key)
        else:
            assert isinstance(value, torch.Tensor), (name, key)


@pytest.mark.parametrize("method", sorted(GENERATORS))
def test_generator_declares_and_returns_its_keys(dataset, method):
    gen = GENERATORS[method](dataset.categories)
    assert isinstance(gen, TargetGenerator)
    assert gen.keys <= GLOSSARY.keys(), sorted(gen.keys - GLOSSARY.keys())
    assert gen.ragged <= gen.keys and gen.per_level <= gen.keys
    _, real = dataset[0]
    assert any(s.isthing and not s.iscrowd for s in real.segments)
    outs = [gen(real), gen(_empty())]
    for out, name in zip(outs, ("synthetic", "empty"), strict=True):
        _check_output(gen, out, name)
    for key in gen.per_level:  # the same number of levels for every image
        assert len({len(out[key]) for out in outs}) == 1, key
    if gen.per_level:  # and the same for every per-level entry of one image
        assert len({len(outs[0][key]) for key in gen.per_level}) == 1


@pytest.mark.parametrize("method", sorted(GENERATORS))
def test_empty_image_gives_empty_instance_entries(method, dataset):
    out = GENERATORS[method](dataset.categories)(_empty())
    for key, value in out.items():
        if key.startswith("instance_") or key in ("center_points", "segment_classes", "segment_isthing"):
            assert value.shape[0] == 0, key
        if key.startswith("level_"):
            assert all(v.numel() == 0 for v in value), key


def _check_batch(gen: TargetGenerator, batch) -> None:
    per_image = [gen(t) for t in batch.targets]  # the collate's padded targets
    b = len(batch)
    assert set(batch.method_targets) == gen.keys
    for key, value in batch.method_targets.items():
        if key in gen.ragged:
            assert isinstance(value, list) and len(value) == b, key
            for got, want in zip(value, (d[key] for d in per_image), strict=True):
                pairs = zip(got, want, strict=True) if key in gen.per_level else [(got, want)]
                assert all(torch.equal(x, y) for x, y in pairs), key
        elif key in gen.per_level:
            assert isinstance(value, list) and len(value) == len(per_image[0][key]), key
            for level, stacked in enumerate(value):
                assert torch.equal(stacked, torch.stack([d[key][level] for d in per_image])), (key, level)
        else:
            assert isinstance(value, torch.Tensor) and value.shape[0] == b, key
            assert torch.equal(value, torch.stack([d[key] for d in per_image])), key


@pytest.mark.parametrize("method", sorted(GENERATORS))
def test_collated_batch_stacks_and_keeps_ragged(dataset, method):
    gen = GENERATORS[method](dataset.categories)
    loader = DataLoader(dataset, batch_size=2, collate_fn=PanopticCollate(32, target_generator=gen))
    _check_batch(gen, next(iter(loader)))
    image, real = dataset[1]
    blank = torch.zeros(3, 40, 60, dtype=image.dtype)
    mixed = PanopticCollate(32, target_generator=gen)([(image, real), (blank, _empty(40, 60))])
    _check_batch(gen, mixed)


def test_glossary_covers_exactly_the_generators_keys(dataset):
    produced = set().union(*(factory(dataset.categories).keys for factory in GENERATORS.values()))
    assert produced == set(GLOSSARY)
    for key, meaning in GLOSSARY.items():
        assert re.fullmatch(r"[a-z_]+", key) and "centre" not in meaning, key
        assert meaning.strip() and "|" not in meaning, key


def test_readme_renders_the_glossary():
    text = README.read_text()
    section = text.split("### Target keys\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\| `[a-z_]+` \| ", line)]
    assert rows == [f"| `{key}` | {meaning} |" for key, meaning in GLOSSARY.items()]
    assert "centre" not in text.lower()


class _PlainGenerator:
    """A user's callable without keys / ragged / per_level."""

    def __call__(self, target: PanopticTarget) -> dict:
        ids = target.ids
        return {"map": ids.clone(), "levels": [ids[::2, ::2], ids[::4, ::4]], "count": len(target.segments)}


def test_collate_infers_layout_for_plain_callables(dataset):
    gen = _PlainGenerator()
    assert not isinstance(gen, TargetGenerator)
    batch = PanopticCollate(32, target_generator=gen)([dataset[0], dataset[1]])
    t = batch.method_targets
    assert t["map"].shape == (2, 128, 160)
    assert [tuple(level.shape) for level in t["levels"]] == [(2, 64, 80), (2, 32, 40)]
    assert t["count"] == [len(batch.targets[0].segments), len(batch.targets[1].segments)]


def test_stack_targets_follows_declarations():
    a = {"levels": [torch.zeros(2), torch.ones(3)], "points": [torch.zeros(1)], "x": torch.zeros(4)}
    b = {"levels": [torch.ones(2), torch.zeros(3)], "points": [torch.ones(1)], "x": torch.ones(4)}
    # declared: "points" is ragged per level (kept per image), "levels" per level, "x" stacked
    out = stack_targets([a, b], frozenset({"points"}), frozenset({"levels", "points"}))
    assert [v.shape for v in out["levels"]] == [(2, 2), (2, 3)]
    assert [p is q for p, q in zip(out["points"], (a["points"], b["points"]), strict=True)] == [True, True]
    assert out["x"].shape == (2, 4)
    # a list not declared per level stays a list of the images' values
    out = stack_targets([a, b], frozenset(), frozenset({"levels"}))
    assert [p is q for p, q in zip(out["points"], (a["points"], b["points"]), strict=True)] == [True, True]
    # undeclared (a plain callable): lists of tensors are inferred per level
    assert [v.shape for v in stack_targets([a, b])["points"]] == [(2, 1)]
    with pytest.raises(ValueError, match="'x' is declared per level"):
        stack_targets([a, b], frozenset(), frozenset({"x"}))
    with pytest.raises(ValueError, match="'x' is missing"):
        stack_targets([a, {k: v for k, v in b.items() if k != "x"}])


def test_collate_rejects_outputs_that_break_the_declared_keys(dataset):
    class Forgetful(PanopticDeepLabTargets):
        def __call__(self, target):
            out = super().__call__(target)
            del out["center_points"]
            return out

    with pytest.raises(ValueError, match="declares"):
        PanopticCollate(32, target_generator=Forgetful())([dataset[0]])
