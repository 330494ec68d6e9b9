"""What the example scripts share: experiment configs (YAML + ``key=value`` overrides), data, checkpoints, evaluation.

An experiment config is a YAML file with the sections of :class:`ExperimentConfig`; the
``model`` section holds the method config's fields (``preset`` picks a starting preset such as
``synthetic`` or ``coco``). Every key can be overridden on the command line as
``dotted.key=value`` (value parsed as YAML). An unknown key or a bad value raises
:class:`ConfigError`, which the scripts turn into exit status 2 and one line.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader

from panoptic_core import DatasetError
from panoptic_core.data import (
    Categories,
    CocoPanopticDataset,
    ColorJitter,
    Compose,
    Normalize,
    PanopticBatch,
    PanopticCollate,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    SyntheticConfig,
    resize_pair,
    write_synthetic_dataset,
)
from panoptic_eval import PanopticQuality
from panoptic_models import METHODS, PanopticModel, PanopticResult, build_model, from_dict, to_dict

__all__ = [
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "apply_overrides",
    "build_method_config",
    "evaluate_model",
    "load_checkpoint",
    "load_experiment",
    "save_atomic",
]

REPO = Path(__file__).resolve().parents[1]

DATASET_HELP = {
    "coco_panoptic": (
        "expected ROOT/<split>/ (images), ROOT/panoptic_<split>/ (PNGs) and "
        "ROOT/annotations/panoptic_<split>.json; for COCO link train2017/, val2017/, "
        "panoptic_train2017/, panoptic_val2017/ and annotations/ from the COCO 2017 panoptic download "
        "(see README, 'Training on COCO or Cityscapes')"
    ),
    "cityscapes": (
        "run `CITYSCAPES_DATASET=ROOT csCreatePanopticImgs` (pip install cityscapesscripts) to write "
        "gtFine/cityscapes_panoptic_<split>.json and gtFine/cityscapes_panoptic_<split>/ "
        "(see README, 'Training on COCO or Cityscapes')"
    ),
}


class ConfigError(ValueError):
    """A bad configuration, argument or input file; the scripts print it as one line and exit 2."""


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how it is augmented.

    Attributes:
        kind: ``synthetic`` (written on first use into ``root``), ``coco_panoptic`` (the
            DESIGN.md layout under ``root``) or ``cityscapes`` (cityscapesScripts' panoptic
            conversion under ``root``).
        root: dataset folder, relative to the repository root unless absolute.
        train_split, val_split: split names.
        synthetic: size of the synthetic dataset (``panoptic_core.data.SyntheticConfig`` fields).
        short_edge, scale_range, max_size: training resize (shortest edge ``short_edge`` times a
            factor drawn from ``scale_range``, longest edge at most ``max_size``).
        crop: training crop (h, w), padded when the image is smaller.
        flip, color_jitter: training augmentations.
        test_short_edge, test_max_size: test-time resize (results are resized back), or None.
    """

    kind: str = "synthetic"
    root: str = "build/synthetic"
    train_split: str = "train"
    val_split: str = "val"
    synthetic: dict[str, Any] = field(default_factory=dict)
    short_edge: int | None = None
    scale_range: tuple[float, float] = (1.0, 1.0)
    max_size: int | None = None
    crop: tuple[int, int] | None = None
    flip: bool = True
    color_jitter: bool = False
    test_short_edge: int | None = None
    test_max_size: int | None = None


@dataclass(frozen=True)
class DataloaderConfig:
    """``batch_size`` is the total over all processes; ``num_workers`` per process."""

    batch_size: int = 8
    num_workers: int = 2


@dataclass(frozen=True)
class SolverConfig:
    """Optimiser and schedule.

    Attributes:
        optimizer: ``adam``, ``adamw`` or ``sgd``.
        base_lr, momentum, weight_decay: optimiser settings.
        lr_schedule: ``poly`` ((1 - it / max_iter) ** poly_power) or ``multistep`` (x gamma at
            each of ``steps``), after a linear warmup from ``warmup_factor`` over ``warmup_iters``.
        clip_grad_norm: clip the global gradient norm to this, or None.
        max_iter: iterations of the run; checkpoint_period: iterations between ``last.pt`` writes.
        amp: bf16 autocast (CUDA only; ignored on CPU).
    """

    optimizer: str = "adam"
    base_lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "poly"
    poly_power: float = 0.9
    steps: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_iters: int = 0
    warmup_factor: float = 0.001
    clip_grad_norm: float | None = None
    max_iter: int = 1000
    checkpoint_period: int = 500
    amp: bool = False


