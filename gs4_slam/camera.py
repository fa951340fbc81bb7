"""Camera intrinsics and rigid poses: the typed values every stage passes around.

Conventions (see CONVENTIONS.md): ``T_a_b`` maps points from frame b to frame a
(``p_a = T_a_b @ p_b``); cameras follow the OpenCV convention (x right, y down,
z forward); lengths are metres.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels.

    ``distortion`` holds OpenCV's coefficients (k1, k2, p1, p2, k3); empty means none.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be positive, got fx={self.fx} fy={self.fy}")
        object.__setattr__(self, "distortion", tuple(float(d) for d in self.distortion))

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the customary name of the matrix
        """3x3 camera matrix (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def has_distortion(self) -> bool:
        return any(abs(d) > 0 for d in self.distortion)

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics of the same camera resized to ``width`` x ``height``.

        Uses the pixel-centre convention: a pixel's centre (u + 0.5) scales linearly.
        """
        sx, sy = width / self.width, height / self.height
        return Intrinsics(
            width=width,
            height=height,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
            distortion=self.distortion,
        )

    def without_distortion(self) -> "Intrinsics":
        return Intrinsics(self.width, self.height, self.fx, self.fy, self.cx, self.cy)


@dataclass(frozen=True)
class Pose:
    """A rigid transform stored as a 4x4 float64 matrix.

    Name variables by what they map: ``T_world_cam`` takes camera points to world.
    """

    matrix: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, dtype=np.float64)
        if m.shape != (4, 4):
            raise ValueError(f"pose must be 4x4, got shape {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ValueError("pose has non-finite entries")
        m = m.copy()
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)

    @staticmethod
    def identity() -> "Pose":
        return Pose(np.eye(4))

    @staticmethod
    def from_rt(rotation: np.ndarray, translation: np.ndarray) -> "Pose":
        m = np.eye(4)
        m[:3, :3] = rotation
        m[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
        return Pose(m)

    @staticmethod
    def from_quat_xyzw(translation: np.ndarray, quat_xyzw: np.ndarray) -> "Pose":
        """From a translation and a quaternion in (x, y, z, w) order (TUM, ROS)."""
        rotation = Rotation.from_quat(np.asarray(quat_xyzw, dtype=np.float64)).as_matrix()
        return Pose.from_rt(rotation, translation)

    @property
    def rotation(self) -> np.ndarray:
        return self.matrix[:3, :3]

    @property
    def translation(self) -> np.ndarray:
        return self.matrix[:3, 3]

    def quat_xyzw(self) -> np.ndarray:
        return Rotation.from_matrix(self.rotation).as_quat()

    def inverse(self) -> "Pose":
        r_t = self.rotation.T
        return Pose.from_rt(r_t, -r_t @ self.translation)

    def __matmul__(self, other: "Pose") -> "Pose":
        return Pose(self.matrix @ other.matrix)

    def transform_points(self, points: np.ndarray) -> np.ndarray:
        """Apply to an (N, 3) array of points."""
        return points @ self.rotation.T + self.translation

    def distance_to(self, other: "Pose") -> tuple[float, float]:
        """(translation distance in metres, rotation angle in radians) to ``other``."""
        delta = self.inverse() @ other
        angle = Rotation.from_matrix(delta.rotation).magnitude()
        return float(np.linalg.norm(delta.translation)), float(angle)
