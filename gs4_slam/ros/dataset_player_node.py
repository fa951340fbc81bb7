"""ROS 2 node that plays an RGB-D dataset (or a bag) as a RealSense driver would publish it.

    python -m gs4_slam.ros.dataset_player_node --ros-args -p dataset:=tum -p path:=/data/fr1_xyz -p rate:=0.5

Publishes ``camera/color/image_raw`` (rgb8), ``camera/aligned_depth_to_color/image_raw``
(16UC1, mm), ``camera/color/camera_info`` and ``camera/aligned_depth_to_color/camera_info``
(K, D plumb_bob, P, size), and when the dataset has them ``camera/labels/image_raw``
(mono8 class ids) and ``ground_truth/pose`` (PoseStamped, ``map_frame``). At the end of
each pass it logs and publishes the number of frames played on ``~/end_of_sequence``
(std_msgs/UInt32, latched). Services ``~/pause`` and ``~/resume`` (std_srvs/Trigger).
Frames are read one at a time, just before they are due. Depth, its camera_info and
the ground truth carry the frame's time (the depth image's); colour, its camera_info
and the labels carry the colour image's own time where the dataset records one (TUM).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import UInt32
from std_srvs.srv import Trigger

from gs4_slam import config as config_io
from gs4_slam.camera import Pose
from gs4_slam.datasets.base import DatasetError
from gs4_slam.frame import Frame
from gs4_slam.ros import conversions as conv
from gs4_slam.ros import params
from gs4_slam.ros.field_docs import field_descriptions
from gs4_slam.playback_clock import PlaybackClock
from gs4_slam.ros.playback import PlayerConfig, Scheduled, open_source, playback_order
from gs4_slam.ros.spinning import spin_until_stopped

COLOR_TOPIC = "camera/color/image_raw"
DEPTH_TOPIC = "camera/aligned_depth_to_color/image_raw"
INFO_TOPIC = "camera/color/camera_info"
DEPTH_INFO_TOPIC = "camera/aligned_depth_to_color/camera_info"
LABELS_TOPIC = "camera/labels/image_raw"
GROUND_TRUTH_TOPIC = "ground_truth/pose"
#: Seconds between matched subscribers and the first frame: the other side's
#: subscriptions match one by one, and a frame sent before all did would be lost.
MATCH_GRACE_S = 0.5


def player_specs() -> list[params.ParamSpec]:
    return params.specs_from_config(PlayerConfig(), field_descriptions(PlayerConfig))


class DatasetPlayerNode(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__("dataset_player", **node_kwargs)
        specs = player_specs()
        params.declare(self, specs)
        self.config: PlayerConfig = params.build(PlayerConfig, specs, params.values(self, specs))
        for name in params.unknown_overrides(self):
            self.get_logger().warning(f"parameter {name!r} is not a parameter of this node (typo?); ignored")
        self.source = open_source(self.config)
        self._order: Iterator[Scheduled] = playback_order(self.source.timestamps_s(), self.config.start_offset_s,
                                                          self.config.loop)
        self.clock = PlaybackClock(self.config.rate)
        if self.config.paused:
            self.clock.pause()
        self.published = 0  # frames, over all passes
        self.skipped = 0
        self.finished = False
        self._ready_at: float | None = None
        self._T_gt_first_inv: Pose | None = None
        self._create_interfaces()
        self._pending = self._next()
        self.get_logger().info(
            f"playing {self.source.name}: {len(self.source)} frames at "
            f"{self.source.intrinsics.width}x{self.source.intrinsics.height}, rate x{self.config.rate}"
            + (", looping" if self.config.loop else "") + (", paused" if self.config.paused else "")
        )

    def _create_interfaces(self) -> None:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.color_pub = self.create_publisher(Image, COLOR_TOPIC, qos)
        self.depth_pub = self.create_publisher(Image, DEPTH_TOPIC, qos)
        self.info_pub = self.create_publisher(CameraInfo, INFO_TOPIC, qos)
        self.depth_info_pub = self.create_publisher(CameraInfo, DEPTH_INFO_TOPIC, qos)
        self.labels_pub = self.create_publisher(Image, LABELS_TOPIC, qos) if self.config.publish_labels else None
        self.gt_pub = (self.create_publisher(PoseStamped, GROUND_TRUTH_TOPIC, qos)
                       if self.config.publish_ground_truth else None)
        self.end_pub = self.create_publisher(UInt32, "~/end_of_sequence", latched)
        self.create_service(Trigger, "~/pause", self._pause)
        self.create_service(Trigger, "~/resume", self._resume)
        self._timer = None
        self._wake_in(0.0)

    def _wake_in(self, delay_s: float) -> None:
        """One timer for the next moment there is something to do: a periodic tick fine enough to
        keep frames a few ms apart cost 12 % of a core while idle; this costs nothing between frames."""
        if self._timer is not None:
            self.destroy_timer(self._timer)
        self._timer = self.create_timer(max(delay_s, 0.0005), self._tick)

    def _sleep(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    # ------------------------------------------------------------------ playing

    def _next(self) -> tuple[Scheduled, Frame] | None:
        """The next frame to publish, read now (so that it goes out on time); unreadable ones are skipped."""
        for item in self._order:
            try:
                return item, self.source[item.index]
            except (DatasetError, ValueError, OSError) as exc:
                self.skipped += 1
                self.get_logger().error(f"frame {item.index} skipped: {exc}")
                if item.last_of_pass:
                    self._end_pass(item)
        return None

    def _subscribers_ready(self) -> bool:
        needed = self.config.wait_for_subscribers
        if needed == 0:
            return True
        if self._ready_at is None:
            pubs = (self.color_pub, self.depth_pub, self.info_pub)
            if min(p.get_subscription_count() for p in pubs) >= needed:
                self._ready_at = time.monotonic() + MATCH_GRACE_S
                self._announce_camera()
            return False
        return time.monotonic() >= self._ready_at

    def _tick(self) -> None:
        if not self._subscribers_ready():
            self._wake_in(0.05)
            return
        if self._pending is None:
            self._sleep()
            self._finish()
            return
        item, frame = self._pending
        wait_s = self.clock.wait_s(item.t_s)
        if wait_s == float("inf"):  # paused: ~/resume wakes the player up
            self._sleep()
            return
        if wait_s > 0:
            self._wake_in(wait_s)
            return
        self.clock.due(item.t_s)  # due now; re-anchors the schedule after a stall
        self._publish(frame, self._stamp(item))
        self.published += 1
        if item.last_of_pass:
            self._end_pass(item)
        self._pending = self._next()
        self._wake_in(0.0)

    def _announce_camera(self) -> None:
        """The first frame's camera_info ahead of it, as a driver's comes before its images.

        A subscriber that receives camera_info and images at the same moment may run the
        image callbacks first and find no calibration for the very first frame.
        """
        if self._pending is not None:
            item, frame = self._pending
            self._publish_camera_info(frame, self._stamp(item))

    def _publish_camera_info(self, frame: Frame, stamp: Time) -> Time:
        """Colour camera_info at the colour image's time, depth camera_info at ``stamp``; the colour time."""
        color_stamp = _color_stamp(stamp, frame)
        self.info_pub.publish(conv.camera_info_from_intrinsics(frame.intrinsics, self.config.frame_id, color_stamp))
        self.depth_info_pub.publish(conv.camera_info_from_intrinsics(frame.intrinsics, self.config.frame_id, stamp))
        return color_stamp

    def _stamp(self, item: Scheduled) -> Time:
        if self.config.stamps == "dataset":
            return conv.stamp_from_seconds(item.t_s)
        return self.get_clock().now().to_msg()

    def _publish(self, frame: Frame, stamp: Time) -> None:
        """camera_info before the images, colour last: a synchroniser emits on the last one in.

        ``stamp`` is the frame's time (the depth image's); colour, its camera_info and
        the labels drawn on it carry the colour image's own time, as an unsynchronised
        driver stamps them (TUM's Kinect: about 7 ms later), so ``slam_node`` can
        compensate the delay as offline runs do.
        """
        cfg = self.config
        color_stamp = self._publish_camera_info(frame, stamp)
        if self.gt_pub is not None and frame.T_world_cam_gt is not None:
            self.gt_pub.publish(conv.pose_stamped_from_pose(self._ground_truth(frame.T_world_cam_gt), cfg.map_frame,
                                                            stamp))
        if self.labels_pub is not None and frame.labels is not None:
            self.labels_pub.publish(conv.image_msg_from_label_ids(frame.labels, cfg.frame_id, color_stamp))
        self.depth_pub.publish(conv.image_msg_from_depth(frame.depth_m, cfg.frame_id, stamp, "16UC1"))
        self.color_pub.publish(conv.image_msg_from_rgb(frame.color_rgb, cfg.frame_id, color_stamp))

    def _ground_truth(self, T_world_cam: Pose) -> Pose:
        if not self.config.ground_truth_relative:
            return T_world_cam
        if self._T_gt_first_inv is None:
            self._T_gt_first_inv = T_world_cam.inverse()
        return self._T_gt_first_inv @ T_world_cam

    def _end_pass(self, item: Scheduled) -> None:
        self.end_pub.publish(UInt32(data=self.published))
        skipped = f", {self.skipped} unreadable frames skipped" if self.skipped else ""
        self.get_logger().info(f"end of sequence (pass {item.pass_number + 1}): {self.published} frames "
                               f"published{skipped}")

    def _finish(self) -> None:
        self.finished = True
        if self.config.exit_at_end:
            self.get_logger().info("exiting at the end of the sequence (exit_at_end)")

    # ------------------------------------------------------------------ services

    def _pause(self, _request, response: Trigger.Response) -> Trigger.Response:
        self.clock.pause()
        response.success, response.message = True, f"paused after {self.published} frames"
        return response

    def _resume(self, _request, response: Trigger.Response) -> Trigger.Response:
        self.clock.resume()
        if not self.finished:
            self._wake_in(0.0)
        response.success, response.message = True, "resumed"
        return response

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until subscribers acknowledged what was published (reliable QoS), so exiting loses nothing."""
        deadline = time.monotonic() + timeout_s
        for pub in (self.color_pub, self.depth_pub, self.info_pub, self.labels_pub, self.gt_pub, self.end_pub):
            if pub is not None:
                remaining = max(0.0, deadline - time.monotonic())
                pub.wait_for_all_acked(Duration(seconds=remaining))


def _color_stamp(frame_stamp: Time, frame: Frame) -> Time:
    """The colour image's stamp: the frame's (depth) stamp plus the frame's colour delay."""
    if not frame.color_delay_s:
        return frame_stamp
    return conv.stamp_from_seconds(conv.seconds_from_stamp(frame_stamp) + frame.color_delay_s)


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv)
    try:
        node = DatasetPlayerNode()
    except (config_io.ConfigError, DatasetError, ValueError, FileNotFoundError) as exc:
        print(f"dataset_player: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def play() -> None:
        while not (node.finished and node.config.exit_at_end):
            executor.spin_once(timeout_sec=0.1)
        node.flush()

    try:
        spin_until_stopped(play, node.context)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
