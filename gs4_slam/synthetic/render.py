"""CPU ray casting of a procedural scene into colour, depth and labels.

Geometry is intersected with open3d's Embree-backed ``RaycastingScene``; colour
is computed per hit from its world coordinates (procedural textures, so every
view of a surface agrees), lit by Lambertian point lights plus ambient light.
Everything after the ray cast is vectorised numpy over the hit pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import open3d as o3d

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.synthetic.scene import PATTERNS, Box, Part, Scene

# ----------------------------------------------------------------------------- mesh

_BOX_CORNERS = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], dtype=np.float64)
# Two triangles per face, corner indices into _BOX_CORNERS (bit 2 = x, bit 1 = y, bit 0 = z).
_BOX_TRIANGLES = np.array(
    [
        [0, 1, 3],
        [0, 3, 2],
        [4, 6, 7],
        [4, 7, 5],  # -x, +x
        [0, 4, 5],
        [0, 5, 1],
        [2, 3, 7],
        [2, 7, 6],  # -y, +y
        [0, 2, 6],
        [0, 6, 4],
        [1, 5, 7],
        [1, 7, 3],  # -z, +z
    ],
    dtype=np.int64,
)


@dataclass(frozen=True)
class SceneMesh:
    """Triangles of a scene and, per part, what shading needs.

    Attributes:
        vertices: float32 [V, 3] world coordinates, metres.
        triangles: uint32 [T, 3] vertex indices.
        triangle_part: int32 [T] index of the part each triangle belongs to.
        part_class: uint8 [P] NYU40 id of each part.
        part_base, part_accent: float32 [P, 3] albedos.
        part_pattern: int32 [P] index into PATTERNS.
        part_scale_m, part_contrast: float32 [P].
    """

    vertices: np.ndarray
    triangles: np.ndarray
    triangle_part: np.ndarray
    part_class: np.ndarray
    part_base: np.ndarray
    part_accent: np.ndarray
    part_pattern: np.ndarray
    part_scale_m: np.ndarray
    part_contrast: np.ndarray


def _part_geometry(part: Part) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(part, Box):
        c, s = np.cos(part.yaw_rad), np.sin(part.yaw_rad)
        rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        vertices = (_BOX_CORNERS * np.asarray(part.size_m)) @ rotation.T + np.asarray(part.center_m)
        return vertices, _BOX_TRIANGLES
    n = part.segments
    angles = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    ring = np.stack([np.cos(angles) * part.radius_m, np.sin(angles) * part.radius_m, np.zeros(n)], axis=1)
    base = np.asarray(part.base_center_m)
    top = base + np.array([0.0, 0.0, part.height_m])
    vertices = np.concatenate([ring + base, ring + top, base[None], top[None]])
    k = np.arange(n)
    k1 = (k + 1) % n
    sides = np.concatenate([np.stack([k, k1, k1 + n], 1), np.stack([k, k1 + n, k + n], 1)])
    caps = np.concatenate(
        [np.stack([np.full(n, 2 * n), k1, k], 1), np.stack([np.full(n, 2 * n + 1), k + n, k1 + n], 1)]
    )
    return vertices, np.concatenate([sides, caps])


def build_mesh(scene: Scene) -> SceneMesh:
    """Triangulate every part of ``scene``."""
    vertices, triangles, owner = [], [], []
    offset = 0
    for index, part in enumerate(scene.parts):
        v, t = _part_geometry(part)
        vertices.append(v)
        triangles.append(t + offset)
        owner.append(np.full(len(t), index, dtype=np.int32))
        offset += len(v)
    materials = [p.material for p in scene.parts]
    return SceneMesh(
        vertices=np.concatenate(vertices).astype(np.float32),
        triangles=np.concatenate(triangles).astype(np.uint32),
        triangle_part=np.concatenate(owner),
        part_class=np.array([p.nyu40_id for p in scene.parts], dtype=np.uint8),
        part_base=np.array([m.base_rgb for m in materials], dtype=np.float32),
        part_accent=np.array([m.accent_rgb for m in materials], dtype=np.float32),
        part_pattern=np.array([PATTERNS.index(m.pattern) for m in materials], dtype=np.int32),
        part_scale_m=np.array([m.scale_m for m in materials], dtype=np.float32),
        part_contrast=np.array([m.contrast for m in materials], dtype=np.float32),
    )


# ----------------------------------------------------------------------------- textures


def _hash01(ix: np.ndarray, iy: np.ndarray, salt: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer lattice point."""
    # uint32 arithmetic wraps by design: it is the hash's mixing, not an overflow.
    h = ix.astype(np.uint32) * np.uint32(73856093)
    h ^= iy.astype(np.uint32) * np.uint32(19349663)
    h ^= salt.astype(np.uint32) * np.uint32(83492791)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x45D9F3B)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x45D9F3B)
    h ^= h >> np.uint32(16)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


