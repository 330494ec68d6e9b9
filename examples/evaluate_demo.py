"""Demo: score predictions with panoptic-eval on the real COCO sample and on a generated set.

Run with ``make demo``. Prints the familiar PQ tables, PQ-dagger, the worst images and
bootstrap intervals, and checks each result against panopticapi's code when
cityscapesScripts is installed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from panoptic_eval import evaluate, read_id_png, write_id_png
from panoptic_eval.cli import format_table
from panoptic_eval.testing import write_set

ROOT = Path(__file__).resolve().parents[1]
COCO_SAMPLE = ROOT.parent / "shared" / "data" / "coco-panoptic-sample"


def perturb_coco(sample: Path, out: Path, seed: int) -> dict[str, Path]:
    """A prediction made from the real COCO GT: some segments dropped, some shifted."""
    gt_json = sample / "panoptic_examples.json"
    gt_folder = sample / "panoptic_examples"
    rng = np.random.default_rng(seed)
    (out / "pred").mkdir(parents=True, exist_ok=True)
    anns = []
    for ann in json.loads(gt_json.read_text())["annotations"]:
        ids = read_id_png(gt_folder / ann["file_name"])
        pred = ids.copy()
        for seg in ann["segments_info"]:
            r = rng.random()
            if r < 0.2:
                pred[ids == seg["id"]] = 0
            elif r < 0.5:
                pred[ids == seg["id"]] = 0
                pred[np.roll(ids == seg["id"], tuple(rng.integers(-25, 26, size=2)), axis=(0, 1))] = seg["id"]
        present = set(np.unique(pred).tolist())
        segs = [{"id": s["id"], "category_id": s["category_id"]} for s in ann["segments_info"] if s["id"] in present]
        write_id_png(out / "pred" / ann["file_name"], pred)
        anns.append({"image_id": ann["image_id"], "file_name": ann["file_name"], "segments_info": segs})
    (out / "pred.json").write_text(json.dumps({"annotations": anns}))
    return {"gt_json": gt_json, "gt_folder": gt_folder, "pred_json": out / "pred.json", "pred_folder": out / "pred"}


def report(title: str, paths: dict[str, Path], workers: int | None) -> None:
    print(f"\n=== {title} ===")
    start = time.perf_counter()
    metric = evaluate(paths["gt_json"], paths["pred_json"], paths["gt_folder"], paths["pred_folder"], workers=workers)
    results = metric.compute()
    elapsed = time.perf_counter() - start
    print(format_table(results))
    print(f"{metric.num_images} images in {elapsed * 1e3:.1f} ms")
    dagger = metric.compute_pq_dagger()
    print("PQ-dagger: " + "  ".join(f"{k} {100 * dagger[k]['pq']:.1f}" for k in ("All", "Things", "Stuff")))
    worst = metric.per_image()[:3]
    print("lowest-PQ images: " + ", ".join(f"{r['image_id']} ({100 * r['pq']:.1f})" for r in worst))
    if metric.num_images > 1:
        ci = metric.bootstrap(samples=500)
        print("95% bootstrap PQ interval (All): [{:.1f}, {:.1f}]".format(*(100 * v for v in ci["All"]["pq"])))
    try:
        import contextlib
        import io

        from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as cs
    except ImportError:
        return
    gt = json.loads(Path(paths["gt_json"]).read_text())
    pred = {a["image_id"]: a for a in json.loads(Path(paths["pred_json"]).read_text())["annotations"]}
    cats = {c["id"]: c for c in gt["categories"]}
    pairs = [(a, pred[a["image_id"]]) for a in gt["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        stat = cs.pq_compute_single_core(0, pairs, str(paths["gt_folder"]), str(paths["pred_folder"]), cats)
    ref = cs.average_pq(stat, cats)
    diff = max(abs(results[g][k] - ref[g][k]) for g in ("All", "Things", "Stuff") for k in ("pq", "sq", "rq"))
    print(f"max difference from panopticapi's code (cityscapesScripts): {diff:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48, help="images in the generated set")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if (COCO_SAMPLE / "panoptic_examples.json").is_file():
            report("real COCO sample, perturbed GT as prediction", perturb_coco(COCO_SAMPLE, tmp / "coco", 0),
                   args.workers)
        else:
            print(f"(real COCO sample not found at {COCO_SAMPLE}; skipping that part)")
        generated = write_set(tmp / "generated", seed=0, n_images=args.images, h=120, w=160, upscale=4, max_things=20)
        report(f"generated set, {args.images} images of 480x640", generated, args.workers)


if __name__ == "__main__":
    main()
