"""The renderer's front door: one stateless function, several backends.

``render`` projects the Gaussians (:mod:`.projection`), builds one per-Gaussian
channel matrix from the requested outputs (colour, depth, semantic scores,
features), composites it (:mod:`.rasterize` on the CPU, gsplat on CUDA) and
splits the result. Every output is differentiable with respect to every
Gaussian parameter and to ``T_cam_world``.

Backends:
    ``"cpu"``: compiled C++ kernels (built by the set-up, see :mod:`.kernels`).
    ``"torch"``: the pure-PyTorch twins; any device, slower; the fallback.
    ``"gsplat"``: gsplat's CUDA ``rasterization`` (CUDA tensors only).
    ``"auto"``: gsplat for CUDA tensors when its CUDA backend works, else
    ``"cpu"`` when the kernels load, else ``"torch"``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.gaussians import GaussianMap, GaussianSet, sh_dc_to_rgb
from gs4_slam.render.kernels import load_cpu_kernels
from gs4_slam.render.projection import project_gaussians
from gs4_slam.render.rasterize import rasterize_to_pixels

CHANNELS = ("color", "depth", "alpha", "semantics", "features")
BACKENDS = ("auto", "cpu", "torch", "gsplat")


@dataclass
class RenderOutput:
    """Images of the requested channels (``None`` for the others) and per-Gaussian meta.

    ``depth`` is the expected depth ``sum_i w_i z_i`` (``w_i`` the compositing
    weights, ``z_i`` camera-frame depth), which is low where ``alpha`` is; with
    ``normalize_depth=True`` it is divided by ``alpha``.
    """

    color: Tensor | None  # [H, W, 3]
    depth: Tensor | None  # [H, W]
    alpha: Tensor | None  # [H, W] accumulated opacity (silhouette)
    semantics: Tensor | None  # [H, W, C] blended class scores
    features: Tensor | None  # [H, W, F]
    radii: Tensor  # [N, 2] int32 footprint half-extents in pixels; 0 = culled or off-screen
    means2d: Tensor  # [N, 2] projected means (pixel centres at +0.5); call retain_grad() to collect grads
    depths: Tensor  # [N] camera-frame depth of each mean
    gaussian_pixels: Tensor | None  # [N] int32 pixels each Gaussian contributed to (None on gsplat)
    pixel_contributors: Tensor | None  # [H, W] int32 Gaussians composited per pixel (None on gsplat)
    backend: str

    @property
    def visible(self) -> Tensor:
        """[N] bool: the footprint overlaps the image (in front of the camera)."""
        return (self.radii > 0).all(dim=-1)


def camera_matrix(intrinsics: Intrinsics, device: torch.device, dtype: torch.dtype) -> Tensor:
    """K [3, 3] in the rasteriser convention (pixel centres at +0.5) of OpenCV intrinsics."""
    k = intrinsics
    return torch.tensor(
        [[k.fx, 0.0, k.cx + 0.5], [0.0, k.fy, k.cy + 0.5], [0.0, 0.0, 1.0]], device=device, dtype=dtype
    )


@functools.lru_cache(maxsize=None)
def gsplat_cuda_available() -> bool:
    """Whether gsplat's CUDA rasteriser can run here."""
    if not torch.cuda.is_available():
        return False
    try:
        from gsplat.cuda._backend import _C
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False
    return _C is not None


