"""ROS 2 node around the SLAM pipeline: callbacks enqueue, one thread converts and runs ``Slam``.

    python -m gs4_slam.ros.slam_node --ros-args --params-file config/slam_node.yaml \\
        -r camera/color/image_raw:=/my/color

Subscribes (RealSense names, remappable): ``camera/color/image_raw`` (rgb8/bgr8),
``camera/aligned_depth_to_color/image_raw`` (16UC1 mm / 32FC1 m),
``camera/color/camera_info``, optionally ``camera/labels/image_raw`` (class ids) and
``external_pose`` (PoseStamped). Publishes ``~/pose``, ``~/odometry``, ``~/path``,
``~/map_cloud``, ``~/render/{color,depth,semantic,semantic_confidence}``, ``~/status``,
``/diagnostics`` and TF map -> camera (with tf2_ros). Services ``~/save_map``, ``~/load_map``,
``~/query_class``, ``~/reset``, ``~/pause``, ``~/resume``.

The label image is fused into the map's classes when ``mapping.semantics.source`` is
``external`` or ``both`` (and ``use_labels`` is true).
"""
from __future__ import annotations

import collections
import itertools
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger

from gs4_slam import config as config_io
from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.frame import Frame
from gs4_slam.labels import LabelSetError
from gs4_slam.predictor.predictor import PredictorWeightsError
from gs4_slam.ros import conversions as conv
from gs4_slam.ros import params
from gs4_slam.ros.publishers import SlamPublishers, StatusReport
from gs4_slam.ros.services import PathRefused, confined_map_path
from gs4_slam.ros.spinning import spin_until_stopped
from gs4_slam.ros.sync import create_synchronized_subscriptions, stamp_ns
from gs4_slam.ros.worker import PeriodicThread, PipelineWorker
from gs4_slam.slam import Slam, SlamConfig, SlamResult, trajectory_path
from gs4_slam.semantic_query import QueryConfig, UnknownClassError, query_class
from gs4_slam.srv import LoadMap, QueryClass, SaveMap

COLOR_TOPIC = "camera/color/image_raw"
DEPTH_TOPIC = "camera/aligned_depth_to_color/image_raw"
INFO_TOPIC = "camera/color/camera_info"
LABELS_TOPIC = "camera/labels/image_raw"
EXTERNAL_POSE_TOPIC = "external_pose"
VIRTUAL_CAMERA_FRAME = "virtual_camera"
RENDER_CHANNELS = ("color", "depth", "semantics", "alpha")


@dataclass(frozen=True)
class FrameItem:
    """Synchronised messages waiting for the pipeline (converted only when their turn comes,
    so that frames dropped under overload cost no conversion), and what outputs need."""

    color: Image
    depth: Image
    labels: Image | None
    camera_info: CameraInfo | None
    T_world_cam: Pose | None
    camera_frame: str

    @property
    def stamp(self) -> Time:
        """The frame's time, the depth image's (see conversions.frame_from_msgs): its pose is published with it."""
        return self.depth.header.stamp


class ProblemLog:
    """Warns about each kind of input problem at most every ``period_s``, with a count."""

    def __init__(self, logger, period_s: float = 5.0) -> None:
        self._logger = logger
        self._period_s = period_s
        self._seen: dict[str, tuple[int, float]] = {}
        self.last = ""

    def warn(self, message: str) -> None:
        kind = re.sub(r"[-+]?\d[\d.e+-]*", "#", message)  # same problem, other numbers
        count, last_logged = self._seen.get(kind, (0, -float("inf")))
        now = time.monotonic()
        if now - last_logged >= self._period_s:
            suffix = f" (seen {count + 1} times)" if count else ""
            self._logger.warning(message + suffix)
            last_logged = now
        self._seen[kind] = (count + 1, last_logged)
        self.last = message