class NoiseTexture:
    """Tileable fractal noise sampled at arbitrary surface coordinates.

    Evaluating lattice noise per pixel costs dozens of array passes; instead a
    periodic fractal texture is built once and sampled with OpenCV's bilinear
    ``remap`` (one vectorised pass). Coordinates are in feature units: the
    coarsest octave has one random value per unit.
    """

    SIZE_PX = 256
    CELLS = 8  # coarsest lattice cells across the texture
    _BLOCK = 256  # remap wants 2-D maps below 32767 rows

    def __init__(self, seed: int = 0, octaves: int = 4) -> None:
        rng = np.random.default_rng(seed)
        total = np.zeros((self.SIZE_PX, self.SIZE_PX), np.float32)
        for octave in range(octaves):
            cells = self.CELLS * 2**octave
            total += 0.5**octave * self._tileable_lattice(rng.random((cells, cells), dtype=np.float32))
        total -= total.min()
        self.texture = total / total.max()
        self.px_per_unit = self.SIZE_PX / self.CELLS
        # A random texture offset per salt value (power-of-two table, indexed by salt & mask).
        self._offsets = rng.uniform(0, self.SIZE_PX, (4096, 2)).astype(np.float32)

    def _tileable_lattice(self, grid: np.ndarray) -> np.ndarray:
        # Wrap-padding before a smooth upsampling keeps the result periodic (seamless).
        cells = grid.shape[0]
        scale = self.SIZE_PX // cells
        padded = np.pad(grid, 2, mode="wrap")
        up = cv2.resize(padded, (padded.shape[1] * scale, padded.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
        return up[2 * scale : 2 * scale + self.SIZE_PX, 2 * scale : 2 * scale + self.SIZE_PX]

    def sample(self, u: np.ndarray, v: np.ndarray, salt: np.ndarray) -> np.ndarray:
        """float32 [N] noise in [0, 1] at (u, v); ``salt`` (int) shifts the pattern per surface."""
        n = u.size
        if n == 0:
            return np.zeros(0, np.float32)
        size = np.float32(self.SIZE_PX)
        offsets = self._offsets[np.bitwise_and(salt, self._offsets.shape[0] - 1)]
        padded = -(-n // self._BLOCK) * self._BLOCK
        map_x = np.zeros(padded, np.float32)
        map_y = np.zeros(padded, np.float32)
        # remap stores coordinates as 16-bit integers internally: wrap them into the texture first.
        np.mod(u * np.float32(self.px_per_unit) + offsets[:, 0], size, out=map_x[:n])
        np.mod(v * np.float32(self.px_per_unit) + offsets[:, 1], size, out=map_y[:n])
        out = cv2.remap(
            self.texture,
            map_x.reshape(-1, self._BLOCK),
            map_y.reshape(-1, self._BLOCK),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_WRAP,
        )
        return out.reshape(-1)[:n]


def _pattern(name: str, u: np.ndarray, v: np.ndarray, salt: np.ndarray, noise: NoiseTexture) -> np.ndarray:
    """Pattern value in [0, 1] at coordinates already divided by the feature size."""
    if name == "plain":
        return np.zeros_like(u)
    if name == "noise":
        return noise.sample(u, v, salt)
    if name == "stripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * (u + 0.3 * noise.sample(0.5 * u, 0.5 * v, salt)))
    if name == "tiles":
        grout = (u - np.floor(u) < 0.04) | (v - np.floor(v) < 0.04)
        tile = 0.3 * _hash01(np.floor(u).astype(np.int32), np.floor(v).astype(np.int32), salt)
        return np.where(grout, 1.0, tile).astype(np.float32)
    if name == "wood":
        plank = np.floor(v).astype(np.int32)
        grain = 0.5 + 0.5 * np.sin(2 * np.pi * (5 * v + 2.5 * noise.sample(0.3 * u, 4 * v, salt)))
        seam = v - np.floor(v) < 0.03
        shade = _hash01(plank, np.floor(u / 4 + 0.5 * (plank & 1)).astype(np.int32), salt)
        return np.where(seam, 1.0, 0.6 * grain + 0.4 * shade).astype(np.float32)
    if name == "patches":
        return _hash01(np.floor(u).astype(np.int32), np.floor(v).astype(np.int32), salt)
    raise ValueError(f"unknown pattern {name!r}")


# ----------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class RenderedView:
    """One rendered camera view.

    Attributes:
        color_rgb: uint8 [H, W, 3].
        depth_m: float32 [H, W] z-depth in metres, 0 where no surface was hit.
        nyu40: uint8 [H, W] NYU40 class id per pixel (0 = nothing hit).
        cos_incidence: float32 [H, W] |cos| of the angle between ray and surface normal.
    """

    color_rgb: np.ndarray
    depth_m: np.ndarray
    nyu40: np.ndarray
    cos_incidence: np.ndarray


def camera_rays(intrinsics: Intrinsics) -> np.ndarray:
    """float32 [H*W, 3] ray directions in the camera frame with z = 1 (pinhole, no distortion)."""
    u, v = np.meshgrid(np.arange(intrinsics.width, dtype=np.float32), np.arange(intrinsics.height, dtype=np.float32))
    x = (u - intrinsics.cx) / intrinsics.fx
    y = (v - intrinsics.cy) / intrinsics.fy
    return np.stack([x, y, np.ones_like(x)], axis=-1).reshape(-1, 3)


class SceneRenderer:
    """Renders views of one scene; build once, render many poses."""

    #: Distance (m) at which a light's intensity has dropped to half.
    LIGHT_FALLOFF_M = 3.0

    def __init__(self, scene: Scene, num_threads: int = 1) -> None:
        """Triangulate ``scene`` and build its ray-casting acceleration structure.

        Args:
            scene: what to render.
            num_threads: ray-casting threads (0 = all cores). One by default: on small
                images a parallel cast saves a few milliseconds at most, while the
                single-threaded shading after it dominates; other work keeps the cores.
        """
        self.scene = scene
        self.num_threads = num_threads
        self.mesh = build_mesh(scene)
        self._raycaster = o3d.t.geometry.RaycastingScene()
        self._raycaster.add_triangles(o3d.core.Tensor(self.mesh.vertices), o3d.core.Tensor(self.mesh.triangles))
        self._noise = NoiseTexture()
        self._uv_axes = np.array([[1, 2], [0, 2], [0, 1]])
        self._part_inv_scale = (1.0 / self.mesh.part_scale_m).astype(np.float32)
        self._rays_cache: dict[Intrinsics, tuple[np.ndarray, np.ndarray]] = {}
        self._light_pos = np.array([light.position_m for light in scene.lights], dtype=np.float32).reshape(-1, 3)
        self._light_rgb = np.array(
            [np.asarray(light.color_rgb) * light.intensity for light in scene.lights], dtype=np.float32
        ).reshape(-1, 3)

    @property
    def num_triangles(self) -> int:
        return int(self.mesh.triangles.shape[0])

    def _rays(self, intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        """Camera-frame rays [H*W, 3] and their inverse lengths [H*W] (rotation keeps lengths)."""
        if intrinsics not in self._rays_cache:
            rays = camera_rays(intrinsics)
            self._rays_cache[intrinsics] = (rays, 1.0 / np.linalg.norm(rays, axis=1))
        return self._rays_cache[intrinsics]

    def render(self, T_world_cam: Pose | np.ndarray, intrinsics: Intrinsics) -> RenderedView:
        """Render the view of a camera at ``T_world_cam`` (camera-to-world, OpenCV axes)."""
        matrix = T_world_cam.matrix if isinstance(T_world_cam, Pose) else np.asarray(T_world_cam)
        rotation = matrix[:3, :3].astype(np.float32)
        origin = matrix[:3, 3].astype(np.float32)
        rays_cam, inverse_length = self._rays(intrinsics)
        directions = rays_cam @ rotation.T  # not np.dot: BLAS threads cost more than they save here
        rays = np.empty((len(rays_cam), 6), dtype=np.float32)
        rays[:, :3] = origin
        rays[:, 3:] = directions
        hits = self._raycaster.cast_rays(o3d.core.Tensor.from_numpy(rays), nthreads=self.num_threads)
        t_hit = hits["t_hit"].numpy()
        hit = np.isfinite(t_hit)
        # Inside a closed room every ray hits; skip the masked copies then.
        every = slice(None) if hit.all() else hit
        triangle = hits["primitive_ids"].numpy()[every]
        normal = hits["primitive_normals"].numpy()[every]
        part = self.mesh.triangle_part[triangle]
        ray_dir = directions[every]
        t = t_hit[every]
        points = origin + ray_dir * t[:, None]

        # Normals face the camera so that lighting does not depend on triangle winding.
        facing = np.einsum("ij,ij->i", normal, ray_dir)
        normal[facing > 0] *= -1.0
        cos_incidence = np.abs(facing) * inverse_length[every]

        albedo = self._albedo(points, normal, part)
        color = albedo * self._irradiance(points, normal)

        h, w = intrinsics.height, intrinsics.width
        color_full = np.zeros((h * w, 3), dtype=np.float32)
        color_full[every] = color
        depth = np.zeros(h * w, dtype=np.float32)
        depth[every] = t  # rays have camera z = 1, so t is the z-depth
        labels = np.zeros(h * w, dtype=np.uint8)
        labels[every] = self.mesh.part_class[part]
        incidence = np.zeros(h * w, dtype=np.float32)
        incidence[every] = cos_incidence
        np.clip(color_full, 0.0, 1.0, out=color_full)
        color_u8 = (color_full * 255.0 + 0.5).astype(np.uint8)
        return RenderedView(
            color_rgb=color_u8.reshape(h, w, 3),
            depth_m=depth.reshape(h, w),
            nyu40=labels.reshape(h, w),
            cos_incidence=incidence.reshape(h, w),
        )

    def _albedo(self, points: np.ndarray, normal: np.ndarray, part: np.ndarray) -> np.ndarray:
        mesh = self.mesh
        # Planar texture coordinates: drop the axis the surface faces (boxes are axis-aligned
        # or turned about z, so this is exact for floors/ceilings and close for walls).
        axis = np.argmax(np.abs(normal), axis=1)
        other = self._uv_axes[axis]
        uv = np.take_along_axis(points, other, axis=1)
        u, v = uv[:, 0], uv[:, 1]
        salt = part * 3 + axis.astype(np.int32)  # one texture placement per face direction of a part
        inv_scale = self._part_inv_scale[part]
        su, sv = u * inv_scale, v * inv_scale
        pattern_id = mesh.part_pattern[part]
        value = np.zeros(len(part), dtype=np.float32)
        for index in np.unique(self.mesh.part_pattern):
            chosen = pattern_id == index
            if chosen.all():
                value = _pattern(PATTERNS[index], su, sv, salt, self._noise)
            elif chosen.any():
                value[chosen] = _pattern(PATTERNS[index], su[chosen], sv[chosen], salt[chosen], self._noise)
        mix = (mesh.part_contrast[part] * value)[:, None]
        albedo = mesh.part_base[part] * (1 - mix) + mesh.part_accent[part] * mix
        # Fine detail everywhere gives photometric tracking gradients even on plain paint.
        detail = 0.9 + 0.2 * self._noise.sample(u * np.float32(25.0), v * np.float32(25.0), salt + 7)
        return albedo * detail[:, None]

    def _irradiance(self, points: np.ndarray, normal: np.ndarray) -> np.ndarray:
        light = np.full((len(points), 3), self.scene.ambient, dtype=np.float32)
        for position, rgb in zip(self._light_pos, self._light_rgb):
            to_light = position - points
            distance_sq = np.einsum("ij,ij->i", to_light, to_light)
            lambert = np.einsum("ij,ij->i", normal, to_light) / np.sqrt(np.maximum(distance_sq, 1e-12))
            weight = np.maximum(lambert, 0.0) * (1.6 / (1.0 + distance_sq / self.LIGHT_FALLOFF_M**2))
            light += weight[:, None] * rgb
        return light


# ----------------------------------------------------------------------------- sensor noise


def kinect_noise(view: RenderedView, rng: np.random.Generator) -> RenderedView:
    """Kinect-like depth: axial noise growing with depth, holes at edges, grazing angles, blobs.

    The axial standard deviation follows Nguyen et al. (3DIMPVT 2012):
    sigma(z) = 1.2 mm + 1.9 mm * (z - 0.4 m)^2 / m^2. Colour gets mild sensor noise.
    """
    depth = view.depth_m.copy()
    h, w = depth.shape
    sigma = 0.0012 + 0.0019 * (depth - 0.4) ** 2
    depth += rng.standard_normal(depth.shape).astype(np.float32) * sigma

    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(view.depth_m, kernel) - cv2.erode(view.depth_m, kernel)
    edge = spread > 0.04 * np.maximum(view.depth_m, 0.1)
    holes = (edge & (rng.random(depth.shape) < 0.6)) | (view.cos_incidence < 0.2)
    coarse = (rng.random((max(h // 16, 1), max(w // 16, 1))) < 0.03).astype(np.uint8)
    blobs = cv2.dilate(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST), kernel, iterations=2) > 0
    holes |= blobs | (view.depth_m < 0.3) | (view.depth_m > 8.0)
    depth[holes] = 0.0

    noisy_color = view.color_rgb.astype(np.float32) + rng.normal(0.0, 2.0, view.color_rgb.shape).astype(np.float32)
    return RenderedView(
        color_rgb=np.clip(noisy_color + 0.5, 0, 255).astype(np.uint8),
        depth_m=depth.astype(np.float32),
        nyu40=view.nyu40,
        cos_incidence=view.cos_incidence,
    )
