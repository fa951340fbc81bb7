"""Few-iteration joint optimisation of Gaussians and keyframe poses (GS4's last stage).

When the keyframe policy fires, the Gaussians seen by a window of recent
keyframes and the poses of those keyframes (all but the oldest, which anchors
the gauge) take 1-5 Adam steps on 0.8·L1 + 0.2·(1−SSIM) + depth L1 through the
differentiable renderer. Afterwards floaters are removed: nearly transparent
Gaussians, oversized ones, and ones hanging in space that the keyframes see as
free (in front of the measured surface).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.gaussians import GaussianMap, GaussianSet
from gs4_slam.lie import se3_exp
from gs4_slam.losses import color_loss, depth_l1
from gs4_slam.render import render
from gs4_slam.render.projection import project_points

OPTIMISED_FIELDS = ("means", "log_scales", "quats", "opacity_logits", "sh_dc")


@dataclass(frozen=True)
class OptimizationConfig:
    iterations: int = 3  # per keyframe event (GS4: 1-5)
    window: int = 4  # keyframes optimised together
    optimize_poses: bool = True  # refine keyframe poses together with the Gaussians
    lr_means: float = 1e-3  # learning rate of the Gaussians' centres (metres)
    lr_log_scales: float = 5e-3  # learning rate of the Gaussians' log scales
    lr_quats: float = 1e-3  # learning rate of the Gaussians' rotations
    lr_opacity: float = 5e-2  # learning rate of the Gaussians' opacity logits
    lr_color: float = 5e-3  # learning rate of the Gaussians' colours (SH DC)
    #: Learning rate of the keyframe pose twists (m, rad). Adam moves every pose by
    #: about this much per iteration whatever the gradient, and the refined poses feed
    #: back to the tracker: 1e-3 raised TUM fr1/xyz ATE from 1.20 to 1.35 cm, 5e-5 kept it.
    lr_pose: float = 5e-5
    ssim_weight: float = 0.2  # weight of the (1 - SSIM) term in the colour loss
    depth_weight: float = 1.0  # weight of the depth L1 term relative to the colour term
    # Floater removal.
    min_opacity: float = 0.005
    max_scale_m: float = 0.3
    free_space_margin: float = 0.1  # fraction of the measured depth
    free_space_min_views: int = 2
    #: Older keyframes drawn at random into every window, poses fixed. The window
    #: alone only ever sees the latest views, so the rest of the map drifts from what
    #: earlier keyframes saw (MonoGS draws older keyframes in for the same reason).
    random_keyframes: int = 2
    stored_keyframes: int = 60  # older keyframes kept for that draw (a random one leaves when full)

    def __post_init__(self) -> None:
        if not 0 <= self.iterations <= 50:
            raise ValueError(f"optimization.iterations must be in 0..50, got {self.iterations}")
        if self.window < 1:
            raise ValueError(f"optimization.window must be >= 1, got {self.window}")
        if self.random_keyframes < 0 or self.stored_keyframes < self.random_keyframes:
            raise ValueError("optimization.random_keyframes must be >= 0 and stored_keyframes at least as many, "
                             f"got {self.random_keyframes} and {self.stored_keyframes}")


@dataclass
class KeyframeView:
    """What the optimiser needs of a keyframe."""

    keyframe_id: int
    color: Tensor  # [3, H, W] in [0, 1]
    depth_m: Tensor  # [H, W], 0 = invalid
    intrinsics: Intrinsics  # pinhole
    T_world_cam: Pose


class KeyframeMemory:
    """Keyframes that left the window, kept (bounded) to be drawn into later windows.

    Colour is stored as 8 bits per channel: at 320x240 a keyframe costs about
    0.5 MB, so the default 60 stay near 30 MB. When full, a random one leaves,
    so the kept ones stay spread over the whole run rather than its recent part.
    """

    def __init__(self, capacity: int, seed: int = 0) -> None:
        self.capacity = capacity
        self._views: list[KeyframeView] = []
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self._views)

    def add(self, view: KeyframeView) -> None:
        if self.capacity == 0:
            return
        if len(self._views) >= self.capacity:
            del self._views[int(self._rng.integers(len(self._views)))]
        self._views.append(dataclasses.replace(view, color=(view.color * 255.0).round().to(torch.uint8)))

    def set_pose(self, keyframe_id: int, T_world_cam: Pose) -> None:
        """Give a kept keyframe its refined pose (nothing if it is not kept)."""
        for i, view in enumerate(self._views):
            if view.keyframe_id == keyframe_id:
                self._views[i] = dataclasses.replace(view, T_world_cam=T_world_cam)

    def draw(self, count: int) -> list[KeyframeView]:
        """Up to ``count`` distinct keyframes at random, oldest first, colour back in [0, 1]."""
        count = min(count, len(self._views))
        if count == 0:
            return []
        picks = np.sort(self._rng.choice(len(self._views), count, replace=False))
        return [dataclasses.replace(self._views[i], color=self._views[i].color.float() / 255.0) for i in picks]


@dataclass
class OptimizationReport:
    iterations: int
    gaussians_optimised: int
    final_loss: float
    refined_poses: dict[int, Pose]
    indices: Tensor | None = None  # [K] map indices of the optimised Gaussians
    optimised: GaussianSet | None = None  # their new values, to be written into the map


def apply(gmap: GaussianMap, report: OptimizationReport) -> None:
    """Write an optimisation's results into the map (the caller holds the map's lock)."""
    if report.indices is None or report.optimised is None:
        return
    gmap.write(report.indices, report.optimised)
    gmap.mark_updated(report.indices)


def _visible_union(gmap: GaussianMap, views: list[KeyframeView]) -> Tensor:
    visible = torch.zeros(len(gmap), dtype=torch.bool, device=gmap.device)
    for view in views:
        with torch.no_grad():
            out = render(gmap, view.intrinsics, view.T_world_cam.inverse(), channels=("alpha",))
        visible |= out.visible
    return visible


def optimize_window(gmap: GaussianMap, views: list[KeyframeView], cfg: OptimizationConfig,
                    fixed_poses: int = 1) -> OptimizationReport:
    """Run ``cfg.iterations`` joint steps over ``views``; :func:`apply` writes the result into ``gmap``.

    Only reads ``gmap``, so readers of the map need not wait for the (long)
    optimisation; the short write-back is separate. The first ``fixed_poses``
    views keep their poses.
    """
    if cfg.iterations == 0 or not views or len(gmap) == 0:
        return OptimizationReport(0, 0, float("nan"), {})
    indices = torch.nonzero(_visible_union(gmap, views)).flatten()
    subset = gmap.as_set(indices)
    params = trainable_copy(subset)
    groups = param_groups(params, cfg)
    dtype, device = subset.dtype, subset.device
    # Fixed views (at least the window's oldest keyframe) anchor the gauge.
    twists = [torch.zeros(6, dtype=dtype, device=device, requires_grad=cfg.optimize_poses and i >= fixed_poses)
              for i in range(len(views))]
    if cfg.optimize_poses and len(views) > fixed_poses:
        groups.append({"params": twists[fixed_poses:], "lr": cfg.lr_pose})
    optimiser = torch.optim.Adam(groups, eps=1e-15)
    bases = [torch.as_tensor(np.array(v.T_world_cam.inverse().matrix), dtype=dtype, device=device) for v in views]
    loss_value = float("nan")
    for _ in range(cfg.iterations):
        optimiser.zero_grad(set_to_none=True)
        gaussians = with_params(subset, params)
        total = 0.0
        for view, twist, base in zip(views, twists, bases):
            total = total + view_loss(gaussians, view, se3_exp(twist) @ base, cfg) / len(views)
        total.backward()
        optimiser.step()
        loss_value = total.item()
    with torch.no_grad():
        params["quats"].data = torch.nn.functional.normalize(params["quats"].data, dim=1)
        optimised = with_params(subset, params).detach()
    refined = {view.keyframe_id: refined_pose(twist, base) for view, twist, base in zip(views, twists, bases)}
    return OptimizationReport(cfg.iterations, int(indices.numel()), loss_value, refined, indices, optimised)


def refined_pose(twist: Tensor, T_cam_world: Tensor) -> Pose:
    """T_world_cam of a view whose camera pose ``T_cam_world`` took the optimised ``twist`` (left-multiplied)."""
    return Pose(np.linalg.inv((se3_exp(twist.detach()) @ T_cam_world).double().cpu().numpy()))


def trainable_copy(subset: GaussianSet) -> dict[str, Tensor]:
    """The optimised fields of ``subset``, detached copies that take gradients."""
    return {name: getattr(subset, name).detach().clone().requires_grad_(True) for name in OPTIMISED_FIELDS}


def param_groups(params: dict[str, Tensor], cfg: OptimizationConfig) -> list[dict]:
    """Adam parameter groups of :func:`trainable_copy`'s tensors, each field at its learning rate."""
    return [
        {"params": [params["means"]], "lr": cfg.lr_means},
        {"params": [params["log_scales"]], "lr": cfg.lr_log_scales},
        {"params": [params["quats"]], "lr": cfg.lr_quats},
        {"params": [params["opacity_logits"]], "lr": cfg.lr_opacity},
        {"params": [params["sh_dc"]], "lr": cfg.lr_color},
    ]


