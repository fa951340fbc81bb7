"""Error-driven densification: finer Gaussians where the map renders the frame badly.

At stride 8 a frame gives ~1,200 Gaussians, which renders a cluttered real scene
(TUM's desk) as a blur, and insertion only fills where the map is *empty*. On
keyframes the map is rendered at the frame's pose; wherever the colour error,
pooled over ``stride`` x ``stride`` blocks, exceeds ``min_color_error`` (when
``enabled``), or the rendered classes contradict an external label image on at
least ``min_label_error`` of the block's labelled pixels (``label_errors``: thin
objects lose their borders at stride 8), and the block has depth, a non-learned
Gaussian (pooled colour at the measured depth,
isotropic footprint scale: the Prediction Model's baseline at the finer stride)
is added. The worst blocks go first, up to ``max_per_frame``. Their classes come
from semantic fusion (they start with a uniform distribution and no evidence), and
the keyframe's joint optimisation refines them with the rest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.frame import IGNORE_LABEL
from gs4_slam.gaussians import GaussianSet
from gs4_slam.predictor.decode import DecodeConfig, baseline_tokens, decode_image, pool_tokens
from gs4_slam.render.projection import project_points


@dataclass(frozen=True)
class DensifyConfig:
    enabled: bool = False  # add finer Gaussians where the map renders a keyframe's colours badly (README: measured effect)
    label_errors: bool = True  # also where its rendered classes contradict an external label image (fused labels only)
    stride: int = 4  # block size (pixels) of the added Gaussians: 2, 4 or 8
    min_color_error: float = 0.08  # mean absolute colour error (0..1) of a block that gets one
    min_label_error: float = 0.5  # fraction of a block's labelled pixels rendered as another class, for one
    max_per_frame: int = 1500  # at most this many per keyframe (worst blocks first)

    def active(self, has_labels: bool) -> bool:
        return self.enabled or (self.label_errors and has_labels)

    def __post_init__(self) -> None:
        if self.stride not in (2, 4, 8):
            raise ValueError(f"mapping.densify.stride must be 2, 4 or 8, got {self.stride}")
        if self.max_per_frame < 0:
            raise ValueError(f"mapping.densify.max_per_frame must be >= 0, got {self.max_per_frame}")


def block_errors(rendered_rgb: Tensor | None, color: Tensor, rendered_labels: Tensor | None, labels: Tensor | None,
                 config: DensifyConfig) -> Tensor:
    """[H/s, W/s] how badly each block renders, in units of its threshold (> 1: densify).

    Colour: mean absolute error over ``min_color_error`` (when ``rendered_rgb`` is given).
    Labels: the fraction of the block's labelled pixels whose rendered class differs,
    over ``min_label_error`` (when both label images are given; ``labels`` uses
    IGNORE_LABEL for unlabelled pixels).
    """
    s = config.stride
    h, w = color.shape[-2:]
    score = color.new_zeros(h // s, w // s)
    if rendered_rgb is not None:
        error = F.avg_pool2d((rendered_rgb - color).abs().mean(dim=0)[None, None], s)[0, 0]
        score = torch.maximum(score, error / config.min_color_error)
    if rendered_labels is not None and labels is not None:
        labelled = (labels != IGNORE_LABEL).to(color.dtype)
        wrong = (rendered_labels != labels.long()).to(color.dtype) * labelled
        fraction = F.avg_pool2d(wrong[None, None], s)[0, 0] / F.avg_pool2d(labelled[None, None], s)[0, 0].clamp(min=1e-6)
        score = torch.maximum(score, fraction / config.min_label_error)
    return score


def densify(block_score: Tensor, color: Tensor, depth_m: Tensor, intrinsics: Intrinsics, T_world_cam: Pose,
            num_classes: int, feature_dim: int, config: DensifyConfig) -> GaussianSet:
    """Gaussians for the badly rendered blocks of a frame.

    Args:
        block_score: [H/s, W/s] from :func:`block_errors`; blocks above 1 get a Gaussian.
        color: [3, H, W] the frame, in [0, 1].
        depth_m: [H, W] its depth (0 = none).
    """
    s = config.stride
    rgb, depth = color[None], depth_m[None, None]
    grid = pool_tokens(rgb, depth, s, DecodeConfig.min_valid_fraction)
    tokens = baseline_tokens(grid, num_classes, feature_dim)
    candidates = decode_image(tokens, grid, 0, intrinsics, T_world_cam.matrix, DecodeConfig())
    if len(candidates) == 0 or config.max_per_frame == 0:
        return candidates.index(torch.zeros(0, dtype=torch.long, device=color.device))
    T_cam_world = torch.as_tensor(np.array(T_world_cam.inverse().matrix), dtype=color.dtype, device=color.device)
    u, v, _, inside = project_points(candidates.means, T_cam_world, intrinsics)
    rows, cols = (v // s).clamp(0, block_score.shape[0] - 1), (u // s).clamp(0, block_score.shape[1] - 1)
    block_error = torch.where(inside, block_score[rows, cols], torch.zeros_like(u, dtype=block_score.dtype))
    wanted = torch.nonzero(block_error > 1.0).flatten()
    if wanted.numel() > config.max_per_frame:
        wanted = wanted[torch.topk(block_error[wanted], config.max_per_frame).indices]
    return candidates.index(wanted)
