"""Keyframes: when to take one, what is kept, and how old ones are found again."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.tracking.lie import inverse, motion_magnitude
from gs4_slam.tracking.solver import ReferenceLevel


@dataclass
class KeyframePolicy:
    """When the tracker needs a new reference, and how it chooses one.

    Attributes:
        translation_m: the camera moved this far from the reference keyframe.
        rotation_rad: the camera turned this much from it.
        min_overlap: fewer than this fraction of the frame's points have a
            correspondence in the reference.
        revisit: before taking a new keyframe, try the existing keyframes
            nearest to the camera; one that still overlaps well becomes the
            reference again. Tracking against an old keyframe resets the drift
            accumulated since it was taken, which bounds drift wherever the camera
            returns to a place it has seen.
        revisit_radius: candidates lie within this multiple of
            (translation_m, rotation_rad) of the camera.
        revisit_candidates: at most this many candidates are tried (nearest first).
        max_cached_references: reference pyramids kept in memory; the others
            are rebuilt from the stored images when needed.
        max_stored_images: keyframes keeping their images (the oldest drop them
            and stay only as records).
    """

    translation_m: float = 0.15
    rotation_rad: float = 0.2
    min_overlap: float = 0.7
    revisit: bool = True
    revisit_radius: float = 1.0
    revisit_candidates: int = 2
    max_cached_references: int = 12
    max_stored_images: int = 200

    def __post_init__(self) -> None:
        if self.translation_m <= 0 or self.rotation_rad <= 0:
            raise ValueError("translation_m and rotation_rad must be positive")
        if not 0.0 <= self.min_overlap <= 1.0:
            raise ValueError("min_overlap must be in [0, 1]")
        if self.revisit_radius <= 0 or self.revisit_candidates < 0:
            raise ValueError("revisit_radius must be > 0 and revisit_candidates >= 0")
        if self.max_cached_references < 1 or self.max_stored_images < 1:
            raise ValueError("max_cached_references and max_stored_images must be >= 1")

    def needs_new_reference(self, T_ref_cam: np.ndarray, overlap: float) -> bool:
        """Whether a frame at ``T_ref_cam`` [4, 4] from its reference, seeing
        ``overlap`` of its points in it, should get another reference."""
        translation_m, rotation_rad = motion_magnitude(T_ref_cam)
        return translation_m > self.translation_m or rotation_rad > self.rotation_rad or overlap < self.min_overlap

    def pose_distance(self, T_world_a: np.ndarray, T_world_b: np.ndarray) -> float:
        """Scalar distance of two poses in units of the thresholds (max of both)."""
        translation_m, rotation_rad = motion_magnitude(inverse(T_world_a) @ T_world_b)
        return max(translation_m / self.translation_m, rotation_rad / self.rotation_rad)


@dataclass
class Keyframe:
    """A keyframe record.

    Attributes:
        id: 0, 1, ... in order of creation.
        frame_index: index of the frame it was taken from.
        timestamp_s: that frame's time.
        T_world_cam: its pose when taken.
        intrinsics: of the stored images (undistorted).
        gray: uint8 [H, W] undistorted intensity, None once dropped.
        depth_m: float32 [H, W] undistorted depth, None once dropped.
    """

    id: int
    frame_index: int
    timestamp_s: float
    T_world_cam: Pose
    intrinsics: Intrinsics
    gray: np.ndarray | None = field(default=None, repr=False)
    depth_m: np.ndarray | None = field(default=None, repr=False)

    @property
    def has_images(self) -> bool:
        return self.gray is not None and self.depth_m is not None


#: Builds the reference pyramid of a keyframe.
ReferenceBuilder = Callable[[Keyframe], list[ReferenceLevel]]


class KeyframeStore:
    """All keyframe records, with an LRU cache of their reference pyramids."""

    def __init__(self, policy: KeyframePolicy, build_reference: ReferenceBuilder) -> None:
        self.policy = policy
        self._build_reference = build_reference
        self._keyframes: list[Keyframe] = []
        self._cache: OrderedDict[int, list[ReferenceLevel]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keyframes)

    def __getitem__(self, keyframe_id: int) -> Keyframe:
        return self._keyframes[keyframe_id]

    @property
    def records(self) -> list[Keyframe]:
        return list(self._keyframes)

    def add(
        self,
        frame_index: int,
        timestamp_s: float,
        T_world_cam: np.ndarray,
        intrinsics: Intrinsics,
        gray: np.ndarray,
        depth_m: np.ndarray,
        reference: list[ReferenceLevel] | None = None,
    ) -> Keyframe:
        """Record a new keyframe (and its reference pyramid, when already built)."""
        keyframe = Keyframe(
            len(self._keyframes), frame_index, timestamp_s, Pose(T_world_cam), intrinsics, gray, depth_m
        )
        self._keyframes.append(keyframe)
        if reference is not None:
            self._remember(keyframe.id, reference)
        with_images = [k for k in self._keyframes if k.has_images]
        for old in with_images[: max(0, len(with_images) - self.policy.max_stored_images)]:
            old.gray = old.depth_m = None
        return keyframe

    def reference(self, keyframe: Keyframe) -> list[ReferenceLevel] | None:
        """The keyframe's reference pyramid (cached), or None without images."""
        levels = self._cache.get(keyframe.id)
        if levels is not None:
            self._cache.move_to_end(keyframe.id)
            return levels
        if not keyframe.has_images:
            return None
        levels = self._build_reference(keyframe)
        self._remember(keyframe.id, levels)
        return levels

    def replace_reference(self, keyframe: Keyframe, levels: list[ReferenceLevel]) -> None:
        """Use other reference data for a keyframe (a map rendering at its pose)."""
        self._remember(keyframe.id, levels)

    def recent(self, count: int) -> list[Keyframe]:
        """The ``count`` newest keyframes with images, newest first."""
        out = []
        for keyframe in reversed(self._keyframes):
            if len(out) >= count:
                break
            if keyframe.has_images or keyframe.id in self._cache:
                out.append(keyframe)
        return out

    def nearest(self, T_world_cam: np.ndarray, radius: float, count: int, exclude: int | None = None) -> list[Keyframe]:
        """Up to ``count`` keyframes within ``radius`` (in threshold units) of a
        pose, nearest first."""
        scored = []
        for keyframe in self._keyframes:
            if keyframe.id == exclude or not (keyframe.has_images or keyframe.id in self._cache):
                continue
            distance = self.policy.pose_distance(keyframe.T_world_cam.matrix, T_world_cam)
            if distance <= radius:
                scored.append((distance, keyframe.id))
        scored.sort()
        return [self._keyframes[i] for _, i in scored[:count]]

    def _remember(self, keyframe_id: int, levels: list[ReferenceLevel]) -> None:
        self._cache[keyframe_id] = levels
        self._cache.move_to_end(keyframe_id)
        while len(self._cache) > self.policy.max_cached_references:
            self._cache.popitem(last=False)
