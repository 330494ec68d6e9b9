"""The generic model test every method's test subclasses (as segmentation_models_pytorch's).

A subclass sets :attr:`ModelTester.config` (a small config of its method) and inherits tests of
the method contract: losses and gradients on a collated synthetic batch at odd sizes, float32
losses under bfloat16 autocast, valid
``PanopticResult`` at the original size in eval for batches of 1 and several images, results at
other output sizes, ``torch.compile`` of the backbone, the state_dict round trip through
``torch.load(weights_only=True)``, the target contract, and clear errors for bad input.
"""

from __future__ import annotations

import copy
import io
from typing import Any, ClassVar

import pytest
import torch
from torch.utils.data import DataLoader

from panoptic_core.data import CocoPanopticDataset, Normalize, PanopticBatch, PanopticCollate
from panoptic_models import PanopticModel, PanopticResult, build_model


def check_result(result: PanopticResult, size: tuple[int, int], model: PanopticModel) -> None:
    """Assert that ``result`` is a valid prediction of ``model`` for an image of ``size``."""
    assert isinstance(result, PanopticResult)
    assert tuple(result.ids.shape) == tuple(size)
    assert result.ids.dtype == torch.int64
    present = set(torch.unique(result.ids).tolist()) - {0}
    listed = [s["id"] for s in result.segments_info]
    assert len(listed) == len(set(listed))
    assert present == set(listed)
    cats = model.categories
    for seg in result.segments_info:
        assert seg["category_id"] in cats
        assert seg["isthing"] == cats.isthing[cats.class_index(seg["category_id"])]
        assert isinstance(seg["score"], float) and seg["score"] == seg["score"]  # not NaN


class ModelTester:
    """Mixin of method-agnostic model tests; subclasses set ``config``."""

    config: ClassVar[Any]

    @pytest.fixture
    def dataset(self, synthetic_models_root) -> CocoPanopticDataset:
        return CocoPanopticDataset.from_root(synthetic_models_root, "train", transforms=Normalize())

    def make_model(self, categories, seed: int = 0) -> PanopticModel:
        torch.manual_seed(seed)
        return build_model(self.config, categories)

    def batch(self, model: PanopticModel, dataset: CocoPanopticDataset, n: int, divisibility: int = 1) -> PanopticBatch:
        collate = PanopticCollate(size_divisibility=divisibility, target_generator=model.target_generator())
        return collate([dataset[i] for i in range(n)])

    def test_train_losses_and_gradients_at_odd_size(self, dataset):
        model = self.make_model(dataset.categories).train()
        batch = self.batch(model, dataset, 2)
        assert batch.images.shape[-2] % 2 == 1 and batch.images.shape[-1] % 2 == 1  # 67 x 93
        losses = model(batch)
        assert losses and all(k.startswith("loss_") for k in losses)
        for name, value in losses.items():
            assert value.dim() == 0 and torch.isfinite(value), name
        sum(losses.values()).backward()
        no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    def test_losses_are_float32_under_autocast(self, dataset):
        """Mixed precision (``solver.amp`` in train.py): the network runs in bfloat16, every loss is reduced in
        float32 (sums over masks or pixels in half precision would lose most digits)."""
        model = self.make_model(dataset.categories).train()
        batch = self.batch(model, dataset, 2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses = model(batch)
        for name, value in losses.items():
            assert value.dtype == torch.float32 and torch.isfinite(value), name

    @pytest.mark.parametrize("n", [1, 3])
    def test_eval_results_at_original_size(self, dataset, n):
        model = self.make_model(dataset.categories).eval()
        batch = self.batch(model, dataset, n, divisibility=model.size_divisibility)
        with torch.no_grad():
            results = model(batch)
        assert len(results) == n
        for result, size in zip(results, batch.image_sizes, strict=True):
            check_result(result, size, model)

    def test_eval_output_sizes(self, dataset):
        model = self.make_model(dataset.categories).eval()
        batch = self.batch(model, dataset, 2, divisibility=model.size_divisibility)
        sizes = [(100, 141), (33, 47)]
        with torch.no_grad():
            results = model(batch, output_sizes=sizes)
        for result, size in zip(results, sizes, strict=True):
            check_result(result, size, model)
        with pytest.raises(ValueError, match="output_sizes"):
            model(batch, output_sizes=sizes[:1])

    def test_state_dict_round_trip(self, dataset):
        model = self.make_model(dataset.categories, seed=1).eval()
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)
        other = self.make_model(dataset.categories, seed=2).eval()
        other.load_state_dict(state)
        batch = self.batch(model, dataset, 2, divisibility=model.size_divisibility)
        with torch.no_grad():
            a, b = model(batch), other(batch)
        for ra, rb in zip(a, b, strict=True):
            assert torch.equal(ra.ids, rb.ids)
            assert ra.segments_info == rb.segments_info

    def test_compiled_backbone_matches_eager(self, dataset):
        model = self.make_model(dataset.categories).eval()
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            eager = model.backbone(x)
            compiled = torch.compile(copy.deepcopy(model.backbone))(x)
        assert eager.keys() == compiled.keys()
        for key in eager:
            torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-4)

    def test_target_contract(self, dataset):
        model = self.make_model(dataset.categories)
        generator = model.target_generator()
        produced = set(generator(dataset[0][1]))
        assert model.target_keys <= produced, model.target_keys - produced
        declared = getattr(generator, "keys", None)
        if declared is not None:
            assert model.target_keys <= set(declared)

    def test_bad_input(self, dataset):
        model = self.make_model(dataset.categories).train()
        batch = self.batch(model, dataset, 1)
        two_channels = batch.apply(lambda t: t[:, :2] if t.dim() == 4 else t)
        with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
            model(two_channels)
        tiny = batch.apply(lambda t: t[..., :7, :7] if t.dim() >= 2 else t)
        with pytest.raises(ValueError, match="smaller than the network's stride"):
            model(tiny)
        raw = batch.apply(lambda t: t.to(torch.uint8) if t.dim() == 4 else t)
        with pytest.raises(ValueError, match="float tensor"):
            model(raw)
        untargeted = PanopticCollate(size_divisibility=1)([dataset[0]])
        with pytest.raises(ValueError, match="target_generator"):
            model(untargeted)


def overfit_loader(dataset: CocoPanopticDataset, model: PanopticModel, batch_size: int) -> DataLoader:
    collate = PanopticCollate(size_divisibility=model.size_divisibility, target_generator=model.target_generator())
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
