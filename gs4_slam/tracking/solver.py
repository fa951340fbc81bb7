"""Dense RGB-D alignment: point-to-plane ICP and photometric error, jointly.

The source frame's points are warped into the reference view with the current
estimate of ``T_ref_src`` (projective data association). Each point contributes

* a geometric residual ``n_ref . (T p_src - v_ref)``: point-to-plane distance to
  the reference vertex/normal at the nearest reference pixel, and
* a photometric residual ``I_ref(pi(T p_src)) - I_src``: bilinear reference
  intensity at the projection minus the source intensity,

each divided by its noise scale, Huber-weighted, the photometric term scaled by
a relative weight, and minimised by Gauss-Newton (IRLS) over a left-multiplied
se(3) update, coarse to fine. All reference-side quantities (vertices, normals,
intensity gradients) are computed once per reference, so a keyframe serves many
frames; per iteration the work is one gather per quantity and a [N, 6]
normal-equation product, all vectorised.

Why the reference side: the gradients, normals and vertex maps the Jacobians
need then never change while tracking against one keyframe, and an occlusion
test comes free (a photometric pair counts only where the reference depth agrees
with the warped point).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from gs4_slam.camera import Intrinsics
from gs4_slam.tracking.kernels import load_kernel
from gs4_slam.tracking.lie import orthonormalize, se3_exp
from gs4_slam.tracking.preprocess import ImageLevel, backproject


@dataclass
class SolverConfig:
    """Settings of the dense aligner.

    Attributes:
        levels: pyramid levels (each halves the resolution).
        iterations: Gauss-Newton iterations per level, finest first; the last
            value repeats for levels beyond the list.
        photometric_weight: weight of the normalised photometric term relative
            to the normalised geometric one.
        geometric_sigma_m: point-to-plane noise at 1 m depth; it grows with the
            square of the depth like a structured-light sensor's.
        photometric_sigma: intensity noise (intensities are in [0, 1]).
        huber_k: Huber threshold in units of each term's sigma.
        inlier_sigmas: a correspondence whose point-to-plane residual is within
            this many sigmas is an inlier (counted in the valid ratio).
        max_correspondence_m: farther point pairs are not correspondences.
        finest_stride: keep every n-th source pixel (in u and v) at the finest
            level; the coarse levels already hold the wide-basin information, the
            finest level only refines, and 1/4 of its pixels suffices.
        min_points: fewer valid correspondences than this means the alignment
            is unconstrained.
        convergence_eps: stop a level when the update's norm (m and rad) is below.
        min_depth_m: depths below are ignored.
        max_depth_m: depths beyond are ignored (noise grows with depth squared).
        normal_smoothing: bilateral smoothing of the reference depth used for
            normals only; 0 disables it.
    """

    levels: int = 3
    iterations: tuple[int, ...] = (3, 6, 10)
    photometric_weight: float = 0.7
    geometric_sigma_m: float = 0.004
    photometric_sigma: float = 0.03
    huber_k: float = 2.0
    inlier_sigmas: float = 3.0
    max_correspondence_m: float = 0.1
    finest_stride: int = 2
    min_points: int = 60
    convergence_eps: float = 1e-4
    min_depth_m: float = 0.1
    max_depth_m: float = 5.0
    normal_smoothing: bool = True

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError("levels must be >= 1")
        if not self.iterations or any(i < 0 for i in self.iterations):
            raise ValueError("iterations must be a non-empty list of counts >= 0")
        if self.finest_stride < 1:
            raise ValueError("finest_stride must be >= 1")
        if self.geometric_sigma_m <= 0 or self.photometric_sigma <= 0 or self.huber_k <= 0:
            raise ValueError("sigmas and huber_k must be positive")
        if self.photometric_weight < 0:
            raise ValueError("photometric_weight must be >= 0")

    def iterations_at(self, level: int) -> int:
        return self.iterations[min(level, len(self.iterations) - 1)]


@dataclass(frozen=True)
class ReferenceLevel:
    """Reference-side data of one pyramid level, flattened row-major.

    Attributes:
        intrinsics: of this level (no distortion).
        geometry: [H*W, 6] float32: vertex (x, y, z) in the reference camera and
            unit normal; zero rows where invalid.
        valid: [H*W] bool, the pixel has a vertex and a normal.
        photo: [H*W, 3] float32: intensity, d/du, d/dv (per pixel).
    """

    intrinsics: Intrinsics
    geometry: np.ndarray
    valid: np.ndarray
    photo: np.ndarray


@dataclass(frozen=True)
class SourceLevel:
    """Source-side data of one level: the valid pixels as points.

    Attributes:
        intrinsics: of this level.
        points: [N, 3] float32, in the source camera.
        gray: [N] float32 intensities of those pixels.
    """

    intrinsics: Intrinsics
    points: np.ndarray
    gray: np.ndarray


@dataclass
class Alignment:
    """Outcome of :func:`align`.

    Attributes:
        T_ref_src: [4, 4] float64 estimate.
        valid_ratio: inlier correspondences / source points at the finest level.
        overlap: correspondences (inliers or not) / source points.
        geometric_rmse_m: RMS point-to-plane residual of the correspondences.
        normalized_residual: RMS point-to-plane residual in units of the
            depth-dependent noise sigma (about 1 for a perfect fit).
        photometric_rmse: RMS intensity residual of the correspondences.
        num_correspondences: at the finest level used.
        num_points: source points at the finest level used.
        iterations: Gauss-Newton iterations run, all levels.
        ok: False when the problem was unconstrained (too few points, singular).
        information: [6, 6] normal matrix at the end (for conditioning checks).
    """

    T_ref_src: np.ndarray
    valid_ratio: float = 0.0
    overlap: float = 0.0
    geometric_rmse_m: float = float("inf")
    normalized_residual: float = float("inf")
    photometric_rmse: float = float("inf")
    num_correspondences: int = 0
    num_points: int = 0
    iterations: int = 0
    ok: bool = False
    information: np.ndarray = field(default_factory=lambda: np.zeros((6, 6)))


def normals_from_vertices(vertices: np.ndarray, max_relative_step: float = 0.05) -> np.ndarray:
    """Unit normals [H, W, 3] from central differences of a vertex map; zero where
    a neighbour is missing or the surface jumps (depth step over
    ``max_relative_step`` of the depth), i.e. where no plane is defined."""
    normals = np.zeros_like(vertices)
    du = vertices[1:-1, 2:] - vertices[1:-1, :-2]
    dv = vertices[2:, 1:-1] - vertices[:-2, 1:-1]
    n = np.cross(du, dv)
    z = vertices[..., 2]
    centre = z[1:-1, 1:-1]
    ok = (centre > 0) & (z[1:-1, 2:] > 0) & (z[1:-1, :-2] > 0) & (z[2:, 1:-1] > 0) & (z[:-2, 1:-1] > 0)
    limit = 2.0 * max_relative_step * centre
    ok &= (np.abs(du[..., 2]) < limit) & (np.abs(dv[..., 2]) < limit)
    norm = np.linalg.norm(n, axis=2)
    ok &= norm > 1e-12
    n = n / np.maximum(norm, 1e-12)[..., None]
    normals[1:-1, 1:-1] = np.where(ok[..., None], n, 0.0)
    return normals


def build_reference(pyramid: list[ImageLevel], config: SolverConfig) -> list[ReferenceLevel]:
    """Per-level reference data (finest first) from an undistorted pyramid."""
    out = []
    for level in pyramid:
        depth = level.depth_m
        vertices = backproject(depth, level.intrinsics)
        if config.normal_smoothing:
            # Kinect depth is quantised at millimetres; raw central differences at
            # 320x240 give normals tilted by tens of degrees. The bilateral filter
            # smooths within surfaces, not across depth edges (sigma 3 cm).
            smooth = cv2.bilateralFilter(depth, 5, 0.03, 2.0)
            smooth[depth <= 0] = 0.0
            normals = normals_from_vertices(backproject(smooth, level.intrinsics))
        else:
            normals = normals_from_vertices(vertices)
        valid = (depth > 0) & np.any(normals != 0, axis=2)
        geometry = np.concatenate([vertices, normals], axis=2).reshape(-1, 6)
        geometry[~valid.reshape(-1)] = 0.0
        grad_u = cv2.Sobel(level.gray, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
        grad_v = cv2.Sobel(level.gray, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
        photo = np.stack([level.gray, grad_u, grad_v], axis=2).reshape(-1, 3)
        out.append(ReferenceLevel(level.intrinsics, np.ascontiguousarray(geometry), valid.reshape(-1), photo))
    return out


def build_source(pyramid: list[ImageLevel], config: SolverConfig) -> list[SourceLevel]:
    """Per-level source points (finest first); the finest level is subsampled."""
    out = []
    for index, level in enumerate(pyramid):
        depth, gray = level.depth_m, level.gray
        stride = config.finest_stride if index == 0 else 1
        if stride > 1:
            # Offset grids alternate by level use so no pixel column is favoured.
            depth = depth[stride // 2 :: stride, stride // 2 :: stride]
            gray = gray[stride // 2 :: stride, stride // 2 :: stride]
            vertices = _backproject_strided(depth, level.intrinsics, stride)
        else:
            vertices = backproject(depth, level.intrinsics)
        mask = depth.reshape(-1) > 0
        out.append(
            SourceLevel(level.intrinsics, np.ascontiguousarray(vertices.reshape(-1, 3)[mask]), gray.reshape(-1)[mask])
        )
    return out


def _backproject_strided(depth_m: np.ndarray, intrinsics: Intrinsics, stride: int) -> np.ndarray:
    h, w = depth_m.shape
    offset = stride // 2
    u = (np.arange(w, dtype=np.float32) * stride + offset - intrinsics.cx) / intrinsics.fx
    v = (np.arange(h, dtype=np.float32) * stride + offset - intrinsics.cy) / intrinsics.fy
    vertices = np.empty((h, w, 3), dtype=np.float32)
    vertices[..., 0] = depth_m * u[None, :]
    vertices[..., 1] = depth_m * v[:, None]
    vertices[..., 2] = depth_m
    return vertices


@dataclass
class Residuals:
    """Residuals and Jacobians (w.r.t. a left se(3) update ``(v, w)`` of
    ``T_ref_src``) of the correspondences found at one estimate.

    Attributes:
        geometric: [M] point-to-plane residuals (m).
        geometric_jacobian: [M, 6].
        photometric: [M] intensity residuals.
        photometric_jacobian: [M, 6].
        depth_m: [M] depth of the warped points in the reference camera.
        num_points: source points considered.
    """

    geometric: np.ndarray
    geometric_jacobian: np.ndarray
    photometric: np.ndarray
    photometric_jacobian: np.ndarray
    depth_m: np.ndarray
    num_points: int


def compute_residuals(ref: ReferenceLevel, src: SourceLevel, T_ref_src: np.ndarray, config: SolverConfig) -> Residuals:
    """Projective association and both residuals with their Jacobians."""
    intr = ref.intrinsics
    width, height = intr.width, intr.height
    rot = T_ref_src[:3, :3].astype(np.float32)
    trans = T_ref_src[:3, 3].astype(np.float32)
    warped = src.points @ rot.T + trans  # [N, 3]
    z = warped[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_z = 1.0 / z
    u = warped[:, 0] * inv_z * np.float32(intr.fx) + np.float32(intr.cx)
    v = warped[:, 1] * inv_z * np.float32(intr.fy) + np.float32(intr.cy)
    # The bilinear lookup reads (u0 + 1, v0 + 1), hence the strict upper bounds.
    inside = (z > config.min_depth_m) & (u >= 0) & (u < width - 1) & (v >= 0) & (v < height - 1)
    keep = np.flatnonzero(inside)
    warped, inv_z, u, v = warped[keep], inv_z[keep], u[keep], v[keep]
    gray_src = src.gray[keep]

    nearest = (v + 0.5).astype(np.int32) * width + (u + 0.5).astype(np.int32)
    geometry = ref.geometry[nearest]  # [M, 6]
    diff = warped - geometry[:, :3]
    dist2 = np.einsum("ij,ij->i", diff, diff)
    match = ref.valid[nearest] & (dist2 < config.max_correspondence_m**2)
    keep = np.flatnonzero(match)
    warped, inv_z, u, v, gray_src = warped[keep], inv_z[keep], u[keep], v[keep], gray_src[keep]
    normals = geometry[keep, 3:]
    geometric = np.einsum("ij,ij->i", diff[keep], normals)

    u0 = u.astype(np.int32)
    v0 = v.astype(np.int32)
    fu = (u - u0)[:, None]
    fv = (v - v0)[:, None]
    corner = v0 * width + u0
    photo = ref.photo
    top = photo[corner] * (1.0 - fu) + photo[corner + 1] * fu
    bottom = photo[corner + width] * (1.0 - fu) + photo[corner + width + 1] * fu
    sample = top * (1.0 - fv) + bottom * fv  # [M, 3]
    photometric = sample[:, 0] - gray_src

    # d(intensity)/d(point): image gradient through the pinhole projection.
    grad = np.empty_like(warped)
    grad[:, 0] = sample[:, 1] * np.float32(intr.fx) * inv_z
    grad[:, 1] = sample[:, 2] * np.float32(intr.fy) * inv_z
    grad[:, 2] = -(grad[:, 0] * warped[:, 0] + grad[:, 1] * warped[:, 1]) * inv_z
    return Residuals(
        geometric=geometric,
        geometric_jacobian=_point_jacobian(warped, normals),
        photometric=photometric,
        photometric_jacobian=_point_jacobian(warped, grad),
        depth_m=warped[:, 2],
        num_points=len(src.points),
    )


def _point_jacobian(points: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Rows ``[d, p x d]``: derivative of ``d . p`` under ``p -> p + v + w x p``."""
    jac = np.empty((len(points), 6), dtype=np.float32)
    jac[:, :3] = direction
    px, py, pz = points[:, 0], points[:, 1], points[:, 2]
    dx, dy, dz = direction[:, 0], direction[:, 1], direction[:, 2]
    jac[:, 3] = py * dz - pz * dy
    jac[:, 4] = pz * dx - px * dz
    jac[:, 5] = px * dy - py * dx
    return jac


