"""`gs4-slam run`: the SLAM pipeline offline over a dataset folder.

    gs4-slam run --dataset tum ../shared/data/tum_fr1_xyz --out output/fr1_xyz [--stride 2 --limit 300 ...]

After the last frame the map gets its final refinement (``mapping.final_refinement``),
then it is evaluated and saved. Writes to ``--out``: ``trajectory.txt`` (TUM format),
``trajectory_live.txt`` (the poses as tracked at the time),
``map.ply`` + ``map.npz``, ``renders/frame_XXXXX.png`` (input | render: colour, depth,
semantics), ``metrics.json`` (ate_cm of the output trajectory, where every frame follows
its keyframe's refined pose, and ate_cm_live of the poses as tracked at the time;
psnr, ssim, depth_l1_cm over every 5th frame at the output poses, and
psnr_non_keyframes over those that were not keyframes; miou where the dataset has
labels; n_gaussians; fps end to end, fps_streaming without the final refinement,
final_refinement_s; per-stage times), ``trajectory.png`` (top view and error over
time) and ``config.yaml`` (the resolved settings).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gs4_slam.playback_clock import PlaybackClock

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    metrics: dict
    out_dir: Path
    trajectory: list = field(default_factory=list)


def wait_until_due(clock: PlaybackClock, timestamp_s: float, sleep=time.sleep) -> None:
    """Sleep until the frame at ``timestamp_s`` is due on ``clock``, then count it as released."""
    sleep(max(0.0, clock.wait_s(timestamp_s)))
    clock.due(timestamp_s)


def run_sequence(reader, slam, out_dir: Path, eval_every: int = 5, panels: int = 6, progress: bool = True,
                 realtime: bool = False) -> RunReport:
    """Process every frame of ``reader`` with ``slam``, then evaluate and write the outputs.

    ``realtime``: hand frames over no earlier than their timestamps say, as a live
    camera delivers them (none is dropped; a late frame goes at once). Otherwise as
    fast as the pipeline takes them, which gives the mapping thread less time per
    frame whenever tracking runs faster than the sensor rate.
    """
    from tqdm import tqdm

    from gs4_slam import config as config_io

    out_dir.mkdir(parents=True, exist_ok=True)
    config_io.dump(slam.config, out_dir / "config.yaml")
    results, gt_poses = [], []
    stage_sums: dict[str, float] = {}
    start = time.perf_counter()
    # Never re-anchored (no lag bound): a late frame goes at once and later ones catch up,
    # as frames queued behind a slow pipeline would.
    clock = PlaybackClock(rate=1.0, max_lag_s=float("inf"), now=time.perf_counter) if realtime else None
    for frame in tqdm(reader, total=len(reader), disable=not progress, desc="gs4-slam run", unit="frame"):
        if clock is not None:
            wait_until_due(clock, frame.timestamp_s)
        result = slam.process(frame)
        results.append(result)
        gt_poses.append(frame.T_world_cam_gt)
        for key, value in result.stage_times_ms.items():
            if not key.startswith("map_"):  # a frame shows the last mapping job's times; the backend averages them
                stage_sums[key] = stage_sums.get(key, 0.0) + value
    slam.flush()
    streaming_s = time.perf_counter() - start
    if not results:
        raise ValueError(f"{reader.name}: no frames to process")
    final = slam.refine_final_map()
    seconds = time.perf_counter() - start
    metrics = {
        "dataset": reader.name,
        "frames": len(results),
        "fps": len(results) / seconds,  # end to end: the final refinement counts
        "fps_streaming": len(results) / streaming_s,
        "final_refinement_steps": final.steps,
        "final_refinement_s": final.seconds,
        "n_gaussians": len(slam.backend),
        "n_keyframes": results[-1].num_keyframes,
        "lost_frames": sum(r.status.name == "LOST" for r in results),
        "mapping_jobs_skipped": slam.backend.stats.jobs_skipped,
        "mapping_keyframes_skipped": slam.backend.stats.keyframes_skipped,
        "realtime": realtime,
        "stage_ms_mean": {k: v / len(results) for k, v in stage_sums.items()},
        "mapping_stage_ms_mean": slam.backend.stats.stage_ms_mean(),
    }
    live, refined = results, slam.trajectory()[-len(results):]
    results = [dataclasses.replace(r, T_world_cam=pose) for r, (_, pose) in zip(live, refined)]
    metrics.update(trajectory_outputs(out_dir, results, gt_poses, live, gt_poses))
    exposures = slam.frame_exposures()[-len(results):]
    metrics.update(render_metrics(reader, slam, results, out_dir, eval_every, panels, exposures))
    slam.save_map(out_dir / "map.ply")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return RunReport(metrics, out_dir, results)


def write_trajectory(out_dir: Path, results, name: str = "trajectory.txt") -> None:
    from gs4_slam.metrics.trajectory import Trajectory, write_tum

    write_tum(out_dir / name, Trajectory.from_poses([r.timestamp_s for r in results],
                                                    [r.T_world_cam for r in results]))


def trajectory_outputs(out_dir: Path, results, gt_poses, live=None, live_gt_poses=None) -> dict:
    """Write ``trajectory.txt`` (and its plot) and, given ``live``, ``trajectory_live.txt``; their ATEs.

    ``results``: the output trajectory, every frame following its keyframe's refined
    pose (``ate_cm``); ``live``: the poses as tracked at the time, as a node publishes
    them (``ate_cm_live``).
    """
    write_trajectory(out_dir, results)
    metrics = trajectory_metrics(out_dir, results, gt_poses)
    if live is not None:
        write_trajectory(out_dir, live, "trajectory_live.txt")
        live_ate = trajectory_metrics(None, live, live_gt_poses)
        if "ate_cm" in live_ate:
            metrics["ate_cm_live"] = live_ate["ate_cm"]
    return metrics


def trajectory_metrics(out_dir: Path | None, results, gt_poses) -> dict:
    """ATE of ``results``' poses; with ``out_dir``, its plot too."""
    from gs4_slam.evaluate import plot_ate
    from gs4_slam.metrics.trajectory import Trajectory, ate

    have = [i for i, p in enumerate(gt_poses) if p is not None]
    if len(have) < 3:
        if out_dir is not None:
            log.info("no ground truth: ATE not computed")
        return {}
    est = Trajectory(np.array([results[i].timestamp_s for i in have]),
                     np.stack([results[i].T_world_cam.matrix for i in have]))
    gt = Trajectory(np.array([results[i].timestamp_s for i in have]), np.stack([gt_poses[i].matrix for i in have]))
    result = ate(est, gt)
    if out_dir is not None:
        plot_ate(result, out_dir / "trajectory.png", title=f"ATE RMSE {100 * result.rmse_m:.2f} cm")
    return {"ate_cm": 100.0 * result.rmse_m}


