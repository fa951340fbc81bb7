"""`gs4-slam eval`: trajectory accuracy of an estimate against ground truth (TUM files).

Prints ATE (after rigid Horn/Umeyama alignment) and RPE, and writes
``metrics.json`` and ``trajectory.png`` (top view of both trajectories and the
error over time) to the output folder.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# numpy, the metrics and matplotlib load inside the functions: `gs4-slam --help` stays instant.
if TYPE_CHECKING:
    from gs4_slam.metrics.trajectory import AteResult

_PLANES = {"xy": (0, 1), "xz": (0, 2), "yz": (1, 2)}


def evaluate_trajectory_files(
    est_path: str | Path,
    gt_path: str | Path,
    out_dir: str | Path | None = None,
    max_dt_s: float = 0.02,
    rpe_delta: int = 1,
    plane: str = "xy",
    with_scale: bool = False,
) -> dict:
    """ATE and RPE of the TUM-format estimate against the ground truth.

    Args:
        est_path, gt_path: TUM trajectory files.
        out_dir: where metrics.json and trajectory.png go; None writes nothing.
        max_dt_s: timestamp association threshold.
        rpe_delta: RPE pose-pair distance in associated frames.
        plane: the two world axes of the top view ("xy", "xz" or "yz").
        with_scale: also align scale (for monocular estimates).

    Returns:
        The metrics as a JSON-serialisable dict.

    Raises:
        TrajectoryError: a file is missing or invalid, or too few poses associate.
    """
    from gs4_slam.metrics.trajectory import ate, read_tum, rpe

    estimate, ground_truth = read_tum(est_path), read_tum(gt_path)
    ate_result = ate(estimate, ground_truth, max_dt_s=max_dt_s, with_scale=with_scale)
    rpe_result = rpe(estimate, ground_truth, max_dt_s=max_dt_s, delta=rpe_delta)
    metrics = {
        "estimate": str(est_path),
        "ground_truth": str(gt_path),
        "num_estimated": len(estimate),
        "num_ground_truth": len(ground_truth),
        "num_pairs": ate_result.num_pairs,
        "ate_rmse_m": ate_result.rmse_m,
        "ate_mean_m": ate_result.mean_m,
        "ate_median_m": ate_result.median_m,
        "ate_std_m": ate_result.std_m,
        "ate_max_m": ate_result.max_m,
        "alignment_scale": ate_result.scale,
        "rpe_delta_frames": rpe_delta,
        "rpe_trans_rmse_m": rpe_result.trans_rmse_m,
        "rpe_rot_rmse_deg": rpe_result.rot_rmse_deg,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        plot_path = out / "trajectory.png"
        plot_ate(ate_result, plot_path, plane=plane, title=Path(est_path).name)
        metrics["plot"] = str(plot_path)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def plot_ate(result: AteResult, path: str | Path, plane: str = "xy", title: str = "") -> None:
    """PNG: top view of ground truth and aligned estimate, and the error over time."""
    # The object-oriented API with the Agg canvas: no pyplot, no global backend state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if plane not in _PLANES:
        raise ValueError(f"plane must be one of {sorted(_PLANES)}, got {plane!r}")
    a, b = _PLANES[plane]
    fig = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    top, err = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    gt, est = result.gt_xyz, result.est_aligned_xyz
    step = max(len(gt) // 60, 1)
    for k in range(0, len(gt), step):
        top.plot([gt[k, a], est[k, a]], [gt[k, b], est[k, b]], color="tab:red", alpha=0.35, linewidth=0.8)
    top.plot(gt[:, a], gt[:, b], color="black", linewidth=1.5, label="ground truth")
    top.plot(est[:, a], est[:, b], color="tab:blue", linewidth=1.2, label="estimate (aligned)")
    top.scatter(gt[:1, a], gt[:1, b], color="black", marker="o", zorder=3, label="start")
    top.set_xlabel(f"{plane[0]} [m]")
    top.set_ylabel(f"{plane[1]} [m]")
    top.set_aspect("equal", adjustable="datalim")
    top.legend(loc="best", fontsize=8)
    top.set_title(f"top view ({plane})")
    time_s = result.timestamps_s - result.timestamps_s[0]
    err.plot(time_s, result.errors_m * 100.0, color="tab:red", linewidth=1.0)
    err.axhline(result.rmse_m * 100.0, color="gray", linestyle="--", label=f"RMSE {result.rmse_m * 100:.2f} cm")
    err.set_xlabel("time [s]")
    err.set_ylabel("position error [cm]")
    err.set_title("absolute trajectory error")
    err.legend(loc="best", fontsize=8)
    err.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(str(path))


def _print_metrics(metrics: dict) -> None:
    counts = f"estimate {metrics['num_estimated']}, ground truth {metrics['num_ground_truth']}"
    print(f"pairs        {metrics['num_pairs']} ({counts})")
    print(f"ATE RMSE     {metrics['ate_rmse_m'] * 100:.3f} cm")
    print(
        f"ATE mean     {metrics['ate_mean_m'] * 100:.3f} cm   median {metrics['ate_median_m'] * 100:.3f} cm   "
        f"max {metrics['ate_max_m'] * 100:.3f} cm"
    )
    if not math.isclose(metrics["alignment_scale"], 1.0, abs_tol=1e-9):
        print(f"scale        {metrics['alignment_scale']:.4f}")
    print(f"RPE trans    {metrics['rpe_trans_rmse_m'] * 100:.3f} cm (RMSE per {metrics['rpe_delta_frames']} frame(s))")
    print(f"RPE rot      {metrics['rpe_rot_rmse_deg']:.3f} deg")


def _run(args: argparse.Namespace) -> int:
    from gs4_slam.metrics.trajectory import TrajectoryError

    try:
        metrics = evaluate_trajectory_files(
            args.est,
            args.gt,
            args.out,
            max_dt_s=args.max_dt,
            rpe_delta=args.delta,
            plane=args.plane,
            with_scale=args.scale,
        )
    except (TrajectoryError, ValueError) as exc:
        print(f"gs4-slam eval: {exc}", file=sys.stderr)
        return 1
    _print_metrics(metrics)
    if args.out is not None:
        print(f"plot and metrics.json in {Path(args.out).resolve()}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="ATE/RPE of an estimated trajectory against ground truth (TUM format)",
        description="Associate poses by timestamp, align rigidly (Horn/Umeyama, no scale) and report "
        "ATE and RPE; writes a plot (top view, error over time) and metrics.json.",
    )
    parser.add_argument("--est", required=True, help="estimated trajectory, TUM format")
    parser.add_argument("--gt", required=True, help="ground-truth trajectory, TUM format")
    parser.add_argument(
        "--out", default="output/eval", help="folder for trajectory.png and metrics.json (default output/eval)"
    )
    parser.add_argument("--max-dt", type=float, default=0.02, help="association threshold in seconds (default 0.02)")
    parser.add_argument("--delta", type=int, default=1, help="RPE pair distance in frames (default 1)")
    parser.add_argument("--plane", choices=sorted(_PLANES), default="xy", help="axes of the top view (default xy)")
    parser.add_argument("--scale", action="store_true", help="also align scale (monocular estimates)")
    parser.set_defaults(func=_run)
