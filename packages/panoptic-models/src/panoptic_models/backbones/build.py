"""``build_backbone`` by name, and loading of local torchvision-format state dicts into a backbone."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch
from torch import nn

from .base import Backbone
from .efficientnet import EfficientNet
from .resnet import ResNet

__all__ = ["BACKBONES", "build_backbone", "load_backbone_weights"]

#: Backbone factories by name; each takes the keyword options of its class (``norm``, ``freeze_at``, ...).
BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet18": partial(ResNet, 18),
    "resnet34": partial(ResNet, 34),
    "resnet50": partial(ResNet, 50),
    "resnet101": partial(ResNet, 101),
    **{f"efficientnet_b{i}": partial(EfficientNet, f"b{i}") for i in range(6)},
}

_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")


def build_backbone(
    name: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    norm: str = "BN",
    freeze_at: int = 0,
    out_features: Sequence[str] | None = None,
    **options,
) -> Backbone:
    """Build a backbone by name, optionally initialised from a local torchvision-format state dict.

    Args:
        name: one of :data:`BACKBONES` (``resnet18/34/50/101``, ``efficientnet_b0`` .. ``efficientnet_b5``).
        weights: path of a state dict saved from the torchvision model of the same name (e.g.
            ``torch.save(torchvision.models.resnet50(weights=...).state_dict(), path)``); see
            :func:`load_backbone_weights`. None: torchvision's random initialisation.
        norm: ``"BN"``, ``"FrozenBN"``, ``"SyncBN"`` or ``"GN"``.
        freeze_at: 0 (nothing frozen) .. 5 (everything), detectron2's semantics.
        out_features: subset of ``res2``..``res5`` (default all four).
        **options: the class's other options: ResNet ``stem``, ``res4_dilation``, ``res5_dilation``,
            ``res5_multi_grid``; EfficientNet ``se``, ``stochastic_depth_prob``.

    Returns:
        The :class:`~panoptic_models.backbones.base.Backbone`, in training mode.

    Raises:
        ValueError: unknown name or option, bad option value, or an unusable weights file.
    """
    if name not in BACKBONES:
        raise ValueError(f"build_backbone: unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}")
    factory = BACKBONES[name]
    target = factory.func if isinstance(factory, partial) else factory
    params = inspect.signature(target).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        valid = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        unknown = [k for k in options if k not in valid]
        if unknown:
            raise ValueError(
                f"build_backbone({name!r}): unknown option(s) {', '.join(map(repr, unknown))}; "
                f"valid options: {', '.join(valid)}"
            )
    backbone = factory(norm=norm, freeze_at=freeze_at, out_features=out_features, **options)
    if weights is not None:
        load_backbone_weights(backbone, weights)
    return backbone


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # missing file, not a torch file, pickled objects refused by weights_only, ...
        detail = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise ValueError(
            f"weights file {path!r} could not be read as a state dict: {type(e).__name__}: {detail}"
        ) from e
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(f"weights file {path!r}: expected a state dict (a dict of tensors), got {type(obj).__name__}")
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"weights file {path!r}: expected a state dict (str keys, tensor values); entry {key!r} holds "
                f"{type(value).__name__}"
            )
        state[key] = value
    if state and all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel wrapper
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_backbone_weights(backbone: nn.Module, weights: str | os.PathLike[str]) -> None:
    """Load a local torchvision-format state dict into ``backbone``, strictly.

    The file is read with ``torch.load(path, map_location="cpu", weights_only=True)`` and may hold the bare
    state dict, ``{"state_dict": ...}`` or ``{"model": ...}`` (a ``module.`` prefix on every key is dropped).
    Ignored: the classifier (``fc.*`` / ``classifier.*``), ``num_batches_tracked``, keys the backbone declares
    ignorable by design (``backbone.is_ignored_weight_key(key)``: stages not built because of
    ``out_features``, SE parameters of an SE-free EfficientNet) and the running statistics of BatchNorms that
    are GroupNorms here (GroupNorm takes their affine parameters). BatchNorm statistics and affine parameters go
    to FrozenBatchNorm2d buffers as well (same keys). The values are cast to the backbone's dtypes.

    Args:
        backbone: the model to load into (typically from :func:`build_backbone`).
        weights: path of the file.

    Raises:
        ValueError: naming the file, when it cannot be read or is not a dict of tensors, or naming the first
            (in the backbone's order) missing key or shape mismatch (with both shapes), else the first key of the
            file that the backbone does not have.
    """
    path = os.fspath(weights)
    state = _read_state_dict(path)
    own = backbone.state_dict()
    is_ignored = getattr(backbone, "is_ignored_weight_key", None)
    modules = dict(backbone.named_modules())

    problems: list[str] = []
    for key, target in own.items():
        if key.endswith("num_batches_tracked"):
            continue  # absent from old checkpoints; the counter is not a weight
        if key not in state:
            problems.append(f"missing key {key!r} (expected shape {tuple(target.shape)})")
        elif state[key].shape != target.shape:
            problems.append(
                f"shape mismatch for {key!r}: file has {tuple(state[key].shape)}, "
                f"{_describe(backbone)} expects {tuple(target.shape)}"
            )
    for key in state:  # reported after the missing / mismatched ones
        if key in own or key.endswith("num_batches_tracked"):
            continue
        if key.startswith(("fc.", "classifier.")) or (is_ignored is not None and is_ignored(key)):
            continue
        parent, _, leaf = key.rpartition(".")
        if leaf in _NORM_STATS and isinstance(modules.get(parent), nn.GroupNorm):
            continue
        problems.append(f"unexpected key {key!r} (shape {tuple(state[key].shape)}): the backbone has no such entry")
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ValueError(f"weights file {path!r} does not fit {_describe(backbone)}: {problems[0]}{more}")
    backbone.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def _describe(backbone: nn.Module) -> str:
    if isinstance(backbone, ResNet):
        return f"ResNet-{backbone.depth}"
    if isinstance(backbone, EfficientNet):
        return f"EfficientNet-{backbone.variant.upper()}"
    return type(backbone).__name__
