"""The `gs4-slam` command line.

Each sub-command lives in the module that does its work and registers itself
here through ``add_parser``; heavy imports (torch, open3d, rclpy) happen only
inside the command that needs them, so ``gs4-slam --help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# (command, module providing add_parser(subparsers)).
_COMMANDS: tuple[tuple[str, str], ...] = (
    ("info", "gs4_slam.info"),
    ("demo", "gs4_slam.demo"),
    ("dataset", "gs4_slam.datasets.command"),
    ("generate", "gs4_slam.synthetic.command"),
    ("eval", "gs4_slam.evaluate"),
    ("run", "gs4_slam.run_command"),
    ("train", "gs4_slam.train_command"),
    ("replay", "gs4_slam.replay_command"),
    ("record", "gs4_slam.record_command"),
    ("query", "gs4_slam.semantic_query"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gs4-slam",
        description="Real-time semantic Gaussian-splatting SLAM from RGB-D.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _, module_name in _COMMANDS:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
