"""Differentiable image losses shared by predictor training and map optimisation.

The metric versions (numpy, for evaluation) live in :mod:`gs4_slam.metrics`;
these are their torch twins, so a loss and the metric reported for it agree.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2


def _gaussian_window_1d(size: int, sigma: float, like: Tensor) -> Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(x: Tensor, y: Tensor, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-pixel SSIM of images in [0, 1], with the 11x11 Gaussian window of 3DGS.

    Args:
        x, y: [B, C, H, W] (or [C, H, W]).

    Returns:
        Same shape as the inputs; borders use zero padding as 3DGS does.
    """
    squeeze = x.dim() == 3
    if squeeze:
        x, y = x[None], y[None]
    channels = x.shape[1]
    g = _gaussian_window_1d(window_size, sigma, x)
    # The 2D Gaussian window is separable: a row pass and a column pass do the
    # same as one 11x11 convolution (with the same zero padding) at 2/11 the cost.
    row = g.reshape(1, 1, 1, -1).expand(channels, 1, 1, window_size).contiguous()
    col = g.reshape(1, 1, -1, 1).expand(channels, 1, window_size, 1).contiguous()
    pad = window_size // 2

    def blur(t: Tensor) -> Tensor:
        t = F.conv2d(t, row, padding=(0, pad), groups=channels)
        return F.conv2d(t, col, padding=(pad, 0), groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)
    den = (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    out = num / den
    return out[0] if squeeze else out


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Mean SSIM of [B, C, H, W] or [C, H, W] images."""
    return ssim_map(x, y).mean()


def color_loss(rendered: Tensor, target: Tensor, mask: Tensor | None = None, ssim_weight: float = 0.2) -> Tensor:
    """(1 - w)·L1 + w·(1 - SSIM) on [B, 3, H, W] (or [3, H, W]) images in [0, 1].

    ``mask`` ([B, 1, H, W] or [1, H, W], bool/float) restricts both terms to the
    pixels it selects; the SSIM window still sees unmasked neighbours.
    """
    l1 = (rendered - target).abs()
    dssim = 1.0 - ssim_map(rendered, target)
    per_pixel = (1.0 - ssim_weight) * l1 + ssim_weight * dssim
    if mask is None:
        return per_pixel.mean()
    weight = mask.to(per_pixel.dtype).expand_as(per_pixel)
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1.0)


def depth_l1(rendered_m: Tensor, target_m: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean |rendered - target| in metres over pixels with valid target depth (and ``mask``)."""
    valid = target_m > 0
    if mask is not None:
        valid = valid & mask.bool()
    weight = valid.to(rendered_m.dtype)
    return ((rendered_m - target_m).abs() * weight).sum() / weight.sum().clamp_min(1.0)


def semantic_nll(probabilities: Tensor, labels: Tensor, ignore_label: int = 255, eps: float = 1e-6) -> Tensor:
    """Cross-entropy of rendered class probabilities against integer labels.

    Args:
        probabilities: [B, C, H, W] non-negative scores (normalised here per pixel).
        labels: [B, H, W] class ids, ``ignore_label`` where unlabelled.
    """
    probs = probabilities / probabilities.sum(dim=1, keepdim=True).clamp_min(eps)
    # nll_loss's backward fails on non-contiguous input (e.g. a permuted render).
    log_probs = torch.log(probs.clamp_min(eps)).contiguous()
    return F.nll_loss(log_probs, labels.long(), ignore_index=ignore_label)
