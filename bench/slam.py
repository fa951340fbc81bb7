"""The whole SLAM pipeline on a real sequence, with GS4's ablation, in one run.

    python -m bench.slam --data ../shared/data/tum_fr1_xyz [--limit N] [--baseline] [--rows 0,7] [--realtime]
                         [--inline]

Every frame at 320x240 on the CPU, mapping in its background thread (the real-time
mode). Rows: the full system (config/slam.yaml), then the ablation — prediction
only (no refinement, no joint optimisation, no pruning), + refinement network,
+ 1 iteration, + 5 iterations, + pruning, all without the final refinement —
then the full system without the final refinement after the last frame, with the
non-learned refinement baseline (insert-only + opacity pruning), without the
keyframe pose feedback, with frame-to-model tracking, and with the keyframe
poses fixed in the final refinement, and without its exposure fit; last, the
baseline without the final refinement (row 6's pair), and the full system mapping every
frame at its depth's time instead of its colour's. ATE over all frames (rigid alignment) of the
output trajectory (each frame following its keyframe's refined pose) and of the
poses as tracked at the time ("live", what a node publishes), PSNR/SSIM/depth L1 of the final map rendered at every
5th estimated pose (moved to its colour image's time; each with its keyframe's exposure from the final refinement;
"no exp." without it; and PSNR on those that are not keyframes), Gaussians,
end-to-end frames/s (the final refinement included) and while streaming. Outputs of each row go to
build/bench/slam/<row>/. Last line: one JSON object (full system: ate_cm, psnr,
n_gaussians, fps). With --realtime, frames arrive at the sequence's own 30 Hz, as from a
live camera, instead of as fast as the pipeline takes them. With --inline, mapping runs
in the frame loop instead of its thread: slower, but no job is skipped for timing, so two
rows differ only by their settings (a side-by-side without the threads' run-to-run noise).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "tum_fr1_xyz"

# (row name, overrides of config/slam.yaml): the full system, GS4's ablation (each
# row adds one stage to the one before), the non-learned refinement baseline
# (insert-only + opacity pruning) side by side with the full system, and the
# full system with frame-to-model tracking or without the pose feedback.
# The ablation rows are GS4's stages while frames stream, so they leave out the final
# refinement after the last frame; the full-system rows include it, and one row without.
_NO_REFINE = {"enabled": False, "merge": False, "prune": False}
_STREAMING = {"final_refinement": {"steps": 0}}
ROWS: tuple[tuple[str, dict], ...] = (
    ("full", {}),
    ("prediction only", {"mapping": {"prune": False, "refinement": _NO_REFINE, "optimization": {"iterations": 0},
                                     **_STREAMING}}),
    ("+ refinement", {"mapping": {"prune": False, "refinement": {"prune": False}, "optimization": {"iterations": 0},
                                  **_STREAMING}}),
    ("+ 1 iteration", {"mapping": {"prune": False, "refinement": {"prune": False}, "optimization": {"iterations": 1},
                                   **_STREAMING}}),
    ("+ 5 iterations", {"mapping": {"prune": False, "refinement": {"prune": False}, "optimization": {"iterations": 5},
                                    **_STREAMING}}),
    ("+ pruning", {"mapping": {"optimization": {"iterations": 5}, **_STREAMING}}),
    ("full, no final refinement", {"mapping": _STREAMING}),
    ("full, insert-only baseline", {"mapping": {"refinement": {"enabled": False, "merge": False}}}),
    ("full, no pose feedback", {"use_refined_keyframe_poses": False}),
    ("full, frame-to-model tracking", {"track_against_map": True}),
    ("full, final poses fixed", {"mapping": {"final_refinement": {"lr_pose": 0.0}}}),
    ("full, no exposure fit", {"mapping": {"final_refinement": {"lr_exposure": 0.0}}}),
    # Row 6's pair: the refiner against its baseline on the streamed map alone, before
    # the final refinement's densification adds most of the Gaussians.
    ("no final refinement, baseline", {"mapping": {"refinement": {"enabled": False, "merge": False}, **_STREAMING}}),
    ("full, mapped at depth time", {"map_at_color_time": False}),
)


def _merge(a: dict, b: dict) -> dict:
    from gs4_slam.config import merge

    return merge(a, b)


def _output_folder(args: argparse.Namespace) -> str:
    return "slam_realtime" if args.realtime else "slam_inline" if args.inline else "slam"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="TUM RGB-D sequence folder")
    parser.add_argument("--limit", type=int, default=None, help="first N frames only (quick look)")
    parser.add_argument("--baseline", action="store_true", help="non-learned predictor in every row")
    parser.add_argument("--rows", default="all", help="comma-separated row numbers (0 = full), default all")
    parser.add_argument("--realtime", action="store_true",
                        help="frames at the sequence's own rate (30 Hz), as a live camera delivers them; frames/s is "
                             "then capped by that rate")
    parser.add_argument("--inline", action="store_true",
                        help="mapping in the frame loop (mapping.threaded false): repeatable side-by-side rows, "
                             "not real time")
    args = parser.parse_args(argv)
    if args.inline and args.realtime:
        parser.error("--inline and --realtime exclude each other: inline mapping cannot keep a live camera's rate")
    if not args.data.is_dir():
        print(f"dataset folder {args.data} not found: nothing to benchmark (pass --data)")
        return 0

    from gs4_slam.datasets import open_dataset
    from gs4_slam.run_command import run_sequence
    from gs4_slam.slam import Slam, load_slam_config

    rows = ROWS if args.rows == "all" else [ROWS[int(i)] for i in args.rows.split(",")]
    base = {"predictor": {"use_baseline": True}} if args.baseline else {}
    if args.inline:
        base = _merge(base, {"mapping": {"threaded": False}})
    results = []
    for name, overrides in rows:
        reader = open_dataset("tum", args.data, limit=args.limit)
        slam = Slam(load_slam_config(overrides=_merge(base, overrides)))
        out_dir = REPO_ROOT / "build" / "bench" / _output_folder(args) / \
            name.replace(" ", "_").replace(",", "").replace("+", "plus")
        try:
            report = run_sequence(reader, slam, out_dir, progress=False, realtime=args.realtime)
        finally:
            slam.close()
        results.append((name, report.metrics))
        m = report.metrics
        print(f"done: {name:<32} ATE {m.get('ate_cm', float('nan')):.2f} cm, PSNR {m['psnr']:.2f} dB, "
              f"{m['n_gaussians']} Gaussians, {m['fps']:.1f} frames/s", flush=True)

    print()
    print(f"{'configuration':<32} {'ATE cm':>7} {'live':>5} {'PSNR dB':>8} {'no exp.':>8} {'w/ depth':>9} {'non-kf':>7} {'SSIM':>6} "
          f"{'depth cm':>9} {'Gaussians':>10} {'frames/s':>9} {'streaming':>10} {'final s':>8} {'skipped':>8} "
          f"{'kf skipped':>10}")
    for name, m in results:
        print(f"{name:<32} {m.get('ate_cm', float('nan')):>7.2f} {m.get('ate_cm_live', float('nan')):>5.2f} "
              f"{m['psnr']:>8.2f} {m['psnr_without_exposure']:>8.2f} "
              f"{m['psnr_pixels_with_depth']:>9.2f} {m.get('psnr_non_keyframes', float('nan')):>7.2f} {m['ssim']:>6.3f} "
              f"{m['depth_l1_cm']:>9.2f} {m['n_gaussians']:>10} {m['fps']:>9.1f} {m['fps_streaming']:>10.1f} "
              f"{m['final_refinement_s']:>8.1f} {m['mapping_jobs_skipped']:>8} {m['mapping_keyframes_skipped']:>10}")
    full = dict(results[0][1])
    stage = full.pop("stage_ms_mean", {})
    mapping_stage = full.pop("mapping_stage_ms_mean", {})
    print("full system, mean ms per frame: " + ", ".join(f"{k} {v:.1f}" for k, v in stage.items()))
    print("full system, mapping thread, mean ms per job that ran the stage: "
          + ", ".join(f"{k} {v:.1f}" for k, v in mapping_stage.items()))
    summary = {"ate_cm": full.get("ate_cm"), "ate_cm_live": full.get("ate_cm_live"), "psnr": full["psnr"], "n_gaussians": full["n_gaussians"],
               "psnr_without_exposure": full["psnr_without_exposure"],
               "psnr_pixels_with_depth": full["psnr_pixels_with_depth"], "psnr_non_keyframes": full.get("psnr_non_keyframes"),
               "fps_streaming": full["fps_streaming"], "final_refinement_s": full["final_refinement_s"],
               "fps": full["fps"], "ssim": full["ssim"], "depth_l1_cm": full["depth_l1_cm"],
               "frames": full["frames"], "predictor": "baseline" if args.baseline else "network",
               "mapping": "inline" if args.inline else "threaded"}
    for name, m in results[1:]:
        key = name.replace(" ", "_").replace(",", "").replace("+", "plus").replace("-", "_")
        summary[f"{key}_ate_cm"] = m.get("ate_cm")
        summary[f"{key}_psnr"] = m["psnr"]
        summary[f"{key}_n_gaussians"] = m["n_gaussians"]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
