"""Final refinement: more optimisation of the whole map once the last frame is in.

While frames arrive, a keyframe gets 1-5 joint iterations on a small window,
because mapping shares the CPU with tracking. After the last frame nothing
competes for it, so the map can take many more Adam steps (the same loss),
each on one stored keyframe drawn at random, before it is evaluated or saved
(MonoGS refines its map at the end of a run for the same reason). With
``lr_pose`` the stored keyframes' poses take the steps too (the oldest anchors
the gauge), and :meth:`gs4_slam.slam.Slam.trajectory` moves every frame with the
keyframe it was tracked against. The steps are few enough to keep a whole run
above real time on two CPU cores; ``steps: 0`` turns it off. Gaussians left
nearly transparent are pruned afterwards.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from gs4_slam.camera import Pose
from gs4_slam.gaussians import GaussianMap, GaussianSet
from gs4_slam.lie import se3_exp
from gs4_slam.mapping.densify import DensifyConfig, block_errors, densify
from gs4_slam.mapping.optimizer import (KeyframeView, OptimizationConfig, param_groups, refined_pose, trainable_copy,
                                        view_loss, with_params)
from gs4_slam.render import render
from gs4_slam.render.projection import project_points

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinalRefinementConfig:
    steps: int = 0  # Adam steps after the last frame, one stored keyframe each (0: off)
    #: Stop early after this long (0: no limit): a large map's steps are slower, and a
    #: save that waits on them must still answer within the node's service timeout.
    max_s: float = 60.0
    seed: int = 0  # of the keyframe draw, so a run's refinement is repeatable
    #: First add up to this many finer Gaussians per stored keyframe where the map
    #: renders it badly (``mapping.densify``'s test and stride; 0: none). Their classes
    #: are what the map renders there, as no class observation follows.
    densify_per_keyframe: int = 0
    #: Learning rate of the stored keyframes' pose twists (m, rad; 0: poses fixed). The
    #: oldest stored keyframe stays put and anchors the gauge. Poses that disagree by a
    #: centimetre blur what the keyframes agree on; the refined poses then correct the
    #: trajectory of every frame tracked against those keyframes.
    lr_pose: float = 0.0
    #: Weight of a quadratic pull of each refined pose back to where it was (per m² and
    #: rad² of its twist). The map can follow a pose that slides, so the loss alone holds
    #: poses loosely: on the synthetic demo room, whose tracking is already within 2 mm,
    #: the refined trajectory drifted from 0.15 to 0.30 cm ATE without it; with 100 it
    #: stayed at 0.16 while TUM fr1/xyz still gained (ATE 0.93 to 0.91 cm, +0.4 dB).
    pose_prior_weight: float = 0.0
    #: The Gaussians' learning rates here (the keyframe optimisation has its own). Its
    #: 400 steps give each stored keyframe some 15, so the map is still underfitted
    #: when they end: larger colour and scale steps fit it faster, and smaller centre
    #: steps stop centres from jittering by a millimetre (a quarter pixel at 1 m) per
    #: step. On one streamed TUM fr1/xyz map, 20.95 -> 21.21 dB over the keyframe rates.
    lr_means: float = 3e-4  # of the Gaussians' centres (metres)
    lr_log_scales: float = 1e-2  # of their log scales
    lr_quats: float = 1e-3  # of their rotations
    lr_opacity: float = 5e-2  # of their opacity logits
    lr_color: float = 1e-2  # of their colours (SH DC)
    #: Learning rate of each stored keyframe's exposure (per-channel log gain and bias of
    #: the colour the camera recorded; 0: none). TUM's camera adjusts its exposure as it
    #: moves, and one colour per Gaussian cannot fit views taken at different exposures.
    #: The oldest stored keyframe's exposure is the map's; a frame is evaluated at the
    #: exposure of its keyframe. On one streamed TUM fr1/xyz map +0.24 dB (3e-3; 1e-2 lost 0.36).
    lr_exposure: float = 3e-3

    def __post_init__(self) -> None:
        if not 0 <= self.steps <= 100_000:
            raise ValueError(f"mapping.final_refinement.steps must be in 0..100000, got {self.steps}")
        if self.densify_per_keyframe < 0:
            raise ValueError(f"mapping.final_refinement.densify_per_keyframe must be >= 0, got "
                             f"{self.densify_per_keyframe}")
        if self.max_s < 0:
            raise ValueError(f"mapping.final_refinement.max_s must be >= 0, got {self.max_s}")
        if not 0 <= self.lr_pose <= 0.1:
            raise ValueError(f"mapping.final_refinement.lr_pose must be in [0, 0.1], got {self.lr_pose}")
        if self.pose_prior_weight < 0:
            raise ValueError(f"mapping.final_refinement.pose_prior_weight must be >= 0, got {self.pose_prior_weight}")
        if not 0 <= self.lr_exposure <= 0.1:
            raise ValueError(f"mapping.final_refinement.lr_exposure must be in [0, 0.1], got {self.lr_exposure}")
        for name in _GAUSSIAN_RATES:
            if not 0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"mapping.final_refinement.{name} must be in [0, 1], got {getattr(self, name)}")

    def with_gaussian_rates(self, opt: OptimizationConfig) -> OptimizationConfig:
        """``opt`` (the keyframe loss's settings) with these learning rates for the Gaussians."""
        return dataclasses.replace(opt, **{name: getattr(self, name) for name in _GAUSSIAN_RATES})


_GAUSSIAN_RATES = ("lr_means", "lr_log_scales", "lr_quats", "lr_opacity", "lr_color")


@dataclass
class FinalRefinementReport:
    steps: int
    keyframes: int
    gaussians: int  # after it
    densified: int  # Gaussians it added
    seconds: float
    first_loss: float  # mean over the first tenth of the steps
    last_loss: float  # mean over the last tenth
    #: Refined keyframe poses (keyframe id -> T_world_cam); empty when poses stay fixed.
    refined_poses: dict[int, Pose] = field(default_factory=dict)
    #: Fitted exposures (keyframe id -> [6] log gains and biases, see
    #: :func:`gs4_slam.mapping.optimizer.apply_exposure`; the oldest keyframe's are zeros);
    #: empty when ``lr_exposure`` is 0.
    exposures: dict[int, np.ndarray] = field(default_factory=dict)


def refine_map(gmap: GaussianMap, views: list[KeyframeView], cfg: FinalRefinementConfig,
               opt: OptimizationConfig, densify_cfg: DensifyConfig | None = None,
               max_gaussians: int = 50_000) -> FinalRefinementReport:
    """Run ``cfg.steps`` steps over ``views`` on every Gaussian of ``gmap`` and write the result back.

    The caller makes sure nothing else changes the map meanwhile (the run has ended).
    """
    start = time.perf_counter()
    if cfg.steps == 0 or not views or len(gmap) == 0:
        return FinalRefinementReport(0, len(views), len(gmap), 0, 0.0, float("nan"), float("nan"))
    T_cam_world = [torch.as_tensor(np.array(v.T_world_cam.inverse().matrix), dtype=gmap.dtype, device=gmap.device)
                   for v in views]
    densified = 0
    if cfg.densify_per_keyframe:
        densify_cfg = dataclasses.replace(densify_cfg or DensifyConfig(), max_per_frame=cfg.densify_per_keyframe)
        densified = _densify(gmap, views, T_cam_world, densify_cfg, max_gaussians)
    indices = torch.arange(len(gmap), device=gmap.device)
    subset = gmap.as_set(indices)
    params = trainable_copy(subset)
    groups = param_groups(params, cfg.with_gaussian_rates(opt))
    refine_poses = cfg.lr_pose > 0 and len(views) > 1
    twists = _per_view(views, gmap, refine_poses)
    fit_exposure = cfg.lr_exposure > 0 and len(views) > 1
    exposures = _per_view(views, gmap, fit_exposure)
    if fit_exposure:
        groups.append({"params": exposures[1:], "lr": cfg.lr_exposure})
    if refine_poses:
        # One group for all twists: Adam leaves the ones a step did not render untouched.
        groups.append({"params": twists[1:], "lr": cfg.lr_pose})
    optimiser = torch.optim.Adam(groups, eps=1e-15)
    pose_group = optimiser.param_groups[-1] if refine_poses else None
    draws = np.random.default_rng(cfg.seed).integers(len(views), size=cfg.steps)
    losses = []
    for step, k in enumerate(draws.tolist()):
        if cfg.max_s and time.perf_counter() - start > cfg.max_s:
            log.warning("final refinement stopped at its time limit (max_s %.0f s) after %d of %d steps",
                        cfg.max_s, len(losses), cfg.steps)
            break
        if refine_poses:
            # Adam moves a pose by about its learning rate whatever the gradient, so at a
            # constant rate well-placed poses would wander; decaying it lets them settle.
            pose_group["lr"] = cfg.lr_pose * (1.0 - step / cfg.steps)
        optimiser.zero_grad(set_to_none=True)
        pose = se3_exp(twists[k]) @ T_cam_world[k] if twists[k].requires_grad else T_cam_world[k]
        loss = view_loss(with_params(subset, params), views[k], pose, opt, exposures[k] if fit_exposure else None)
        if twists[k].requires_grad:
            loss = loss + cfg.pose_prior_weight * twists[k].pow(2).sum()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    with torch.no_grad():
        params["quats"].data = torch.nn.functional.normalize(params["quats"].data, dim=1)
        gmap.write(indices, with_params(subset, params).detach())
        gmap.mark_updated(indices)
        gmap.prune(min_opacity=opt.min_opacity)
    refined = {view.keyframe_id: refined_pose(twist, T)
               for view, twist, T in zip(views, twists, T_cam_world) if twist.requires_grad}
    fitted = {view.keyframe_id: exposure.detach().cpu().numpy().astype(np.float64)
              for view, exposure in zip(views, exposures)} if fit_exposure else {}
    tenth = max(1, len(losses) // 10)
    first, last = (float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:]))) if losses else (np.nan, np.nan)
    report = FinalRefinementReport(len(losses), len(views), len(gmap), densified, time.perf_counter() - start,
                                   first, last, refined, fitted)
    log.info("final refinement: %d steps over %d keyframes, %d Gaussians (%d added), %.1f s (loss %.4f -> %.4f)",
             report.steps, report.keyframes, report.gaussians, densified, report.seconds, report.first_loss,
             report.last_loss)
    return report