@dataclass(frozen=True)
class TestConfig:
    """``eval_period``: iterations between evaluations on the val split (0: only at the end);
    ``vis_images``: val images drawn into ``DIR/vis/`` at each evaluation."""

    eval_period: int = 500
    vis_images: int = 4


@dataclass(frozen=True)
class TrainConfig:
    """``seed`` makes runs repeatable; ``device`` auto / cpu / cuda; ``sync_bn`` converts BatchNorm
    to SyncBatchNorm under DDP on GPUs; ``log_period`` iterations between log lines."""

    seed: int = 0
    device: str = "auto"
    sync_bn: bool = False
    log_period: int = 20


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole training / evaluation run: ``method`` and its ``model`` config, then the sections."""

    method: str
    model: Any
    data: DataConfig = field(default_factory=DataConfig)
    dataloader: DataloaderConfig = field(default_factory=DataloaderConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    test: TestConfig = field(default_factory=TestConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            **{k: to_dict(getattr(self, k)) for k in _SECTIONS},
            "model": to_dict(self.model),
        }


_SECTIONS = {
    "data": DataConfig,
    "dataloader": DataloaderConfig,
    "solver": SolverConfig,
    "test": TestConfig,
    "train": TrainConfig,
}


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], free_form: Sequence[str] = ()) -> dict[str, Any]:
    """Set ``dotted.key=value`` pairs in a nested dict; values are parsed as YAML scalars or lists.

    A key must exist already, except inside the mappings named in ``free_form`` (dotted paths
    of mappings that take any key, such as ``model.backbone.options``).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None and ".".join(parts[: depth + 1]) in free_form:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"unknown key {key!r} (override {item!r})")
            node = child
        if parts[-1] not in node and ".".join(parts[:-1]) not in free_form:
            raise ConfigError(f"unknown key {key!r} (override {item!r})")
        node[parts[-1]] = value
    return data


def build_method_config(method: str, preset: str | None, overrides: Sequence[str] = ()) -> Any:
    """The config of ``method`` (paper defaults, or a preset classmethod such as ``synthetic``) with overrides."""
    data = {} if not overrides else apply_overrides(_method_dict(method, preset), overrides, ("backbone.options",))
    return _method_config(method, preset, data, where="")


def _method_class(method: str) -> type:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r} (known: {', '.join(METHODS)})")
    return METHODS[method][0]


def _preset(method: str, preset: str | None) -> Any:
    config_cls = _method_class(method)
    if preset is None:
        return config_cls()
    presets = [n for n, v in vars(config_cls).items() if isinstance(v, classmethod) and n != "from_dict"]
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r} of {method} (known: {', '.join(presets)})")
    return getattr(config_cls, preset)()


def _method_dict(method: str, preset: str | None) -> dict[str, Any]:
    return to_dict(_preset(method, preset))


