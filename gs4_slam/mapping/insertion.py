"""Which predicted Gaussians are new to the map.

The map is rendered (silhouette and depth) at the frame's pose; a candidate is
added only where the map is still empty there, or where the candidate's surface
lies in front of the mapped one by more than a depth tolerance (something the
map has not seen, e.g. an object that appeared or was hidden before).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gs4_slam.camera import Intrinsics
from gs4_slam.gaussians import GaussianSet
from gs4_slam.render.projection import project_points


@dataclass(frozen=True)
class InsertionConfig:
    #: Below this map silhouette a pixel counts as unmapped.
    alpha_threshold: float = 0.5
    #: A candidate this far (fraction of its depth) in front of the map is new.
    depth_tolerance: float = 0.05


def select_new(
    candidates: GaussianSet,
    T_cam_world: Tensor,  # [4, 4]
    intrinsics: Intrinsics,
    map_alpha: Tensor,  # [H, W] silhouette of the map at this pose
    map_depth_m: Tensor,  # [H, W] expected depth of the map, normalised by alpha
    config: InsertionConfig,
) -> Tensor:
    """[N] bool: candidates to add."""
    u, v, z, inside = project_points(candidates.means, T_cam_world, intrinsics)
    h, w = map_alpha.shape
    # Candidates that project outside the image come from its border pixels
    # (sub-pixel offsets); treat them as unmapped there.
    uc, vc = u.clamp(0, w - 1), v.clamp(0, h - 1)
    alpha = torch.where(inside, map_alpha[vc, uc], torch.zeros_like(z))
    mapped_depth = map_depth_m[vc, uc]
    empty = alpha < config.alpha_threshold
    in_front_of_map = z < mapped_depth * (1.0 - config.depth_tolerance)
    return empty | in_front_of_map
