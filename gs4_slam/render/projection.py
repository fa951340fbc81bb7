"""EWA projection of 3D Gaussians to image-plane ellipses.

Differentiable with respect to the means, log-scales, quaternions and opacity
logits *and* the world-to-camera pose, through either the fused compiled
kernel (hand-written backward) or its PyTorch twin ``_project_gaussians``
(autograd). The maths matches gsplat's pinhole projection (including its
clamping of the Jacobian to 1.3 x the field of view and the ``eps2d``
dilation), so every backend sees the same ellipses.

Coordinates: ``K`` here is in the rasteriser convention, where pixel ``(u, v)``
spans ``[u, u + 1) x [v, v + 1)`` and its centre is ``(u + 0.5, v + 0.5)``;
:func:`gs4_slam.render.api.render` converts OpenCV intrinsics (centre at
integers) by adding 0.5 to the principal point.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch
from torch import Tensor

from gs4_slam.render import _torch_impl


@dataclass
class Projection:
    """Projected Gaussians; rows of invalid Gaussians hold finite placeholders without gradients."""

    means2d: Tensor  # [N, 2] pixel coordinates
    conics: Tensor  # [N, 3] inverse 2D covariance (a, b, c): sigma = 0.5 (a dx^2 + c dy^2) + b dx dy
    depths: Tensor  # [N] camera z, metres
    opacities: Tensor  # [N] in (0, 1)
    valid: Tensor  # [N] bool: between the near and far planes, finite, non-degenerate


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices [N, 3, 3] of quaternions (w, x, y, z) [N, 4] (normalised first)."""
    return _torch_impl._quat_to_rotmat(quats)


class _ProjectCPU(torch.autograd.Function):
    """The fused projection kernels as one autograd node."""

    @staticmethod
    def forward(ctx, means, quats, log_scales, T_cam_world, camera: tuple, kernels: ModuleType):  # noqa: D102, N803
        means2d, conics, depths, valid = kernels.project_forward(means, quats, log_scales, T_cam_world, *camera)
        ctx.save_for_backward(means, quats, log_scales, T_cam_world)
        ctx.camera, ctx.kernels = camera, kernels
        ctx.mark_non_differentiable(valid)
        return means2d, conics, depths, valid

    @staticmethod
    def backward(ctx, grad_means2d, grad_conics, grad_depths, _grad_valid):  # noqa: D102
        means, quats, log_scales, T_cam_world = ctx.saved_tensors  # noqa: N806
        n = len(means)
        grads = [
            means.new_zeros(shape) if g is None else g.contiguous()
            for g, shape in ((grad_means2d, (n, 2)), (grad_conics, (n, 3)), (grad_depths, (n,)))
        ]
        g_means, g_quats, g_log_scales, g_view = ctx.kernels.project_backward(
            means, quats, log_scales, T_cam_world, *ctx.camera, *grads
        )
        return g_means, g_quats, g_log_scales, g_view, None, None


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
    kernels: ModuleType | None = None,
) -> Projection:
    """Project Gaussians into a pinhole camera, differentiably (pose included).

    Args:
        means, quats, log_scales, opacity_logits: the Gaussians.
        T_cam_world: world-to-camera transform (may require grad).
        K: camera matrix, principal point in the rasteriser convention (not differentiated).
        width, height: image size, for the Jacobian clamp.
        near_plane: Gaussians with depth <= this are culled.
        far_plane: and those with depth >= this.
        eps2d: added to the diagonal of each 2D covariance (anti-aliasing, as in 3DGS).
        kernels: the compiled CPU kernels (fused projection), or None for the PyTorch twin.

    Returns:
        The projected Gaussians.
    """
    if kernels is None:
        means2d, conics, depths, valid = _torch_impl._project_gaussians(
            means, quats, log_scales, T_cam_world, K, width, height, near_plane, far_plane, eps2d
        )
    else:
        fx, fy, cx, cy = (float(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
        camera = (fx, fy, cx, cy, width, height, near_plane, far_plane, eps2d)
        means2d, conics, depths, valid = _ProjectCPU.apply(
            means.contiguous(), quats.contiguous(), log_scales.contiguous(), T_cam_world.contiguous(), camera, kernels
        )
    return Projection(means2d, conics, depths, torch.sigmoid(opacity_logits), valid)


def project_points(points: Tensor, T_cam_src: Tensor, intrinsics) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Nearest pixels of 3D points, for look-ups in images of ``intrinsics``' size.

    Args:
        points: [N, 3] in frame ``src``.
        T_cam_src: [4, 4] from ``src`` into the (OpenCV) camera.
        intrinsics: pinhole :class:`~gs4_slam.camera.Intrinsics`.

    Returns:
        ``u`` [N] and ``v`` [N] (int64, rounded; clamp before indexing), camera
        depth ``z`` [N], and ``inside`` [N] bool: in front of the camera and
        within the image.
    """
    p = points @ T_cam_src[:3, :3].T + T_cam_src[:3, 3]
    z = p[:, 2]
    in_front = z > 1e-6
    safe_z = torch.where(in_front, z, torch.ones_like(z))
    u = torch.round(p[:, 0] / safe_z * intrinsics.fx + intrinsics.cx).long()
    v = torch.round(p[:, 1] / safe_z * intrinsics.fy + intrinsics.cy).long()
    inside = in_front & (u >= 0) & (u < intrinsics.width) & (v >= 0) & (v < intrinsics.height)
    return u, v, z, inside
