"""Evaluation metrics: trajectories (ATE, RPE), images (PSNR, SSIM, depth L1), semantics (mIoU)."""

from gs4_slam.metrics.image import depth_l1_cm, psnr, ssim, ssim_map
from gs4_slam.metrics.semantic import ConfusionMatrix, SemanticScores
from gs4_slam.metrics.trajectory import (
    AteResult,
    RpeResult,
    Trajectory,
    TrajectoryError,
    associate,
    associate_trajectories,
    ate,
    read_tum,
    rpe,
    umeyama_alignment,
    write_tum,
)

__all__ = [
    "AteResult",
    "ConfusionMatrix",
    "RpeResult",
    "SemanticScores",
    "Trajectory",
    "TrajectoryError",
    "associate",
    "associate_trajectories",
    "ate",
    "depth_l1_cm",
    "psnr",
    "read_tum",
    "rpe",
    "ssim",
    "ssim_map",
    "umeyama_alignment",
    "write_tum",
]