@dataclass
class _Normal:
    hessian: np.ndarray  # [6, 6]
    gradient: np.ndarray  # [6]
    num_correspondences: int
    geometric_rmse_m: float
    photometric_rmse: float
    num_inliers: int = 0
    normalized_residual: float = float("inf")


def _normal_equations(res: Residuals, config: SolverConfig) -> _Normal:
    """IRLS normal equations of the Huber-weighted, normalised joint cost."""
    # Structured-light depth noise grows with z^2; the floor keeps near points
    # from dominating.
    sigma_g = np.float32(config.geometric_sigma_m) * np.maximum(res.depth_m, np.float32(0.5)) ** 2
    geo = res.geometric / sigma_g
    w_geo = _huber_weights(geo, config.huber_k) / sigma_g**2
    photo = res.photometric / np.float32(config.photometric_sigma)
    w_photo = _huber_weights(photo, config.huber_k) * np.float32(
        config.photometric_weight / config.photometric_sigma**2
    )
    jg, jp = res.geometric_jacobian, res.photometric_jacobian
    hessian = (jg * w_geo[:, None]).T @ jg + (jp * w_photo[:, None]).T @ jp
    gradient = (w_geo * res.geometric) @ jg + (w_photo * res.photometric) @ jp
    count = len(res.geometric)
    return _Normal(
        hessian=hessian.astype(np.float64),
        gradient=gradient.astype(np.float64),
        num_correspondences=count,
        geometric_rmse_m=float(np.sqrt(np.mean(res.geometric**2))) if count else float("inf"),
        photometric_rmse=float(np.sqrt(np.mean(res.photometric**2))) if count else float("inf"),
        num_inliers=int(np.count_nonzero(np.abs(geo) <= config.inlier_sigmas)),
        normalized_residual=float(np.sqrt(np.mean(geo**2))) if count else float("inf"),
    )