def view_loss(gaussians: GaussianSet, view: KeyframeView, T_cam_world: Tensor, cfg: OptimizationConfig,
              exposure: Tensor | None = None) -> Tensor:
    """The keyframe loss on one view: 0.8·L1 + 0.2·(1−SSIM) of colour + depth L1.

    ``exposure``: the view's [6] affine colour correction (see :func:`apply_exposure`).
    """
    out = render(gaussians, view.intrinsics, T_cam_world, channels=("color", "depth"))
    color = out.color if exposure is None else apply_exposure(out.color, exposure)
    loss = color_loss(color.permute(2, 0, 1)[None], view.color[None], ssim_weight=cfg.ssim_weight)
    return loss + cfg.depth_weight * depth_l1(out.depth, view.depth_m)


def apply_exposure(color: Tensor, exposure: Tensor) -> Tensor:
    """``color`` [..., 3] as a camera with this exposure saw it: per channel, exp(gain) · colour + bias.

    ``exposure`` [6]: three log gains, three biases (zeros: unchanged).
    """
    exposure = torch.as_tensor(exposure, dtype=color.dtype, device=color.device)
    return color * torch.exp(exposure[:3]) + exposure[3:]


def with_params(subset: GaussianSet, params: dict[str, Tensor]) -> GaussianSet:
    return GaussianSet(
        means=params["means"],
        log_scales=params["log_scales"],
        quats=torch.nn.functional.normalize(params["quats"], dim=1),
        opacity_logits=params["opacity_logits"],
        sh_dc=params["sh_dc"],
        sh_rest=subset.sh_rest,
        semantics=subset.semantics,
        features=subset.features,
    )


