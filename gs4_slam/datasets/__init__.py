"""Lazy RGB-D sequence readers: TUM RGB-D, ScanNet (and generated sequences), Replica.

    >>> reader = open_dataset("tum", "../shared/data/tum_fr1_xyz", stride=2, resize=(320, 240))
    >>> for frame in reader: ...

Every reader is a :class:`SequenceReader`: ``len()``, iteration, indexing,
``intrinsics`` and ``name``; images are read one frame at a time.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from gs4_slam.datasets.base import DatasetError, ReaderOptions, SequenceReader
from gs4_slam.datasets.replica import ReplicaReader
from gs4_slam.datasets.scannet import ScanNetReader
from gs4_slam.datasets.tum import TUM_PRESETS, TumReader

#: Dataset kinds accepted by :func:`open_dataset` ("synthetic" = the generator's ScanNet layout).
READERS: dict[str, type[SequenceReader]] = {
    "tum": TumReader,
    "scannet": ScanNetReader,
    "synthetic": ScanNetReader,
    "replica": ReplicaReader,
}

__all__ = [
    "DatasetError",
    "READERS",
    "ReaderOptions",
    "ReplicaReader",
    "ScanNetReader",
    "SequenceReader",
    "TumReader",
    "add_reader_arguments",
    "detect_kind",
    "open_dataset",
    "options_from_args",
]


def detect_kind(path: str | Path) -> str:
    """Guess the layout of a dataset folder from the files it holds."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if (root / "rgb.txt").is_file() and (root / "depth.txt").is_file():
        return "tum"
    if (root / "color").is_dir() and (root / "pose").is_dir():
        return "scannet"
    if (root / "results").is_dir() and (root / "traj.txt").is_file():
        return "replica"
    raise DatasetError(
        f"{root}: not a known dataset layout (TUM: rgb.txt + depth.txt; ScanNet: color/ + pose/; "
        "Replica: results/ + traj.txt)"
    )


def open_dataset(
    kind: str, path: str | Path, options: ReaderOptions | None = None, **option_fields
) -> SequenceReader:
    """Open a sequence folder.

    Args:
        kind: "tum", "scannet", "synthetic", "replica" or "auto" (detect from the files).
        path: the sequence folder.
        options: reader options; ``option_fields`` (e.g. ``stride=2``) update them.

    Raises:
        DatasetError: the folder or one of its index files is missing or invalid.
    """
    if kind == "auto":
        kind = detect_kind(path)
    if kind not in READERS:
        raise DatasetError(f"unknown dataset kind {kind!r}; one of {sorted(READERS)} or 'auto'")
    options = options or ReaderOptions()
    if option_fields:
        options = options.with_updates(**option_fields)
    return READERS[kind](path, options)


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
    group.add_argument("--preset", choices=sorted(TUM_PRESETS), default=None, help="TUM intrinsics preset")


def options_from_args(args: argparse.Namespace) -> ReaderOptions:
    """ReaderOptions from flags added by :func:`add_reader_arguments`."""
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
        )
    except ValueError as exc:
        raise DatasetError(f"invalid reader option: {exc}") from exc
