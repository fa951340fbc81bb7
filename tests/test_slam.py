"""The SLAM pipeline end to end on a generated sequence."""
from __future__ import annotations

import numpy as np
import pytest

from gs4_slam.config import ConfigError
from gs4_slam.frame import Frame
from gs4_slam.metrics.image import psnr
from gs4_slam.metrics.trajectory import Trajectory, ate
from gs4_slam.slam import Slam, load_slam_config
from gs4_slam.synthetic.generator import SyntheticConfig, SyntheticSequence
from gs4_slam.tracking import TrackingStatus

FRAMES = 30


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    sequence = SyntheticSequence(SyntheticConfig(seed=5, frames=FRAMES, noise=True))
    return [sequence.frame(i) for i in range(FRAMES)]


def _config(threaded: bool):
    # The baseline predictor keeps the test independent of the shipped weights.
    return load_slam_config(overrides={"predictor": {"use_baseline": True}, "mapping": {"threaded": threaded}})


def _run(frames, threaded: bool):
    slam = Slam(_config(threaded))
    results = [slam.process(f) for f in frames]
    slam.flush()
    return slam, results


def _ate_cm(results, frames) -> float:
    est = Trajectory(np.array([r.timestamp_s for r in results]), np.stack([r.T_world_cam.matrix for r in results]))
    gt = Trajectory(np.array([f.timestamp_s for f in frames]), np.stack([f.T_world_cam_gt.matrix for f in frames]))
    return 100.0 * ate(est, gt).rmse_m


def _psnr(slam, results, frames) -> float:
    values = []
    for frame, result in list(zip(frames, results))[::5]:
        out = slam.render(result.T_world_cam, frame.intrinsics, channels=("color",))
        values.append(psnr(out.color.clamp(0, 1).numpy(), frame.color_rgb))
    return float(np.mean(values))


def test_inline_pipeline_tracks_and_maps(frames, tmp_path):
    slam, results = _run(frames, threaded=False)
    try:
        assert all(r.status is TrackingStatus.OK for r in results)
        assert _ate_cm(results, frames) < 1.0
        assert results[0].is_keyframe and results[-1].num_keyframes >= 2
        assert 500 < results[-1].num_gaussians <= slam.config.mapping.max_gaussians
        assert slam.backend.stats.optimisations == results[-1].num_keyframes
        assert _psnr(slam, results, frames) > 18.0
        for key in ("track_ms", "total_ms"):
            assert results[-1].stage_times_ms[key] > 0

        path = tmp_path / "map.ply"
        slam.save_map(path)
        n = len(slam.backend)
        slam.reset()
        assert len(slam.backend) == 0 and slam.trajectory() == []
        slam.load_map(path)
        assert len(slam.backend) == n
    finally:
        slam.close()


def test_threaded_pipeline_matches_inline_tracking(frames):
    inline, inline_results = _run(frames, threaded=False)
    threaded, threaded_results = _run(frames, threaded=True)
    try:
        # Mapping does not feed tracking yet, so the trajectories agree exactly.
        for a, b in zip(inline_results, threaded_results):
            assert np.allclose(a.T_world_cam.matrix, b.T_world_cam.matrix)
        assert threaded.backend.stats.jobs_done + threaded.backend.stats.jobs_skipped >= results_keyframes(
            threaded_results)
        assert _psnr(threaded, threaded_results, frames) > 16.0
    finally:
        inline.close()
        threaded.close()


def results_keyframes(results) -> int:
    return sum(r.is_keyframe for r in results)


def test_frame_without_depth_is_lost_not_fatal(frames):
    slam = Slam(_config(threaded=False))
    try:
        slam.process(frames[0])
        empty = Frame(frames[1].timestamp_s, frames[1].color_rgb, np.zeros_like(frames[1].depth_m),
                      frames[1].intrinsics, index=1)
        assert slam.process(empty).status is TrackingStatus.LOST
        assert slam.process(frames[2]).status is not TrackingStatus.LOST
    finally:
        slam.close()


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="mapping.optimization.iterations"):
        load_slam_config(overrides={"mapping": {"optimization": {"iterations": "three"}}})
    with pytest.raises(ConfigError, match="multiples of 16"):
        load_slam_config(overrides={"working_width": 321})
