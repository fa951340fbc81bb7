"""`gs4-slam replay`: a dataset through the ROS node graph, without `ros2 launch`.

    gs4-slam replay synthetic build/demo/room-1000 --generate --seed 1000 --frames 60 --out output/demo
    gs4-slam replay tum ../shared/data/tum_fr1_xyz --out output/fr1_xyz --rate 0.5
    gs4-slam replay bag recording/ --out output/recording

Starts ``dataset_player`` and ``slam_node`` as separate processes with the same
parameter file the launch files use (``--params``, default by kind: config/demo.yaml,
config/tum_replay.yaml, ...), over loopback DDS only. Waits for the end of the
sequence and for the node to process every frame, saves the map through
``~/save_map``, then evaluates like ``gs4-slam run`` and writes to ``--out``:
``map.ply`` + ``map.npz``, ``trajectory.txt``, ``trajectory.png``, ``metrics.json``
(ate_cm, psnr, miou, fps, n_gaussians, ...), ``renders/*.png`` (input | render) and
``logs/`` (both nodes' output).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gs4_slam.camera import Pose

log = logging.getLogger(__name__)

KINDS = ("synthetic", "tum", "scannet", "replica", "auto", "bag")
#: Parameter file of each kind (the launch files use the same ones).
DEFAULT_PARAMS = {"synthetic": "config/demo.yaml", "tum": "config/tum_replay.yaml",
                  "scannet": "config/scannet_replay.yaml", "replica": "config/replica_replay.yaml",
                  "auto": "config/slam_node.yaml", "bag": "config/slam_node.yaml"}
#: Reader flags (gs4_slam.datasets.args) -> player parameters.
_READER_FLAGS = {"stride": "reader.stride", "start": "reader.start", "limit": "reader.limit",
                 "depth_scale": "reader.depth_scale", "preset": "reader.preset"}


@dataclass(frozen=True)
class ProcessedFrame:
    """A pose of the node matched to its frame in the sequence (what run_command's evaluation reads)."""

    index: int
    timestamp_s: float
    T_world_cam: Pose


class FrameSubset:
    """The processed frames of a sequence, indexable like a reader."""

    def __init__(self, source, indices: list[int]) -> None:
        self._source, self._indices = source, indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, k: int):
        return self._source[self._indices[k]]


# ---------------------------------------------------------------------- settings


def _value_texts(overrides: dict[str, Any], *configs) -> dict[str, str]:
    """Values as ``-p name:=value`` text, typed like the config fields they set (``rate:=2`` would be an
    integer, which a double parameter refuses); JSON is YAML and quotes strings safely."""
    from gs4_slam import config as config_io

    typed: dict[str, Any] = {}
    for config in configs:
        typed |= config_io.flatten(config_io.to_dict(config))
    return {name: json.dumps(typed.get(name, value)) for name, value in overrides.items()}


