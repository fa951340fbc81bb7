"""Camera tracking: dense RGB-D frame-to-keyframe / frame-to-map alignment.

>>> tracker = Tracker(TrackerConfig())
>>> result = tracker.track(frame)          # TrackingResult
>>> result.T_world_cam, result.status      # Pose, TrackingStatus.OK / WEAK / LOST
"""

from gs4_slam.tracking.keyframes import Keyframe, KeyframePolicy, KeyframeStore
from gs4_slam.tracking.solver import Alignment, SolverConfig, align
from gs4_slam.tracking.tracker import (
    DEFAULT_CONFIG_PATH,
    MapRenderer,
    QualityThresholds,
    RelocalizationConfig,
    Tracker,
    TrackerConfig,
    TrackingResult,
    TrackingStatus,
    load_tracker_config,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Alignment",
    "Keyframe",
    "KeyframePolicy",
    "KeyframeStore",
    "MapRenderer",
    "QualityThresholds",
    "RelocalizationConfig",
    "SolverConfig",
    "Tracker",
    "TrackerConfig",
    "TrackingResult",
    "TrackingStatus",
    "align",
    "load_tracker_config",
]