def _per_view(views: list[KeyframeView], gmap: GaussianMap, trainable: bool) -> list[torch.Tensor]:
    """A [6] zero vector per view (pose twist or exposure), trainable except the first view's (the gauge)."""
    return [torch.zeros(6, dtype=gmap.dtype, device=gmap.device, requires_grad=trainable and i > 0)
            for i in range(len(views))]


def _rendered_classes(extra: GaussianSet, out, T_cam_world: torch.Tensor, view: KeyframeView) -> torch.Tensor:
    """[K, C] the class distribution the map renders at each new Gaussian's pixel.

    A blend of the Gaussians there, so less certain than they are: right for a
    Gaussian no class observation has seen. (Copying the nearest mapped Gaussian of
    the rendered class instead kept confidences high but lost thin objects: pictures
    on the held-out rooms' walls fell from 70 to 54 IoU with the ground-truth stream.)
    """
    u, v, _, _ = project_points(extra.means, T_cam_world, view.intrinsics)
    h, w = out.alpha.shape
    u, v = u.clamp(0, w - 1), v.clamp(0, h - 1)
    return out.semantics[v, u] / out.alpha[v, u].clamp(min=1e-6)[:, None]


def _densify(gmap: GaussianMap, views: list[KeyframeView], T_cams_world: list[torch.Tensor], cfg: DensifyConfig,
             max_gaussians: int) -> int:
    """Finer Gaussians where each view renders badly, classed as the map renders them there."""
    added = 0
    for view, T_cam_world in zip(views, T_cams_world):
        room = max_gaussians - len(gmap)
        if room <= 0:
            log.warning("final refinement: the map is at max_gaussians (%d); no more densification", max_gaussians)
            break
        with torch.no_grad():
            channels = ("color", "semantics", "alpha") if gmap.num_classes else ("color",)
            out = render(gmap, view.intrinsics, T_cam_world, channels=channels)
            score = block_errors(out.color.permute(2, 0, 1), view.color, None, None, cfg)
            extra = densify(score, view.color, view.depth_m, view.intrinsics, view.T_world_cam, gmap.num_classes,
                            gmap.feature_dim, cfg)
        extra = extra.index(torch.arange(min(room, len(extra)), device=extra.means.device))
        if len(extra) == 0:
            continue
        if gmap.num_classes:
            extra = dataclasses.replace(extra, semantics=_rendered_classes(extra, out, T_cam_world, view))
        gmap.add(extra)
        added += len(extra)
    return added
