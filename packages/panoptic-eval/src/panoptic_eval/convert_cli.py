"""``panoptic-convert`` (subcommands) and ``panoptic-combine``: panopticapi's scripts as commands.

Options take this toolkit's ``--dash-names``; panopticapi's own ``--underscore_names`` are
accepted as aliases, so its command lines work after replacing the script name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import converters
from .__about__ import __version__
from .errors import PanopticEvalError

_CATEGORIES_DEFAULT = "./panoptic_coco_categories.json"  # panopticapi's default


def _flag_value(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _common(p: argparse.ArgumentParser, *, seed: bool = True) -> None:
    p.add_argument("--workers", type=int, default=None, help="parallel threads (default: CPU count)")
    if seed:
        p.add_argument("--seed", type=int, default=0,
                       help="seed of the colour jitter of repeated thing ids (panopticapi draws it unseeded)")


def _categories(p: argparse.ArgumentParser) -> None:
    p.add_argument("--categories-json", "--categories_json_file", dest="categories_json", default=_CATEGORIES_DEFAULT,
                   help=f"panoptic categories JSON with id, isthing, color (default: {_CATEGORIES_DEFAULT})")


def build_convert_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="panoptic-convert",
                                     description="panopticapi's format converters (same outputs), parallel and atomic.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("2ch-to-coco", help="2-channel PNGs (semantic, instance) -> COCO panoptic")
    p.add_argument("--source-folder", "--source_folder", dest="source_folder", required=True,
                   help="folder of 2-channel PNGs")
    p.add_argument("--images-json", "--images_json_file", dest="images_json", required=True,
                   help="JSON with the image set ('images')")
    _categories(p)
    p.add_argument("--segmentations-folder", "--segmentations_folder", dest="segmentations_folder",
                   help="output PNG folder (default: --predictions-json without .json)")
    p.add_argument("--predictions-json", "--predictions_json_file", dest="predictions_json", required=True,
                   help="output COCO panoptic JSON")
    p.add_argument("-v", "--void", type=int, default=0, help="semantic id of VOID in the 2-channel PNGs")
    _common(p)

    p = sub.add_parser("coco-to-detection", help="COCO panoptic -> COCO detection with RLE masks")
    p.add_argument("--input-json", "--input_json_file", dest="input_json", required=True, help="COCO panoptic JSON")
    p.add_argument("--segmentations-folder", "--segmentations_folder", dest="segmentations_folder",
                   help="its PNG folder (default: --input-json without .json)")
    p.add_argument("--output-json", "--output_json_file", dest="output_json", required=True,
                   help="output COCO detection JSON")
    _categories(p)
    p.add_argument("--things-only", "--things_only", dest="things_only", action="store_true",
                   help="leave stuff segments out")
    _common(p, seed=False)

    p = sub.add_parser("detection-to-coco", help="COCO detection (non-overlapping masks) -> COCO panoptic")
    p.add_argument("--input-json", "--input_json_file", dest="input_json", required=True, help="COCO detection JSON")
    p.add_argument("--output-json", "--output_json_file", dest="output_json", required=True,
                   help="output COCO panoptic JSON")
    p.add_argument("--segmentations-folder", "--segmentations_folder", dest="segmentations_folder",
                   help="output PNG folder (default: --output-json without .json)")
    _categories(p)
    _common(p)

    p = sub.add_parser("coco-to-semantic", help="COCO panoptic -> semantic segmentation (PNGs or COCO RLE JSON)")
    p.add_argument("--input-json", "--input_json_file", dest="input_json", required=True, help="COCO panoptic JSON")
    p.add_argument("--segmentations-folder", "--segmentations_folder", dest="segmentations_folder",
                   help="its PNG folder (default: --input-json without .json)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--output-json", "--output_json_file", dest="output_json",
                     help="write a COCO-stuff style JSON of RLEs")
    out.add_argument("--semantic-seg-folder", "--semantic_seg_folder", dest="semantic_seg_folder",
                     help="write one PNG per image (uint8 category ids)")
    _categories(p)
    p.add_argument("--save-with-color", "--save_with_color", dest="save_with_color", nargs="?", const=True,
                   default=False, type=_flag_value, help="PNGs in category colours instead of ids")
    p.add_argument("--things-other", "--things_other", "--things_others", dest="things_other", action="store_true",
                   help=f"merge every thing category into 'other' ({converters.OTHER_CLASS_ID})")
    _common(p, seed=False)

    p = sub.add_parser("cityscapes-to-coco", help="Cityscapes gtFine *_instanceIds.png -> COCO panoptic GT")
    p.add_argument("--original-format-folder", "--original_format_folder", dest="original_format_folder",
                   default="./gtFine/val/", help="gtFine split folder (default: ./gtFine/val/)")
    p.add_argument("--out-folder", "--out_folder", dest="out_folder",
                   default="./cityscapes_data/cityscapes_panoptic_val/", help="output PNG folder")
    p.add_argument("--out-file", "--out_file", dest="out_file",
                   default="./cityscapes_data/cityscapes_panoptic_val.json", help="output JSON")
    _common(p)
    return parser


def build_combine_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="panoptic-combine",
        description="panopticapi's combination of semantic and instance predictions into panoptic ones.")
    p.add_argument("--semseg-json", "--semseg_json_file", dest="semseg_json", required=True,
                   help="semantic segmentation results (COCO-stuff RLE list)")
    p.add_argument("--instseg-json", "--instseg_json_file", dest="instseg_json", required=True,
                   help="instance segmentation results (COCO result list with scores)")
    p.add_argument("--images-json", "--images_json_file", dest="images_json", required=True,
                   help="JSON with the image set ('images')")
    _categories(p)
    p.add_argument("--panoptic-json", "--panoptic_json_file", dest="panoptic_json", required=True,
                   help="output COCO panoptic JSON")
    p.add_argument("--segmentations-folder", "--segmentations_folder", dest="segmentations_folder",
                   help="output PNG folder (default: --panoptic-json without .json)")
    p.add_argument("--confidence-thr", "--confidence_thr", dest="confidence_thr", type=float, default=0.5,
                   help="instances scored below are dropped (default 0.5)")
    p.add_argument("--overlap-thr", "--overlap_thr", dest="overlap_thr", type=float, default=0.5,
                   help="instances overlapped by more than this fraction of their area are dropped (default 0.5)")
    p.add_argument("--stuff-area-limit", "--stuff_area_limit", dest="stuff_area_limit", type=float, default=64 * 64,
                   help="stuff regions with fewer free pixels are dropped (default 4096)")
    _common(p)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _run(prog: str, fn) -> int:
    try:
        fn()
    except PanopticEvalError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0


def main_convert(argv: Sequence[str] | None = None) -> int:
    a = build_convert_parser().parse_args(argv)
    if a.command == "2ch-to-coco":
        def fn():
            converters.two_channels_to_coco(a.source_folder, a.images_json, a.categories_json, a.segmentations_folder,
                                            a.predictions_json, void=a.void, workers=a.workers, seed=a.seed)
    elif a.command == "coco-to-detection":
        def fn():
            converters.coco_to_detection(a.input_json, a.segmentations_folder, a.output_json, a.categories_json,
                                         things_only=a.things_only, workers=a.workers)
    elif a.command == "detection-to-coco":
        def fn():
            converters.detection_to_coco(a.input_json, a.segmentations_folder, a.output_json, a.categories_json,
                                         workers=a.workers, seed=a.seed)
    elif a.command == "coco-to-semantic":
        def fn():
            converters.coco_to_semantic(a.input_json, a.segmentations_folder, a.categories_json,
                                        output_json_file=a.output_json, semantic_seg_folder=a.semantic_seg_folder,
                                        save_with_color=a.save_with_color, things_other=a.things_other,
                                        workers=a.workers)
    else:
        def fn():
            converters.cityscapes_to_coco(a.original_format_folder, a.out_folder, a.out_file, workers=a.workers,
                                          seed=a.seed)
    return _run("panoptic-convert", fn)


def main_combine(argv: Sequence[str] | None = None) -> int:
    a = build_combine_parser().parse_args(argv)
    return _run("panoptic-combine", lambda: converters.combine_semantic_and_instance_predictions(
        a.semseg_json, a.instseg_json, a.images_json, a.categories_json, a.segmentations_folder, a.panoptic_json,
        confidence_thr=a.confidence_thr, overlap_thr=a.overlap_thr, stuff_area_limit=a.stuff_area_limit,
        workers=a.workers, seed=a.seed))


if __name__ == "__main__":
    sys.exit(main_convert())
