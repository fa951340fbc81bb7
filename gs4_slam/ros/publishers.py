"""Everything the SLAM node publishes, built from the core's results by ``conversions``.

TF goes through tf2_ros where a ROS distribution provides it; the PyPI wheels have
neither tf2_ros nor tf2_msgs, so there the node says once that TF is not published
(pose, odometry and path carry the same information).
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header

from gs4_slam.camera import Pose
from gs4_slam.gaussians import GaussianSet
from gs4_slam.labels import LabelSet
from gs4_slam.mapping.semantic_fusion import rendered_classes
from gs4_slam.msg import SlamStatus
from gs4_slam.render import RenderOutput
from gs4_slam.ros import conversions as conv
from gs4_slam.tracking import TrackingStatus

_STATE = {
    None: (SlamStatus.TRACKING_INITIALIZING, "INITIALIZING"),
    TrackingStatus.OK: (SlamStatus.TRACKING_OK, "OK"),
    TrackingStatus.WEAK: (SlamStatus.TRACKING_WEAK, "WEAK"),
    TrackingStatus.LOST: (SlamStatus.TRACKING_LOST, "LOST"),
}
_LEVEL = {SlamStatus.TRACKING_INITIALIZING: DiagnosticStatus.OK, SlamStatus.TRACKING_OK: DiagnosticStatus.OK,
          SlamStatus.TRACKING_WEAK: DiagnosticStatus.WARN, SlamStatus.TRACKING_LOST: DiagnosticStatus.ERROR}


@dataclass
class StatusReport:
    """What ``~/status`` and the diagnostics say (filled by the node)."""

    stamp: Time
    tracking: TrackingStatus | None
    input_frames: int
    processed_frames: int
    dropped_frames: int
    fps: float
    num_gaussians: int
    num_keyframes: int
    stage_times_ms: dict[str, float]
    details: dict[str, str]
    problem: str = ""


class SlamPublishers:
    """Publishers of the node's outputs, all under its private namespace (``~/``)."""

    def __init__(self, node: Node, map_frame: str, label_set: LabelSet, path_max_poses: int) -> None:
        self._node = node
        self.map_frame = map_frame
        self.label_set = label_set
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        # Late subscribers (RViz started after the node) still get the latest map and path.
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pose = node.create_publisher(PoseStamped, "~/pose", reliable)
        self.odometry = node.create_publisher(Odometry, "~/odometry", reliable)
        self.path = node.create_publisher(Path, "~/path", latched)
        self.cloud = node.create_publisher(PointCloud2, "~/map_cloud", latched)
        self.render_color = node.create_publisher(Image, "~/render/color", reliable)
        self.render_depth = node.create_publisher(Image, "~/render/depth", reliable)
        self.render_semantic = node.create_publisher(Image, "~/render/semantic", reliable)
        self.render_confidence = node.create_publisher(Image, "~/render/semantic_confidence", reliable)
        self.status = node.create_publisher(SlamStatus, "~/status", reliable)
        self.diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", reliable)
        self._path_poses: collections.deque[PoseStamped] = collections.deque(maxlen=path_max_poses)
        self._path_lock = threading.Lock()  # the pipeline thread appends, the output thread publishes
        self._path_changed = False
        self._previous: tuple[float, Pose] | None = None
        self._tf = self._tf_broadcaster()

    def _tf_broadcaster(self):
        try:
            from tf2_ros import TransformBroadcaster
        except ImportError:
            self._node.get_logger().warning(
                "tf2_ros is not available: the map -> camera transform is not published on /tf "
                "(~/pose, ~/odometry and ~/path carry the same pose)"
            )
            return None
        return TransformBroadcaster(self._node)

    @property
    def tf_available(self) -> bool:
        return self._tf is not None

    def publish_pose(self, T_world_cam: Pose, stamp: Time, camera_frame: str, publish_tf: bool) -> None:
        """Pose, odometry and TF of one processed frame; the pose joins the (bounded) path."""
        pose = conv.pose_stamped_from_pose(T_world_cam, self.map_frame, stamp)
        self.pose.publish(pose)
        self.odometry.publish(conv.odometry_from_pose(T_world_cam, self.map_frame, camera_frame, stamp, self._previous))
        self._previous = (conv.seconds_from_stamp(stamp), T_world_cam)
        with self._path_lock:
            self._path_poses.append(pose)
            self._path_changed = True
        if publish_tf and self._tf is not None:
            self._tf.sendTransform(conv.transform_stamped_from_pose(T_world_cam, self.map_frame, camera_frame, stamp))

    def publish_path(self) -> None:
        """The path, when it changed. Serialising 10k poses takes ~90 ms, so this runs at a
        rate on the output thread rather than per frame on the pipeline thread."""
        with self._path_lock:
            if not self._path_changed or not self._path_poses:
                return
            poses, self._path_changed = list(self._path_poses), False
        self.path.publish(Path(header=Header(frame_id=self.map_frame, stamp=poses[-1].header.stamp), poses=poses))

    def clear_path(self) -> None:
        with self._path_lock:
            self._path_poses.clear()
            self._path_changed = False
        self._previous = None

    def publish_cloud(self, gaussians: GaussianSet, stamp: Time, max_points: int) -> None:
        cloud = conv.pointcloud2_from_gaussians(gaussians, self.label_set, self.map_frame, stamp, max_points)
        self.cloud.publish(cloud)

    def publish_renders(self, render: RenderOutput, stamp: Time, frame_id: str) -> None:
        """Colour (rgb8), depth (32FC1, m), semantics (class colours) and the class
        probability (32FC1, 0..1; 0 where the map is empty) of one render."""
        if render.color is not None:
            self.render_color.publish(conv.image_msg_from_rgb(render.color.detach().cpu().numpy(), frame_id, stamp))
        if render.depth is not None:
            self.render_depth.publish(conv.image_msg_from_depth(render.depth.detach().cpu().numpy(), frame_id, stamp))
        if render.semantics is not None and render.semantics.shape[-1] > 0:
            labels, confidence = rendered_classes(render.semantics.detach().cpu().float(),
                                                  None if render.alpha is None else render.alpha.detach().cpu())
            self.render_semantic.publish(conv.image_msg_from_labels(labels.numpy().astype(np.uint8), self.label_set,
                                                                    frame_id, stamp))
            self.render_confidence.publish(conv.image_msg_from_depth(confidence.numpy().astype(np.float32),
                                                                     frame_id, stamp))

    def publish_status(self, report: StatusReport) -> None:
        state, name = _STATE[report.tracking]
        msg = SlamStatus(header=Header(frame_id=self.map_frame, stamp=report.stamp), tracking_state=state,
                         tracking_state_name=name, input_frames=report.input_frames,
                         processed_frames=report.processed_frames, dropped_frames=report.dropped_frames,
                         fps=float(report.fps), num_gaussians=report.num_gaussians,
                         num_keyframes=report.num_keyframes)
        msg.stage_names = list(report.stage_times_ms)
        msg.stage_times_ms = [float(v) for v in report.stage_times_ms.values()]
        self.status.publish(msg)
        self.diagnostics.publish(self._diagnostics(report, state, name))

    def _diagnostics(self, report: StatusReport, state: int, name: str) -> DiagnosticArray:
        level = _LEVEL[state]
        message = f"tracking {name}"
        if report.problem:
            level = max(level, DiagnosticStatus.WARN, key=ord)
            message += f"; last input problem: {report.problem}"
        values = {"input_frames": report.input_frames, "processed_frames": report.processed_frames,
                  "dropped_frames": report.dropped_frames, "fps": f"{report.fps:.2f}",
                  "num_gaussians": report.num_gaussians, "num_keyframes": report.num_keyframes, **report.details}
        status = DiagnosticStatus(level=level, name=f"{self._node.get_name()}: SLAM", message=message,
                                  hardware_id="gs4_slam",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        return DiagnosticArray(header=Header(stamp=report.stamp), status=[status])
