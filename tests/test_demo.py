"""The demo (main job) writes what the README promises; the ROS path is covered by test_replay."""
from __future__ import annotations

import argparse
import json

from gs4_slam.demo import _run_offline, _replay_args
from gs4_slam.map_io import load_map


def test_offline_demo_writes_map_metrics_and_renders(tmp_path):
    args = argparse.Namespace(out=str(tmp_path / "out"), room=str(tmp_path / "room"), seed=3, frames=20,
                              offline=True)
    assert _run_offline(args) == 0
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("ate_cm", "ate_cm_live", "psnr", "miou", "fps", "n_gaussians"):
        assert key in metrics, key
    assert metrics["ate_cm"] < 1.0 and metrics["ate_cm_live"] < 1.0 and metrics["psnr"] > 18.0
    assert len(load_map(out / "map.ply")) == metrics["n_gaussians"] > 0
    assert (out / "trajectory.txt").is_file() and (out / "trajectory.png").is_file()
    assert list((out / "renders").glob("*.png"))


def test_demo_is_the_replay_of_a_generated_room():
    args = _replay_args(argparse.Namespace(out="o", room="r", seed=4, frames=30, offline=False))
    assert (args.kind, args.path, args.generate, args.seed, args.frames, args.out) == ("synthetic", "r", True, 4, 30, "o")


def test_demo_room_is_not_a_training_room_and_every_entry_point_agrees():
    """The demo's metrics would be flattered by a room the networks were trained on."""
    import re
    from pathlib import Path

    import yaml

    from gs4_slam.demo import DEFAULT_ROOM, DEMO_SEED, add_parser

    repo = Path(__file__).resolve().parents[1]
    for card in ("predictor.json", "refiner.json"):
        data = json.loads((repo / "weights" / card).read_text())
        trained = set(data["training_data"]["train_seeds"])  # every seed, listed
        assert len(trained) >= 64 and DEMO_SEED not in trained, card
    player = yaml.safe_load((repo / "config" / "demo.yaml").read_text())["/**/dataset_player"]["ros__parameters"]
    assert player["synthetic"]["seed"] == DEMO_SEED
    launch_default = re.search(r'DeclareLaunchArgument\("seed", default_value="(\d+)"',
                               (repo / "launch" / "demo.launch.py").read_text())
    assert launch_default and int(launch_default.group(1)) == DEMO_SEED
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["demo", "--offline"])
    assert args.seed == DEMO_SEED and args.room is None
    assert DEFAULT_ROOM.format(seed=DEMO_SEED).endswith(str(DEMO_SEED))
