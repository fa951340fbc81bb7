"""EWA projection of 3D Gaussians to image-plane ellipses, in plain PyTorch.

Autograd differentiates it with respect to the means, log-scales, quaternions
and opacity logits *and* the world-to-camera pose. The maths matches gsplat's
pinhole projection (including its clamping of the Jacobian to 1.3 x the field
of view and the ``eps2d`` low-pass dilation), so every backend sees the same
ellipses.

Coordinates: ``K`` here is in the rasteriser convention, where pixel ``(u, v)``
spans ``[u, u + 1) x [v, v + 1)`` and its centre is ``(u + 0.5, v + 0.5)``;
:func:`gs4_slam.render.api.render` converts OpenCV intrinsics (centre at
integers) by adding 0.5 to the principal point.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Projection:
    """Projected Gaussians; rows of invalid Gaussians hold finite placeholders."""

    means2d: Tensor  # [N, 2] pixel coordinates
    conics: Tensor  # [N, 3] inverse 2D covariance (a, b, c): sigma = 0.5 (a dx^2 + c dy^2) + b dx dy
    depths: Tensor  # [N] camera z, metres
    opacities: Tensor  # [N] in (0, 1)
    valid: Tensor  # [N] bool: between the near and far planes, finite, non-degenerate


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices [N, 3, 3] of quaternions (w, x, y, z) [N, 4], normalised first."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def project_gaussians(
    means: Tensor,  # [N, 3] world
    quats: Tensor,  # [N, 4]
    log_scales: Tensor,  # [N, 3]
    opacity_logits: Tensor,  # [N]
    T_cam_world: Tensor,  # [4, 4]  # noqa: N803 - transform naming convention
    K: Tensor,  # [3, 3] rasteriser convention  # noqa: N803
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> Projection:
    """Project Gaussians into a pinhole camera.

    Args:
        means, quats, log_scales, opacity_logits: the Gaussians.
        T_cam_world: world-to-camera transform (may require grad).
        K: camera matrix, principal point in the rasteriser convention.
        width, height: image size, for the Jacobian clamp.
        near_plane: Gaussians with depth <= this are culled.
        far_plane: and those with depth >= this.
        eps2d: added to the diagonal of each 2D covariance (anti-aliasing, as in 3DGS).

    Returns:
        The projected Gaussians.
    """
    rot_cw = T_cam_world[:3, :3]
    p_cam = means @ rot_cw.T + T_cam_world[:3, 3]  # [N, 3]
    x, y, z = p_cam.unbind(-1)
    valid = (z > near_plane) & (z < far_plane) & torch.isfinite(p_cam).all(-1)
    # Culled rows get a harmless depth so that nothing below produces inf/nan
    # (whose gradients would poison the valid rows through the shared pose).
    z_safe = torch.where(valid, z, torch.ones_like(z))

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    # Footprints of Gaussians far outside the view use the Jacobian at the
    # border of a 1.3x wider view (as 3DGS/gsplat), keeping them bounded.
    x_clamped = z_safe * torch.clamp(
        x / z_safe, min=-(cx / fx + 0.3 * tan_fovx), max=(width - cx) / fx + 0.3 * tan_fovx
    )
    y_clamped = z_safe * torch.clamp(
        y / z_safe, min=-(cy / fy + 0.3 * tan_fovy), max=(height - cy) / fy + 0.3 * tan_fovy
    )

    # Rows of J @ R_cw @ R @ S, whose outer product is the 2D covariance
    # J R_cw Sigma R_cw^T J^T; forming the 3x3 covariance is not needed.
    m_cam = (rot_cw @ quat_to_rotmat(quats)) * log_scales.exp()[:, None, :]  # [N, 3, 3]
    inv_z = 1.0 / z_safe
    j02 = (-fx * x_clamped * inv_z * inv_z)[:, None]
    j12 = (-fy * y_clamped * inv_z * inv_z)[:, None]
    row_u = (fx * inv_z)[:, None] * m_cam[:, 0] + j02 * m_cam[:, 2]  # [N, 3]
    row_v = (fy * inv_z)[:, None] * m_cam[:, 1] + j12 * m_cam[:, 2]  # [N, 3]
    cov_a = (row_u * row_u).sum(-1) + eps2d
    cov_b = (row_u * row_v).sum(-1)
    cov_c = (row_v * row_v).sum(-1) + eps2d
    det = cov_a * cov_c - cov_b * cov_b
    valid = valid & (det > 0)
    inv_det = 1.0 / torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([cov_c * inv_det, -cov_b * inv_det, cov_a * inv_det], dim=-1)

    means2d = torch.stack([fx * x * inv_z + cx, fy * y * inv_z + cy], dim=-1)
    return Projection(
        means2d=means2d,
        conics=conics,
        depths=z,
        opacities=torch.sigmoid(opacity_logits),
        valid=valid,
    )
