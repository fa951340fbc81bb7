"""Tile binning and rasterisation of projected Gaussians to pixels (CPU backends).

``rasterize_to_pixels`` composites any number of per-Gaussian channels at once;
the ``cpu`` backend runs the compiled kernels through a custom autograd
function, the ``torch`` backend runs the PyTorch twins under autograd.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch
from torch import Tensor

from gs4_slam.render import _torch_impl

#: Tile (width, height) in pixels of the compiled rasteriser; see Tiling in render_cpu.cpp.
TILE_SHAPE = (320, 8)


@dataclass
class TileBins:
    """Visible Gaussians binned into tiles (no gradients)."""

    offsets: Tensor  # [n_tiles + 1] int32, tile t owns ids[offsets[t]:offsets[t + 1]]
    ids: Tensor  # [n_isect] int32 Gaussian indices, front to back within a tile
    bbox: Tensor  # [N, 4] int32 footprint pixel box x0, y0, x1, y1 (half-open; empty = invisible)
    radii: Tensor  # [N, 2] int32 footprint half-extents in pixels, 0 = invisible
    width: int
    height: int
    tile: tuple[int, int]  # (width, height)


@dataclass
class Rasterized:
    """Output of :func:`rasterize_to_pixels`."""

    image: Tensor  # [H, W, D]
    alpha: Tensor  # [H, W]
    pixel_contributors: Tensor  # [H, W] int32
    gaussian_pixels: Tensor  # [N] int32
    radii: Tensor  # [N, 2] int32


def bin_tiles(
    kernels: ModuleType | None,
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    depths: Tensor,  # [N]
    valid: Tensor,  # [N] bool
    width: int,
    height: int,
    tile: tuple[int, int] = TILE_SHAPE,
) -> TileBins:
    """Bin Gaussians into tiles with the kernel, or its twin when ``kernels`` is None."""
    args = (means2d.detach().contiguous(), conics.detach().contiguous(), opacities.detach().contiguous(),
            depths.detach().contiguous(), valid.contiguous(), width, height, *tile)  # fmt: skip
    fn = kernels.bin_tiles if kernels is not None else _torch_impl._bin_tiles
    offsets, ids, bbox, radii = fn(*args)
    return TileBins(offsets, ids, bbox, radii, width, height, tile)


class _RasterizeCPU(torch.autograd.Function):
    """The compiled forward/backward kernels as one autograd node."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, bins: TileBins, kernels: ModuleType):  # noqa: D102
        image, final_t, last, pix_count, gauss_count = kernels.rasterize_forward(
            means2d, conics, opacities, colors, bins.offsets, bins.ids, bins.bbox, bins.width, bins.height, *bins.tile
        )
        ctx.save_for_backward(means2d, conics, opacities, colors, final_t, last)
        ctx.bins, ctx.kernels = bins, kernels
        ctx.mark_non_differentiable(pix_count, gauss_count)
        return image, 1.0 - final_t, pix_count, gauss_count

    @staticmethod
    def backward(ctx, grad_image, grad_alpha, _grad_pix, _grad_gauss):  # noqa: D102
        means2d, conics, opacities, colors, final_t, last = ctx.saved_tensors
        bins = ctx.bins
        if grad_image is None:
            grad_image = colors.new_zeros(final_t.shape + (colors.shape[1],))
        grad_image = grad_image.contiguous()
        grad_alpha = torch.zeros_like(final_t) if grad_alpha is None else grad_alpha.contiguous()
        g_means2d, g_conics, g_opacities, g_colors = ctx.kernels.rasterize_backward(
            means2d, conics, opacities, colors, bins.offsets, bins.ids, bins.bbox, final_t, last,
            grad_image, grad_alpha, bins.width, bins.height, *bins.tile,
        )  # fmt: skip
        return g_means2d, g_conics, g_opacities, g_colors, None, None


def rasterize_to_pixels(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D]
    depths: Tensor,  # [N]
    valid: Tensor,  # [N] bool
    width: int,
    height: int,
    kernels: ModuleType | None,
    tile: tuple[int, int] = TILE_SHAPE,
) -> Rasterized:
    """Alpha-composite D channels front to back, differentiably.

    Args:
        means2d, conics, opacities, depths, valid: the projected Gaussians.
        colors: per-Gaussian channel values.
        width, height: image size.
        kernels: the compiled module, or None for the PyTorch twin.
        tile: tile (width, height) of the compiled kernels.
    """
    if kernels is None:
        _, radii = _torch_impl._footprints(means2d, conics, opacities, valid, width, height)
        image, alpha, pix_count, gauss_count = _torch_impl._rasterize_to_pixels(
            means2d, conics, opacities, colors, depths, valid, width, height
        )
        return Rasterized(image, alpha, pix_count, gauss_count, radii)
    bins = bin_tiles(kernels, means2d, conics, opacities, depths, valid, width, height, tile)
    image, alpha, pix_count, gauss_count = _RasterizeCPU.apply(
        means2d.contiguous(), conics.contiguous(), opacities.contiguous(), colors.contiguous(), bins, kernels
    )
    return Rasterized(image, alpha, pix_count, gauss_count, bins.radii)