def select_backend(backend: str, device: torch.device) -> str:
    """The concrete backend ``backend`` means for tensors on ``device``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        if device.type == "cuda" and gsplat_cuda_available():
            return "gsplat"
        if device.type == "cpu" and load_cpu_kernels() is not None:
            return "cpu"
        return "torch"
    if backend == "cpu":
        if device.type != "cpu":
            raise ValueError(f"backend 'cpu' needs CPU tensors, the Gaussians are on {device}")
        if load_cpu_kernels() is None:
            raise RuntimeError("the compiled CPU kernels are unavailable (see the warning above); use 'torch'")
    if backend == "gsplat" and not (device.type == "cuda" and gsplat_cuda_available()):
        raise RuntimeError(f"backend 'gsplat' needs CUDA tensors and gsplat's CUDA backend (device: {device})")
    return backend


def _pose_tensor(T_cam_world: Tensor | np.ndarray | Pose, like: Tensor) -> Tensor:  # noqa: N803
    if isinstance(T_cam_world, Pose):
        T_cam_world = T_cam_world.matrix
    if isinstance(T_cam_world, np.ndarray):
        T_cam_world = torch.from_numpy(np.array(T_cam_world, dtype=np.float64))
    if tuple(T_cam_world.shape) != (4, 4):
        raise ValueError(f"T_cam_world must be 4x4, got {list(T_cam_world.shape)}")
    return T_cam_world.to(device=like.device, dtype=like.dtype)


def _check_channels(channels: Iterable[str], gaussians: GaussianSet) -> tuple[str, ...]:
    channels = tuple(channels)
    unknown = sorted(set(channels) - set(CHANNELS))
    if unknown:
        raise ValueError(f"unknown channel(s) {unknown}; choose from {CHANNELS}")
    if "semantics" in channels and gaussians.num_classes == 0:
        raise ValueError("'semantics' requested but the Gaussians have no class scores")
    if "features" in channels and gaussians.feature_dim == 0:
        raise ValueError("'features' requested but the Gaussians have no features")
    return channels


def _channel_matrix(gaussians: GaussianSet, depths: Tensor, channels: Sequence[str]) -> tuple[Tensor, dict]:
    """Per-Gaussian values of every composited channel [N, D] and each output's columns."""
    parts: list[Tensor] = []
    columns: dict[str, slice] = {}
    sources = {
        "color": lambda: sh_dc_to_rgb(gaussians.sh_dc),
        "depth": lambda: depths[:, None],
        "semantics": lambda: gaussians.semantics,
        "features": lambda: gaussians.features,
    }
    start = 0
    for name in ("color", "depth", "semantics", "features"):
        if name in channels:
            part = sources[name]()
            columns[name] = slice(start, start + part.shape[1])
            start += part.shape[1]
            parts.append(part)
    if not parts:
        return gaussians.means.new_zeros(len(gaussians), 0), columns
    return torch.cat(parts, dim=1), columns


def render(
    gaussians: GaussianSet | GaussianMap,
    intrinsics: Intrinsics,
    T_cam_world: Tensor | np.ndarray | Pose,  # noqa: N803 - transform naming convention
    width: int | None = None,
    height: int | None = None,
    channels: Iterable[str] = ("color", "depth", "alpha"),
    backend: str = "auto",
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    normalize_depth: bool = False,
    background: Tensor | None = None,
) -> RenderOutput:
    """Render Gaussians into a pinhole camera.

    Args:
        gaussians: the Gaussians (a map renders its live part).
        intrinsics: OpenCV intrinsics (pixel centres at integers), undistorted.
        T_cam_world: world-to-camera transform [4, 4]; a tensor may require grad
            (optimise a twist with ``se3_exp(xi) @ T0``, see :mod:`gs4_slam.lie`).
        width, height: output size; the intrinsics are rescaled to it
            (default: the intrinsics' own size).
        channels: any of ``CHANNELS``; extra channels cost little.
        backend: one of ``BACKENDS``.
        near_plane: Gaussians with camera depth <= this are culled (metres).
        far_plane: and those with depth >= this.
        eps2d: 2D covariance dilation in pixels^2 (3DGS default).
        normalize_depth: divide the expected depth by alpha.
        background: colour [3] composited behind the Gaussians.

    Returns:
        The rendered channels and per-Gaussian meta.
    """
    if isinstance(gaussians, GaussianMap):
        gaussians = gaussians.as_set()
    if intrinsics.has_distortion:
        raise ValueError("the renderer is pinhole only: undistort the images and use intrinsics.without_distortion()")
    width = intrinsics.width if width is None else int(width)
    height = intrinsics.height if height is None else int(height)
    if (width, height) != (intrinsics.width, intrinsics.height):
        intrinsics = intrinsics.scaled(width, height)
    if not near_plane > 0:
        raise ValueError(f"near_plane must be positive, got {near_plane}")
    channels = _check_channels(channels, gaussians)
    device, dtype = gaussians.device, gaussians.dtype
    name = select_backend(backend, device)
    pose = _pose_tensor(T_cam_world, gaussians.means)
    K = camera_matrix(intrinsics, device, dtype)  # noqa: N806 - matrix
    if len(gaussians) == 0:
        return _empty_output(gaussians, channels, width, height, name)
    if name == "gsplat":
        from gs4_slam.render._gsplat_backend import rasterize_gsplat

        image, alpha, meta = rasterize_gsplat(
            gaussians, pose, K, width, height, lambda depths: _channel_matrix(gaussians, depths, channels),
            near_plane, far_plane, eps2d,
        )  # fmt: skip
    else:
        kernels = load_cpu_kernels() if name == "cpu" else None
        image, alpha, meta = _rasterize_here(gaussians, pose, K, width, height, channels, kernels,
                                             near_plane, far_plane, eps2d)  # fmt: skip
    columns = meta.pop("columns")
    return _decode(image, alpha, columns, channels, normalize_depth, background, meta, name)


