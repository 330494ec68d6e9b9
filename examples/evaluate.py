"""Evaluate trained weights on a dataset's val split: COCO panoptic prediction files and a PQ report.

    python examples/evaluate.py --config C --weights DIR/model_final.pt --output-dir D [key=value ...]
    torchrun --nproc_per_node 4 examples/evaluate.py ...

D receives ``predictions/`` (one COCO panoptic PNG per image), ``predictions.json`` (COCO
panoptic annotations with ``segments_info``: id, category_id, isthing, score, area, bbox),
``metrics.json`` (the pq_compute structure, computed in the same pass without re-reading the
PNGs) and prints the PQ table. ``panoptic-eval --gt-json ... --pred-json D/predictions.json``
gives the same numbers from the files. Errors exit with status 2 and one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from common import (
    ConfigError,
    build,
    eval_loader,
    evaluate_model,
    load_checkpoint,
    load_experiment,
    load_model_state,
    open_dataset,
)
from train import setup_distributed

from panoptic_eval import write_json_atomic, write_panoptic_json
from panoptic_eval.cli import format_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--weights", required=True, type=Path, help="model_final.pt, model_best.pt or last.pt")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    rank = 0
    try:
        config = load_experiment(args.config, args.overrides)
        state = load_checkpoint(args.weights, what="--weights")
        rank, world, device = setup_distributed(config.train.device)
        dataset = open_dataset(config.data, config.data.val_split)
        model = build(config, dataset.categories)
        load_model_state(model, state["model"], args.weights)
        model.to(device)
        out = args.output_dir
        pred_dir = out / "predictions"
        if rank == 0:
            pred_dir.mkdir(parents=True, exist_ok=True)
        if world > 1:
            dist.barrier()
        annotations = []

        def write(result, target) -> None:
            name = f"{Path(target.file_name).stem}.png"
            result.write_png(pred_dir / name)
            annotations.append(result.to_coco(target.image_id, name))

        loader = eval_loader(config, dataset, model.size_divisibility)
        results = evaluate_model(model, loader, dataset.categories, device, on_result=write)
        if world > 1:
            gathered: list = [None] * world
            dist.all_gather_object(gathered, annotations)
            annotations = [a for part in gathered for a in part]
        if rank == 0:
            order = {image_id: i for i, image_id in enumerate(dataset.image_ids)}
            annotations.sort(key=lambda a: order[a["image_id"]])
            write_panoptic_json(out / "predictions.json", annotations, dataset.categories.to_list())
            write_json_atomic(out / "metrics.json", results)
            print(f"{len(annotations)} images of {config.data.kind}/{config.data.val_split}, weights {args.weights}:")
            print(format_table(results))
            print(f"predictions in {pred_dir}, {out / 'predictions.json'}; report {out / 'metrics.json'}")
    except ConfigError as exc:
        if rank == 0:
            print(f"evaluate.py: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
