"""`gs4-slam dataset`: check that a sequence folder reads, and summarise it."""

from __future__ import annotations

import argparse
import sys


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from gs4_slam.datasets import DatasetError, open_dataset
    from gs4_slam.datasets.args import options_from_args
    from gs4_slam.metrics.trajectory import Trajectory, write_tum

    try:
        reader = open_dataset(args.kind, args.path, options_from_args(args))
        if len(reader) == 0:
            raise DatasetError(f"{args.path}: the selection (start/stride/limit) keeps no frame")
        first = reader[0]
    except ValueError as exc:  # DatasetError, LabelSetError: messages name the file
        print(f"gs4-slam dataset: {exc}", file=sys.stderr)
        return 1
    k = reader.intrinsics
    valid = first.depth_m[first.valid_depth_mask()]
    poses = reader.gt_poses()
    with_gt = sum(p is not None for p in poses)
    print(f"dataset      {reader.name} ({type(reader).__name__})")
    print(f"frames       {len(reader)} selected of {reader.num_total_frames}")
    print(f"image        {k.width}x{k.height}  fx {k.fx:.2f} fy {k.fy:.2f} cx {k.cx:.2f} cy {k.cy:.2f}")
    print(f"distortion   {list(k.distortion) or 'none'}")
    print(f"depth scale  {getattr(reader, 'depth_scale', '?')} units/m")
    if valid.size:
        print(f"first depth  {valid.size / first.depth_m.size:.0%} valid, {np.min(valid):.3f}..{np.max(valid):.3f} m")
    print(f"labels       {'yes' if first.labels is not None else 'no'}")
    print(f"ground truth {with_gt}/{len(reader)} frames")
    if args.export_gt:
        stamps = reader.timestamps_s()
        keep = [i for i, p in enumerate(poses) if p is not None]
        write_tum(args.export_gt, Trajectory.from_poses(stamps[keep], [poses[i] for i in keep]))
        print(f"ground truth written to {args.export_gt}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from gs4_slam.datasets.args import KIND_NAMES, add_reader_arguments

    parser = subparsers.add_parser(
        "dataset", help="check and summarise a dataset folder (TUM, ScanNet, Replica, synthetic)"
    )
    parser.add_argument("path", help="sequence folder")
    parser.add_argument("--kind", choices=KIND_NAMES, default="auto", help="layout (default: detect)")
    parser.add_argument("--export-gt", metavar="FILE", help="write the selected frames' ground truth in TUM format")
    add_reader_arguments(parser)
    parser.set_defaults(func=_run)
