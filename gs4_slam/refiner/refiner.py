"""Gaussian refinement: update what the map already has, merge duplicates, prune the transparent.

Entry point :meth:`GaussianRefiner.refine`, called by the mapping backend after
insertion with the indices of the Gaussians just added. The queries are those
new Gaussians plus the map Gaussians the frame sees (inside the image and not
hidden behind the measured surface) that have been refined fewer than
``max_updates`` times. Their k nearest map neighbours come from the voxel-hash
spatial index. The Refinement Network (:mod:`gs4_slam.refiner.model`) predicts
residual updates; afterwards new Gaussians that duplicate a mapped one (closer
than a fraction of their size, same colour and class) are merged into it, and
Gaussians below ``min_opacity`` are pruned.

``enabled: false`` gives the non-learned baseline (insertion only, plus the
opacity pruning and, when on, the merging).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from gs4_slam.camera import Intrinsics
from gs4_slam.gaussians import GaussianMap, sh_dc_to_rgb
from gs4_slam.lie import quat_multiply
from gs4_slam.refiner.model import RefinementNet, RefinerNetConfig
from gs4_slam.render.projection import project_points
from gs4_slam.resources import find_data_file
from gs4_slam.spatial_index import VoxelHashIndex
from gs4_slam.weights_io import load_payload, save_payload

log = logging.getLogger(__name__)

WEIGHTS_FORMAT = "gs4_slam.refiner/1"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WEIGHTS = find_data_file("weights/refiner.pt") or REPO_ROOT / "weights" / "refiner.pt"
RETRAIN_HINT = "retrain them with `gs4-slam train refiner` (see README, 'Training'), or set refinement.enabled: false"
_MIN_SCALE_M = 1e-3


class RefinerWeightsError(RuntimeError):
    """The refiner weights file is missing, unreadable or not a refiner checkpoint."""


@dataclass(frozen=True)
class RefinerConfig:
    enabled: bool = True  # run the Refinement Network (false: insert-only baseline)
    weights: str = ""  # empty: the shipped weights/refiner.pt
    max_updates: int = 8  # a Gaussian is refined at most this many times
    depth_tolerance: float = 0.1  # fraction of depth: on the measured surface (observed) or hidden behind it
    min_opacity: float = 0.005  # Gaussians below this opacity are pruned after refinement
    prune: bool = True  # prune below min_opacity after each refinement
    merge: bool = True  # merge new Gaussians into mapped duplicates
    merge_distance: float = 0.5  # duplicates: centres closer than this fraction of the smaller mean scale,
    merge_color: float = 0.1  # colours within this (max channel difference, 0..1),
    voxel_size_m: float = 0.1  # cell of the spatial index used for the neighbourhoods

    def __post_init__(self) -> None:
        if self.max_updates < 0:
            raise ValueError(f"refinement.max_updates must be >= 0, got {self.max_updates}")
        if not 0.0 <= self.min_opacity < 1.0:
            raise ValueError(f"refinement.min_opacity must be in [0, 1), got {self.min_opacity}")

    def insert_only_baseline(self) -> RefinerConfig:
        """The non-learned baseline these settings are measured against: insertion only, plus opacity pruning."""
        return dataclasses.replace(self, enabled=False, merge=False, prune=True)


@dataclass
class RefineReport:
    refined: int = 0
    merged: int = 0
    pruned: int = 0


@dataclass
class FrameEvidence:
    """What the current frame says: its colour [3, H, W] in [0, 1], depth [H, W], camera."""

    color: Tensor
    depth_m: Tensor
    intrinsics: Intrinsics
    T_cam_world: Tensor  # [4, 4]


# ---------------------------------------------------------------- weights


def save_weights(path: Path, net: RefinementNet, extra: dict | None = None) -> None:
    save_payload(path, {"format": WEIGHTS_FORMAT, "net_config": dataclasses.asdict(net.config),
                        "state_dict": net.state_dict(), "extra": extra or {}})


def load_weights(path: Path, device: str | torch.device = "cpu") -> RefinementNet:
    payload = load_payload(path, WEIGHTS_FORMAT, "refiner", RETRAIN_HINT, RefinerWeightsError, device)
    try:
        net = RefinementNet(RefinerNetConfig(**payload["net_config"]))
        net.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise RefinerWeightsError(f"refiner weights at {path} do not fit the network ({exc}); {RETRAIN_HINT}") from exc
    return net.to(device).eval()


# ---------------------------------------------------------------- inputs and updates


def select_queries(gmap: GaussianMap, new: Tensor, evidence: FrameEvidence, config: RefinerConfig) -> Tensor:
    """Indices of the Gaussians to refine: the new ones and the seen, not yet capped, mapped ones."""
    u, v, z, inside = project_points(gmap.means, evidence.T_cam_world, evidence.intrinsics)
    h, w = evidence.depth_m.shape
    measured = evidence.depth_m[v.clamp(0, h - 1), u.clamp(0, w - 1)]
    not_hidden = (measured <= 0) | (z <= measured * (1.0 + config.depth_tolerance))
    wanted = inside & not_hidden & (gmap.n_refinements < config.max_updates)
    wanted[new] = True
    return torch.nonzero(wanted).flatten()


def neighbours(means: Tensor, queries: Tensor, k: int, voxel_size_m: float) -> tuple[Tensor, Tensor]:
    """[Q, k] indices (-1 where missing) of each query's nearest other Gaussians, and their mask."""
    index = VoxelHashIndex(means.detach(), voxel_size_m)
    idx, _ = index.knn(means[queries].detach(), k + 1)
    # The nearest is the query itself (distance 0); drop whichever column holds it.
    is_self = idx == queries[:, None]
    keep = ~is_self
    keep[:, -1] &= is_self.any(dim=1)  # no self found: drop the farthest instead to keep k columns
    idx = idx[keep].reshape(len(queries), k)
    return idx, idx >= 0