def _method_config(method: str, preset: str | None, data: Mapping[str, Any], where: str) -> Any:
    """The preset with the fields of ``data`` replaced (nested mappings merged)."""
    merged = _merge(_method_dict(method, preset), data)
    try:
        return from_dict(_method_class(method), merged, where=where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and key != "options":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_experiment(path: str | os.PathLike, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment config and apply ``dotted.key=value`` overrides.

    Raises:
        ConfigError: unreadable file, unknown key, bad value (naming the key).
    """
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: file not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--config {path}: cannot read YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or "method" not in raw:
        raise ConfigError(f"--config {path}: expected a mapping with a 'method' key")
    method = raw["method"]
    model = dict(raw.get("model") or {})
    preset = model.pop("preset", None)
    # Overrides apply to the full tree: the sections' defaults and the method preset's fields.
    tree: dict[str, Any] = {"method": method, "model": _merge(_method_dict(method, preset), model)}
    for name, cls in _SECTIONS.items():
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{name}: expected a mapping, got {section!r}")
        tree[name] = _merge(to_dict(cls()), section)
    unknown = set(raw) - {"method", "model", *_SECTIONS}
    if unknown:
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r} (known: method, model, {', '.join(_SECTIONS)})")
    apply_overrides(tree, [o for o in overrides if not o.startswith("method=")],
                    free_form=("model.backbone.options", "data.synthetic"))  # fmt: skip
    if any(o.startswith("method=") for o in overrides):
        raise ConfigError("method cannot be overridden; use another --config")
    _follow_schedule(tree, model, overrides)
    model_config = _method_config(method, None, tree["model"], where="model")
    sections = {}
    for name, cls in _SECTIONS.items():
        try:
            sections[name] = from_dict(cls, tree[name], where=name)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    config = ExperimentConfig(method=method, model=model_config, **sections)
    _check(config)
    return config


def _follow_schedule(tree: dict[str, Any], model_section: Mapping[str, Any], overrides: Sequence[str]) -> None:
    """A method config's ``total_steps`` (e.g. CIAE's memory momentum T, eq. 13) follows
    ``solver.max_iter`` unless the YAML's ``model:`` section or an override sets it."""
    if "total_steps" not in tree["model"] or "total_steps" in model_section:
        return
    if any(o.split("=", 1)[0].strip() == "model.total_steps" for o in overrides):
        return
    tree["model"]["total_steps"] = tree["solver"]["max_iter"]


def _check(config: ExperimentConfig) -> None:
    s, d = config.solver, config.data
    choices = {
        "solver.optimizer": (s.optimizer, ("adam", "adamw", "sgd")),
        "solver.lr_schedule": (s.lr_schedule, ("poly", "multistep")),
        "data.kind": (d.kind, ("synthetic", "coco_panoptic", "cityscapes")),
        "train.device": (config.train.device, ("auto", "cpu", "cuda")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    positive = {
        "solver.max_iter": s.max_iter,
        "solver.checkpoint_period": s.checkpoint_period,
        "dataloader.batch_size": config.dataloader.batch_size,
        "train.log_period": config.train.log_period,
        "solver.base_lr": s.base_lr,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be > 0, got {value}")
    if config.test.eval_period < 0 or config.dataloader.num_workers < 0 or s.warmup_iters < 0:
        raise ConfigError("test.eval_period, dataloader.num_workers and solver.warmup_iters must be >= 0")
    if d.kind == "synthetic":
        try:
            SyntheticConfig(**d.synthetic)
        except TypeError as exc:
            raise ConfigError(f"data.synthetic: {exc}") from None
        except DatasetError as exc:
            raise ConfigError(f"data.synthetic: {exc}") from None


# ---------------------------------------------------------------------------------------------- data


def dataset_root(config: DataConfig) -> Path:
    root = Path(config.root)
    return root if root.is_absolute() else REPO / root


def prepare_dataset(config: DataConfig, *, is_main: bool = True) -> Path:
    """The dataset root; the synthetic dataset is written there on first use (by the main process)."""
    root = dataset_root(config)
    if config.kind == "synthetic":
        if is_main and not (root / "annotations").is_dir():
            write_synthetic_dataset(root, SyntheticConfig(**config.synthetic), overwrite=root.exists())
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
    return root


def open_dataset(config: DataConfig, split: str, transforms=None) -> CocoPanopticDataset:
    """The ``split`` of the configured dataset; a missing folder is a ConfigError saying how to prepare it."""
    root = dataset_root(config)
    if config.kind == "cityscapes":
        json_file = root / "gtFine" / f"cityscapes_panoptic_{split}.json"
        images, pngs = root / "leftImg8bit" / split, root / "gtFine" / f"cityscapes_panoptic_{split}"
    else:
        json_file = root / "annotations" / f"panoptic_{split}.json"
        images, pngs = root / split, root / f"panoptic_{split}"
    for path in (json_file, images, pngs):
        if not path.exists():
            hint = DATASET_HELP.get(config.kind, "it is written on first use by train.py")
            raise ConfigError(f"dataset {config.kind} split {split!r}: {path} does not exist; {hint}")
    try:
        if config.kind == "cityscapes":
            return CocoPanopticDataset.from_cityscapes(root, split, transforms=transforms)
        return CocoPanopticDataset(json_file, images, pngs, transforms=transforms)
    except DatasetError as exc:
        raise ConfigError(str(exc)) from None


def train_transforms(config: DataConfig) -> Compose:
    steps: list = []
    if config.short_edge is not None:
        steps.append(ResizeShortestEdge(config.short_edge, tuple(config.scale_range), max_size=config.max_size))
    if config.crop is not None:
        steps.append(RandomCrop(tuple(config.crop)))
    if config.flip:
        steps.append(RandomHorizontalFlip())
    if config.color_jitter:
        steps.append(ColorJitter())
    steps.append(Normalize())
    return Compose(steps)


# ------------------------------------------------------------------------------------------ checkpoints


def save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file in the same folder and a rename: never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, *, what: str = "checkpoint") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of one of our checkpoints; anything else is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{what} {path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ConfigError(f"{what} {path}: not a checkpoint of these scripts (no 'model' state dict)")
    return state


def load_model_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load weights, turning a mismatch into a ConfigError naming the file and the first bad key."""
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ConfigError(f"checkpoint {path}: missing key {key!r} (saved by another method or config?)")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ConfigError(
                f"checkpoint {path}: {key!r} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(value.shape)}"
            )
    extra = [k for k in state if k not in own]
    if extra:
        raise ConfigError(f"checkpoint {path}: unexpected key {extra[0]!r} (saved by another method or config?)")
    model.load_state_dict(state)


# ------------------------------------------------------------------------------------------ evaluation


def build(config: ExperimentConfig, categories: Categories) -> PanopticModel:
    try:
        return build_model(config.model, categories)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None


class EvalCollate:
    """Collate of the evaluation loop: the model's padded batch (test-time resized when configured)
    and the original targets, so results are scored at the original size."""

    def __init__(self, size_divisibility: int, short_edge: int | None, max_size: int | None) -> None:
        self.collate = PanopticCollate(size_divisibility=size_divisibility)
        self.resize = None if short_edge is None else ResizeShortestEdge(short_edge, max_size=max_size)
        self.normalize = Normalize()

    def __call__(self, items):
        originals = [target for _, target in items]
        prepared = []
        for image, target in items:
            if self.resize is not None:
                image, target = resize_pair(image, target, self.resize.output_size(*image.shape[-2:], 1.0))
            prepared.append(self.normalize(image, target))
        return self.collate(prepared), originals


def eval_loader(config: ExperimentConfig, dataset: CocoPanopticDataset, size_divisibility: int) -> DataLoader:
    """The val loader of this process: every ``world``-th image from ``rank`` (no duplicates)."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    indices = list(range(rank, len(dataset), world))
    subset = torch.utils.data.Subset(dataset, indices)
    per_rank = max(1, config.dataloader.batch_size // world)
    return DataLoader(
        subset, batch_size=per_rank, shuffle=False, num_workers=config.dataloader.num_workers,
        collate_fn=EvalCollate(size_divisibility, config.data.test_short_edge, config.data.test_max_size),
    )  # fmt: skip


@torch.no_grad()
def evaluate_model(
    model: PanopticModel,
    loader: DataLoader,
    categories: Categories,
    device: torch.device,
    *,
    on_result=None,
    progress=None,
) -> dict[str, Any]:
    """PQ of ``model`` over ``loader`` (reduced over processes), scored without a PNG round trip.

    ``on_result(result, target)`` is called for every image (e.g. to write prediction files or
    overlays); returns the pq_compute structure.
    """
    was_training = model.training
    model.eval()
    metric = PanopticQuality(categories.to_list())
    for batch, originals in loader if progress is None else progress(loader):
        batch: PanopticBatch = batch.to(device)
        results: list[PanopticResult] = model(batch, output_sizes=[t.size for t in originals])
        for result, target in zip(results, originals, strict=True):
            result = result.to("cpu")
            metric.update(target.ids, [s.to_coco() for s in target.segments], result.ids, result.segments_info,
                          image_id=target.image_id)  # fmt: skip
            if on_result is not None:
                on_result(result, target)
    model.train(was_training)
    return metric.compute()
