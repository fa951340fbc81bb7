"""Quality of a predictor (network or baseline): render its Gaussians and compare.

Shared by the training command (held-out figures in the weights card) and
``python -m bench.predictor``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.frame import IGNORE_LABEL, Frame
from gs4_slam.gaussians import GaussianSet
from gs4_slam.metrics.image import depth_l1_cm, psnr
from gs4_slam.metrics.semantic import ConfusionMatrix
from gs4_slam.render import render
from gs4_slam.render.projection import project_points

RENDER_CHANNELS = ("color", "depth", "alpha", "semantics")


def covisible_mask(
    depth_view_m: Tensor,  # [H, W] depth of the view to be rendered
    T_world_view: Tensor,  # [4, 4]
    depth_source_m: Tensor,  # [H, W] depth of the frame the Gaussians come from
    T_world_source: Tensor,  # [4, 4]
    intrinsics: Intrinsics,
    relative_tolerance: float = 0.05,
) -> Tensor:
    """[H, W] bool: pixels of the view whose surface the source frame also sees.

    Each pixel with depth is back-projected, moved into the source camera and
    projected there; it counts when it lands inside the image on a measured
    depth that agrees (not occluded in, and not missing from, the source view).
    """
    h, w = depth_view_m.shape
    dtype, device = depth_view_m.dtype, depth_view_m.device
    v, u = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                          torch.arange(w, device=device, dtype=dtype), indexing="ij")
    z = depth_view_m
    points_view = torch.stack([(u - intrinsics.cx) / intrinsics.fx * z, (v - intrinsics.cy) / intrinsics.fy * z, z], -1)
    T_source_view = torch.linalg.inv(T_world_source) @ T_world_view
    u_src, v_src, z_src, inside = project_points(points_view.reshape(-1, 3), T_source_view, intrinsics)
    inside = inside & (z.reshape(-1) > 0)
    sampled = torch.zeros_like(z_src)
    sampled[inside] = depth_source_m[v_src[inside], u_src[inside]]
    agrees = (sampled > 0) & ((sampled - z_src).abs() <= relative_tolerance * z_src)
    return (inside & agrees).reshape(h, w)


def render_views(gaussians: GaussianSet, intrinsics: Intrinsics, T_world_cam: Tensor) -> dict[str, Tensor]:
    out = render(gaussians, intrinsics, torch.linalg.inv(T_world_cam), channels=RENDER_CHANNELS)
    return {"color": out.color, "depth": out.depth, "alpha": out.alpha, "semantics": out.semantics}


@dataclass
class QualityAccumulator:
    """Running sums of the figures over evaluated frames."""

    num_classes: int

    def __post_init__(self) -> None:
        self.psnr_own: list[float] = []
        self.psnr_own_with_depth: list[float] = []
        self.depth_l1_cm: list[float] = []
        self.psnr_novel: list[float] = []
        self.confusion = ConfusionMatrix.empty(self.num_classes, ignore_label=IGNORE_LABEL)

    def add_own(self, rendered: dict[str, Tensor], frame: Frame) -> None:
        color = rendered["color"].detach().clamp(0, 1).cpu().numpy()
        target = frame.color_rgb.astype(np.float64) / 255.0
        self.psnr_own.append(psnr(color, target))
        has_depth = np.nan_to_num(frame.depth_m) > 0
        if has_depth.any():  # the only pixels that can get a Gaussian
            self.psnr_own_with_depth.append(psnr(color, target, mask=has_depth))
        self.depth_l1_cm.append(depth_l1_cm(rendered["depth"].detach().cpu().numpy(), frame.depth_m))
        if frame.labels is not None and rendered["semantics"] is not None:
            predicted = rendered["semantics"].detach().argmax(dim=-1).cpu().numpy().astype(np.uint8)
            self.confusion.update(predicted, frame.labels)

    def add_novel(self, rendered: dict[str, Tensor], frame: Frame, mask: np.ndarray) -> None:
        if mask.sum() < 0.05 * mask.size:
            return  # too little overlap to say anything about this pair
        color = rendered["color"].detach().clamp(0, 1).cpu().numpy()
        self.psnr_novel.append(psnr(color, frame.color_rgb.astype(np.float64) / 255.0, mask=mask))

    def summary(self) -> dict[str, float]:
        out = {
            "psnr": float(np.mean(self.psnr_own)) if self.psnr_own else float("nan"),
            "psnr_with_depth": float(np.mean(self.psnr_own_with_depth)) if self.psnr_own_with_depth else float("nan"),
            "depth_l1_cm": float(np.mean(self.depth_l1_cm)) if self.depth_l1_cm else float("nan"),
            "psnr_novel": float(np.mean(self.psnr_novel)) if self.psnr_novel else float("nan"),
            "frames": len(self.psnr_own),
        }
        scores = self.confusion.scores()
        if scores.num_pixels > 0:
            out["miou"] = 100.0 * scores.miou
            out["per_class_iou"] = [None if np.isnan(x) else round(100.0 * float(x), 2) for x in scores.iou]
        return out


def evaluate_frames(predict, frames: list[Frame], novel_frames: list[Frame | None], num_classes: int) -> dict:
    """Figures of ``predict(frame, pose) -> GaussianSet`` over frames (and their novel views)."""
    acc = QualityAccumulator(num_classes)
    for frame, novel in zip(frames, novel_frames):
        pose = frame.T_world_cam_gt or Pose.identity()
        gaussians = predict(frame, pose)
        intrinsics = frame.intrinsics.without_distortion()
        T_world_cam = torch.tensor(pose.matrix, dtype=torch.float32)
        with torch.no_grad():
            acc.add_own(render_views(gaussians, intrinsics, T_world_cam), frame)
            if novel is not None and novel.T_world_cam_gt is not None:
                T_world_novel = torch.tensor(novel.T_world_cam_gt.matrix, dtype=torch.float32)
                mask = covisible_mask(torch.from_numpy(novel.depth_m), T_world_novel,
                                      torch.from_numpy(frame.depth_m), T_world_cam, intrinsics)
                acc.add_novel(render_views(gaussians, intrinsics, T_world_novel), novel, mask.numpy())
    return acc.summary()
