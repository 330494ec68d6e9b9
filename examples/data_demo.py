"""Demo: the synthetic dataset, the training pipeline's batches, and a Panoptic-DeepLab oracle.

Run with ``make demo``. Writes the synthetic COCO panoptic dataset (the default configuration
of ``panoptic-core synth``), loads it through the training transforms and every method's target
generator with worker processes, then feeds the ground-truth Panoptic-DeepLab targets through
the method's own post-processing (``panoptic_ops.get_panoptic_segmentation``) and scores the
result with panoptic-eval: the upper bound of the method on this data.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from panoptic_core.data import (
    CocoPanopticDataset,
    ColorJitter,
    Compose,
    Normalize,
    PanopticCollate,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    SyntheticConfig,
    write_synthetic_dataset,
)
from panoptic_core.targets import (
    CIAETargets,
    EINetTargets,
    PanopticDeepLabTargets,
    PanopticFCNTargets,
    SOLOv2Targets,
    TargetGenerator,
)
from panoptic_eval import PanopticQuality
from panoptic_eval.cli import format_table
from panoptic_ops import get_panoptic_segmentation

ROOT = Path(__file__).resolve().parents[1]
DIVISOR = 1000


def describe(key: str, value, gen: TargetGenerator) -> str:
    """Shape of a batched target entry: a stacked tensor, per-level stacks, or per-image values."""
    if key in gen.ragged:
        return f"per image ({len(value[0])} levels)" if key in gen.per_level else "per image"
    if key in gen.per_level:
        return f"{len(value)} levels"
    return "x".join(map(str, value.shape))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "synthetic")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    start = time.perf_counter()
    config = SyntheticConfig()
    write_synthetic_dataset(args.out, config, overwrite=True)
    print(
        f"synthetic dataset: {config.train} + {config.val} images of {config.height}x{config.width} "
        f"in {args.out} ({time.perf_counter() - start:.2f} s)"
    )

    train_tf = Compose(
        [
            ResizeShortestEdge(128, (0.75, 1.5)),
            RandomCrop((128, 128)),
            RandomHorizontalFlip(),
            ColorJitter(),
            Normalize(),
        ]
    )
    train = CocoPanopticDataset.from_root(args.out, "train", transforms=train_tf)
    cats = train.categories
    print(f"categories: {cats.num_things} things {cats.names[: cats.num_things]}, {cats.num_stuff} stuff")
    generators: list[TargetGenerator] = [
        PanopticDeepLabTargets(),
        CIAETargets(cats),
        PanopticFCNTargets(cats),
        SOLOv2Targets(cats),
        EINetTargets(cats, stride=4),
    ]
    for gen in generators:
        loader = DataLoader(
            train,
            batch_size=8,
            shuffle=True,
            num_workers=args.workers,
            collate_fn=PanopticCollate(size_divisibility=32, target_generator=gen),
        )
        start = time.perf_counter()
        batches = list(loader)
        keys = ", ".join(f"{k} {describe(k, v, gen)}" for k, v in batches[0].method_targets.items())
        print(
            f"{type(gen).__name__}: {len(batches)} batches of {tuple(batches[0].images.shape)} in "
            f"{time.perf_counter() - start:.2f} s; {keys}"
        )

    # Oracle: ground-truth targets through Panoptic-DeepLab's post-processing.
    val = CocoPanopticDataset.from_root(args.out, "val")
    targets = PanopticDeepLabTargets()
    metric = PanopticQuality(cats.to_list())
    cat_ids = torch.tensor(cats.ids)
    for i in range(len(val)):
        _, target = val[i]
        t = targets(target)
        void = t["semantic"] == 255
        pan, _ = get_panoptic_segmentation(
            t["semantic"].masked_fill(void, 0)[None],
            t["center"],
            t["offset"],
            cats.thing_classes,
            DIVISOR,
            stuff_area=0,
            void_label=-1,
        )
        pan = pan[0]
        pred = torch.where(pan < 0, -1, cat_ids[(pan // DIVISOR).clamp(min=0)] * DIVISOR + pan % DIVISOR)
        pred[void] = -1
        gt = torch.full_like(target.ids, -1)
        numbers: dict[int, int] = {}
        for seg in target.segments:
            if seg.isthing and not seg.iscrowd:
                numbers[seg.category_id] = numbers.get(seg.category_id, 0) + 1
                instance = numbers[seg.category_id]
            else:
                instance = 0  # stuff, or crowd (instance 0 of a thing class)
            gt[target.ids == seg.id] = seg.category_id * DIVISOR + instance
        metric.update_label_divisor(gt, pred, label_divisor=DIVISOR, void_label=-1)
    print("\nPanoptic-DeepLab oracle (GT semantic, centers and offsets through get_panoptic_segmentation):")
    print(format_table(metric.compute()))


if __name__ == "__main__":
    main()
