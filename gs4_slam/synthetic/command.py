"""`gs4-slam generate`: write a synthetic semantic RGB-D sequence in the ScanNet layout."""

from __future__ import annotations

import argparse
import sys


def _run(args: argparse.Namespace) -> int:
    from gs4_slam.synthetic.generator import SyntheticConfig, write_sequence

    try:
        config = SyntheticConfig(
            seed=args.seed,
            frames=args.frames,
            width=args.width,
            height=args.height,
            noise=args.noise,
            speed_mps=args.speed,
            rate_hz=args.rate,
        )
    except ValueError as exc:
        print(f"gs4-slam generate: {exc}", file=sys.stderr)
        return 2

    def progress(done: int, total: int) -> None:
        if done == total or done % max(total // 10, 1) == 0:
            print(f"  {done}/{total} frames", flush=True)

    try:
        report = write_sequence(args.out, config, overwrite=args.overwrite, progress=progress)
    except (FileExistsError, OSError) as exc:
        print(f"gs4-slam generate: {exc}", file=sys.stderr)
        return 1
    print(
        f"{report.frames} frames of a {report.room_type} at {args.width}x{args.height} written to "
        f"{report.out_dir.resolve()} ({report.frames_per_s:.1f} frames/s; NYU40 classes {report.nyu40_ids})"
    )
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="write a synthetic semantic RGB-D sequence (ScanNet layout)",
        description="Render a procedural furnished room along a hand-held-like camera path and write "
        "colour, depth (mm), NYU40 labels, poses and intrinsics in the ScanNet layout.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="fixes scene, path and noise (default 0)")
    parser.add_argument("--frames", type=int, default=100, help="number of frames (default 100)")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels (default 320)")
    parser.add_argument("--height", type=int, default=240, help="image height in pixels (default 240)")
    parser.add_argument("--noise", action="store_true", help="Kinect-like depth noise and holes")
    parser.add_argument("--speed", type=float, default=0.3, help="camera speed in m/s (default 0.3)")
    parser.add_argument("--rate", type=float, default=30.0, help="frame rate in Hz (default 30)")
    parser.add_argument("--overwrite", action="store_true", help="replace a sequence already in --out")
    parser.set_defaults(func=_run)
