"""Per-Gaussian class distributions fused over observations.

Each map Gaussian keeps a class distribution (``semantics``, probabilities) and
the evidence behind it (``semantic_weight``). Every mapped frame gives an
observation image, a class distribution and a weight per pixel, from

- the Gaussian Prediction Model: the frame's predicted Gaussians rendered into
  that frame (their softmax scores, alpha-weighted), and/or
- an external label image (the user's 2D segmenter on the node, ``label-filt``-style
  images in datasets): the given class with probability ``external_confidence``,
  the rest shared evenly; the ignore label (255) is no observation.

A Gaussian observes the pixel its centre projects to when the measured depth
there agrees with its own (it is on the visible surface, not hidden behind it).
Its distribution becomes the evidence-weighted mean of what it had and what it
observes — a running average rather than a Bayesian product, because a product
of softmax scores becomes certain after a handful of frames and can then never
recover from a systematic early mistake. The evidence is capped
(``max_weight``) so a moved or relabelled object can still change class.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gs4_slam.camera import Intrinsics
from gs4_slam.frame import IGNORE_LABEL
from gs4_slam.gaussians import GaussianMap, GaussianSet
from gs4_slam.render import render
from gs4_slam.render.projection import project_points

SOURCES = ("predicted", "external", "both")


@dataclass(frozen=True)
class SemanticFusionConfig:
    #: Where class observations come from: predicted (the learned head),
    #: external (label images from a segmenter or dataset), or both (weighted).
    source: str = "predicted"
    #: Weight of one frame's learned prediction, per observing Gaussian.
    predicted_weight: float = 1.0
    #: Weight of one external label image, per observing Gaussian.
    external_weight: float = 1.0
    #: Probability given to the external label's class (the rest is shared evenly).
    external_confidence: float = 0.9
    #: A Gaussian observes a pixel when its depth is within this fraction of the measured depth.
    depth_tolerance: float = 0.1
    #: Evidence is capped at this, so a Gaussian's class can still change later.
    max_weight: float = 30.0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"mapping.semantics.source must be one of {SOURCES}, got {self.source!r}")
        if not 0.0 < self.external_confidence <= 1.0:
            raise ValueError(f"mapping.semantics.external_confidence must be in (0, 1], got {self.external_confidence}")
        if self.predicted_weight < 0 or self.external_weight < 0 or self.max_weight <= 0:
            raise ValueError("mapping.semantics weights must be >= 0 and max_weight > 0")

    @property
    def uses_external(self) -> bool:
        return self.source in ("external", "both")

    @property
    def uses_predicted(self) -> bool:
        return self.source in ("predicted", "both")


@dataclass
class SemanticObservation:
    """Per-pixel class distribution [H, W, C] and its weight [H, W] (0: nothing observed)."""

    probabilities: Tensor
    weight: Tensor


def predicted_observation(prediction: GaussianSet, intrinsics: Intrinsics, T_cam_world: Tensor) -> SemanticObservation:
    """The frame's own predicted Gaussians rendered into it: class scores weighted by silhouette."""
    out = render(prediction, intrinsics, T_cam_world, channels=("semantics", "alpha"))
    alpha = out.alpha.clamp(min=0.0, max=1.0)
    probabilities = out.semantics / out.alpha.clamp(min=1e-6)[..., None]
    return SemanticObservation(probabilities, alpha)


def external_observation(labels: np.ndarray | Tensor, num_classes: int, confidence: float,
                         device: torch.device | str = "cpu") -> SemanticObservation:
    """A label image [H, W] (class ids, ``IGNORE_LABEL`` = unknown) as soft one-hot observations."""
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, Tensor) else labels, device=device).long()
    valid = (labels >= 0) & (labels < num_classes)
    if bool(((labels >= num_classes) & (labels != IGNORE_LABEL)).any()):
        bad = sorted(set(labels[(labels >= num_classes) & (labels != IGNORE_LABEL)].unique().tolist()))[:5]
        raise ValueError(f"label image holds class ids {bad} outside the label set's 0..{num_classes - 1} "
                         f"(and {IGNORE_LABEL} = unknown)")
    rest = (1.0 - confidence) / max(num_classes - 1, 1)
    probabilities = torch.full(labels.shape + (num_classes,), rest, dtype=torch.float32, device=device)
    probabilities.scatter_(-1, labels.clamp(0, num_classes - 1)[..., None], confidence)
    return SemanticObservation(probabilities, valid.float())


def combine(observations: list[tuple[SemanticObservation, float]]) -> SemanticObservation | None:
    """Weighted mixture of observations (weights per source), pixel by pixel."""
    observations = [(o, w) for o, w in observations if w > 0]
    if not observations:
        return None
    total = sum(o.weight * w for o, w in observations)
    mixed = sum(o.probabilities * (o.weight * w)[..., None] for o, w in observations)
    return SemanticObservation(mixed / total.clamp(min=1e-9)[..., None], total)


def observe(gmap: GaussianMap, observation: SemanticObservation, depth_m: Tensor, intrinsics: Intrinsics,
            T_cam_world: Tensor, config: SemanticFusionConfig) -> int:
    """Fuse one observation into the Gaussians that see it; returns how many were updated."""
    if len(gmap) == 0 or gmap.num_classes == 0:
        return 0
    u, v, z, inside = project_points(gmap.means, T_cam_world, intrinsics)
    h, w = depth_m.shape
    uc, vc = u.clamp(0, w - 1), v.clamp(0, h - 1)
    measured = depth_m[vc, uc]
    on_surface = inside & (measured > 0) & ((z - measured).abs() <= config.depth_tolerance * measured)
    pixel_weight = observation.weight[vc, uc]
    seen = torch.nonzero(on_surface & (pixel_weight > 0)).flatten()
    if seen.numel() == 0:
        return 0
    q = observation.probabilities[vc[seen], uc[seen]].to(gmap.dtype)
    w_obs = pixel_weight[seen].to(gmap.dtype)
    w_old = gmap.semantic_weight[seen]
    fused = (gmap.semantics[seen] * w_old[:, None] + q * w_obs[:, None]) / (w_old + w_obs)[:, None]
    gmap.semantics[seen] = fused
    gmap.semantic_weight[seen] = (w_old + w_obs).clamp(max=config.max_weight)
    return int(seen.numel())


def rendered_classes(semantics: Tensor, alpha: Tensor | None = None, min_alpha: float = 0.5,
                     ignore_label: int = IGNORE_LABEL) -> tuple[Tensor, Tensor]:
    """Argmax class [H, W] and its probability [H, W] of a rendered semantic view [H, W, C].

    The renderer composites alpha-weighted distributions; dividing by the
    silhouette ``alpha`` makes them distributions again. Pixels the map barely
    covers (alpha below ``min_alpha``) get ``ignore_label`` and confidence 0.
    """
    if alpha is None:
        alpha = semantics.sum(dim=-1)
    normalised = semantics / alpha.clamp(min=1e-6)[..., None]
    confidence, labels = normalised.max(dim=-1)
    covered = alpha >= min_alpha
    labels = torch.where(covered, labels, torch.full_like(labels, ignore_label))
    return labels, torch.where(covered, confidence.clamp(max=1.0), torch.zeros_like(confidence))
