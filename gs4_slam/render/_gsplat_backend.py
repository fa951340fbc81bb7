"""The CUDA backend: gsplat's ``rasterization`` with our channel matrix as colours."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from gs4_slam.gaussians import GaussianSet


def rasterize_gsplat(
    gaussians: GaussianSet,
    T_cam_world: Tensor,  # [4, 4]  # noqa: N803 - transform naming convention
    K: Tensor,  # [3, 3] rasteriser convention  # noqa: N803
    width: int,
    height: int,
    channel_matrix: Callable[[Tensor], tuple[Tensor, dict]],
    near_plane: float,
    far_plane: float,
    eps2d: float,
) -> tuple[Tensor, Tensor, dict]:
    """Composite the channel matrix with gsplat (its pixel convention equals ours).

    Returns:
        image [H, W, D], alpha [H, W] and meta (radii, means2d, depths, columns).
    """
    from gsplat import rasterization

    # Depth as a channel: camera z of the means, differentiable w.r.t. means and pose.
    depths = gaussians.means @ T_cam_world[2, :3] + T_cam_world[2, 3]  # [N]
    matrix, columns = channel_matrix(depths)
    n_ch = matrix.shape[1]
    if n_ch == 0:  # gsplat needs at least one channel
        matrix = matrix.new_zeros(matrix.shape[0], 1)
    image, alphas, info = rasterization(
        means=gaussians.means,
        quats=gaussians.quats,
        scales=gaussians.log_scales.exp(),
        opacities=torch.sigmoid(gaussians.opacity_logits),
        colors=matrix,
        viewmats=T_cam_world[None],
        Ks=K[None],
        width=width,
        height=height,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
        sh_degree=None,
        packed=False,
        render_mode="RGB",
    )
    meta = dict(
        radii=info["radii"][0].to(torch.int32).reshape(-1, 2),
        means2d=info["means2d"][0],
        depths=info["depths"][0],
        gaussian_pixels=None,
        pixel_contributors=None,
        columns=columns,
    )
    return image[0, ..., :n_ch], alphas[0, ..., 0], meta
