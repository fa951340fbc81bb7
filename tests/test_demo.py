"""The demo (main job) runs end to end and writes what the README promises."""
from __future__ import annotations

import json

from gs4_slam.demo import DemoConfig, run
from gs4_slam.map_io import load_map


def test_demo_writes_map_metrics_and_renders(tmp_path):
    metrics = run(tmp_path, DemoConfig(frames=12, keyframe_every=6, eval_every=3))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == metrics
    for key in ("psnr", "miou", "n_gaussians", "depth_l1_cm"):
        assert key in saved
    # Rendering the map back into its own inputs must resemble them.
    assert saved["psnr"] > 18.0
    assert saved["depth_l1_cm"] < 30.0
    gmap = load_map(tmp_path / "map.ply")
    assert len(gmap) == saved["n_gaussians"] > 0
    assert len(list((tmp_path / "renders").glob("*.png"))) >= 2
