"""Pure-PyTorch twins of the compiled CPU kernels: fallback and test oracle.

``_project_gaussians`` twins ``project_forward`` (and through autograd
``project_backward``); ``_bin_tiles`` twins ``bin_tiles``; ``_rasterize_to_pixels`` twins
``rasterize_forward`` and (through autograd) ``rasterize_backward``. Both
follow the compositing rules of 3DGS/gsplat documented in
``csrc/render_cpu.cpp``.

The rasteriser does not use tiles: every Gaussian is expanded into the pixels
of its footprint box, the pairs that pass the alpha test are grouped by pixel
(in depth order), and each pixel's transmittance is a running sum of
``log(1 - alpha)``. Time and memory are proportional to the number of pairs
(times the channels).
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4
# Same slack as the kernels (see render_cpu.cpp).
_CUT_SLACK_REL = 1e-3
_CUT_SLACK_ABS = 1e-3
_PIXEL_SLACK = 1e-3


def _quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices [N, 3, 3] of quaternions (w, x, y, z) [N, 4] (normalised first)."""
    qq = (quats[:, :, None] * quats[:, None, :]).reshape(-1, 16)  # [N, 16]
    rot = qq @ _quadratic_form(quats.dtype, quats.device).reshape(16, 9)
    return (rot / (quats * quats).sum(-1, keepdim=True)).reshape(-1, 3, 3)


@functools.lru_cache(maxsize=8)
def _quadratic_form(dtype: torch.dtype, device: torch.device) -> Tensor:
    """Q [16, 3, 3] with R(q) = sum_kl q_k q_l Q[4k + l] / |q|^2 for q = (w, x, y, z)."""
    w, x, y, z = range(4)
    terms = {  # entry of R -> ((k, l, coefficient), ...), quadratic in q
        (0, 0): ((w, w, 1), (x, x, 1), (y, y, -1), (z, z, -1)),
        (0, 1): ((x, y, 2), (w, z, -2)),
        (0, 2): ((x, z, 2), (w, y, 2)),
        (1, 0): ((x, y, 2), (w, z, 2)),
        (1, 1): ((w, w, 1), (x, x, -1), (y, y, 1), (z, z, -1)),
        (1, 2): ((y, z, 2), (w, x, -2)),
        (2, 0): ((x, z, 2), (w, y, -2)),
        (2, 1): ((y, z, 2), (w, x, 2)),
        (2, 2): ((w, w, 1), (x, x, -1), (y, y, -1), (z, z, 1)),
    }
    form = torch.zeros(16, 3, 3, dtype=torch.float64)
    for (i, j), products in terms.items():
        for k, l, coefficient in products:
            form[4 * k + l, i, j] = coefficient
    return form.to(dtype=dtype, device=device)


