"""Camera tracking benchmark on TUM RGB-D fr1/xyz: our tracker vs open3d's odometry.

Run from the repository root::

    python -m bench.tracking --data ../shared/data/tum_fr1_xyz [--limit N] [--sizes 320x240 640x480]

For each resolution, every frame is decoded once and handed to both trackers in
the same loop, so both see identical input under the same machine load:

* ours: :class:`gs4_slam.tracking.Tracker` (frame-to-keyframe dense RGB-D);
* peer: open3d's frame-to-frame RGB-D odometry, hybrid (photometric + depth)
  Jacobian, default options, chained.

Both receive the distorted frame and undistort it with the same OpenCV maps
inside their timed region; decoding the files is not timed. ATE is the RMSE over
all frames (LOST frames count with the pose reported for them) after a rigid
Umeyama alignment. The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class RunStats:
    """Per-method timings and poses of one resolution."""

    poses: list[np.ndarray] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    def fps(self) -> float:
        return len(self.seconds) / max(sum(self.seconds), 1e-9)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.seconds, q) * 1000.0) if self.seconds else float("nan")


class Open3dPeer:
    """open3d's frame-to-frame hybrid RGB-D odometry, chained into a trajectory."""

    def __init__(self, intrinsics, T_world_cam_init: np.ndarray) -> None:
        import open3d as o3d

        from gs4_slam.tracking.preprocess import Undistorter

        self._o3d = o3d
        self._undistorter = Undistorter()
        k = intrinsics
        self._pinhole = o3d.camera.PinholeCameraIntrinsic(k.width, k.height, k.fx, k.fy, k.cx, k.cy)
        self._option = o3d.pipelines.odometry.OdometryOption()
        self._jacobian = o3d.pipelines.odometry.RGBDOdometryJacobianFromHybridTerm()
        self._previous = None
        self.T_world_cam = T_world_cam_init.copy()

    def track(self, frame) -> str:
        o3d = self._o3d
        color = self._undistorter.color(frame.color_rgb, frame.intrinsics)
        depth = self._undistorter.depth(frame.depth_m, frame.intrinsics)
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(color)),
            o3d.geometry.Image(np.ascontiguousarray(depth)),
            depth_scale=1.0,
            depth_trunc=4.0,
            convert_rgb_to_intensity=True,
        )
        status = "ok"
        if self._previous is not None:
            # compute_rgbd_odometry(source, target) returns T_target_source.
            success, T_prev_cur, _ = o3d.pipelines.odometry.compute_rgbd_odometry(
                rgbd, self._previous, self._pinhole, np.eye(4), self._jacobian, self._option
            )
            if success:
                self.T_world_cam = self.T_world_cam @ T_prev_cur
            else:
                status = "lost"
        self._previous = rgbd
        return status