def _rasterize_here(
    gaussians: GaussianSet,
    pose: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]  # noqa: N803
    width: int,
    height: int,
    channels: Sequence[str],
    kernels,
    near_plane: float,
    far_plane: float,
    eps2d: float,
) -> tuple[Tensor, Tensor, dict]:
    """The "cpu" (kernels given) and "torch" backends: image [H, W, D], alpha [H, W], meta."""
    proj = project_gaussians(
        gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacity_logits,
        pose, K, width, height, near_plane, far_plane, eps2d, kernels,
    )  # fmt: skip
    matrix, columns = _channel_matrix(gaussians, proj.depths, channels)
    out = rasterize_to_pixels(
        proj.means2d, proj.conics, proj.opacities, matrix, proj.depths, proj.valid, width, height, kernels
    )
    meta = dict(radii=out.radii, means2d=proj.means2d, depths=proj.depths, gaussian_pixels=out.gaussian_pixels,
                pixel_contributors=out.pixel_contributors, columns=columns)  # fmt: skip
    return out.image, out.alpha, meta


def _decode(
    image: Tensor,  # [H, W, D]
    alpha: Tensor,  # [H, W]
    columns: dict[str, slice],
    channels: Sequence[str],
    normalize_depth: bool,
    background: Tensor | None,
    meta: dict,
    backend: str,
) -> RenderOutput:
    color = depth = semantics = features = None
    if "color" in columns:
        color = image[..., columns["color"]]
        if background is not None:
            color = color + (1.0 - alpha)[..., None] * background.to(color)
    if "depth" in columns:
        depth = image[..., columns["depth"].start]
        if normalize_depth:
            depth = depth / alpha.clamp_min(1e-10)
    if "semantics" in columns:
        semantics = image[..., columns["semantics"]]
    if "features" in columns:
        features = image[..., columns["features"]]
    return RenderOutput(
        color=color,
        depth=depth,
        alpha=alpha if "alpha" in channels else None,
        semantics=semantics,
        features=features,
        backend=backend,
        **meta,
    )


def _empty_output(
    gaussians: GaussianSet, channels: Sequence[str], width: int, height: int, backend: str
) -> RenderOutput:
    zeros = gaussians.means.new_zeros
    sizes = {"color": 3, "semantics": gaussians.num_classes, "features": gaussians.feature_dim}
    images = {name: zeros(height, width, sizes[name]) if name in channels else None for name in sizes}
    return RenderOutput(
        depth=zeros(height, width) if "depth" in channels else None,
        alpha=zeros(height, width) if "alpha" in channels else None,
        radii=torch.zeros(0, 2, dtype=torch.int32, device=gaussians.device),
        means2d=zeros(0, 2),
        depths=zeros(0),
        gaussian_pixels=torch.zeros(0, dtype=torch.int32, device=gaussians.device),
        pixel_contributors=torch.zeros(height, width, dtype=torch.int32, device=gaussians.device),
        backend=backend,
        **images,
    )
