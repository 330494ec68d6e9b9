"""Train every method on the same data, schedule and backbone, then print one comparison table.

    python examples/compare.py --output-dir runs/compare [--methods panoptic_deeplab ...] \\
        [--dataset synthetic] [key=value ...]

Each method trains with its ``examples/configs/<method>_<dataset>.yaml`` into
``OUTPUT_DIR/<method>/`` with the overrides given here applied to all of them (e.g.
``solver.max_iter=300 model.backbone.name=resnet18``). The table reports PQ / SQ / RQ (All,
Things, Stuff) on the val split, parameters, training images per second, and per image the
inference time and its post-processing part (network outputs to ``PanopticResult``); it is
written as ``comparison.md`` and ``comparison.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
import train as train_script
from common import (
    REPO,
    ConfigError,
    build,
    eval_loader,
    load_checkpoint,
    load_experiment,
    load_model_state,
    open_dataset,
)

from panoptic_eval import write_json_atomic
from panoptic_models import METHODS


def measure_inference(config, weights: Path, images: int = 8) -> tuple[float, float]:
    """(inference ms, post-processing ms) per image over ``images`` val images, batch 1, after one warm-up image.

    Inference = the network's head outputs (``predict``) + the method's ``postprocess``.
    """
    config = dataclasses.replace(config, dataloader=dataclasses.replace(config.dataloader, batch_size=1))
    dataset = open_dataset(config.data, config.data.val_split)
    model = build(config, dataset.categories)
    load_model_state(model, load_checkpoint(weights)["model"], weights)
    model.eval()
    network = post = 0.0
    count = 0
    with torch.no_grad():
        for index, (batch, originals) in enumerate(eval_loader(config, dataset, model.size_divisibility)):
            start = time.perf_counter()
            outputs = model.predict(batch.images)
            middle = time.perf_counter()
            head = {key: value[0] for key, value in outputs.items()}
            model.postprocess(head, batch.image_sizes[0], originals[0].size, dataset.categories, config.model)
            end = time.perf_counter()
            if index == 0:
                continue  # warm-up
            network, post, count = network + middle - start, post + end - middle, count + 1
            if count == images:
                break
    if count == 0:
        raise ConfigError("compare: the val split needs at least two images")
    return 1000 * (network + post) / count, 1000 * post / count


def row(method: str, out: Path, config) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["seconds_per_iter"] for r in records if r.get("type") == "train"]
    state = load_checkpoint(out / "model_final.pt")["model"]
    params = sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var",
                                                                         "num_batches_tracked")))  # fmt: skip
    inference_ms, post_ms = measure_inference(config, out / "model_final.pt")
    return {
        "method": method,
        **{f"{m}_{g}": 100 * metrics[g][m] for g in ("All", "Things", "Stuff") for m in ("pq", "sq", "rq")},
        "parameters": params,
        "train_images_per_s": config.dataloader.batch_size / (sum(steps) / len(steps)) if steps else float("nan"),
        "inference_ms": inference_ms,
        "postprocess_ms": post_ms,
    }


def markdown(rows: list[dict]) -> str:
    head = ["method", "PQ", "SQ", "RQ", "PQ_th", "PQ_st", "params (M)", "train img/s", "infer ms", "post ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], r["pq_All"], r["sq_All"], r["rq_All"], r["pq_Things"], r["pq_Stuff"],
                 r["parameters"] / 1e6, r["train_images_per_s"], r["inference_ms"], r["postprocess_ms"]]  # fmt: skip
        lines.append("| " + " | ".join(c if isinstance(c, str) else f"{c:.1f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every method's config")
    args = parser.parse_args(argv)
    rows = []
    try:
        unknown = [m for m in args.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown method {unknown[0]!r} (known: {', '.join(METHODS)})")
        for method in args.methods:
            config_file = REPO / "examples" / "configs" / f"{method}_{args.dataset}.yaml"
            config = load_experiment(config_file, args.overrides)
            out = args.output_dir / method
            if not (out / "model_final.pt").is_file():
                resume = ["--resume"] if (out / "last.pt").is_file() else []
                code = train_script.main(["--config", str(config_file), "--output-dir", str(out), *resume,
                                          *args.overrides])  # fmt: skip
                if code:
                    return code
            rows.append(row(method, out, config))
    except ConfigError as exc:
        print(f"compare.py: error: {exc}", file=sys.stderr)
        return 2
    table = markdown(rows)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "comparison.md").write_text(table, encoding="utf-8")
    write_json_atomic(args.output_dir / "comparison.json", rows)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