def run_resolution(data: Path, size: tuple[int, int] | None, limit: int | None, with_peer: bool) -> dict:
    from gs4_slam.datasets import open_dataset
    from gs4_slam.metrics import Trajectory, ate
    from gs4_slam.tracking import Tracker

    reader = open_dataset("tum", data, resize=size, limit=limit)
    intrinsics = reader.intrinsics
    gt_poses = reader.gt_poses()
    T_world_init = gt_poses[0].matrix if gt_poses and gt_poses[0] is not None else np.eye(4)
    # Start both at the first ground-truth pose; ATE aligns rigidly anyway.
    from gs4_slam.camera import Pose

    tracker = Tracker(T_world_cam_init=Pose(T_world_init))
    peer = Open3dPeer(intrinsics.without_distortion(), T_world_init) if with_peer else None
    ours, theirs = RunStats(), RunStats()
    stage_ms: dict[str, float] = {}
    keyframes = relocalized = 0
    for frame in reader:  # decoding happens here, outside the timed regions
        start = time.perf_counter()
        result = tracker.track(frame)
        ours.seconds.append(time.perf_counter() - start)
        ours.poses.append(result.T_world_cam.matrix)
        ours.statuses.append(result.status.value)
        keyframes += int(result.is_keyframe)
        relocalized += int(result.relocalized)
        for key, value in result.timings_ms.items():
            stage_ms[key] = stage_ms.get(key, 0.0) + value
        if peer is not None:
            start = time.perf_counter()
            theirs.statuses.append(peer.track(frame))
            theirs.seconds.append(time.perf_counter() - start)
            theirs.poses.append(peer.T_world_cam.copy())

    timestamps = reader.timestamps_s()
    has_gt = [p is not None for p in gt_poses]
    gt = Trajectory.from_poses(timestamps[has_gt], [p for p in gt_poses if p is not None])

    def ate_cm(stats: RunStats) -> float:
        return 100.0 * ate(Trajectory(timestamps, np.stack(stats.poses)), gt).rmse_m

    n = len(ours.seconds)
    out = {
        "size": f"{intrinsics.width}x{intrinsics.height}",
        "frames": n,
        "ate_cm": ate_cm(ours),
        "fps": ours.fps(),
        "p95_ms": ours.percentile_ms(95),
        "keyframes": keyframes,
        "relocalized": relocalized,
        "weak": ours.statuses.count("weak"),
        "lost": ours.statuses.count("lost"),
        "stage_ms": {k: v / n for k, v in stage_ms.items()},
    }
    if peer is not None:
        out.update(
            peer_ate_cm=ate_cm(theirs),
            peer_fps=theirs.fps(),
            peer_p95_ms=theirs.percentile_ms(95),
            peer_lost=theirs.statuses.count("lost"),
        )
    return out


def print_table(rows: list[dict]) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"tracking on TUM fr1/xyz, {os.cpu_count()} CPU(s) ({platform.machine()}), load average {load:.1f} at the end"
    )
    header = f"{'size':<8} {'method':<24} {'ATE cm':>7} {'frames/s':>9} {'p95 ms':>7} {'keyframes':>9} {'weak':>5} {'lost':>5}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['size']:<8} {'ours (frame-to-keyframe)':<24} {r['ate_cm']:>7.2f} {r['fps']:>9.1f} "
            f"{r['p95_ms']:>7.1f} {r['keyframes']:>9d} {r['weak']:>5d} {r['lost']:>5d}"
        )
        if "peer_ate_cm" in r:
            print(
                f"{r['size']:<8} {'open3d hybrid (f2f)':<24} {r['peer_ate_cm']:>7.2f} {r['peer_fps']:>9.1f} "
                f"{r['peer_p95_ms']:>7.1f} {'-':>9} {'-':>5} {r['peer_lost']:>5d}"
            )
    for r in rows:
        stages = ", ".join(f"{k.removesuffix('_ms')} {v:.2f}" for k, v in r["stage_ms"].items())
        print(f"{r['size']}: our mean ms per frame by stage: {stages}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/tum_fr1_xyz", help="TUM sequence folder")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N frames")
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x480"], help="WxH resolutions")
    parser.add_argument("--no-peer", action="store_true", help="skip open3d's odometry")
    args = parser.parse_args(argv)

    data = Path(args.data)
    if not (data / "rgb.txt").is_file():
        print(f"bench.tracking: TUM sequence not found at {data} (needs rgb.txt); nothing to measure.")
        return 0
    from gs4_slam.tracking.kernels import load_kernel

    kernel = load_kernel() is not None
    rows = []
    for text in args.sizes:
        width, height = (int(v) for v in text.lower().split("x"))
        size = None if (width, height) == (640, 480) else (width, height)
        rows.append(run_resolution(data, size, args.limit, not args.no_peer))
    print_table(rows)
    print(f"compiled tracking kernel: {'yes' if kernel else 'no (NumPy path)'}; parameters tuned on this sequence")
    summary: dict = {"frames": rows[0]["frames"] if rows else 0, "kernel": kernel}
    for r in rows:
        key = r["size"].split("x")[0]
        summary[f"ate_cm_{key}"] = round(r["ate_cm"], 3)
        summary[f"fps_{key}"] = round(r["fps"], 1)
        summary[f"lost_{key}"] = r["lost"]
        if "peer_ate_cm" in r:
            summary[f"peer_ate_cm_{key}"] = round(r["peer_ate_cm"], 3)
            summary[f"peer_fps_{key}"] = round(r["peer_fps"], 1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