def network_inputs(values: dict[str, Tensor], n_refinements: Tensor, is_new: Tensor, queries: Tensor,
                   neighbour_idx: Tensor, mask: Tensor, evidence: FrameEvidence) -> tuple[Tensor, Tensor]:
    """(own [Q, D], edges [Q, k, 13]) for the network; ``values`` are per-Gaussian map tensors."""
    means, log_scales = values["means"], values["log_scales"]
    rgb = sh_dc_to_rgb(values["sh_dc"])
    opacity = torch.sigmoid(values["opacity_logits"])
    q_means = means[queries]
    u, v, z, inside = project_points(q_means, evidence.T_cam_world, evidence.intrinsics)
    h, w = evidence.depth_m.shape
    uc, vc = u.clamp(0, w - 1), v.clamp(0, h - 1)
    measured = evidence.depth_m[vc, uc]
    observed = inside & (measured > 0)
    seen_rgb = evidence.color[:, vc, uc].T
    color_residual = torch.where(observed[:, None], seen_rgb - rgb[queries], torch.zeros_like(seen_rgb))
    depth_residual = torch.where(observed, ((measured - z) / z.clamp(min=1e-3)).clamp(-1, 1), torch.zeros_like(z))
    own = torch.cat([
        rgb[queries], log_scales[queries], opacity[queries, None], values["quats"][queries],
        values["semantics"][queries], values["features"][queries], is_new[queries, None].float(),
        n_refinements[queries, None].float() / 8.0, color_residual, depth_residual[:, None], observed[:, None].float(),
    ], dim=1)
    safe = neighbour_idx.clamp(min=0)
    size = log_scales[queries].mean(dim=1).exp().clamp(min=_MIN_SCALE_M)
    rotation = evidence.T_cam_world[:3, :3].to(means.dtype)
    offset = (means[safe] - q_means[:, None]) @ rotation.T / size[:, None, None]
    edges = torch.cat([
        offset, offset.norm(dim=2, keepdim=True), rgb[safe] - rgb[queries][:, None], opacity[safe][..., None],
        log_scales[safe] - log_scales[queries][:, None], is_new[safe][..., None].float(),
        (values["semantics"][safe] * values["semantics"][queries][:, None]).sum(dim=2, keepdim=True),
    ], dim=2)
    edges = torch.where(mask[..., None], edges, torch.zeros_like(edges))
    return own, edges


def apply_updates(values: dict[str, Tensor], queries: Tensor, updates: dict[str, Tensor]) -> dict[str, Tensor]:
    """Refined attributes of the query Gaussians (differentiable in ``updates``)."""
    identity = torch.zeros_like(updates["rotation"])
    identity[:, 0] = 1.0
    delta_q = F.normalize(identity + updates["rotation"], dim=1)
    log_p = torch.log(values["semantics"][queries].clamp(min=1e-6))
    return {
        "sh_dc": values["sh_dc"][queries] + updates["color"],
        # Small steps: a Gaussian is refined up to max_updates times and changes add up.
        "log_scales": values["log_scales"][queries] + updates["log_scale"].clamp(-0.3, 0.3),
        "quats": F.normalize(quat_multiply(values["quats"][queries], delta_q), dim=1),
        "opacity_logits": values["opacity_logits"][queries] + updates["opacity"][:, 0],
        "semantics": torch.softmax(log_p + updates["semantic"], dim=1),
    }


def map_values(gmap: GaussianMap) -> dict[str, Tensor]:
    names = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "semantics", "features")
    return {name: gmap.field(name) for name in names}


# ---------------------------------------------------------------- the stage


