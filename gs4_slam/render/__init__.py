"""Differentiable Gaussian rasterisation: compiled CPU kernels, PyTorch twins, gsplat on CUDA.

    from gs4_slam.render import render, se3_exp
    out = render(gaussian_map, intrinsics, T_cam_world, channels=("color", "depth", "alpha"))
    out.color  # [H, W, 3]

Importing this package compiles nothing; see :mod:`gs4_slam.render.kernels`.
"""
from gs4_slam.lie import se3_exp, so3_exp
from gs4_slam.render.api import BACKENDS, CHANNELS, RenderOutput, camera_matrix, render, select_backend
from gs4_slam.render.kernels import has_cpu_kernels, load_cpu_kernels
from gs4_slam.render.projection import Projection, project_gaussians
from gs4_slam.render.rasterize import TILE_SHAPE, rasterize_to_pixels

__all__ = [
    "BACKENDS",
    "CHANNELS",
    "Projection",
    "RenderOutput",
    "TILE_SHAPE",
    "camera_matrix",
    "has_cpu_kernels",
    "load_cpu_kernels",
    "project_gaussians",
    "rasterize_to_pixels",
    "render",
    "se3_exp",
    "select_backend",
    "so3_exp",
]
