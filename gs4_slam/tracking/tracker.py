"""Camera tracking: dense RGB-D frame-to-keyframe (or frame-to-map) alignment.

Each frame is aligned against a reference view by :func:`~gs4_slam.tracking.solver.align`
(joint point-to-plane + photometric Gauss-Newton, coarse to fine), starting from
a constant-velocity prediction. The reference is the last keyframe's own RGB-D,
or the map rendered at that keyframe's pose when the mapping stage supplies one
(:meth:`Tracker.set_map_reference`, or a renderer callback). When the camera has
moved away from its reference (:class:`KeyframePolicy`), a nearby older keyframe
is taken up again if it still overlaps, otherwise the frame becomes a keyframe.

Every result says how much to trust it: OK, WEAK (usable, poorly constrained) or
LOST. A frame is LOST when too few of its points find correspondences, the
residual is too high, or the motion is implausible; its reported pose is then the
last good one, never the failed estimate. The tracker then tries to re-localise
against its recent keyframes on every frame until one matches.

Why not open3d's RGB-D odometry as the solver: measured on TUM fr1/xyz at
320x240 on two cores (``python -m bench.tracking``) its hybrid odometry takes
about 90 ms per frame pair (11 frames/s, 4.6 cm ATE frame to frame), three times
over the real-time budget before any keyframe logic; this solver with its
compiled kernel takes about 10 ms.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from gs4_slam import config as config_io
from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.frame import Frame
from gs4_slam.tracking.keyframes import Keyframe, KeyframePolicy, KeyframeStore
from gs4_slam.tracking.lie import inverse, motion_magnitude, orthonormalize, scaled_motion
from gs4_slam.tracking.preprocess import Undistorter, build_pyramid, clean_depth, gray_at_depth_time, to_gray
from gs4_slam.tracking.solver import (
    Alignment,
    ReferenceLevel,
    SolverConfig,
    SourceLevel,
    align,
    build_reference,
    build_source,
)

_LOG = logging.getLogger(__name__)

#: Largest colour delay, as a fraction of the frame interval, that is compensated.
#: The velocity comes from the tracker's own poses, so a pose error shifts the
#: intensities, which shifts the next pose: at a delay near a whole frame that loop
#: diverged on generated sequences; at a fifth of one (TUM's Kinect) it helps.
_MAX_COMPENSATED_DELAY = 0.35

#: Frame spacing assumed when timestamps do not increase (30 Hz sensors).
_NOMINAL_FRAME_S = 1.0 / 30.0

#: Renders the map at a camera pose: (T_world_cam, intrinsics) -> (colour uint8
#: [H, W, 3], depth float32 [H, W]) or None where there is no map yet.
MapRenderer = Callable[[Pose, Intrinsics], "tuple[np.ndarray, np.ndarray] | None"]


class TrackingStatus(enum.Enum):
    OK = "ok"
    WEAK = "weak"
    LOST = "lost"


@dataclass
class QualityThresholds:
    """Limits that grade an alignment.

    Attributes:
        lost_min_valid_ratio: below this fraction of points with an inlier
            correspondence the frame is LOST.
        weak_min_valid_ratio: below this it is WEAK.
        lost_max_residual: RMS point-to-plane residual, in units of the
            depth-dependent sensor noise (so the same limit serves near and far
            scenes), above which the frame is LOST.
        weak_max_residual: above this it is WEAK.
        max_speed_m_s: faster camera motion is implausible (LOST).
        max_angular_speed_rad_s: faster turning is implausible (LOST).
        min_condition: smallest eigenvalue of the normalised normal matrix
            relative to its largest; below it the pose is unconstrained in some
            direction (a single plane, a blank wall) and the frame is WEAK.
    """

    lost_min_valid_ratio: float = 0.3
    weak_min_valid_ratio: float = 0.5
    lost_max_residual: float = 5.0
    weak_max_residual: float = 3.0
    max_speed_m_s: float = 3.0
    max_angular_speed_rad_s: float = 6.0
    min_condition: float = 1e-6


@dataclass
class RelocalizationConfig:
    """Re-localisation against recent keyframes after a loss.

    A match must fit about as well as the frames tracked before the loss: the
    limits below are multiples of the running averages of the normalised
    residual and of the photometric residual of good frames, so they adapt to
    the sensor's noise. (A wrong match can reach a fair overlap on a room's
    planes, but not a good fit in both geometry and intensity.)

    Attributes:
        keyframes: how many of the most recent keyframes are tried (plus the
            two nearest the last good pose, from that pose).
        extra_levels: coarser pyramid levels added for the wider search.
        iteration_scale: multiplies the iterations per level.
        min_valid_ratio: an accepted match has at least this inlier ratio ...
        max_residual_ratio: ... a normalised residual at most this multiple
            of the running average (and at least 1 sigma is allowed) ...
        max_photometric_ratio: ... and a photometric residual at most this
            multiple of the running average (at least the photometric sigma).
    """

    keyframes: int = 5
    extra_levels: int = 1
    iteration_scale: float = 2.0
    min_valid_ratio: float = 0.4
    max_residual_ratio: float = 1.5
    max_photometric_ratio: float = 1.5


@dataclass
class TrackerConfig:
    """Everything the tracker can be told (``config/tracking.yaml`` mirrors it).

    Attributes:
        solver: the dense aligner.
        keyframes: keyframe policy.
        quality: OK / WEAK / LOST limits.
        relocalization: recovery after a loss.
        constant_velocity: predict with the last inter-frame motion (else the
            last pose).
        compensate_color_delay: where a frame's colour was taken apart from its
            depth (``Frame.color_delay_s``), move the intensities to the depth
            image's time with the last inter-frame motion before aligning, so
            the pose is the camera's when the depth was taken.
        min_valid_depth_ratio: a frame with less valid depth than this
            fraction of its pixels cannot be tracked (LOST).
        use_kernel: use the compiled CPU kernel when it is available.
    """

    solver: SolverConfig = field(default_factory=SolverConfig)
    keyframes: KeyframePolicy = field(default_factory=KeyframePolicy)
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    relocalization: RelocalizationConfig = field(default_factory=RelocalizationConfig)
    constant_velocity: bool = True
    compensate_color_delay: bool = True
    min_valid_depth_ratio: float = 0.05
    use_kernel: bool = True


#: The tracker's YAML overlay in a source checkout.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "config" / "tracking.yaml"


def load_tracker_config(*paths: str | Path, overrides: dict | None = None) -> TrackerConfig:
    """TrackerConfig from YAML overlays (strict: unknown keys are errors)."""
    return config_io.load(TrackerConfig, *paths, overrides=overrides)


@dataclass(frozen=True)
class TrackingResult:
    """What :meth:`Tracker.track` says about one frame.

    Attributes:
        T_world_cam: camera-to-world pose; for a LOST frame the last good pose.
        status: OK, WEAK or LOST.
        valid_ratio: fraction of the frame's points with an inlier
            correspondence in the reference (0 when LOST).
        residual_m: RMS point-to-plane residual of the correspondences (m).
        normalized_residual: the same in units of the depth-dependent sensor
            noise (about 1 for a perfect fit); what the grading uses.
        photometric_residual: RMS intensity residual (intensities in [0, 1]).
        is_keyframe: the frame became a keyframe.
        keyframe_id: the reference keyframe after this frame (None before the first).
        relocalized: the pose comes from re-localisation against a keyframe.
        reason: why the frame is WEAK or LOST ("" when OK).
        frame_index: the frame's index.
        timestamp_s: the frame's time.
        iterations: Gauss-Newton iterations spent on the frame.
        timings_ms: per-stage wall time: preprocess, align, keyframe, relocalize, total.
    """

    T_world_cam: Pose
    status: TrackingStatus
    valid_ratio: float
    residual_m: float
    normalized_residual: float = float("inf")
    photometric_residual: float = float("inf")
    is_keyframe: bool = False
    keyframe_id: int | None = None
    relocalized: bool = False
    reason: str = ""
    frame_index: int = 0
    timestamp_s: float = 0.0
    iterations: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def residual(self) -> float:
        """Alias of :attr:`residual_m`."""
        return self.residual_m

    @property
    def ok(self) -> bool:
        return self.status is not TrackingStatus.LOST


@dataclass
class _FrameData:
    """A frame conditioned for tracking: undistorted, in pyramids."""

    intrinsics: Intrinsics  # undistorted, finest level
    gray: np.ndarray  # uint8 [H, W]
    depth_m: np.ndarray  # float32 [H, W]
    source: list[SourceLevel]
    valid_depth_ratio: float
    pyramid: list  # ImageLevel, finest first


@dataclass
class _Reference:
    keyframe: Keyframe
    T_world_ref: np.ndarray  # [4, 4]
    levels: list[ReferenceLevel]


class Tracker:
    """Dense RGB-D camera tracker with keyframes and re-localisation.

    Args:
        config: settings; defaults when None.
        T_world_cam_init: pose given to the first tracked frame (identity by default).
        map_renderer: optional callback rendering the map at a pose; when set,
            new reference keyframes use the rendering instead of their own images.
    """

    def __init__(
        self,
        config: TrackerConfig | None = None,
        T_world_cam_init: Pose | None = None,
        map_renderer: MapRenderer | None = None,
    ) -> None:
        self.config = config or TrackerConfig()
        self._undistorter = Undistorter()
        self._T_world_cam_init = (T_world_cam_init or Pose.identity()).matrix.copy()
        self.map_renderer = map_renderer
        self.reset()

    # ------------------------------------------------------------------ public

    def reset(self, T_world_cam_init: Pose | None = None) -> None:
        """Forget everything; the next frame starts a new trajectory."""
        if T_world_cam_init is not None:
            self._T_world_cam_init = T_world_cam_init.matrix.copy()
        self._store = KeyframeStore(self.config.keyframes, self._reference_of_keyframe)
        self._reference: _Reference | None = None
        self._T_world_last: np.ndarray | None = None  # last good pose
        self._T_world_prev: np.ndarray | None = None  # the good pose before it
        self._t_last_s: float | None = None
        self._dt_prev_s: float | None = None
        self._lost = False
        self._warned_delay = False
        # Until good frames say otherwise: a fit at the noise model's level.
        self._typical_residual = 1.0
        self._typical_photometric = self.config.solver.photometric_sigma

    @property
    def keyframes(self) -> list[Keyframe]:
        """All keyframe records, oldest first."""
        return self._store.records

    @property
    def reference_keyframe(self) -> Keyframe | None:
        return None if self._reference is None else self._reference.keyframe

    @property
    def is_lost(self) -> bool:
        return self._lost

    @property
    def T_world_cam(self) -> Pose | None:
        """Last good pose."""
        return None if self._T_world_last is None else Pose(self._T_world_last)

    def set_map_reference(
        self,
        color_rgb: np.ndarray,
        depth_m: np.ndarray,
        T_world_ref: Pose,
        intrinsics: Intrinsics | None = None,
    ) -> None:
        """Track the following frames against a map rendering.

        The mapping stage calls this with the map rendered (pinhole, no
        distortion) at the current reference keyframe's pose, normally right
        after a frame came back with ``is_keyframe``; the rendering replaces the
        keyframe's own images as reference until the next change of keyframe.

        Args:
            color_rgb: uint8 [H, W, 3] rendered colour.
            depth_m: float32 [H, W] rendered depth, 0 where the map is empty.
            T_world_ref: pose it was rendered at.
            intrinsics: of the rendering; default the tracker's (undistorted).
        """
        if self._reference is None:
            raise RuntimeError("set_map_reference before the first frame was tracked")
        intrinsics = intrinsics or self._reference.keyframe.intrinsics
        levels = self._reference_from_rendering(color_rgb, depth_m, intrinsics)
        if levels is None:
            _LOG.info("map rendering has too little depth; keeping the keyframe's own images")
            return
        keyframe = self._reference.keyframe
        T_world_ref_m = T_world_ref.matrix
        if self.config.keyframes.pose_distance(keyframe.T_world_cam.matrix, T_world_ref_m) < 1e-6:
            self._store.replace_reference(keyframe, levels)
        self._reference = _Reference(keyframe, T_world_ref_m.copy(), levels)

    def update_keyframe_pose(self, keyframe_id: int, T_world_cam: Pose) -> None:
        """Take a keyframe pose refined by the mapping backend.

        The record gets the new pose; when it is the current tracking reference,
        the reference and the last poses (and so the motion model) move with it,
        so the following frames continue from the refined pose.
        """
        if not 0 <= keyframe_id < len(self._store):
            return
        keyframe = self._store.records[keyframe_id]
        old, new = keyframe.T_world_cam.matrix, T_world_cam.matrix
        keyframe.T_world_cam = Pose(new.copy())
        reference = self._reference
        if reference is None or reference.keyframe.id != keyframe_id:
            return
        if self.config.keyframes.pose_distance(reference.T_world_ref, old) > 1e-6:
            return  # the reference is a map rendering at another pose: leave it
        correction = new @ inverse(old)
        reference.T_world_ref = new.copy()
        if self._T_world_last is not None:
            self._T_world_last = correction @ self._T_world_last
        if self._T_world_prev is not None:
            self._T_world_prev = correction @ self._T_world_prev

    def track(self, frame: Frame) -> TrackingResult:
        """Estimate the pose of ``frame``; never raises on bad input data."""
        start = time.perf_counter()
        timings: dict[str, float] = {}
        data = self._prepare(frame)
        timings["preprocess_ms"] = _ms_since(start)

        if data.valid_depth_ratio < self.config.min_valid_depth_ratio:
            result = self._lost_result(frame, "no valid depth", timings)
        elif self._reference is None:
            result = self._initialize(frame, data, timings)
        elif self._lost:
            result = self._recover(frame, data, timings, reason="lost")
        else:
            result = self._track_normally(frame, data, timings)
        timings["total_ms"] = _ms_since(start)
        return result

    # ------------------------------------------------------------------ stages

    def _initialize(self, frame: Frame, data: _FrameData, timings: dict[str, float]) -> TrackingResult:
        T_world_cam = self._T_world_cam_init.copy()
        keyframe = self._make_keyframe(frame, data, T_world_cam)
        self._accept_pose(T_world_cam, frame.timestamp_s)
        return TrackingResult(
            T_world_cam=Pose(T_world_cam),
            status=TrackingStatus.OK,
            valid_ratio=1.0,
            residual_m=0.0,
            normalized_residual=0.0,
            photometric_residual=0.0,
            is_keyframe=True,
            keyframe_id=keyframe.id,
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            timings_ms=timings,
        )

    def _track_normally(self, frame: Frame, data: _FrameData, timings: dict[str, float]) -> TrackingResult:
        reference = self._reference
        assert reference is not None and self._T_world_last is not None
        t0 = time.perf_counter()
        T_world_pred = self._predict(frame.timestamp_s)
        alignment = self._align(reference, data, inverse(reference.T_world_ref) @ T_world_pred)
        timings["align_ms"] = _ms_since(t0)
        T_world_cam = orthonormalize(reference.T_world_ref @ alignment.T_ref_src)
        status, reason = self._grade(alignment, T_world_cam, frame.timestamp_s)
        if status is TrackingStatus.LOST:
            return self._recover(frame, data, timings, reason=reason, iterations=alignment.iterations)
        if status is TrackingStatus.OK:
            self._update_typical_fit(alignment)

        t0 = time.perf_counter()
        is_keyframe = False
        if self.config.keyframes.needs_new_reference(alignment.T_ref_src, alignment.valid_ratio):
            T_world_cam, alignment, is_keyframe = self._change_reference(frame, data, T_world_cam, alignment)
        timings["keyframe_ms"] = _ms_since(t0)
        self._accept_pose(T_world_cam, frame.timestamp_s)
        return TrackingResult(
            T_world_cam=Pose(T_world_cam),
            status=status,
            valid_ratio=alignment.valid_ratio,
            residual_m=alignment.geometric_rmse_m,
            normalized_residual=alignment.normalized_residual,
            photometric_residual=alignment.photometric_rmse,
            is_keyframe=is_keyframe,
            keyframe_id=self._reference.keyframe.id,
            reason=reason,
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            iterations=alignment.iterations,
            timings_ms=timings,
        )

    def _change_reference(
        self, frame: Frame, data: _FrameData, T_world_cam: np.ndarray, alignment: Alignment
    ) -> tuple[np.ndarray, Alignment, bool]:
        """Switch to a nearby keyframe that still overlaps, or make this frame one.

        Returns (pose, alignment it came from, whether a keyframe was made).
        """
        policy = self.config.keyframes
        current = self._reference.keyframe.id if self._reference else None
        if policy.revisit and policy.revisit_candidates > 0:
            for keyframe in self._store.nearest(T_world_cam, policy.revisit_radius, policy.revisit_candidates, current):
                candidate = self._reference_for(keyframe)
                if candidate is None:
                    continue
                other = self._align(candidate, data, inverse(candidate.T_world_ref) @ T_world_cam)
                if (
                    other.ok
                    and other.valid_ratio >= policy.min_overlap
                    and not policy.needs_new_reference(other.T_ref_src, other.valid_ratio)
                ):
                    self._reference = candidate
                    return orthonormalize(candidate.T_world_ref @ other.T_ref_src), other, False
        self._make_keyframe(frame, data, T_world_cam)
        return T_world_cam, alignment, True

    def _recover(
        self, frame: Frame, data: _FrameData, timings: dict[str, float], reason: str, iterations: int = 0
    ) -> TrackingResult:
        """Try to re-localise; report LOST (with the last good pose) if nothing matches."""
        t0 = time.perf_counter()
        found = self._relocalize(data)
        timings["relocalize_ms"] = _ms_since(t0)
        if found is None:
            self._lost = True
            self._T_world_prev = None  # the motion model is void after a loss
            self._dt_prev_s = None
            return self._lost_result(frame, reason, timings, iterations)
        reference, alignment = found
        self._reference = reference
        self._lost = False
        T_world_cam = orthonormalize(reference.T_world_ref @ alignment.T_ref_src)
        self._accept_pose(T_world_cam, frame.timestamp_s, continuous=False)
        return TrackingResult(
            T_world_cam=Pose(T_world_cam),
            status=TrackingStatus.OK,
            valid_ratio=alignment.valid_ratio,
            residual_m=alignment.geometric_rmse_m,
            normalized_residual=alignment.normalized_residual,
            photometric_residual=alignment.photometric_rmse,
            keyframe_id=reference.keyframe.id,
            relocalized=True,
            reason=f"re-localised on keyframe {reference.keyframe.id} after: {reason}",
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            iterations=iterations + alignment.iterations,
            timings_ms=timings,
        )

    def _relocalize(self, data: _FrameData) -> tuple[_Reference, Alignment] | None:
        """Align the frame against recent keyframes from their own poses (and the
        last good pose) with a wider coarse-to-fine search; best accepted match."""
        cfg = self.config.relocalization
        candidates: list[tuple[Keyframe, np.ndarray | None]] = [(k, None) for k in self._store.recent(cfg.keyframes)]
        if self._T_world_last is not None:
            for keyframe in self._store.nearest(self._T_world_last, np.inf, 2):
                candidates.append((keyframe, self._T_world_last))
        best: tuple[_Reference, Alignment] | None = None
        coarsest = self.config.solver.levels - 1 + cfg.extra_levels
        for keyframe, T_world_guess in candidates:
            reference = self._reference_for(keyframe)
            if reference is None:
                continue
            init = np.eye(4) if T_world_guess is None else inverse(reference.T_world_ref) @ T_world_guess
            alignment = align(
                reference.levels,
                data.source,
                init,
                self.config.solver,
                coarsest_level=coarsest,
                iteration_scale=cfg.iteration_scale,
                use_kernel=self.config.use_kernel,
            )
            if not self._fits_like_before(alignment):
                continue
            if best is None or alignment.valid_ratio > best[1].valid_ratio:
                best = (reference, alignment)
        return best

    # ------------------------------------------------------------------ helpers

    def _fits_like_before(self, alignment: Alignment) -> bool:
        """Whether a re-localisation candidate fits as well as tracking used to."""
        cfg = self.config.relocalization
        residual_limit = max(cfg.max_residual_ratio * self._typical_residual, 1.0)
        photometric_limit = max(
            cfg.max_photometric_ratio * self._typical_photometric, self.config.solver.photometric_sigma
        )
        return (
            alignment.ok
            and alignment.valid_ratio >= cfg.min_valid_ratio
            and alignment.normalized_residual <= residual_limit
            and alignment.photometric_rmse <= photometric_limit
        )

    def _update_typical_fit(self, alignment: Alignment) -> None:
        """Running averages of the fit of good frames (re-localisation limits)."""
        rate = 0.05
        self._typical_residual += rate * (alignment.normalized_residual - self._typical_residual)
        self._typical_photometric += rate * (alignment.photometric_rmse - self._typical_photometric)

    def _grade(self, alignment: Alignment, T_world_cam: np.ndarray, timestamp_s: float) -> tuple[TrackingStatus, str]:
        q = self.config.quality
        if not alignment.ok:
            return TrackingStatus.LOST, "too few correspondences"
        if alignment.valid_ratio < q.lost_min_valid_ratio:
            return TrackingStatus.LOST, f"valid ratio {alignment.valid_ratio:.2f}"
        if alignment.normalized_residual > q.lost_max_residual:
            return TrackingStatus.LOST, f"residual {alignment.normalized_residual:.1f} sigma"
        if self._T_world_last is not None:
            # Floored at a nominal frame time: a fast camera is not an implausible one.
            dt_s = max(self._frame_gap(timestamp_s), _NOMINAL_FRAME_S)
            translation_m, rotation_rad = motion_magnitude(inverse(self._T_world_last) @ T_world_cam)
            if translation_m > q.max_speed_m_s * dt_s or rotation_rad > q.max_angular_speed_rad_s * dt_s:
                return TrackingStatus.LOST, f"implausible jump {translation_m:.2f} m {rotation_rad:.2f} rad"
        reasons = []
        if alignment.valid_ratio < q.weak_min_valid_ratio:
            reasons.append(f"valid ratio {alignment.valid_ratio:.2f}")
        if alignment.normalized_residual > q.weak_max_residual:
            reasons.append(f"residual {alignment.normalized_residual:.1f} sigma")
        if _conditioning(alignment.information) < q.min_condition:
            reasons.append("poorly constrained")
        if reasons:
            return TrackingStatus.WEAK, ", ".join(reasons)
        return TrackingStatus.OK, ""

    def _predict(self, timestamp_s: float) -> np.ndarray:
        """Constant-velocity prediction of the pose at ``timestamp_s``."""
        T_last = self._T_world_last
        if not self.config.constant_velocity or self._T_world_prev is None or self._dt_prev_s is None:
            return T_last
        # Frames can be dropped or strided: scale the last motion by the time ratio
        # (without usable timestamps, frames are taken as evenly spaced).
        ratio = self._frame_gap(timestamp_s) / self._dt_prev_s
        return orthonormalize(T_last @ scaled_motion(self._T_world_prev, T_last, min(ratio, 3.0)))

    def _motion_over(self, delay_s: float) -> np.ndarray | None:
        """Camera motion [4, 4] over ``delay_s`` at the last inter-frame velocity, or
        None when there is nothing to compensate (or no velocity yet)."""
        if (not self.config.compensate_color_delay or delay_s == 0.0 or self._lost
                or self._T_world_prev is None or not self._dt_prev_s):
            return None
        if abs(delay_s) > _MAX_COMPENSATED_DELAY * self._dt_prev_s:
            if not self._warned_delay:
                _LOG.warning("colour and depth %.1f ms apart, over %.0f %% of the frame interval: such frames "
                             "keep their colour as taken (warned once)", 1000 * delay_s, 100 * _MAX_COMPENSATED_DELAY)
                self._warned_delay = True
            return None
        return scaled_motion(self._T_world_prev, self._T_world_last, delay_s / self._dt_prev_s)

    def _frame_gap(self, timestamp_s: float) -> float:
        """Seconds since the last good frame; a nominal 1/30 s without usable timestamps."""
        if self._t_last_s is None or not timestamp_s > self._t_last_s:
            return _NOMINAL_FRAME_S
        return timestamp_s - self._t_last_s

    def _accept_pose(self, T_world_cam: np.ndarray, timestamp_s: float, continuous: bool = True) -> None:
        """Make ``T_world_cam`` the last good pose; ``continuous`` = it follows the
        previous good pose without a loss in between (the motion model holds)."""
        if continuous and self._T_world_last is not None:
            self._dt_prev_s = self._frame_gap(timestamp_s)
            self._T_world_prev = self._T_world_last
        else:
            self._dt_prev_s = None
            self._T_world_prev = None
        self._T_world_last = T_world_cam
        self._t_last_s = timestamp_s

    def _align(self, reference: _Reference, data: _FrameData, T_ref_src_init: np.ndarray) -> Alignment:
        return align(
            reference.levels,
            data.source,
            T_ref_src_init,
            self.config.solver,
            coarsest_level=self.config.solver.levels - 1,
            use_kernel=self.config.use_kernel,
        )

    def _lost_result(self, frame: Frame, reason: str, timings: dict[str, float], iterations: int = 0) -> TrackingResult:
        pose = self._T_world_last if self._T_world_last is not None else self._T_world_cam_init
        return TrackingResult(
            T_world_cam=Pose(pose),
            status=TrackingStatus.LOST,
            valid_ratio=0.0,
            residual_m=float("inf"),
            keyframe_id=None if self._reference is None else self._reference.keyframe.id,
            reason=reason,
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            iterations=iterations,
            timings_ms=timings,
        )

    # ------------------------------------------------------------------ data

    @property
    def _num_levels(self) -> int:
        return self.config.solver.levels + self.config.relocalization.extra_levels

    def _prepare(self, frame: Frame) -> _FrameData:
        """Undistort, convert to intensity, clean depth, build pyramids."""
        intr = frame.intrinsics
        gray_u8 = self._undistorter.gray(to_gray(frame.color_rgb), intr)
        depth = self._undistorter.depth(frame.depth_m, intr)
        cfg = self.config.solver
        depth = clean_depth(depth, cfg.min_depth_m, cfg.max_depth_m)
        pinhole = intr.without_distortion()
        T_depth_color = self._motion_over(frame.color_delay_s)
        if T_depth_color is not None:
            gray_u8 = gray_at_depth_time(gray_u8, depth, pinhole, T_depth_color)
        pyramid = build_pyramid(gray_u8.astype(np.float32) * np.float32(1.0 / 255.0), depth, pinhole, self._num_levels)
        source = build_source(pyramid, cfg)
        valid_ratio = float(np.count_nonzero(depth)) / depth.size
        return _FrameData(pinhole, gray_u8, depth, source, valid_ratio, pyramid)

    def _make_keyframe(self, frame: Frame, data: _FrameData, T_world_cam: np.ndarray) -> Keyframe:
        levels = build_reference(data.pyramid, self.config.solver)
        keyframe = self._store.add(
            frame.index, frame.timestamp_s, T_world_cam, data.intrinsics, data.gray, data.depth_m, levels
        )
        self._reference = _Reference(keyframe, T_world_cam.copy(), levels)
        if self.map_renderer is not None:
            rendering = self.map_renderer(Pose(T_world_cam), data.intrinsics)
            if rendering is not None:
                self.set_map_reference(rendering[0], rendering[1], Pose(T_world_cam), data.intrinsics)
        return keyframe

    def _reference_for(self, keyframe: Keyframe) -> _Reference | None:
        levels = self._store.reference(keyframe)
        return None if levels is None else _Reference(keyframe, keyframe.T_world_cam.matrix.copy(), levels)

    def _reference_of_keyframe(self, keyframe: Keyframe) -> list[ReferenceLevel]:
        """Reference pyramid from a keyframe's stored images (cache miss)."""
        gray = keyframe.gray.astype(np.float32) * np.float32(1.0 / 255.0)
        pyramid = build_pyramid(gray, keyframe.depth_m, keyframe.intrinsics, self._num_levels)
        return build_reference(pyramid, self.config.solver)

    def _reference_from_rendering(
        self, color_rgb: np.ndarray, depth_m: np.ndarray, intrinsics: Intrinsics
    ) -> list[ReferenceLevel] | None:
        target = self._reference.keyframe.intrinsics if self._reference else intrinsics
        gray = to_gray(np.ascontiguousarray(color_rgb, dtype=np.uint8))
        depth = clean_depth(depth_m, self.config.solver.min_depth_m, self.config.solver.max_depth_m)
        if (intrinsics.width, intrinsics.height) != (target.width, target.height):
            gray = cv2.resize(gray, (target.width, target.height), interpolation=cv2.INTER_AREA)
            depth = cv2.resize(depth, (target.width, target.height), interpolation=cv2.INTER_NEAREST)
            intrinsics = intrinsics.scaled(target.width, target.height)
        if np.count_nonzero(depth) < self.config.min_valid_depth_ratio * depth.size:
            return None
        pyramid = build_pyramid(
            gray.astype(np.float32) * np.float32(1.0 / 255.0), depth, intrinsics.without_distortion(), self._num_levels
        )
        return build_reference(pyramid, self.config.solver)


def _conditioning(information: np.ndarray) -> float:
    """Smallest over largest eigenvalue of the normal matrix, with translation
    and rotation blocks put on a common scale (1 m ~ 1 rad)."""
    if not np.all(np.isfinite(information)) or not np.any(information):
        return 0.0
    eigenvalues = np.linalg.eigvalsh(information)
    return float(max(eigenvalues[0], 0.0) / eigenvalues[-1])


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