def render_metrics(reader, slam, results, out_dir: Path, eval_every: int, panels: int,
                   exposures: list | None = None) -> dict:
    """Render the final map at every ``eval_every``-th estimated pose and compare with the input.

    A frame whose colour was taken apart from its depth is rendered where the camera
    was at the colour's time (:func:`pose_at_color_time`): the trajectory holds the
    depth's times, and the input colour is what the map is compared with.
    ``exposures``: per frame, the exposure the final refinement fitted for it (or None),
    applied to the rendered colour; ``psnr_without_exposure`` is the PSNR without it.
    """
    import torch

    from gs4_slam.mapping.optimizer import apply_exposure
    from gs4_slam.metrics.image import depth_l1_cm, psnr, ssim
    from gs4_slam.mapping.semantic_fusion import rendered_classes
    from gs4_slam.metrics.semantic import ConfusionMatrix
    from gs4_slam.visualize import frame_panel, write_png

    indices = list(range(0, len(results), eval_every))
    panel_at = set(indices[:: max(1, len(indices) // max(panels, 1))][:panels])
    psnrs, psnrs_with_depth, ssims, depth_errors, psnrs_without_exposure = [], [], [], [], []
    confusion = ConfusionMatrix.empty(slam.label_set.num_classes)
    for i in indices:
        frame = slam.prepare(reader[i])
        pose = pose_at_color_time(results, i, frame.color_delay_s)
        with torch.no_grad():
            out = slam.render(pose, frame.intrinsics, ("color", "depth", "semantics", "alpha"))
        color = out.color.clamp(0, 1).cpu().numpy()
        psnrs_without_exposure.append(psnr(color, frame.color_rgb))
        if exposures is not None and exposures[i] is not None:
            color = apply_exposure(out.color, exposures[i]).clamp(0, 1).cpu().numpy()
        depth = out.depth.cpu().numpy()
        psnrs.append(psnr(color, frame.color_rgb))
        # Pixels without depth never get Gaussians (they render black); this figure
        # shows the map's quality where it can exist, beside the full-image PSNR.
        if (frame.depth_m > 0).any():
            psnrs_with_depth.append(psnr(color, frame.color_rgb, frame.depth_m > 0))
        ssims.append(ssim(color, frame.color_rgb.astype(np.float64) / 255.0))
        depth_errors.append(depth_l1_cm(depth, frame.depth_m))
        labels = None
        if out.semantics is not None and out.semantics.shape[-1] > 0:
            labels = rendered_classes(out.semantics, out.alpha)[0].cpu().numpy().astype(np.uint8)
            if frame.labels is not None:
                confusion.update(labels, frame.labels)
        if i in panel_at:
            panel = frame_panel(frame.color_rgb, frame.depth_m, frame.labels, color, depth, labels, slam.label_set)
            write_png(out_dir / "renders" / f"frame_{i:05d}.png", panel)
    metrics = {"psnr": float(np.mean(psnrs)), "psnr_pixels_with_depth": float(np.mean(psnrs_with_depth)) if psnrs_with_depth else float("nan"),
               "ssim": float(np.mean(ssims)),
               "depth_l1_cm": float(np.mean(depth_errors)), "eval_frames": len(indices),
               "psnr_without_exposure": float(np.mean(psnrs_without_exposure))}
    # Keyframes are what mapping optimises on; the other frames show how the map renders views it never
    # fitted. (A replay's poses come from the node's topics, which do not say which frames were keyframes.)
    not_keyframe = [not getattr(results[i], "is_keyframe", True) for i in indices]
    if any(not_keyframe):
        metrics["psnr_non_keyframes"] = float(np.mean(np.asarray(psnrs)[not_keyframe]))
    scores = confusion.scores()
    if scores.num_pixels:
        metrics["miou"] = 100.0 * scores.miou
    return metrics


def pose_at_color_time(results, i: int, color_delay_s: float, max_gap_s: float = 0.1):
    """``results[i]``'s pose moved to its colour image's time, ``color_delay_s`` after its depth's.

    Interpolated on the screw motion towards the neighbouring frame on the delay's
    side; the pose as is without such a neighbour within ``max_gap_s``.
    """
    from gs4_slam.camera import Pose
    from gs4_slam.tracking.lie import scaled_motion

    pose = results[i].T_world_cam
    j = i + 1 if color_delay_s > 0 else i - 1
    if color_delay_s == 0.0 or not 0 <= j < len(results):
        return pose
    dt_s = results[j].timestamp_s - results[i].timestamp_s
    if not 0.0 < abs(dt_s) <= max_gap_s:
        return pose
    return Pose(pose.matrix @ scaled_motion(pose.matrix, results[j].T_world_cam.matrix, color_delay_s / dt_s))


def _run(args: argparse.Namespace) -> int:
    from gs4_slam.datasets import open_dataset, options_from_args
    from gs4_slam.slam import Slam, load_slam_config

    reader = open_dataset(args.dataset, args.path, options_from_args(args))
    overrides: dict = {"predictor": {"use_baseline": True}} if args.baseline else {}
    if args.semantics:
        overrides["mapping"] = {"semantics": {"source": args.semantics}}
    slam = Slam(load_slam_config(*([args.config] if args.config else []), overrides=overrides or None))
    try:
        report = run_sequence(reader, slam, Path(args.out), eval_every=args.eval_every, progress=not args.no_progress,
                              realtime=args.realtime)
    finally:
        slam.close()
    for key, value in report.metrics.items():
        if not isinstance(value, dict):
            print(f"{key:<22} {value:.3f}" if isinstance(value, float) else f"{key:<22} {value}")
    print(f"outputs in {report.out_dir.resolve()}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from gs4_slam.datasets.args import KIND_NAMES, add_reader_arguments

    parser = subparsers.add_parser("run", help="run SLAM over a dataset folder and write map, trajectory, metrics")
    parser.add_argument("--dataset", choices=KIND_NAMES, default="auto", help="dataset layout (default: detect)")
    parser.add_argument("path", help="dataset folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--config", help="YAML overlay of the SLAM settings (default config/slam.yaml)")
    parser.add_argument("--baseline", action="store_true", help="non-learned predictor instead of the network")
    parser.add_argument("--semantics", choices=("predicted", "external", "both"),
                        help="class observations to fuse (mapping.semantics.source); external/both use the "
                             "dataset's label images as if they came from a 2D segmenter")
    parser.add_argument("--eval-every", type=int, default=5, help="evaluate renders on every N-th frame")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--realtime", action="store_true",
                        help="feed frames at the rate their timestamps say, as a live camera would (default: as fast "
                             "as the pipeline takes them)")
    add_reader_arguments(parser)
    parser.set_defaults(func=_run)