class SlamNode(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__("slam_node", **node_kwargs)
        self._node_specs = params.node_specs()
        params.declare(self, self._node_specs)
        self.settings: params.NodeConfig = params.build(params.NodeConfig, self._node_specs,
                                                        params.values(self, self._node_specs))
        slam_specs = params.slam_specs(self.settings.config_file or None)
        params.declare(self, slam_specs)
        self.slam_config: SlamConfig = params.build(SlamConfig, slam_specs, params.values(self, slam_specs))
        for name in params.unknown_overrides(self):
            self.get_logger().warning(f"parameter {name!r} is not a parameter of this node (typo?); ignored")
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self.slam = self._build_pipeline()
        self.output_dir = Path(self.settings.output_dir).resolve()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.out = SlamPublishers(self, self.settings.map_frame, self.slam.label_set, self.settings.path_max_poses)
        self.problems = ProblemLog(self.get_logger())
        self.worker = PipelineWorker(self._process, self.settings.queue_size, self._report_error("frame"))
        self.outputs = PeriodicThread(self._periodic, 0.05, self._report_error("path, renders or map cloud"))
        self._camera_info: CameraInfo | None = None
        self._external_poses: collections.deque[tuple[int, Pose]] = collections.deque(maxlen=256)
        self._frame_index = itertools.count()
        self._last_stamp_ns: int | None = None
        self._last: tuple[SlamResult, Intrinsics, FrameItem] | None = None
        self._processed_at: collections.deque[float] = collections.deque(maxlen=30)
        self._next_render = self._next_cloud = self._next_path = 0.0
        self._create_interfaces()
        self.worker.start()
        self.outputs.start()
        self.get_logger().info(
            f"ready: {self.slam_config.working_width}x{self.slam_config.working_height} on {self.slam_config.device}, "
            f"synchroniser {self._inputs.backend}, output directory {self.output_dir}"
        )

    # ------------------------------------------------------------------ set-up

    def _create_interfaces(self) -> None:
        s = self.settings
        inputs, services = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        reliability = ReliabilityPolicy.RELIABLE if s.input_reliable else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(depth=s.input_depth, reliability=reliability)
        self._topics = [COLOR_TOPIC, DEPTH_TOPIC] + ([LABELS_TOPIC] if s.use_labels else [])
        self._inputs = create_synchronized_subscriptions(self, [(Image, t) for t in self._topics], qos,
                                                         s.sync_queue_size, s.sync_slop_s, self._on_frame, inputs,
                                                         self._on_sync_drop)
        self.create_subscription(CameraInfo, INFO_TOPIC, self._on_camera_info, qos, callback_group=inputs)
        if s.use_external_pose:
            self.create_subscription(PoseStamped, EXTERNAL_POSE_TOPIC, self._on_external_pose, qos,
                                     callback_group=inputs)
        self.create_service(SaveMap, "~/save_map", self._save_map, callback_group=services)
        self.create_service(LoadMap, "~/load_map", self._load_map, callback_group=services)
        self.create_service(QueryClass, "~/query_class", self._query_class, callback_group=services)
        self.create_service(Trigger, "~/reset", self._reset, callback_group=services)
        self.create_service(Trigger, "~/pause", self._pause, callback_group=services)
        self.create_service(Trigger, "~/resume", self._resume, callback_group=services)
        self.create_timer(1.0 / s.status_rate_hz, self._publish_status, callback_group=MutuallyExclusiveCallbackGroup())
        self._warn_label_settings()

    def _warn_label_settings(self) -> None:
        source = self.slam_config.mapping.semantics.source
        if self.settings.use_labels and source == "predicted":
            self.get_logger().warning(f"use_labels is true but mapping.semantics.source is 'predicted': {LABELS_TOPIC} "
                                      "is synchronised but not fused (set it to 'external' or 'both')")
        elif not self.settings.use_labels and source != "predicted":
            self.get_logger().warning(f"mapping.semantics.source is {source!r} but use_labels is false: no label "
                                      f"images arrive, so only the prediction is fused (set use_labels to true)")

    def _build_pipeline(self) -> Slam:
        """The pipeline; start-up failures that a parameter can fix name that parameter."""
        try:
            return Slam(self.slam_config)
        except LabelSetError as exc:
            raise params.ParameterError(f"invalid parameter 'label_set': {exc}") from None
        except PredictorWeightsError as exc:
            raise params.ParameterError(
                f"{exc} (or set parameter 'predictor.weights' to a weights file, or 'predictor.use_baseline' "
                "to true for the non-learned baseline)"
            ) from None

    def _check_parameters(self, changed) -> SetParametersResult:
        flat = params.values(self, self._node_specs) | {p.name: p.value for p in changed}
        flat = {k: (list(v) if isinstance(v, (tuple, list)) or hasattr(v, "tolist") else v) for k, v in flat.items()}
        try:
            params.build(params.NodeConfig, self._node_specs, flat)
        except params.ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, _changed) -> None:
        self.settings = params.build(params.NodeConfig, self._node_specs, params.values(self, self._node_specs))

    # ------------------------------------------------------------------ inputs (executor threads)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_external_pose(self, msg: PoseStamped) -> None:
        try:
            self._external_poses.append((stamp_ns(msg), conv.pose_from_pose_msg(msg.pose)))
        except conv.ConversionError as exc:
            self.problems.warn(f"external pose ignored: {exc}")

    def _external_pose_at(self, t_ns: int) -> Pose | None:
        if not self._external_poses:
            return None
        best_ns, pose = min(self._external_poses, key=lambda item: abs(item[0] - t_ns))
        return pose if abs(best_ns - t_ns) <= self.settings.external_pose_max_age_s * 1e9 else None

    def _on_sync_drop(self, reason: str, index: int, t_ns: int) -> None:
        topic, t_s = self._topics[index], t_ns * 1e-9
        if reason == "lost":
            self.problems.warn(f"{topic}: messages before t={t_s:.6f} s never arrived (gap in the publisher's "
                               "sequence numbers: input faster than the node takes it)")
            return
        why = {"stale": "older than the last synchronised frame (out-of-order stamp or no partner in time)",
               "queue_full": f"no partner within sync_slop_s={self.settings.sync_slop_s} s before the queue filled",
               "duplicate_stamp": "same stamp as an earlier message, which it replaced"}[reason]
        self.problems.warn(f"{topic}: message at t={t_s:.6f} s dropped: {why}")

    def _on_frame(self, color: Image, depth: Image, labels: Image | None = None) -> None:
        """Synchronised inputs -> pipeline queue; frames out of stamp order are reported and skipped."""
        self.worker.note_received()
        t_ns, t_s = stamp_ns(depth), conv.seconds_from_stamp(depth.header.stamp)
        if self.worker.paused:
            self.worker.drop("paused")
            return
        if self._last_stamp_ns is not None and t_ns <= self._last_stamp_ns:
            self.problems.warn(f"out-of-order stamp: frame at t={t_s:.6f} s is not newer than the previous frame "
                               f"(t={self._last_stamp_ns * 1e-9:.6f} s); skipped")
            self.worker.drop("out_of_order")
            return
        self._last_stamp_ns = t_ns
        self.worker.submit(FrameItem(color, depth, labels, self._camera_info, self._external_pose_at(t_ns),
                                     self.settings.camera_frame or color.header.frame_id))

    # ------------------------------------------------------------------ pipeline and output threads

    def _process(self, item: FrameItem) -> bool:
        """Convert and track one frame; False when its input is bad (reported and counted)."""
        frame = self._frame_from(item)
        if frame is None:
            return False
        result = self.slam.process(frame)
        self.out.publish_pose(result.T_world_cam, item.stamp, item.camera_frame, self.settings.publish_tf)
        self._last = (result, frame.intrinsics, item)
        self._processed_at.append(time.monotonic())
        return True

    def _frame_from(self, item: FrameItem) -> Frame | None:
        t_s = conv.seconds_from_stamp(item.stamp)
        issues: list[str] = []
        try:
            frame = conv.frame_from_msgs(item.color, item.depth, item.camera_info, item.labels,
                                         index=next(self._frame_index), num_classes=self.slam.label_set.num_classes,
                                         T_world_cam=item.T_world_cam, issues=issues)
        except (conv.ConversionError, ValueError) as exc:
            inputs = INFO_TOPIC if item.camera_info is None else " + ".join(self._topics)
            self.problems.warn(f"frame at t={t_s:.6f} s skipped: {exc} (inputs: {inputs})")
            self.worker.drop("invalid")
            return None
        for issue in issues:
            self.problems.warn(f"frame at t={t_s:.6f} s: {issue}")
        return frame

    def _periodic(self) -> None:
        """Path, renders and the map cloud at their rates (output thread: may wait for the mapping lock)."""
        if self._last is None:
            return
        now, s = time.monotonic(), self.settings
        if now >= self._next_path:
            self._next_path = now + 1.0 / s.path_rate_hz
            self.out.publish_path()
        if s.render_rate_hz > 0 and now >= self._next_render:
            self._next_render = now + 1.0 / s.render_rate_hz
            self._publish_renders()
        if s.map_cloud_rate_hz > 0 and now >= self._next_cloud:
            self._next_cloud = now + 1.0 / s.map_cloud_rate_hz
            self.out.publish_cloud(self.slam.map_set(), self._last[2].stamp, s.map_cloud_max_points)

    def _publish_renders(self) -> None:
        result, frame_intrinsics, item = self._last
        s, config = self.settings, self.slam_config
        width, height = (s.render_width, s.render_height) if s.render_width else (config.working_width,
                                                                                 config.working_height)
        intrinsics: Intrinsics = frame_intrinsics.without_distortion().scaled(width, height)
        if s.virtual_camera.enabled:
            pose = Pose.from_quat_xyzw(s.virtual_camera.position, s.virtual_camera.orientation_xyzw)
            self.out.publish_renders(self.slam.render(pose, intrinsics, RENDER_CHANNELS), item.stamp,
                                     VIRTUAL_CAMERA_FRAME)
        else:
            self.out.publish_renders(self.slam.render(result.T_world_cam, intrinsics, RENDER_CHANNELS), item.stamp,
                                     item.camera_frame)

    def _report_error(self, what: str):
        def report(exc: BaseException) -> None:
            if self.context.ok():  # after a shutdown signal, publishing fails until the threads stop
                self.get_logger().error(f"{what} failed: {type(exc).__name__}: {exc}; processing continues")

        return report

    # ------------------------------------------------------------------ status (timer)

    def _publish_status(self) -> None:
        counts = self.worker.counts()
        sync_dropped = self._inputs.stats.total_dropped(0) if self._inputs.stats else 0
        times = list(self._processed_at)
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        result = self._last[0] if self._last else None
        details = {f"dropped_{reason}": n for reason, n in counts.dropped.items()}
        details.update(dropped_sync=sync_dropped, queued=counts.queued, paused=self.worker.paused,
                       synchroniser=self._inputs.backend, tf_published=self.out.tf_available)
        self.out.publish_status(StatusReport(
            stamp=self.get_clock().now().to_msg(), tracking=result.status if result else None,
            input_frames=counts.received + sync_dropped, processed_frames=counts.processed,
            dropped_frames=counts.total_dropped + sync_dropped, fps=fps,
            num_gaussians=result.num_gaussians if result else 0, num_keyframes=result.num_keyframes if result else 0,
            stage_times_ms=dict(result.stage_times_ms) if result else {}, details=details,
            problem=self.problems.last,
        ))

    # ------------------------------------------------------------------ services

    def _on_pipeline(self, fn, response, done: str):
        """Run ``fn`` on the pipeline thread; fill a (success, message) response."""
        try:
            detail = self.worker.run_task(fn, self.settings.service_timeout_s)
        except TimeoutError:
            response.success, response.message = False, f"timed out after {self.settings.service_timeout_s} s"
        except Exception as exc:  # noqa: BLE001 - the caller gets the reason
            response.success, response.message = False, f"{type(exc).__name__}: {exc}"
        else:
            response.success, response.message = True, done + (f" ({detail})" if detail else "")
        log = self.get_logger().info if response.success else self.get_logger().warning
        log(response.message)
        return response

    def _save_map(self, request: SaveMap.Request, response: SaveMap.Response) -> SaveMap.Response:
        try:
            path = confined_map_path(self.output_dir, request.path)
        except PathRefused as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().warning(response.message)
            return response

        def save() -> str:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The pipeline waits meanwhile; frames arriving then are dropped (and counted).
            refined = self.slam.refine_final_map()
            self.slam.save_map(path)
            # The published poses were final when sent; this one follows the refined keyframes.
            self.slam.save_trajectory(trajectory_path(path))
            note = f", after {refined.steps} refinement steps ({refined.seconds:.1f} s)" if refined.steps else ""
            return f"{len(self.slam.map_set())} Gaussians{note}"

        return self._on_pipeline(save, response, f"saved {path}")

    def _load_map(self, request: LoadMap.Request, response: LoadMap.Response) -> LoadMap.Response:
        try:
            path = confined_map_path(self.output_dir, request.path, must_exist=True)
        except PathRefused as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().warning(response.message)
            return response

        def load() -> str:
            self.slam.load_map(path)
            self.out.clear_path()
            return f"{len(self.slam.map_set())} Gaussians"

        return self._on_pipeline(load, response, f"loaded {path}")

    def _query_class(self, request: QueryClass.Request, response: QueryClass.Response) -> QueryClass.Response:
        """Count and cluster one class's Gaussians (on a snapshot: tracking goes on meanwhile)."""
        config = QueryConfig(min_confidence=float(request.min_confidence))
        try:
            result = query_class(self.slam.map_set(), self.slam.label_set.class_names, request.class_name.strip(),
                                 config)
        except UnknownClassError as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().warning(f"query_class: {exc}")
            return response
        response.success = True
        response.message = f"{result.count} Gaussians of {result.class_name!r} in {len(result.clusters)} clusters"
        response.count = result.count
        response.cluster_sizes = [c.count for c in result.clusters]
        response.centroids = [Point(x=c.centroid_m[0], y=c.centroid_m[1], z=c.centroid_m[2]) for c in result.clusters]
        response.bbox_min = [Point(x=c.bbox_min_m[0], y=c.bbox_min_m[1], z=c.bbox_min_m[2]) for c in result.clusters]
        response.bbox_max = [Point(x=c.bbox_max_m[0], y=c.bbox_max_m[1], z=c.bbox_max_m[2]) for c in result.clusters]
        return response

    def _reset(self, _request, response: Trigger.Response) -> Trigger.Response:
        def reset() -> str:
            dropped = self.worker.clear("reset")
            self.slam.reset()
            self.out.clear_path()
            self._last, self._last_stamp_ns = None, None  # a replay may start from earlier stamps
            return f"{dropped} queued frames dropped" if dropped else ""

        return self._on_pipeline(reset, response, "map and trajectory reset")

    def _pause(self, _request, response: Trigger.Response) -> Trigger.Response:
        dropped = self.worker.pause()
        response.success, response.message = True, f"paused ({dropped} queued frames dropped)"
        return response

    def _resume(self, _request, response: Trigger.Response) -> Trigger.Response:
        self.worker.resume()
        response.success, response.message = True, "resumed"
        return response

    def close(self) -> None:
        self.outputs.stop()
        self.worker.stop()
        self.slam.close()


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv)
    try:
        node = SlamNode()
    except (config_io.ConfigError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"slam_node: cannot start: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    try:
        spin_until_stopped(executor.spin, node.context)
    finally:
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
