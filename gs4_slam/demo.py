"""`gs4-slam demo`: the main job on built-in data, no dataset needed.

Generates (or reuses) a synthetic semantic room, replays it through
``dataset_player`` into ``slam_node`` over loopback DDS (the node graph of
``launch/demo.launch.py``), and writes to the output folder the map (.ply +
sidecar), trajectory (+ plot), ``metrics.json`` (ate_cm, psnr, miou, fps,
n_gaussians, ...) and input|render images. Without ROS 2 (a plain
``pip install .``) the same pipeline runs in-process instead, and says so.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path

log = logging.getLogger(__name__)

#: A room the shipped networks never saw in training (their training rooms are
#: seeds 0-319, see weights/*.json; tests check this), so the demo's metrics are
#: not flattered.
DEMO_SEED = 1000
#: Named after the seed, so a room generated with another seed is never reused.
DEFAULT_ROOM = "build/demo/room-{seed}"


def ros_available() -> bool:
    return importlib.util.find_spec("rclpy") is not None


def _replay_args(args: argparse.Namespace) -> argparse.Namespace:
    """The `gs4-slam replay synthetic ... --generate` command line the demo amounts to."""
    from gs4_slam import replay_command

    parser = argparse.ArgumentParser()
    replay_command.add_parser(parser.add_subparsers())
    argv = ["replay", "synthetic", args.room, "--generate", "--seed", str(args.seed), "--frames", str(args.frames),
            "--out", args.out]
    return parser.parse_args(argv)


def _run_offline(args: argparse.Namespace) -> int:
    from gs4_slam.datasets import open_dataset
    from gs4_slam.replay_command import ensure_sequence
    from gs4_slam.run_command import run_sequence
    from gs4_slam.slam import Slam, load_slam_config
    from gs4_slam.predictor.predictor import DEFAULT_WEIGHTS

    room = Path(args.room)
    ensure_sequence(room, args.seed, args.frames, 320, 240, noise=True)
    overrides = None if DEFAULT_WEIGHTS.is_file() else {"predictor": {"use_baseline": True}}
    slam = Slam(load_slam_config(overrides=overrides))
    try:
        report = run_sequence(open_dataset("synthetic", room), slam, Path(args.out))
    finally:
        slam.close()
    for key in ("ate_cm", "psnr", "miou", "fps", "n_gaussians"):
        value = report.metrics.get(key)
        print(f"{key:<12} {value:.3f}" if isinstance(value, float) else f"{key:<12} {value}")
    print(f"outputs in {report.out_dir.resolve()}")
    return 0


def _run(args: argparse.Namespace) -> int:
    args.room = args.room or DEFAULT_ROOM.format(seed=args.seed)
    if args.offline or not ros_available():
        if not args.offline:
            log.warning("rclpy is not installed: running the pipeline in-process instead of over ROS 2")
        return _run_offline(args)
    from gs4_slam import replay_command

    return replay_command.run_replay(_replay_args(args))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="the built-in demo: a synthetic room replayed into slam_node")
    parser.add_argument("--out", default="output/demo", help="output folder (default: output/demo)")
    parser.add_argument("--room", default=None,
                        help=f"where the synthetic room is written (default {DEFAULT_ROOM.format(seed='SEED')})")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help=f"synthetic room (default {DEMO_SEED})")
    parser.add_argument("--frames", type=int, default=60, help="frames (default 60)")
    parser.add_argument("--offline", action="store_true", help="run the pipeline in-process, without ROS 2")
    parser.set_defaults(func=_run)
