"""Reader options as command-line flags; light to import (the CLI builds its parser from it)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gs4_slam.datasets.base import ReaderOptions

#: TUM intrinsics presets (gs4_slam.datasets.tum.TUM_PRESETS), listed here to keep imports light.
PRESET_NAMES = ("default", "fr1", "fr2", "fr3")

#: Which image's time a frame carries where colour and depth differ (ReaderOptions.timestamps).
TIMESTAMP_SOURCES = ("depth", "color")

#: Dataset kinds (gs4_slam.datasets.factory.READERS) plus "auto".
KIND_NAMES = ("auto", "replica", "scannet", "synthetic", "tum")


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x240, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


def add_reader_arguments(parser: argparse.ArgumentParser) -> None:
    """The reader options as command-line flags (--stride, --fx, --depth-scale, ...)."""
    group = parser.add_argument_group("dataset reading")
    group.add_argument("--stride", type=int, default=1, help="use every N-th frame")
    group.add_argument("--start", type=int, default=0, help="first frame index")
    group.add_argument("--limit", type=int, default=None, help="at most this many frames")
    group.add_argument("--resize", type=_size, default=None, metavar="WxH", help="resize frames, e.g. 320x240")
    for name in ("fx", "fy", "cx", "cy"):
        group.add_argument(f"--{name}", type=float, default=None, help=f"override the intrinsics' {name} (pixels)")
    group.add_argument(
        "--depth-scale", type=float, default=None, help="raw depth units per metre (TUM 5000, ScanNet 1000)"
    )
    group.add_argument("--preset", choices=PRESET_NAMES, default=None, help="TUM intrinsics preset")
    group.add_argument(
        "--timestamps", choices=TIMESTAMP_SOURCES, default="depth",
        help="TUM: a frame carries its depth image's time (default: the tracked pose follows the depth) "
        "or its colour image's",
    )


def options_from_args(args: argparse.Namespace) -> ReaderOptions:
    """ReaderOptions from flags added by :func:`add_reader_arguments`."""
    from gs4_slam.datasets.base import DatasetError, ReaderOptions

    try:
        return ReaderOptions(
            stride=args.stride,
            start=args.start,
            limit=args.limit,
            resize=args.resize,
            fx=args.fx,
            fy=args.fy,
            cx=args.cx,
            cy=args.cy,
            depth_scale=args.depth_scale,
            preset=args.preset,
            timestamps=args.timestamps,
        )
    except ValueError as exc:
        raise DatasetError(f"invalid reader option: {exc}") from exc
