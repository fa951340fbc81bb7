"""From per-token network outputs to 3D Gaussians (and the non-learned baseline).

Every token is one candidate Gaussian. Its centre is the back-projection of the
token's pixel (plus a predicted sub-pixel offset) at the token's measured depth
(plus a predicted correction); colour is the token's pooled pixel colour plus a
predicted correction; scale starts from the token's pixel footprint. With all
corrections zero this *is* the baseline, so :func:`baseline_tokens` only has to
supply zeros.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from torch import Tensor
from torch.nn import functional as F

from gs4_slam.camera import Intrinsics
from gs4_slam.gaussians import GaussianSet, rgb_to_sh_dc
from gs4_slam.lie import quat_multiply
from gs4_slam.predictor.model import TOKEN_FIELDS


@dataclass(frozen=True)
class DecodeConfig:
    """How raw corrections map to Gaussian parameters (part of a weights file)."""

    #: Isotropic scale of the baseline, as a fraction of the token's footprint
    #: (0.7 and 0.95 below gave the baseline its best PSNR in a sweep on training rooms).
    footprint_scale: float = 0.7
    #: Opacity of the baseline.
    base_opacity: float = 0.95
    #: Largest depth correction, as a fraction of the measured depth.
    max_depth_correction: float = 0.2
    #: Largest log-scale correction (e-fold).
    max_log_scale_correction: float = 3.0
    #: A token needs at least this fraction of valid depth pixels.
    min_valid_fraction: float = 0.25


@dataclass
class TokenGrid:
    """What the frame itself says about each token, before any network output.

    All tensors are [B, k, Ht, Wt] with Ht = H / stride, Wt = W / stride.
    """

    stride: int
    color: Tensor  # [B, 3, Ht, Wt] mean colour in [0, 1]
    depth_m: Tensor  # [B, 1, Ht, Wt] median of the valid depths, 0 if none
    valid: Tensor  # [B, 1, Ht, Wt] bool


def pool_tokens(rgb: Tensor, depth_m: Tensor, stride: int, min_valid_fraction: float) -> TokenGrid:
    """Pool a [B,3,H,W] colour and [B,1,H,W] depth image into tokens of stride ``stride``."""
    b, _, h, w = rgb.shape
    color = F.avg_pool2d(rgb, stride)
    # Median of the valid depths: robust at depth edges where a mean would float
    # between foreground and background.
    patches = F.unfold(depth_m, stride, stride=stride)  # [B, s*s, Ht*Wt]
    valid_px = patches > 0
    masked = torch.where(valid_px, patches, torch.full_like(patches, float("nan")))
    median = masked.nanmedian(dim=1).values.nan_to_num(0.0)
    fraction = valid_px.float().mean(dim=1)
    shape = (b, 1, h // stride, w // stride)
    valid = (fraction >= min_valid_fraction) & (median > 0)
    return TokenGrid(stride, color, median.reshape(shape), valid.reshape(shape))


def baseline_tokens(grid: TokenGrid, num_classes: int, feature_dim: int) -> dict[str, Tensor]:
    """All-zero corrections: decoding them gives the non-learned baseline."""
    b, _, ht, wt = grid.depth_m.shape
    zeros = {name: grid.depth_m.new_zeros(b, k, ht, wt) for name, k in TOKEN_FIELDS}
    zeros["semantic"] = grid.depth_m.new_zeros(b, num_classes, ht, wt)
    zeros["feature"] = grid.depth_m.new_zeros(b, feature_dim, ht, wt)
    return zeros


def decode_image(
    tokens: dict[str, Tensor],
    grid: TokenGrid,
    batch_index: int,
    intrinsics: Intrinsics,
    T_world_cam: np.ndarray,
    config: DecodeConfig,
) -> GaussianSet:
    """Gaussians of one image of the batch, in the world frame.

    Args:
        tokens: network outputs (or :func:`baseline_tokens`), each [B, k, Ht, Wt].
        grid: the pooled frame.
        batch_index: which image of the batch.
        intrinsics: of the image the tokens were computed on.
        T_world_cam: [4, 4] camera-to-world pose of that image.
        config: decoding constants.

    Returns:
        The valid tokens' Gaussians; ``semantics`` holds class probabilities.
    """
    s = grid.stride
    # Indices once, not a boolean mask per field: each mask indexing is its own nonzero().
    valid = grid.valid[batch_index, 0].reshape(-1).nonzero().squeeze(1)  # [T_valid]

    def take(name: str) -> Tensor:  # [T_valid, k]
        t = tokens[name][batch_index]
        return t.reshape(t.shape[0], -1).index_select(1, valid).t()

    ht, wt = grid.valid.shape[-2:]
    device, dtype = grid.depth_m.device, grid.depth_m.dtype
    v_idx, u_idx = torch.meshgrid(
        torch.arange(ht, device=device, dtype=dtype), torch.arange(wt, device=device, dtype=dtype), indexing="ij"
    )
    centre_px = torch.stack([u_idx, v_idx], dim=-1).reshape(-1, 2).index_select(0, valid) * s + (s - 1) / 2.0
    offset = torch.tanh(take("offset")) * (s / 2.0)
    uv = centre_px + offset  # [T, 2]
    measured = grid.depth_m[batch_index, 0].reshape(-1).index_select(0, valid)[:, None]
    z = measured * torch.exp(config.max_depth_correction * torch.tanh(take("depth")))  # [T, 1]
    x = (uv[:, :1] - intrinsics.cx) / intrinsics.fx * z
    y = (uv[:, 1:] - intrinsics.cy) / intrinsics.fy * z
    means_cam = torch.cat([x, y, z], dim=1)

    T = torch.tensor(np.asarray(T_world_cam), dtype=dtype, device=device)
    means_world = means_cam @ T[:3, :3].T + T[:3, 3]

    color = grid.color[batch_index].reshape(3, -1).index_select(1, valid).t() + take("color")
    focal = 0.5 * (intrinsics.fx + intrinsics.fy)
    footprint = z * (s * config.footprint_scale / focal)
    limit = config.max_log_scale_correction
    log_scales = torch.log(footprint) + limit * torch.tanh(take("log_scale") / limit)

    identity = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=dtype, device=device)
    q_cam = F.normalize(identity + take("rotation"), dim=1)
    q_world_cam = Rotation.from_matrix(np.asarray(T_world_cam)[:3, :3]).as_quat()  # x, y, z, w
    q_wc = torch.tensor(np.roll(q_world_cam, 1), dtype=dtype, device=device)
    quats = quat_multiply(q_wc.expand_as(q_cam), q_cam)

    base_logit = float(np.log(config.base_opacity / (1.0 - config.base_opacity)))
    opacity_logits = base_logit + take("opacity")[:, 0]

    return GaussianSet(
        means=means_world,
        log_scales=log_scales,
        quats=quats,
        opacity_logits=opacity_logits,
        sh_dc=rgb_to_sh_dc(color),
        semantics=torch.softmax(take("semantic"), dim=1),
        features=take("feature"),
    )