def free_space_floaters(gmap: GaussianMap, views: list[KeyframeView], cfg: OptimizationConfig) -> Tensor:
    """[N] bool: Gaussians that at least ``free_space_min_views`` keyframes see in free space.

    A Gaussian is in free space for a keyframe when it projects inside the image
    onto a measured depth and lies in front of it by more than the margin: the
    sensor saw through the place where the Gaussian claims a surface.
    """
    votes = torch.zeros(len(gmap), dtype=torch.int32, device=gmap.device)
    means = gmap.means
    for view in views:
        T = torch.as_tensor(np.array(view.T_world_cam.inverse().matrix), dtype=means.dtype, device=means.device)
        u, v, z, inside = project_points(means, T, view.intrinsics)
        h, w = view.depth_m.shape
        measured = view.depth_m[v.clamp(0, h - 1), u.clamp(0, w - 1)]
        free = inside & (measured > 0) & (z < measured * (1.0 - cfg.free_space_margin))
        votes += free.to(torch.int32)
    return votes >= cfg.free_space_min_views


def remove_floaters(gmap: GaussianMap, views: list[KeyframeView], cfg: OptimizationConfig) -> int:
    """Prune transparent, oversized and free-space Gaussians; return how many went."""
    before = len(gmap)
    mask = free_space_floaters(gmap, views, cfg) if views else None
    gmap.prune(min_opacity=cfg.min_opacity, max_scale=cfg.max_scale_m, mask=mask)
    return before - len(gmap)
