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
    for key in ("ate_cm", "psnr", "miou", "fps", "n_gaussians"):
        assert key in metrics, key
    assert metrics["ate_cm"] < 1.0 and metrics["psnr"] > 18.0
    assert len(load_map(out / "map.ply")) == metrics["n_gaussians"] > 0
    assert (out / "trajectory.txt").is_file() and (out / "trajectory.png").is_file()
    assert list((out / "renders").glob("*.png"))


def test_demo_is_the_replay_of_a_generated_room():
    args = _replay_args(argparse.Namespace(out="o", room="r", seed=4, frames=30, offline=False))
    assert (args.kind, args.path, args.generate, args.seed, args.frames, args.out) == ("synthetic", "r", True, 4, 30, "o")