def _player_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Player parameters the command line sets (the parameter file supplies the rest)."""
    out: dict[str, Any] = {}
    target = str(Path(args.path).resolve())
    if args.kind == "bag":
        out["bag"] = target
    else:
        out.update(dataset=args.kind, path=target)
    for flag, name in _READER_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            out[name] = float(value) if name == "reader.depth_scale" else value
    if args.resize is not None:
        out["reader.width"], out["reader.height"] = args.resize
    if any(getattr(args, k) is not None for k in ("fx", "fy", "cx", "cy")):
        out["reader.intrinsics"] = [float(getattr(args, k) or 0.0) for k in ("fx", "fy", "cx", "cy")]
    if args.rate is not None:
        out["rate"] = float(args.rate)
    if args.start_offset is not None:
        out["start_offset_s"] = float(args.start_offset)
    return out


def _parse_overrides(texts: list[str]) -> dict[str, Any]:
    from gs4_slam.ros.params_files import parse_override

    return dict(parse_override(text) for text in texts)


def player_config(params_file: Path, namespace: str, overrides: dict[str, Any]):
    """The PlayerConfig the player process will build from the file and the overrides."""
    from gs4_slam import config as config_io
    from gs4_slam.ros.params_files import fully_qualified, node_parameters
    from gs4_slam.ros.playback import PlayerConfig

    flat = node_parameters(params_file, fully_qualified(namespace, "dataset_player")) | overrides
    return config_io.from_dict(PlayerConfig, config_io.unflatten(flat), "dataset_player")


def slam_config(params_file: Path, namespace: str, overrides: dict[str, Any]):
    """(NodeConfig, SlamConfig) slam_node will run with, from its file section and the overrides."""
    from gs4_slam import config as config_io
    from gs4_slam.ros.params import NodeConfig
    from gs4_slam.ros.params_files import fully_qualified, node_parameters
    from gs4_slam.slam import load_slam_config

    flat = node_parameters(params_file, fully_qualified(namespace, "slam_node")) | overrides
    node_keys = set(config_io.flatten(config_io.to_dict(NodeConfig())))
    node = config_io.from_dict(NodeConfig, config_io.unflatten({k: v for k, v in flat.items() if k in node_keys}),
                               "slam_node")
    pipeline = {k: v for k, v in flat.items() if k not in node_keys}
    return node, load_slam_config(*([node.config_file] if node.config_file else []),
                                  overrides=config_io.unflatten(pipeline))


def _weights_missing(config) -> bool:
    from gs4_slam.predictor.predictor import DEFAULT_WEIGHTS

    return not config.predictor.use_baseline and not Path(config.predictor.weights or DEFAULT_WEIGHTS).is_file()


def ensure_sequence(path: Path, seed: int, frames: int, width: int, height: int, noise: bool) -> None:
    """Generate the synthetic room at ``path``, or reuse it when it is the same one."""
    from gs4_slam.synthetic.generator import SyntheticConfig, write_sequence

    config = SyntheticConfig(seed=seed, frames=frames, width=width, height=height, noise=noise)
    scene = path / "scene.json"
    if scene.is_file():
        existing = json.loads(scene.read_text()).get("config", {})
        wanted = json.loads(json.dumps(dataclasses.asdict(config)))
        if existing != wanted:
            differ = sorted(k for k in wanted if existing.get(k) != wanted[k])
            raise ValueError(f"{path} holds another synthetic sequence (differs in {differ}); "
                             "choose another folder or delete it")
        log.info("reusing the synthetic sequence in %s", path)
        return
    log.info("generating a synthetic room (seed %d, %d frames, %dx%d) in %s", seed, frames, width, height, path)
    write_sequence(path, config)


# ---------------------------------------------------------------------- evaluation


def match_poses(poses: list, timestamps_s: np.ndarray, max_dt_s: float = 1e-3) -> list[ProcessedFrame]:
    """Each (stamp ns, pose) of the node with the sequence frame of that timestamp; unmatched ones are left out."""
    order = np.argsort(timestamps_s)
    sorted_t = timestamps_s[order]
    out = []
    for t_ns, pose in poses:
        t_s = t_ns * 1e-9
        j = int(np.clip(np.searchsorted(sorted_t, t_s), 1, len(sorted_t) - 1)) if len(sorted_t) > 1 else 0
        best = min({j - 1, j} & set(range(len(sorted_t))), key=lambda i: abs(sorted_t[i] - t_s))
        if abs(sorted_t[best] - t_s) <= max_dt_s:
            k = int(order[best])
            out.append(ProcessedFrame(k, float(timestamps_s[k]), pose))
    return out


def evaluate(source, config, session, out_dir: Path, eval_every: int, panels: int = 6) -> dict:
    """ATE against the source's ground truth and renders of the saved map, as `gs4-slam run` computes them."""
    from gs4_slam import config as config_io
    from gs4_slam.run_command import render_metrics, trajectory_outputs
    from gs4_slam.slam import Slam

    frames = match_poses(session.poses, source.timestamps_s())
    if not frames:
        raise ValueError("slam_node published no pose that matches a frame of the sequence")
    gt_all = source.gt_poses() if hasattr(source, "gt_poses") else [None] * len(source)
    metrics: dict[str, Any] = {}
    # As `gs4-slam run` scores them: the output trajectory (saved with the map, each frame
    # following its keyframe's refined pose) and, as live, the published poses.
    live = None
    refined = _saved_trajectory(session.map_path, source.timestamps_s())
    if refined:
        live, frames = frames, refined
    metrics.update(trajectory_outputs(out_dir, frames, [gt_all[f.index] for f in frames],
                                      live, [gt_all[f.index] for f in live] if live else None))
    slam = Slam(config)
    try:
        slam.load_map(session.map_path)
        metrics["n_gaussians"] = len(slam.backend)
        metrics.update(render_metrics(FrameSubset(source, [f.index for f in frames]), slam, frames, out_dir,
                                       eval_every, panels))
    finally:
        slam.close()
    config_io.dump(config, out_dir / "config.yaml")
    return metrics


