"""A separate ROS process for the node tests: publishes synthetic RGB-D frames like a RealSense.

Colour (rgb8), depth (32FC1 or 16UC1), camera_info and optionally labels (mono8) on the
driver's topic names, all stamped ``--start-s + i / 30`` (frame i of the synthetic
sequence). Scenarios:
  * ``normal``: frames 0..N-1 once, at ``--rate-hz``;
  * ``bad``: the same with bad input mixed in (see BAD_FRAMES), camera_info only from
    frame 2 on;
  * ``overload``: frames ping-pong over the sequence until ``--seconds`` pass, with fresh
    increasing stamps.
Prints one line ``published <n>`` per frame to stdout (flushed), then ``done``.
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from gs4_slam.ros import conversions as conv
from gs4_slam.synthetic.generator import SyntheticConfig, SyntheticSequence

CAMERA_FRAME = "camera_color_optical_frame"
#: frame index -> what is wrong with it (scenario "bad"); frames 0 and 1 come before any camera_info.
BAD_FRAMES = {4: "encoding", 6: "size", 8: "nan", 10: "out_of_order"}


def sequence_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-s", type=float, default=100.0)


def make_sequence(args: argparse.Namespace) -> SyntheticSequence:
    return SyntheticSequence(SyntheticConfig(seed=args.seed, frames=args.frames, width=args.width, height=args.height))


class Player:
    def __init__(self, node, labels: bool, depth_encoding: str) -> None:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.node = node
        self.color = node.create_publisher(Image, "camera/color/image_raw", qos)
        self.depth = node.create_publisher(Image, "camera/aligned_depth_to_color/image_raw", qos)
        self.info = node.create_publisher(CameraInfo, "camera/color/camera_info", qos)
        self.labels = node.create_publisher(Image, "camera/labels/image_raw", qos) if labels else None
        self.depth_encoding = depth_encoding

    def wait_for_node(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.color.get_subscription_count() == 0 or self.depth.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise SystemExit("frame_player: no subscriber on the image topics")
            rclpy.spin_once(self.node, timeout_sec=0.05)
        time.sleep(0.5)  # let the other subscriptions match too

    def publish(self, frame, t_s: float, problem: str = "", with_info: bool = True) -> None:
        stamp = conv.stamp_from_seconds(t_s)
        rgb, depth_m = frame.color_rgb, frame.depth_m
        if problem == "nan":
            depth_m = depth_m.copy()
            depth_m[: depth_m.shape[0] // 4] = np.nan
        if problem == "size":
            depth_m = depth_m[::2, ::2]
        color = conv.image_msg_from_rgb(rgb, CAMERA_FRAME, stamp)
        if problem == "encoding":
            color.encoding = "yuv422"
        if with_info:
            self.info.publish(conv.camera_info_from_intrinsics(frame.intrinsics, CAMERA_FRAME, stamp))
        if self.labels is not None:
            self.labels.publish(conv.image_msg_from_label_ids(frame.labels, CAMERA_FRAME, stamp))
        self.depth.publish(conv.image_msg_from_depth(depth_m, CAMERA_FRAME, stamp, self.depth_encoding))
        self.color.publish(color)


def frame_schedule(args: argparse.Namespace, n: int):
    """(sequence index, stamp, problem) in publishing order."""
    period = 1.0 / 30.0
    if args.scenario == "overload":
        order = list(range(n)) + list(range(n - 2, 0, -1))
        deadline = time.monotonic() + args.seconds
        for k in itertools.count():
            if time.monotonic() > deadline:
                return
            yield order[k % len(order)], args.start_s + k * period, ""
    for i in range(n):
        problem = BAD_FRAMES.get(i, "") if args.scenario == "bad" else ""
        t_s = args.start_s + (i - 3.5) * period if problem == "out_of_order" else args.start_s + i * period
        yield i, t_s, problem


def main() -> None:
    parser = argparse.ArgumentParser()
    sequence_args(parser)
    parser.add_argument("--rate-hz", type=float, default=15.0)
    parser.add_argument("--scenario", choices=["normal", "bad", "overload"], default="normal")
    parser.add_argument("--seconds", type=float, default=20.0, help="overload: how long to publish")
    parser.add_argument("--labels", action="store_true")
    parser.add_argument("--depth-encoding", default="32FC1")
    parser.add_argument("--namespace", default="", help="ROS namespace of the topics (the node's, when remapped)")
    args = parser.parse_args()
    sequence = make_sequence(args)
    frames = [sequence.frame(i) for i in range(len(sequence))]
    rclpy.init()
    node = rclpy.create_node("frame_player", namespace=args.namespace or None)
    player = Player(node, args.labels, args.depth_encoding)
    try:
        player.wait_for_node(timeout_s=60.0)
        if args.scenario != "bad":  # the driver's camera_info is usually there before the images
            player.info.publish(conv.camera_info_from_intrinsics(frames[0].intrinsics, CAMERA_FRAME,
                                                                 conv.stamp_from_seconds(args.start_s)))
            time.sleep(0.2)
        next_t = time.monotonic()
        for n, (i, t_s, problem) in enumerate(frame_schedule(args, len(frames))):
            if args.scenario == "bad" and i == 2:  # camera_info starts, and reaches the node before frame 2
                player.info.publish(conv.camera_info_from_intrinsics(frames[i].intrinsics, CAMERA_FRAME,
                                                                     conv.stamp_from_seconds(t_s)))
                time.sleep(0.3)
            player.publish(frames[i], t_s, problem, with_info=args.scenario != "bad" or i >= 2)
            print(f"published {n} {t_s:.6f} {problem}", flush=True)
            next_t += 1.0 / args.rate_hz
            time.sleep(max(0.0, next_t - time.monotonic()))
        time.sleep(0.5)
        print("done", flush=True)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
