"""Differentiable SO(3)/SE(3) exponentials in torch, for optimising poses.

A tracker optimises a small twist ``xi`` around a fixed pose rather than the 16
entries of a matrix::

    xi = torch.zeros(6, requires_grad=True)          # (v, w): translation, rotation
    T_cam_world = se3_exp(xi) @ T_cam_world_0         # left perturbation, camera side
    out = render(gaussians, intrinsics, T_cam_world)  # gradients reach xi

The exponentials are exact and their gradients finite at ``xi = 0`` (Taylor
expansions replace the closed forms for small angles).
"""
from __future__ import annotations

import torch
from torch import Tensor

# Below this squared angle the closed forms lose precision; their Taylor series
# are exact to float64 rounding there.
_SMALL_ANGLE_SQ = 1e-6


def skew(w: Tensor) -> Tensor:
    """Cross-product matrices of vectors.

    Args:
        w: [..., 3]

    Returns:
        [..., 3, 3] with ``skew(w) @ x == cross(w, x)``.
    """
    zero = torch.zeros_like(w[..., 0])
    wx, wy, wz = w.unbind(-1)
    rows = (zero, -wz, wy, wz, zero, -wx, -wy, wx, zero)
    return torch.stack(rows, dim=-1).reshape(w.shape[:-1] + (3, 3))


def _coefficients(theta_sq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """sin(t)/t, (1 - cos t)/t^2, (t - sin t)/t^3 of t = sqrt(theta_sq), stable at 0."""
    small = theta_sq < _SMALL_ANGLE_SQ
    # The closed forms are evaluated on a safe angle so that their (discarded)
    # gradients are finite where the series is used.
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    t = safe_sq.sqrt()
    sin_t, cos_t = torch.sin(t), torch.cos(t)
    a = torch.where(small, 1 - theta_sq / 6 + theta_sq**2 / 120, sin_t / t)
    b = torch.where(small, 0.5 - theta_sq / 24 + theta_sq**2 / 720, (1 - cos_t) / safe_sq)
    c = torch.where(small, 1 / 6 - theta_sq / 120 + theta_sq**2 / 5040, (t - sin_t) / (safe_sq * t))
    return a, b, c


def so3_exp(w: Tensor) -> Tensor:
    """Rotation matrices of rotation vectors (axis times angle in radians).

    Args:
        w: [..., 3]

    Returns:
        [..., 3, 3]
    """
    a, b, _ = _coefficients((w * w).sum(-1))
    W = skew(w)  # noqa: N806 - matrix
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand(W.shape)
    return eye + a[..., None, None] * W + b[..., None, None] * (W @ W)


def se3_exp(xi: Tensor) -> Tensor:
    """4x4 rigid transforms of twists ``xi = (v, w)``: translation part first.

    Args:
        xi: [..., 6]

    Returns:
        [..., 4, 4]; the rotation is ``so3_exp(w)``, the translation ``V(w) @ v``.
    """
    v, w = xi[..., :3], xi[..., 3:]
    a, b, c = _coefficients((w * w).sum(-1))
    W = skew(w)  # noqa: N806 - matrix
    W2 = W @ W  # noqa: N806 - matrix
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device).expand(W.shape)
    rotation = eye + a[..., None, None] * W + b[..., None, None] * W2
    jacobian = eye + b[..., None, None] * W + c[..., None, None] * W2
    translation = (jacobian @ v[..., None])[..., 0]
    top = torch.cat([rotation, translation[..., None]], dim=-1)  # [..., 3, 4]
    bottom = torch.zeros(xi.shape[:-1] + (1, 4), dtype=xi.dtype, device=xi.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product of (w, x, y, z) quaternions, broadcasting [..., 4]."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        dim=-1,
    )
