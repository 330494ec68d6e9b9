"""Score a method's oracle: ideal head outputs built from the ground truth, through the model's inference.

For each image of a COCO panoptic ground truth, the method's own target generator (built from
the method's config) gives the targets; the method turns them into the head outputs a perfect
network would produce (``oracle_outputs``) and runs them through the same post-processing the
model uses at inference (``postprocess``). The predictions are scored with panoptic-eval against
the same ground truth: the upper bound the method's representation and post-processing allow.

    python examples/oracle.py --method panoptic_deeplab --gt-json J --gt-folder F --output OUT.json \\
        [--preset synthetic] [key=value ...]

OUT.json holds the pq_compute structure. ``key=value`` overrides fields of the method config
(dotted for nested ones, e.g. ``stuff_area=0`` or ``center_sigma=4``). Errors exit with status 2
and one line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import ConfigError, build_method_config

from panoptic_core import DatasetError
from panoptic_core.data import CocoPanopticDataset
from panoptic_eval import PanopticQuality, write_json_atomic
from panoptic_eval.cli import format_table
from panoptic_models import METHODS


def run_oracle(method: str, config, dataset: CocoPanopticDataset) -> dict:
    """The pq_compute structure of ``method``'s oracle on every image of ``dataset``."""
    model_cls = METHODS[method][1]
    categories = dataset.categories
    generator = config.target_generator(categories)
    metric = PanopticQuality(categories.to_list())
    for index in range(len(dataset)):
        target = dataset.load_target(index)
        outputs = model_cls.oracle_outputs(generator(target), categories, config)
        result = model_cls.postprocess(outputs, target.size, target.size, categories, config)
        gt_segments = [s.to_coco() for s in target.segments]
        metric.update(target.ids, gt_segments, result.ids, result.segments_info, image_id=target.image_id)
    return metric.compute()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True, help=f"one of {', '.join(METHODS)}")
    parser.add_argument("--gt-json", required=True, type=Path)
    parser.add_argument("--gt-folder", type=Path, help="the panoptic PNGs (default: the JSON's name without .json)")
    parser.add_argument("--output", required=True, type=Path, help="where to write the pq_compute structure (JSON)")
    parser.add_argument("--preset", default=None, help="a preset of the method config (e.g. synthetic, coco)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="method config overrides")
    args = parser.parse_args(argv)
    try:
        config = build_method_config(args.method, args.preset, args.overrides)
        dataset = CocoPanopticDataset(args.gt_json, image_dir=args.gt_json.parent, panoptic_dir=args.gt_folder)
        if not args.output.parent.is_dir():
            raise ConfigError(f"--output {args.output}: folder {args.output.parent} does not exist")
        start = time.perf_counter()
        results = run_oracle(args.method, config, dataset)
    except (ConfigError, DatasetError) as exc:
        print(f"oracle.py: error: {exc}", file=sys.stderr)
        return 2
    write_json_atomic(args.output, results)
    print(f"{args.method} oracle on {len(dataset)} images of {args.gt_json} ({time.perf_counter() - start:.1f} s):")
    print(format_table(results))
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