def linearize_numpy(ref: ReferenceLevel, src: SourceLevel, T_ref_src: np.ndarray, config: SolverConfig) -> _Normal:
    """Normal equations at ``T_ref_src``: the reference implementation."""
    return _normal_equations(compute_residuals(ref, src, T_ref_src, config), config)


def linearize_kernel(
    module, ref: ReferenceLevel, src: SourceLevel, T_ref_src: np.ndarray, config: SolverConfig
) -> _Normal:
    """Normal equations at ``T_ref_src`` from the compiled kernel (same maths)."""
    intr = ref.intrinsics
    hessian, gradient, stats = module.linearize(
        ref.geometry, ref.valid, ref.photo, intr.width, intr.height, intr.fx, intr.fy, intr.cx, intr.cy,
        src.points, src.gray, np.ascontiguousarray(T_ref_src, dtype=np.float64),
        config.min_depth_m, config.max_correspondence_m, config.geometric_sigma_m,
        config.photometric_sigma, config.photometric_weight, config.huber_k, config.inlier_sigmas,
    )  # fmt: skip
    count = int(stats[0])
    return _Normal(
        hessian=hessian,
        gradient=gradient,
        num_correspondences=count,
        geometric_rmse_m=float(np.sqrt(stats[1] / count)) if count else float("inf"),
        photometric_rmse=float(np.sqrt(stats[2] / count)) if count else float("inf"),
        num_inliers=int(stats[3]),
        normalized_residual=float(np.sqrt(stats[4] / count)) if count else float("inf"),
    )


