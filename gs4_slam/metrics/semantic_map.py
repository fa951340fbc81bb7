"""Semantic quality of a map: mIoU of its rendered class views, and multi-view consistency.

``render_label_views`` renders the map's fused class distributions into given
camera poses (argmax, ignore where the map does not cover the pixel);
``multiview_consistency`` asks, for every Gaussian seen in two or more views
(its centre on the measured surface there), whether the class at its pixel is
the same in all of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.frame import IGNORE_LABEL
from gs4_slam.gaussians import GaussianSet
from gs4_slam.mapping.semantic_fusion import rendered_classes
from gs4_slam.metrics.semantic import ConfusionMatrix
from gs4_slam.render import render
from gs4_slam.render.projection import project_points


@dataclass
class LabelView:
    """One view's class image [H, W] (ignore = unknown) with the depth that decides visibility."""

    labels: Tensor  # int64 [H, W]
    depth_m: Tensor  # [H, W], 0 = no depth
    intrinsics: Intrinsics
    T_world_cam: Pose


def render_labels(gaussians: GaussianSet, intrinsics: Intrinsics, T_world_cam: Pose) -> Tensor:
    """Argmax class [H, W] of the Gaussians' class distributions rendered at a pose."""
    with torch.no_grad():
        out = render(gaussians, intrinsics, T_world_cam.inverse(), channels=("semantics", "alpha"))
    return rendered_classes(out.semantics, out.alpha)[0]


def confusion_of_views(predicted: list[np.ndarray], truth: list[np.ndarray], num_classes: int) -> ConfusionMatrix:
    confusion = ConfusionMatrix.empty(num_classes)
    for pred, gt in zip(predicted, truth):
        confusion.update(np.asarray(pred).astype(np.int64), np.asarray(gt).astype(np.int64))
    return confusion


def multiview_consistency(gaussians: GaussianSet, views: list[LabelView], depth_tolerance: float = 0.1,
                          min_views: int = 2) -> tuple[float, int]:
    """(fraction of Gaussians seen in >= ``min_views`` views with one class in all, how many were seen that often)."""
    means = gaussians.means.detach().float().cpu()
    seen_labels = torch.full((len(views), len(means)), -1, dtype=torch.int64)
    for v, view in enumerate(views):
        T_cam_world = torch.as_tensor(np.array(view.T_world_cam.inverse().matrix), dtype=torch.float32)
        u, px_v, z, inside = project_points(means, T_cam_world, view.intrinsics)
        h, w = view.depth_m.shape
        uc, vc = u.clamp(0, w - 1), px_v.clamp(0, h - 1)
        measured = view.depth_m[vc, uc]
        label = view.labels[vc, uc]
        visible = inside & (measured > 0) & ((z - measured).abs() <= depth_tolerance * measured)
        visible &= label != IGNORE_LABEL
        seen_labels[v] = torch.where(visible, label, torch.full_like(label, -1))
    seen = seen_labels >= 0
    counted = seen.sum(dim=0) >= min_views
    if not bool(counted.any()):
        return float("nan"), 0
    big = torch.iinfo(torch.int64).max
    lowest = torch.where(seen, seen_labels, torch.full_like(seen_labels, big)).min(dim=0).values
    highest = seen_labels.max(dim=0).values
    consistent = (lowest == highest) & counted
    return float(consistent.sum()) / float(counted.sum()), int(counted.sum())