def _saved_trajectory(map_path: Path, timestamps_s: np.ndarray) -> list[ProcessedFrame]:
    """The trajectory slam_node saved beside its map, matched to the sequence's frames (none if absent)."""
    from gs4_slam.metrics.trajectory import TrajectoryError, read_tum
    from gs4_slam.slam import trajectory_path

    path = trajectory_path(map_path)
    if not path.is_file():
        log.warning("%s not found: scoring the published poses only", path)
        return []
    try:
        saved = read_tum(path)
    except TrajectoryError as exc:
        log.warning("%s; scoring the published poses only", exc)
        return []
    stamped = [(int(round(t * 1e9)), Pose(m)) for t, m in zip(saved.timestamps_s, saved.poses)]
    return match_poses(stamped, timestamps_s)


# ---------------------------------------------------------------------- command


def replay(args: argparse.Namespace) -> dict:
    """Run the replay ``args`` describe; returns the metrics written to metrics.json."""
    from gs4_slam.ros.processes import safe_ros_environment
    from gs4_slam.resources import find_data_file

    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    env = safe_ros_environment(out_dir / "logs" / "ros_home")
    os.environ.update(env)  # before torch and rclpy load in this process too
    if args.generate:
        if args.kind != "synthetic":
            raise ValueError("--generate makes a synthetic room: use it with the kind 'synthetic'")
        ensure_sequence(Path(args.path), args.seed, args.frames, args.width, args.height, not args.no_noise)
    params_file = Path(args.params) if args.params else find_data_file(DEFAULT_PARAMS[args.kind])
    if params_file is None or not params_file.is_file():
        raise FileNotFoundError(f"parameter file {args.params or DEFAULT_PARAMS[args.kind]} not found")
    player_set = _player_overrides(args) | _parse_overrides(args.player_param)
    node_set = _parse_overrides(args.param)
    player = player_config(params_file, args.namespace, player_set)
    node, config = slam_config(params_file, args.namespace, node_set)
    predictor = "baseline" if config.predictor.use_baseline else "network"
    if _weights_missing(config):
        log.warning("no Gaussian Prediction Model weights (%s): using the non-learned baseline",
                    config.predictor.weights or "weights/predictor.pt")
        node_set["predictor.use_baseline"] = True
        node, config = slam_config(params_file, args.namespace, node_set)
        predictor = "baseline"

    from gs4_slam.ros.playback import open_source
    from gs4_slam.ros.replay_session import ReplaySession, SessionOptions

    source = open_source(player)
    log.info("replaying %s (%d frames) through dataset_player -> slam_node, parameters %s", source.name,
             len(source), params_file)
    options = SessionOptions(namespace=args.namespace, max_backlog=args.max_backlog,
                             stall_timeout_s=args.stall_timeout)
    session = ReplaySession(options, env, out_dir / "logs").run(params_file, _value_texts(node_set, node, config),
                                                                _value_texts(player_set, player), out_dir)
    metrics: dict[str, Any] = {
        "mode": "replay over ROS 2: dataset_player -> slam_node (separate processes, loopback DDS)",
        "dataset": source.name, "predictor": predictor, "frames": session.published,
        "processed_frames": session.processed, "dropped_frames": session.dropped,
        "fps": session.fps,  # the node's pose rate while frames stream
        "save_s": session.save_s,  # then the save, with the final refinement
        "wall_s": session.wall_s,
    }
    metrics.update(evaluate(source, config, session, out_dir, args.eval_every))
    if session.notes:
        metrics["notes"] = session.notes
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def run_replay(args: argparse.Namespace) -> int:
    from gs4_slam import config as config_io
    from gs4_slam.datasets.base import DatasetError

    try:
        metrics = replay(args)
    except ImportError as exc:  # a plain pip install without ROS 2
        print(f"gs4-slam replay needs rclpy and the gs4_slam interfaces (`make setup`, or a ROS 2 distribution "
              f"and colcon build): {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, FileExistsError, DatasetError, config_io.ConfigError) as exc:
        print(f"gs4-slam replay: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # ReplayError: a node failed or stalled; the message quotes its log
        print(f"gs4-slam replay: {exc}", file=sys.stderr)
        return 1
    for key in ("dataset", "frames", "processed_frames", "dropped_frames", "ate_cm", "ate_cm_live", "psnr", "ssim",
                "depth_l1_cm", "miou", "fps", "n_gaussians", "save_s", "wall_s"):
        if key in metrics:
            value = metrics[key]
            print(f"{key:<18} {value:.3f}" if isinstance(value, float) else f"{key:<18} {value}")
    for note in metrics.get("notes", []):
        print(f"note: {note}")
    out = Path(args.out).resolve()
    live = ", trajectory_live.txt (as published)" if (out / "trajectory_live.txt").is_file() else ""
    print(f"outputs in {out}: map.ply (+ map.npz, map_trajectory.txt), trajectory.txt{live}, trajectory.png, "
          "metrics.json, renders/, logs/")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from gs4_slam.datasets.args import add_reader_arguments

    parser = subparsers.add_parser(
        "replay", help="replay a dataset or bag through dataset_player -> slam_node (ROS 2) and evaluate",
        description="Start dataset_player and slam_node as separate ROS 2 processes (loopback only) with the "
        "parameter file the launch files use, play the sequence, save the map and write trajectory, "
        "metrics and renders like `gs4-slam run`.")
    parser.add_argument("kind", choices=KINDS, help="dataset layout, or 'bag' for a rosbag2 folder")
    parser.add_argument("path", help="dataset folder or bag")
    parser.add_argument("--out", default="output/replay", help="output folder (default output/replay)")
    parser.add_argument("--params", help="ROS parameter file for both nodes (default: config/<kind>_replay.yaml, "
                        "config/demo.yaml for synthetic)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="slam_node parameter override (repeatable), e.g. -p mapping.threaded:=false")
    parser.add_argument("--player-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="dataset_player parameter override (repeatable)")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="real-time factor of the player (default 1.0, whatever the parameter file says; "
                        "the player pauses while --max-backlog frames wait in slam_node, so nothing is dropped)")
    parser.add_argument("--start-offset", type=float, default=None, help="skip the first seconds of the sequence")
    parser.add_argument("--namespace", default="", help="ROS namespace of both nodes (default: none)")
    parser.add_argument("--max-backlog", type=int, default=30,
                        help="frames waiting in slam_node before the player is paused (default 30)")
    parser.add_argument("--stall-timeout", type=float, default=180.0,
                        help="seconds without progress before giving up (default 180)")
    parser.add_argument("--eval-every", type=int, default=5, help="evaluate renders on every N-th processed frame")
    group = parser.add_argument_group("synthetic room (--generate)")
    group.add_argument("--generate", action="store_true",
                       help="write a synthetic room to PATH first (reused when PATH already holds the same one)")
    group.add_argument("--seed", type=int, default=100, help="room, path and noise (default 100, a room the shipped predictor was not trained on)")
    group.add_argument("--frames", type=int, default=60, help="number of frames (default 60)")
    group.add_argument("--width", type=int, default=320)
    group.add_argument("--height", type=int, default=240)
    group.add_argument("--no-noise", action="store_true", help="no depth noise")
    add_reader_arguments(parser)
    # Reader flags left out keep the parameter file's values (the player's reader.* parameters).
    parser.set_defaults(func=run_replay, stride=None, start=None)