def check_kernel(module) -> None:
    """Raise if the compiled kernel disagrees with the NumPy oracle on a small scene."""
    rng = np.random.default_rng(0)
    intr = Intrinsics(40, 30, 35.0, 35.0, 19.5, 14.5)
    v, u = np.mgrid[0:30, 0:40].astype(np.float32)
    depth = (1.0 + 0.01 * u + 0.005 * v).astype(np.float32)
    gray = (0.5 + 0.2 * np.sin(u / 3.0) * np.cos(v / 4.0)).astype(np.float32)
    level = ImageLevel(intr, gray, depth)
    config = SolverConfig(normal_smoothing=False)
    ref = build_reference([level], config)[0]
    src = build_source([level], SolverConfig(finest_stride=1))[0]
    T = se3_exp(rng.normal(scale=0.01, size=6))
    expected = linearize_numpy(ref, src, T, config)
    got = linearize_kernel(module, ref, src, T, config)
    scale = np.abs(expected.hessian).max()
    if (got.num_correspondences, got.num_inliers) != (expected.num_correspondences, expected.num_inliers):
        raise RuntimeError(f"kernel: {got.num_correspondences} correspondences, NumPy {expected.num_correspondences}")
    if not np.allclose(got.hessian, expected.hessian, rtol=1e-3, atol=1e-4 * scale):
        raise RuntimeError("kernel: normal matrix differs from the NumPy oracle")