class GaussianRefiner:
    """The refinement stage of the mapping backend."""

    def __init__(self, config: RefinerConfig, num_classes: int, feature_dim: int,
                 device: str | torch.device = "cpu") -> None:
        self.config = config
        self.net: RefinementNet | None = None
        if config.enabled:
            weights = Path(config.weights) if config.weights else DEFAULT_WEIGHTS
            self.net = load_weights(weights, device)
            c = self.net.config
            if (c.num_classes, c.feature_dim) != (num_classes, feature_dim):
                raise RefinerWeightsError(
                    f"refiner weights {weights} expect {c.num_classes} classes and {c.feature_dim}-d features, "
                    f"the predictor gives {num_classes} and {feature_dim}; {RETRAIN_HINT}")

    @torch.no_grad()
    def refine(self, gmap: GaussianMap, new: Tensor, evidence: FrameEvidence) -> RefineReport:
        """Refine, merge and prune in place (the caller holds the map's lock)."""
        report = RefineReport()
        if len(gmap) == 0:
            return report
        if self.net is not None:
            report.refined = self._run_network(gmap, new, evidence)
        if self.config.merge and new.numel():
            report.merged = merge_duplicates(gmap, new, self.config)
        if self.config.prune:
            before = len(gmap)
            gmap.prune(min_opacity=self.config.min_opacity)
            report.pruned = before - len(gmap)
        return report

    def _run_network(self, gmap: GaussianMap, new: Tensor, evidence: FrameEvidence) -> int:
        queries = select_queries(gmap, new, evidence, self.config)
        if queries.numel() == 0:
            return 0
        is_new = torch.zeros(len(gmap), dtype=torch.bool, device=gmap.device)
        is_new[new] = True
        idx, mask = neighbours(gmap.means, queries, self.net.config.neighbours, self.config.voxel_size_m)
        values = map_values(gmap)
        own, edges = network_inputs(values, gmap.n_refinements, is_new, queries, idx, mask, evidence)
        refined = apply_updates(values, queries, self.net.split(self.net(own, edges, mask)))
        for name, value in refined.items():
            gmap.field(name)[queries] = value.to(gmap.dtype)
        gmap.field("n_refinements")[queries] += 1
        return int(queries.numel())


def merge_duplicates(gmap: GaussianMap, new: Tensor, config: RefinerConfig) -> int:
    """Fold new Gaussians into a mapped one they duplicate; returns how many were merged.

    A duplicate is closer to an older Gaussian than ``merge_distance`` times the
    smaller of their mean scales, with colours within ``merge_color`` and the
    same most likely class. The older one takes the opacity-weighted mean
    position and colour, the larger scales and the combined opacity.
    """
    is_new = torch.zeros(len(gmap), dtype=torch.bool, device=gmap.device)
    is_new[new] = True
    old = torch.nonzero(~is_new).flatten()
    if old.numel() == 0:
        return 0
    means = gmap.means
    index = VoxelHashIndex(means[old], config.voxel_size_m)
    nearest, dist = index.knn(means[new], 1)
    nearest, dist = nearest[:, 0], dist[:, 0]
    found = nearest >= 0
    target = old[nearest.clamp(min=0)]
    size = torch.minimum(gmap.log_scales[new].mean(1), gmap.log_scales[target].mean(1)).exp()
    rgb = gmap.colors_rgb()
    same_color = (rgb[new] - rgb[target]).abs().max(dim=1).values <= config.merge_color
    same_class = gmap.semantics[new].argmax(1) == gmap.semantics[target].argmax(1) if gmap.num_classes else True
    duplicate = found & (dist <= config.merge_distance * size) & same_color & same_class
    if not bool(duplicate.any()):
        return 0
    src, dst = new[duplicate], target[duplicate]
    _fold(gmap, src, dst)
    gmap.remove(src)
    return int(src.numel())


def _fold(gmap: GaussianMap, src: Tensor, dst: Tensor) -> None:
    """Opacity-weighted merge of rows ``src`` into rows ``dst`` (several may share a target)."""
    alpha = gmap.opacities()
    targets = torch.unique(dst)
    weight = torch.zeros(len(gmap), dtype=gmap.dtype, device=gmap.device)
    weight[targets] = alpha[targets]
    weight.index_add_(0, dst, alpha[src])
    for name in ("means", "sh_dc", "semantics"):
        field = gmap.field(name)
        if field.shape[-1] == 0:
            continue
        total = field[targets] * alpha[targets, None]
        accum = torch.zeros_like(field)
        accum[targets] = total
        accum.index_add_(0, dst, field[src] * alpha[src, None])
        field[targets] = accum[targets] / weight[targets, None].clamp(min=1e-9)
    # Transmittance multiplies: sum the logs of (1 - opacity) per target.
    log_clear = torch.zeros(len(gmap), dtype=gmap.dtype, device=gmap.device)
    log_clear[targets] = torch.log1p(-alpha[targets].clamp(max=1 - 1e-6))
    log_clear.index_add_(0, dst, torch.log1p(-alpha[src].clamp(max=1 - 1e-6)))
    combined = (1.0 - log_clear[targets].exp()).clamp(1e-4, 1 - 1e-4)
    gmap.opacity_logits[targets] = torch.logit(combined)
    scales = gmap.log_scales
    scales.scatter_reduce_(0, dst[:, None].expand(-1, 3), scales[src], "amax")
    semantic_weight = gmap.semantic_weight
    semantic_weight.index_add_(0, dst, semantic_weight[src])
