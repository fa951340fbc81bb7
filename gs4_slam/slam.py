"""The SLAM pipeline: tracking, Gaussian prediction and mapping behind one object.

    slam = Slam(load_slam_config())          # config/slam.yaml
    for frame in reader:
        result = slam.process(frame)         # SlamResult: pose, status, counts, stage times
    slam.save_map("out/map.ply")
    slam.close()

Per frame: the frame is brought to the working resolution and undistorted; the
tracker estimates its pose; on keyframes (the pose changed enough) and every
``mapping.integrate_every`` frames the Gaussian Prediction Model turns it into
Gaussians, which the mapping backend merges into the map (insertion where the map
is empty or behind, then on keyframes a few joint Gaussian + pose iterations and
floater removal) — in a background thread unless ``mapping.threaded`` is false.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from gs4_slam import config as config_io
from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.frame import Frame
from gs4_slam.gaussians import GaussianSet
from gs4_slam.labels import LabelSet, load_label_set
from gs4_slam.mapping.backend import MappingBackend, MappingConfig, MappingJob
from gs4_slam.mapping.final_refinement import FinalRefinementReport
from gs4_slam.predictor.predictor import GaussianPredictor, PredictorConfig
from gs4_slam.render import RenderOutput, render
from gs4_slam.resources import find_data_file
from gs4_slam.tracking import Tracker, TrackerConfig, TrackingStatus
from gs4_slam.tracking.lie import scaled_motion
from gs4_slam.tracking.preprocess import Undistorter, depth_at_color_time

log = logging.getLogger(__name__)


@dataclass
class SlamConfig:
    """Every setting of the pipeline (YAML: config/slam.yaml; ROS parameters: same keys, dotted)."""

    working_width: int = 320  # frames are resized to this before anything else
    working_height: int = 240  # frames are resized to this height before anything else
    device: str = "cpu"  # cpu or cuda (map, renderer, predictor)
    label_set: str = "scannet20"
    #: New tracking references are the map rendered at the keyframe (frame-to-model)
    #: instead of the keyframe's own RGB-D; see README for the measured effect.
    track_against_map: bool = False
    #: Keyframe poses refined by the joint optimisation flow back to the tracker.
    use_refined_keyframe_poses: bool = True
    #: Map silhouette above which a rendered depth counts for the tracking reference.
    track_min_alpha: float = 0.8
    #: Where a frame's colour was taken apart from its depth (TUM's Kinect: up to 17 ms),
    #: map it at the colour's time: its pose moves by the camera's motion over the delay
    #: and its depth is re-projected there. Mapping fits the map to the colour image as
    #: taken, so pairing it with the depth-time pose misplaces it by up to a pixel.
    map_at_color_time: bool = True
    tracking: TrackerConfig = field(default_factory=TrackerConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)

    def __post_init__(self) -> None:
        if self.working_width % 16 or self.working_height % 16 or self.working_width <= 0 or self.working_height <= 0:
            raise ValueError(
                f"working size must be positive multiples of 16, got {self.working_width}x{self.working_height}"
            )
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")


def default_config_path() -> Path:
    path = find_data_file("config/slam.yaml")
    if path is None:
        raise FileNotFoundError("config/slam.yaml not found in the source tree or the installed share folder")
    return path


def load_slam_config(*paths: str | Path, overrides: dict | None = None) -> SlamConfig:
    """config/slam.yaml, then the YAML overlays ``paths``, then ``overrides``; strict about keys and types."""
    return config_io.load(SlamConfig, default_config_path(), *paths, overrides=overrides)


@dataclass(frozen=True)
class SlamResult:
    index: int
    timestamp_s: float
    T_world_cam: Pose
    status: TrackingStatus
    is_keyframe: bool
    num_gaussians: int
    num_keyframes: int
    stage_times_ms: dict[str, float]


@dataclass(frozen=True)
class _TrackedPose:
    """A frame's pose as tracked, and what it was tracked against (to follow that keyframe's refinement)."""

    timestamp_s: float
    T_world_cam: Pose
    keyframe_id: int | None  # the tracking reference after this frame
    T_world_keyframe: Pose | None  # that keyframe's pose at the time


class Slam:
    """Tracker + Gaussian Prediction Model + mapping backend."""

    def __init__(self, config: SlamConfig | None = None) -> None:
        self.config = config or load_slam_config()
        if self.config.device != "cpu" and not torch.cuda.is_available():
            raise RuntimeError(f"device {self.config.device!r} requested but CUDA is not available")
        self.label_set: LabelSet = load_label_set(self.config.label_set)
        self.predictor = GaussianPredictor(
            PredictorConfig(**{**self.config.predictor.__dict__, "device": self.config.device})
        )
        # A label set of the user's own (their segmenter's classes) works with external
        # labels only: the predictor's class scores are then replaced by a uniform prior.
        self._own_label_set = self.predictor.num_classes != self.label_set.num_classes
        if self._own_label_set and self.config.mapping.semantics.source != "external":
            raise ValueError(
                f"the predictor has {self.predictor.num_classes} classes, label set {self.label_set.name!r} has "
                f"{self.label_set.num_classes}: set mapping.semantics.source to 'external' to fuse your own "
                "segmenter's labels, or use the predictor's label set (scannet20)"
            )
        self.predictor.warm_up(self.config.working_width, self.config.working_height)
        self._undistorter = Undistorter()
        self._lock = threading.RLock()
        self._build()

    def _build(self) -> None:
        renderer = self._render_for_tracking if self.config.track_against_map else None
        self.tracker = Tracker(self.config.tracking, map_renderer=renderer)
        mapping = self.config.mapping
        if self._own_label_set and mapping.refinement.enabled:
            log.warning("label set %r is not the predictor's: the refinement network (trained on its classes) is "
                        "off; insertion, merging and pruning still run", self.label_set.name)
            mapping = dataclasses.replace(mapping, refinement=dataclasses.replace(mapping.refinement, enabled=False))
        self.backend = MappingBackend(mapping, self.label_set.num_classes, self.predictor.feature_dim,
                                      tuple(self.label_set.class_names), self.config.device)
        self._trajectory: list[_TrackedPose] = []
        #: Keyframe id -> T_depth_color of the keyframes mapped at their colour's time:
        #: mapping refines those poses, the tracker and the trajectory use depth-time ones.
        self._keyframe_color_offsets: dict[int, np.ndarray] = {}
        self._last_tracked: _TrackedPose | None = None
        self._frames_seen = 0
        self._warned_no_labels = False

    # ---------------------------------------------------------------- per frame

    def prepare(self, frame: Frame) -> Frame:
        """``frame`` at the working size, undistorted (pinhole intrinsics)."""
        w, h = self.config.working_width, self.config.working_height
        k = frame.intrinsics
        color, depth, labels = frame.color_rgb, frame.depth_m, frame.labels
        if k.has_distortion:
            color, depth = self._undistorter.color(color, k), self._undistorter.depth(depth, k)
            if labels is not None:
                labels = self._undistorter.depth(labels.astype(np.float32), k).astype(np.uint8)
            k = k.without_distortion()
        if (k.width, k.height) != (w, h):
            color = cv2.resize(color, (w, h), interpolation=cv2.INTER_AREA)
            depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
            if labels is not None:
                labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
            k = k.scaled(w, h)
        depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
        return Frame(frame.timestamp_s, np.ascontiguousarray(color), depth, k, frame.T_world_cam_gt, labels,
                     frame.index, frame.color_delay_s)

    def process(self, frame: Frame) -> SlamResult:
        """Track ``frame``, and map it when it is a keyframe or due for insertion."""
        with self._lock:
            return self._process(frame)

    def _process(self, frame: Frame) -> SlamResult:
        start = time.perf_counter()
        times: dict[str, float] = {}
        frame = self.prepare(frame)
        times["prepare_ms"] = _ms(start)
        t0 = time.perf_counter()
        if self.config.use_refined_keyframe_poses:
            for keyframe_id, pose in self._at_depth_time(self.backend.take_refined_poses()).items():
                self.tracker.update_keyframe_pose(keyframe_id, pose)
        tracked = self.tracker.track(frame)
        times["track_ms"] = _ms(t0)
        self._frames_seen += 1
        pose = tracked.T_world_cam
        # The motion to extrapolate to the colour's time: from the last well-tracked frame,
        # never across a re-localisation's jump.
        previous = None if tracked.relocalized else self._last_tracked
        self._trajectory.append(self._tracked_pose(frame.timestamp_s, pose, tracked.keyframe_id))
        self._last_tracked = self._trajectory[-1] if tracked.status is not TrackingStatus.LOST else None
        due = self.config.mapping.integrate_every and self._frames_seen % self.config.mapping.integrate_every == 0
        if tracked.status is not TrackingStatus.LOST and (tracked.is_keyframe or due):
            t0 = time.perf_counter()
            keyframe_id = tracked.keyframe_id if tracked.is_keyframe else None
            mapped, T_world_mapped = self._at_color_time(frame, pose, previous, keyframe_id)
            times["color_time_ms"] = _ms(t0)
            t0 = time.perf_counter()
            prediction = self.predictor.predict(mapped, T_world_mapped)
            times["predict_ms"] = _ms(t0)
            t0 = time.perf_counter()
            self.backend.submit(self._job(mapped, T_world_mapped, prediction.gaussians, keyframe_id))
            times["map_submit_ms"] = _ms(t0)
        times.update({f"map_{k}": v for k, v in self.backend.stats.stage_ms.items()})
        times["total_ms"] = _ms(start)
        return SlamResult(frame.index, frame.timestamp_s, pose, tracked.status, tracked.is_keyframe,
                          len(self.backend), len(self.tracker.keyframes), times)

    def _at_color_time(self, frame: Frame, pose: Pose, previous: _TrackedPose | None,
                       keyframe_id: int | None) -> tuple[Frame, Pose]:
        """``frame`` and ``pose`` for mapping: moved to the colour's time when it differs (``map_at_color_time``).

        The camera's motion over the delay is extrapolated from its last frame
        interval (what is known when the frame is mapped).
        """
        delay_s = frame.color_delay_s
        if not self.config.map_at_color_time or delay_s == 0.0 or previous is None:
            return frame, pose
        dt_s = frame.timestamp_s - previous.timestamp_s
        if not 0.0 < dt_s <= _MAX_MOTION_GAP_S:
            return frame, pose
        T_depth_color = scaled_motion(previous.T_world_cam.matrix, pose.matrix, delay_s / dt_s)
        if keyframe_id is not None:
            self._keyframe_color_offsets[keyframe_id] = T_depth_color
        depth = depth_at_color_time(frame.depth_m, frame.intrinsics, T_depth_color)
        return dataclasses.replace(frame, depth_m=depth), Pose(pose.matrix @ T_depth_color)

    def _at_depth_time(self, keyframe_poses: dict[int, Pose]) -> dict[int, Pose]:
        """Refined keyframe poses from mapping, moved back to their depth's time (the tracker's)."""
        offsets = self._keyframe_color_offsets
        return {k: Pose(p.matrix @ np.linalg.inv(offsets[k])) if k in offsets else p for k, p in keyframe_poses.items()}

    def _render_for_tracking(self, T_world_cam: Pose, intrinsics: Intrinsics):
        """Colour and depth of the map for the tracker, or None (empty map, or mapping busy).

        Never waits for the mapping thread: tracking keeps the keyframe's own
        images when the map is being written.
        """
        if len(self.backend) == 0 or not self.backend.lock.acquire(blocking=False):
            return None
        try:
            with torch.no_grad():
                out = render(self.backend.map, intrinsics, T_world_cam.inverse(), channels=("color", "depth", "alpha"),
                             normalize_depth=True)
        finally:
            self.backend.lock.release()
        depth = torch.where(out.alpha > self.config.track_min_alpha, out.depth, torch.zeros_like(out.depth))
        color = (out.color.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
        return color.cpu().numpy(), depth.cpu().numpy().astype(np.float32)

    def _job(self, frame: Frame, pose: Pose, gaussians: GaussianSet, keyframe_id: int | None) -> MappingJob:
        device = self.config.device
        if self._own_label_set:
            n = self.label_set.num_classes
            gaussians = dataclasses.replace(gaussians, semantics=gaussians.means.new_full((len(gaussians), n), 1.0 / n))
        color = torch.from_numpy(frame.color_rgb).to(device).permute(2, 0, 1).float().div(255.0)
        depth = torch.from_numpy(frame.depth_m).to(device)
        labels = None
        if self.config.mapping.semantics.uses_external:
            if frame.labels is not None:
                labels = torch.from_numpy(frame.labels.astype(np.int64)).to(device)
            elif not self._warned_no_labels:
                self._warned_no_labels = True
                log.warning("mapping.semantics.source is %r but frames carry no label image: only the prediction "
                            "is fused until one arrives", self.config.mapping.semantics.source)
        return MappingJob(frame.index, color, depth, frame.intrinsics, pose, gaussians, keyframe_id, labels)

    # ---------------------------------------------------------------- outputs

    def render(self, T_world_cam: Pose, intrinsics: Intrinsics,
               channels=("color", "depth", "semantics")) -> RenderOutput:
        """The map seen from a camera (pinhole intrinsics), without gradients."""
        return self.backend.render(T_world_cam, intrinsics.without_distortion(), channels)

    def map_set(self) -> GaussianSet:
        """A detached CPU copy of the map's Gaussians."""
        return self.backend.snapshot()

    def trajectory(self, refined: bool = True) -> list[tuple[float, Pose]]:
        """(timestamp, T_world_cam) of every processed frame.

        ``refined``: each pose moves with the keyframe it was tracked against, as
        mapping (the keyframe optimisation, the final refinement) refined that
        keyframe's pose since; a frame is tracked relative to its keyframe, so that
        is where its error came from. Otherwise the poses as tracked at the time
        (what ``process`` returned and a node published).
        """
        with self._lock:
            entries = list(self._trajectory)
        if not refined:
            return [(e.timestamp_s, e.T_world_cam) for e in entries]
        keyframe_poses = self._at_depth_time(dict(self.backend.refined_poses))
        return [(e.timestamp_s, _follow_keyframe(e, keyframe_poses.get(e.keyframe_id))) for e in entries]

    def frame_exposures(self) -> list[np.ndarray | None]:
        """Each processed frame's exposure ([6], see :func:`gs4_slam.mapping.optimizer.apply_exposure`), or None.

        The final refinement fits one per stored keyframe; a frame takes that of
        its keyframe (taken a moment apart by the same camera), or of the stored
        keyframe nearest in the run when mapping skipped its own. None before the
        final refinement or with ``lr_exposure`` 0.
        """
        with self._lock:
            keyframe_ids = [e.keyframe_id for e in self._trajectory]
        exposures = dict(self.backend.keyframe_exposures)
        if not exposures:
            return [None] * len(keyframe_ids)
        ids = np.array(sorted(exposures))
        return [exposures[int(ids[np.argmin(np.abs(ids - (k if k is not None else ids[0])))])]
                for k in keyframe_ids]

    def _tracked_pose(self, timestamp_s: float, T_world_cam: Pose, keyframe_id: int | None) -> _TrackedPose:
        keyframes = self.tracker.keyframes
        if keyframe_id is None or not 0 <= keyframe_id < len(keyframes):
            return _TrackedPose(timestamp_s, T_world_cam, None, None)
        return _TrackedPose(timestamp_s, T_world_cam, keyframe_id, keyframes[keyframe_id].T_world_cam)

    def flush(self) -> None:
        """Wait for the mapping thread to finish queued work."""
        self.backend.flush()

    def refine_final_map(self, steps: int | None = None) -> FinalRefinementReport:
        """After the last frame: ``mapping.final_refinement`` (or ``steps``) steps over every stored keyframe."""
        config = self.config.mapping.final_refinement
        if steps is not None:
            config = dataclasses.replace(config, steps=steps)
        with self._lock:
            return self.backend.refine_final(config)

    def save_trajectory(self, path: str | Path) -> None:
        """:meth:`trajectory` (refined) in TUM format."""
        from gs4_slam.metrics.trajectory import Trajectory, write_tum

        entries = self.trajectory()
        write_tum(path, Trajectory.from_poses([t for t, _ in entries], [pose for _, pose in entries]))

    def save_map(self, path: str | Path) -> None:
        from gs4_slam.map_io import save_map

        self.flush()
        with self.backend.lock:
            self.backend.map.metadata.update({"label_set": self.label_set.name, "frames": self._frames_seen,
                                              "label_colors": [list(c) for c in self.label_set.colors_rgb]})
            save_map(self.backend.map, path)

    def load_map(self, path: str | Path) -> None:
        """Replace the map with a saved one (tracking restarts against it)."""
        from gs4_slam.map_io import load_map

        loaded = load_map(path, device=self.config.device)
        if loaded.num_classes not in (0, self.label_set.num_classes):
            raise ValueError(f"{path}: map has {loaded.num_classes} classes, label set has {self.label_set.num_classes}")
        if loaded.label_names and tuple(loaded.label_names) != tuple(self.label_set.class_names):
            raise ValueError(f"{path}: map was made with label set {loaded.metadata.get('label_set', '?')!r} "
                             f"({', '.join(loaded.label_names[:4])}, ...), this pipeline uses {self.label_set.name!r}")
        with self._lock:
            self.flush()
            with self.backend.lock:
                self.backend.map = loaded
            self.tracker.reset()
            # The tracker starts over (keyframe ids from 0): no motion to extrapolate across
            # the jump, and no colour offset may attach to a new keyframe with an old id.
            self._last_tracked = None
            self._keyframe_color_offsets.clear()

    def reset(self) -> None:
        with self._lock:
            self.backend.close()
            self._build()

    def close(self) -> None:
        self.backend.close()


def trajectory_path(map_path: str | Path) -> Path:
    """Where the trajectory saved with a map goes: ``map.ply`` -> ``map_trajectory.txt``."""
    map_path = Path(map_path)
    return map_path.with_name(f"{map_path.stem}_trajectory.txt")


#: Longest frame interval over which the last motion is extrapolated to the colour's time.
_MAX_MOTION_GAP_S = 0.1


def _follow_keyframe(entry: _TrackedPose, T_world_keyframe_now: Pose | None) -> Pose:
    if T_world_keyframe_now is None or entry.T_world_keyframe is None:
        return entry.T_world_cam
    return T_world_keyframe_now @ entry.T_world_keyframe.inverse() @ entry.T_world_cam


def _ms(since: float) -> float:
    return 1000.0 * (time.perf_counter() - since)