def _project_gaussians(
    means: Tensor,  # [N, 3] world
    quats: Tensor,  # [N, 4]
    log_scales: Tensor,  # [N, 3]
    T_cam_world: Tensor,  # [4, 4]  # noqa: N803 - transform naming convention
    K: Tensor,  # [3, 3] rasteriser convention  # noqa: N803
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Twin of the kernel ``project_forward``, differentiable through autograd.

    Args:
        means, quats, log_scales: the Gaussians.
        T_cam_world: world-to-camera transform (may require grad).
        K: camera matrix, principal point in the rasteriser convention.
        width, height: image size, for the Jacobian clamp.
        near_plane: Gaussians with depth <= this are culled.
        far_plane: and those with depth >= this.
        eps2d: added to the diagonal of each 2D covariance (anti-aliasing, as in 3DGS).

    Returns:
        means2d [N, 2], conics [N, 3], depths [N], valid [N] bool.
    """
    # Written for few, large tensor ops: at SLAM map sizes each op costs about
    # as much in dispatch as in arithmetic, forward and backward alike.
    rot_cw = T_cam_world[:3, :3]
    p_cam = torch.addmm(T_cam_world[:3, 3], means, rot_cw.T)  # [N, 3]
    x, y, z = p_cam.unbind(-1)
    valid = (z > near_plane) & (z < far_plane) & torch.isfinite(p_cam).all(-1)
    # Culled rows get a harmless depth so that nothing below produces inf/nan
    # (whose gradients would poison the valid rows through the shared pose).
    inv_z = 1.0 / torch.where(valid, z, torch.ones_like(z))

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    # Footprints of Gaussians far outside the view use the Jacobian at the
    # border of a 1.3x wider view (as 3DGS/gsplat), keeping them bounded.
    u_clamped = torch.clamp(x * inv_z, min=-(cx / fx + 0.3 * tan_fovx), max=(width - cx) / fx + 0.3 * tan_fovx)
    v_clamped = torch.clamp(y * inv_z, min=-(cy / fy + 0.3 * tan_fovy), max=(height - cy) / fy + 0.3 * tan_fovy)

    # R_cw R(q) for all Gaussians in one product: R(q) is a quadratic form of q,
    # and R_cw folds into the form's coefficients.
    form = torch.einsum("ik,qkj->qij", rot_cw, _quadratic_form(means.dtype, means.device)).reshape(16, 9)
    qq = (quats[:, :, None] * quats[:, None, :]).reshape(-1, 16)  # [N, 16]
    rot_cam = (qq @ form).reshape(-1, 3, 3)  # [N, 3, 3] times |q|^2
    # Rows of J R_cw R S (J the projection Jacobian), whose outer products give
    # the 2D covariance J R_cw Sigma R_cw^T J^T; 1/|q|^2 folds into J's entries.
    jz = inv_z / (quats * quats).sum(-1)  # [N]
    scales = log_scales.exp()
    row_u = ((fx * jz)[:, None] * (rot_cam[:, 0] - u_clamped[:, None] * rot_cam[:, 2])) * scales  # [N, 3]
    row_v = ((fy * jz)[:, None] * (rot_cam[:, 1] - v_clamped[:, None] * rot_cam[:, 2])) * scales  # [N, 3]
    cov_a = (row_u * row_u).sum(-1) + eps2d
    cov_b = (row_u * row_v).sum(-1)
    cov_c = (row_v * row_v).sum(-1) + eps2d
    det = cov_a * cov_c - cov_b * cov_b
    valid = valid & (det > 0)
    inv_det = 1.0 / torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([cov_c, -cov_b, cov_a], dim=-1) * inv_det[:, None]

    means2d = torch.stack([x * inv_z, y * inv_z], dim=-1) * torch.stack([fx, fy]) + torch.stack([cx, cy])
    return means2d, conics, z, valid


def _footprints(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    valid: Tensor,  # [N] bool
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Pixel boxes of the ellipses where alpha >= 1/255, as the kernels compute them.

    Returns:
        bbox [N, 4] int32 (x0, y0, x1, y1, half-open, zeros when invisible) and
        radii [N, 2] int32 (half-extents, zeros when invisible).
    """
    m = means2d.detach().double()
    a, b, c = conics.detach().double().unbind(-1)
    op = opacities.detach().double()
    det = a * c - b * b
    ok = valid & (op * 255.0 >= 1.0) & (det > 0) & (a > 0)
    cut = 2.0 * torch.log(255.0 * op.clamp_min(1.0 / 255.0)) * (1.0 + _CUT_SLACK_REL) + _CUT_SLACK_ABS
    det_safe = torch.where(ok, det, torch.ones_like(det))
    rx = torch.sqrt(torch.where(ok, cut * c / det_safe, torch.zeros_like(det)))
    ry = torch.sqrt(torch.where(ok, cut * a / det_safe, torch.zeros_like(det)))
    ok &= torch.isfinite(m).all(-1) & torch.isfinite(rx) & torch.isfinite(ry)
    mx, my = m.unbind(-1)
    x0 = torch.ceil(mx - 0.5 - rx - _PIXEL_SLACK).clamp(0, width)
    x1 = (torch.floor(mx - 0.5 + rx + _PIXEL_SLACK) + 1.0).clamp(0, width)
    y0 = torch.ceil(my - 0.5 - ry - _PIXEL_SLACK).clamp(0, height)
    y1 = (torch.floor(my - 0.5 + ry + _PIXEL_SLACK) + 1.0).clamp(0, height)
    ok &= (x0 < x1) & (y0 < y1)
    bbox = torch.stack([x0, y0, x1, y1], dim=-1).nan_to_num(0.0)
    bbox = torch.where(ok[:, None], bbox, torch.zeros_like(bbox)).to(torch.int32)
    radii = torch.stack([rx.clamp(max=1e7).ceil().clamp_min(1), ry.clamp(max=1e7).ceil().clamp_min(1)], dim=-1)
    radii = torch.where(ok[:, None], radii.nan_to_num(0.0), torch.zeros_like(radii)).to(torch.int32)
    return bbox, radii


def _depth_order(depths: Tensor, visible: Tensor) -> Tensor:
    """Indices of the visible Gaussians, front to back, ties in index order."""
    idx = torch.nonzero(visible).flatten()
    return idx[torch.sort(depths.detach()[idx], stable=True).indices]


def _expand_boxes(x0: Tensor, y0: Tensor, x1: Tensor, y1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All integer points of boxes [K] as (box index, x, y), box-major, row-major inside."""
    w = (x1 - x0).long()
    h = (y1 - y0).long()
    counts = w * h
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    local = torch.arange(owner.numel(), device=counts.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    wo = w[owner]
    return owner, x0.long()[owner] + local % wo, y0.long()[owner] + local // wo


def _bin_tiles(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    depths: Tensor,  # [N]
    valid: Tensor,  # [N] bool
    width: int,
    height: int,
    tile_w: int,
    tile_h: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Twin of the kernel ``bin_tiles``: (tile_offsets, tile_ids, bbox, radii)."""
    bbox, radii = _footprints(means2d, conics, opacities, valid, width, height)
    tiles_x, tiles_y = -(-width // tile_w), -(-height // tile_h)
    order = _depth_order(depths, bbox[:, 0] < bbox[:, 2])
    box = bbox[order].long()
    tx0, ty0 = box[:, 0] // tile_w, box[:, 1] // tile_h
    tx1, ty1 = (box[:, 2] - 1) // tile_w + 1, (box[:, 3] - 1) // tile_h + 1
    owner, tx, ty = _expand_boxes(tx0, ty0, tx1, ty1)
    tile_of = ty * tiles_x + tx
    # Stable: inside a tile the depth order of `order` survives.
    perm = torch.sort(tile_of, stable=True).indices
    ids = order[owner[perm]].to(torch.int32)
    counts = torch.bincount(tile_of, minlength=tiles_x * tiles_y)
    offsets = torch.zeros(tiles_x * tiles_y + 1, dtype=torch.int32, device=means2d.device)
    offsets[1:] = torch.cumsum(counts, 0)
    return offsets, ids, bbox, radii


def _segment_exclusive_cumsum(values: Tensor, segment_start: Tensor) -> Tensor:
    """Per-segment exclusive prefix sums of ``values`` [M] (segments are contiguous)."""
    exclusive = torch.cumsum(values, 0) - values
    return exclusive - exclusive[segment_start]


def _rasterize_to_pixels(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D]
    depths: Tensor,  # [N]
    valid: Tensor,  # [N] bool
    width: int,
    height: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Twin of the kernel ``rasterize_forward``, differentiable through autograd.

    Returns:
        image [H, W, D], alpha [H, W] (1 - final transmittance), contributors per
        pixel [H, W] int32, pixels per Gaussian [N] int32.
    """
    n, n_ch = colors.shape
    device, dtype = means2d.device, means2d.dtype
    bbox, _ = _footprints(means2d, conics, opacities, valid, width, height)
    order = _depth_order(depths, bbox[:, 0] < bbox[:, 2])
    box = bbox[order]
    owner, px, py = _expand_boxes(box[:, 0], box[:, 1], box[:, 2], box[:, 3])
    gid = order[owner]

    def alphas(g: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        d = torch.stack([x, y], -1).to(dtype) + 0.5 - means2d[g]  # [M, 2]
        a, b, c = conics[g].unbind(-1)
        sigma = 0.5 * (a * d[:, 0] ** 2 + c * d[:, 1] ** 2) + b * d[:, 0] * d[:, 1]
        return torch.clamp_max(opacities[g] * torch.exp(-sigma), ALPHA_MAX), sigma

    # Cheap pre-filter without autograd, then the differentiable pass on survivors.
    with torch.no_grad():
        alpha, sigma = alphas(gid, px, py)
        keep = (sigma >= 0) & (alpha >= ALPHA_MIN)
    gid, px, py = gid[keep], px[keep], py[keep]
    pix = py * width + px
    # Pairs are in depth order; a stable sort by pixel keeps it inside each pixel.
    perm = torch.sort(pix, stable=True).indices
    gid, px, py, pix = gid[perm], px[perm], py[perm], pix[perm]
    alpha, _ = alphas(gid, px, py)

    n_pix = width * height
    counts = torch.bincount(pix, minlength=n_pix)
    seg_start = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    log_t = _segment_exclusive_cumsum(torch.log1p(-alpha.double()), seg_start)
    t_before = torch.exp(log_t)
    with torch.no_grad():
        stops = (t_before * (1.0 - alpha.double()) <= TRANSMITTANCE_MIN).long()
        # Everything from a pixel's first stop onwards is left out.
        included = (_segment_exclusive_cumsum(stops, seg_start) + stops) == 0
    weights = (alpha.double() * t_before)[included].to(dtype)
    gid, pix = gid[included], pix[included]

    # A gather and a scatter-add, not a sparse matrix product: the latter's
    # backward materialises a dense [pixels, N] gradient.
    image = colors.new_zeros(n_pix, n_ch).index_add(0, pix, weights[:, None] * colors.index_select(0, gid))
    image = image.reshape(height, width, n_ch)
    alpha_img = torch.zeros(n_pix, dtype=dtype, device=device).index_add(0, pix, weights).reshape(height, width)
    pix_count = torch.bincount(pix, minlength=n_pix).to(torch.int32).reshape(height, width)
    gauss_count = torch.bincount(gid, minlength=n).to(torch.int32)
    return image, alpha_img, pix_count, gauss_count