def _huber_weights(scaled: np.ndarray, k: float) -> np.ndarray:
    magnitude = np.abs(scaled)
    return np.where(magnitude <= k, np.float32(1.0), np.float32(k) / np.maximum(magnitude, np.float32(1e-12)))


def align(
    reference: list[ReferenceLevel],
    source: list[SourceLevel],
    T_ref_src_init: np.ndarray,
    config: SolverConfig,
    coarsest_level: int | None = None,
    iteration_scale: float = 1.0,
    use_kernel: bool = True,
) -> Alignment:
    """Coarse-to-fine Gauss-Newton alignment of ``source`` to ``reference``.

    Args:
        reference: finest-first reference levels.
        source: finest-first source levels (same resolutions).
        T_ref_src_init: [4, 4] initial estimate.
        config: solver settings.
        coarsest_level: level to start from; default the coarsest both have.
        iteration_scale: multiplies the iterations per level (a wider search).
        use_kernel: use the compiled kernel when it is available.

    Returns:
        The estimate and its quality figures, measured at the finest level.
    """
    T = orthonormalize(np.asarray(T_ref_src_init, dtype=np.float64))
    module = load_kernel() if use_kernel else None

    def linearize(level: int, T_now: np.ndarray) -> _Normal:
        if module is not None:
            return linearize_kernel(module, reference[level], source[level], T_now, config)
        return linearize_numpy(reference[level], source[level], T_now, config)

    top = min(len(reference), len(source)) - 1
    if coarsest_level is not None:
        top = min(top, coarsest_level)
    result = Alignment(T_ref_src=T.copy())
    total_iterations = 0
    for level in range(top, -1, -1):
        iterations = max(1, round(config.iterations_at(level) * iteration_scale))
        for _ in range(iterations):
            normal = linearize(level, T)
            # A coarse level of a small or sparse image may hold too few points:
            # it is skipped, and only the finest level's verdict counts (below).
            if normal.num_correspondences < config.min_points:
                break
            try:
                step = -np.linalg.solve(normal.hessian, normal.gradient)
            except np.linalg.LinAlgError:
                break
            if not np.all(np.isfinite(step)):
                break
            T = se3_exp(step) @ T
            total_iterations += 1
            if np.linalg.norm(step) < config.convergence_eps:
                break
    # Quality at the final estimate (the loop's last figures predate the last step).
    normal = linearize(0, T)
    result.T_ref_src = T
    result.num_points = len(source[0].points)
    result.num_correspondences = normal.num_correspondences
    result.valid_ratio = normal.num_inliers / max(result.num_points, 1)
    result.overlap = normal.num_correspondences / max(result.num_points, 1)
    result.normalized_residual = normal.normalized_residual
    result.geometric_rmse_m = normal.geometric_rmse_m
    result.photometric_rmse = normal.photometric_rmse
    result.iterations = total_iterations
    result.information = normal.hessian
    result.ok = normal.num_correspondences >= config.min_points and bool(np.all(np.isfinite(T)))
    return result
