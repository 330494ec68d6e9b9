"""``panoptic-core``: command-line tools of panoptic-core.

``panoptic-core synth OUT --train N --val M --size H W --seed S`` writes a synthetic
COCO panoptic dataset (see :mod:`panoptic_core.data.synthetic`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from .__about__ import __version__
from .data.synthetic import SyntheticConfig, write_synthetic_dataset
from .errors import DatasetError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="panoptic-core", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"panoptic-core {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    default = SyntheticConfig()
    synth = sub.add_parser("synth", help="write a synthetic COCO panoptic dataset")
    synth.add_argument("out", help="output folder (must not exist or be empty, unless --overwrite)")
    synth.add_argument("--train", type=int, default=default.train, help=f"training images (default {default.train})")
    synth.add_argument("--val", type=int, default=default.val, help=f"validation images (default {default.val})")
    synth.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=(default.height, default.width),
        help=f"image height and width (default {default.height} {default.width})",
    )
    synth.add_argument("--seed", type=int, default=default.seed, help=f"random seed (default {default.seed})")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return parser


def _terminated(signum, frame):
    raise KeyboardInterrupt  # unwinds like Ctrl-C, so the temporary folder is removed


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminated) if _in_main_thread() else None
    try:
        config = SyntheticConfig(
            train=args.train, val=args.val, height=args.size[0], width=args.size[1], seed=args.seed
        )
        out = write_synthetic_dataset(args.out, config, overwrite=args.overwrite)
    except (DatasetError, OSError) as exc:
        print(f"panoptic-core synth: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("panoptic-core synth: interrupted; nothing written", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"wrote {config.train} train + {config.val} val images of {config.height}x{config.width} to {out}")
    return 0


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
