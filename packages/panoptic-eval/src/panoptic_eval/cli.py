"""``panoptic-eval`` command line: PQ tables from COCO panoptic files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .__about__ import __version__
from .errors import PanopticEvalError
from .evaluation import evaluate
from .formats import check_output_path, write_json_atomic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="panoptic-eval",
        description="Panoptic Quality (PQ/SQ/RQ) of COCO panoptic predictions, as panopticapi computes it.",
    )
    parser.add_argument("--gt-json", required=True, help="GT COCO panoptic JSON")
    parser.add_argument("--pred-json", required=True, help="prediction COCO panoptic JSON")
    parser.add_argument("--gt-folder", help="GT PNG folder (default: --gt-json without .json)")
    parser.add_argument("--pred-folder", help="prediction PNG folder (default: --pred-json without .json)")
    parser.add_argument("--output", help="write the results as JSON to this file (atomically)")
    parser.add_argument("--workers", type=int, default=None, help="parallel threads (default: CPU count)")
    parser.add_argument("--metrics", default="pq", metavar="LIST",
                        help="comma-separated, from pq,miou,ap (default: pq); ap needs pycocotools and scores")
    parser.add_argument("--per-class", action="store_true", help="also print the per-class table")
    parser.add_argument("--pq-dagger", action="store_true", help="also report PQ-dagger (Porzi et al.)")
    parser.add_argument("--per-image", type=int, default=0, metavar="K", help="list the K images with the lowest PQ")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                        help="95%% bootstrap confidence intervals over images from N resamples")
    parser.add_argument("--confidence", type=float, default=0.95, help="bootstrap confidence level")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def format_table(results: dict, categories=None, *, per_class: bool = False) -> str:
    """The All / Things / Stuff table (percentages), optionally preceded by the per-class one."""
    lines = []
    if per_class and categories is not None:
        lines.append("{:24s}| {:>5s}  {:>5s}  {:>5s}".format("Category", "PQ", "SQ", "RQ"))
        for cat in categories:
            r = results["per_class"][cat.id]
            lines.append("{:24s}| {:5.1f}  {:5.1f}  {:5.1f}".format(
                cat.name[:24], 100 * r["pq"], 100 * r["sq"], 100 * r["rq"]))
        lines.append("-" * 48)
    lines.append("{:10s}| {:>5s}  {:>5s}  {:>5s} {:>5s}".format("", "PQ", "SQ", "RQ", "N"))
    lines.append("-" * 41)
    for name in ("All", "Things", "Stuff"):
        r = results[name]
        lines.append("{:10s}| {:5.1f}  {:5.1f}  {:5.1f} {:5d}".format(
            name, 100 * r["pq"], 100 * r["sq"], 100 * r["rq"], r["n"]))
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.bootstrap < 0 or args.per_image < 0:
            raise PanopticEvalError("--bootstrap and --per-image must be >= 0")
        if not 0 < args.confidence < 1:
            raise PanopticEvalError(f"--confidence must lie in (0, 1), got {args.confidence}")
        if args.output is not None:
            check_output_path(args.output)  # fail before the evaluation, not after it
        metric = evaluate(args.gt_json, args.pred_json, args.gt_folder, args.pred_folder, workers=args.workers,
                          metrics=args.metrics)
        results = metric.compute()
        out = dict(results)
        say = (lambda *a: None) if args.quiet else print
        if "All" in results:
            say(format_table(results, metric.categories, per_class=args.per_class))
        extra = [f"{key} {_percent(results[key])}" for key in ("mIoU", "AP", "AP50", "AP75") if key in results]
        if extra:
            say("  ".join(extra))
        if args.pq_dagger:
            dagger = metric.compute_pq_dagger()
            out["pq_dagger"] = dagger
            say("PQ-dagger: " + "  ".join(f"{k} {100 * dagger[k]['pq']:.1f}" for k in ("All", "Things", "Stuff")))
        if args.per_image:
            worst = metric.per_image()[: args.per_image]
            out["per_image"] = worst
            say(f"Lowest-PQ images ({len(worst)}):")
            for row in worst:
                say(f"  {row['image_id']!s:>20}  PQ {100 * row['pq']:5.1f}  SQ {100 * row['sq']:5.1f}  "
                    f"RQ {100 * row['rq']:5.1f}  n {row['n']}")
        if args.bootstrap:
            ci = metric.bootstrap(samples=args.bootstrap, confidence=args.confidence, seed=args.seed)
            out["bootstrap"] = ci
            say(f"{100 * args.confidence:g}% bootstrap intervals ({args.bootstrap} resamples over "
                f"{metric.num_images} images):")
            for name in ("All", "Things", "Stuff"):
                say(f"  {name:7s} " + "  ".join(
                    f"{key.upper()} [{100 * ci[name][key][0]:5.1f}, {100 * ci[name][key][1]:5.1f}]"
                    for key in ("pq", "sq", "rq")))
        if args.output is not None:
            write_json_atomic(args.output, out)
    except PanopticEvalError as exc:
        print(f"panoptic-eval: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"panoptic-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("panoptic-eval: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
