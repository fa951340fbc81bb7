"""`gs4-slam record`: live topics into a rosbag2 bag, without `ros2 bag` (through rosbags).

    gs4-slam record --out recordings/desk                 # the RealSense topics, until Ctrl-C
    gs4-slam record --out rec --duration 30 --namespace camera   # realsense-ros 4.x: /camera/camera/...
    gs4-slam replay bag recordings/desk --out output/desk  # SLAM over the recording

Records the topics a RealSense driver publishes for SLAM (colour, aligned depth,
camera_info; labels and ground truth when the dataset player provides them) as
their publishers appear, with the publishers' reliability, each message's
serialised bytes exactly as received and the receive time as the bag time. Stops
after ``--duration``, ``--idle-stop`` seconds after the last message once the topics'
publishers have gone, or on Ctrl-C / SIGTERM, and always closes the bag properly.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Relative to --namespace: what slam_node reads, plus what the dataset player adds.
DEFAULT_TOPICS = ("camera/color/image_raw", "camera/aligned_depth_to_color/image_raw", "camera/color/camera_info",
                  "camera/labels/image_raw", "ground_truth/pose")


@dataclass(frozen=True)
class RecordConfig:
    out: Path
    topics: tuple[str, ...] = DEFAULT_TOPICS
    namespace: str = ""
    duration_s: float = 0.0  # 0: until stopped
    idle_stop_s: float = 0.0  # stop this long after the last message, once no publisher is left (0: never)
    storage: str = "sqlite3"
    version: int = 8

    def resolved_topics(self) -> list[str]:
        prefix = f"/{self.namespace.strip('/')}" if self.namespace.strip("/") else ""
        return [t if t.startswith("/") else f"{prefix}/{t}" for t in self.topics]


def message_class(type_name: str) -> type:
    """``pkg/msg/Name`` -> the generated Python class (what rosidl_runtime_py's get_message does)."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class Recorder:
    """Subscribes (raw) to each wanted topic once it has a publisher and writes what arrives."""

    def __init__(self, node, writer, topics: list[str]) -> None:
        self.node = node
        self.writer = writer
        self.topics = list(topics)
        self.pending = list(topics)
        self.last_message_at: float | None = None
        self.last_publisher_at: float | None = None
        self._subscriptions = []

    def discover(self) -> None:
        """Subscribe to the wanted topics that have a publisher now."""
        for topic in list(self.pending):
            publishers = self.node.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            self.pending.remove(topic)
            type_name = publishers[0].topic_type
            if not self.writer.knows(type_name):
                log.warning("%s: type %s has no known definition; not recorded", topic, type_name)
                continue
            self.writer.add_topic(topic, type_name)
            self._subscriptions.append(self.node.create_subscription(
                message_class(type_name), topic, self._writer_of(topic), self._qos(publishers), raw=True))
            log.info("recording %s (%s)", topic, type_name)

    def note_publishers(self) -> None:
        """Remember when a recorded topic last had a publisher (a paused player is not idle)."""
        if any(self.node.count_publishers(topic) for topic in self.topics):
            self.last_publisher_at = time.monotonic()

    def idle_s(self) -> float | None:
        """Seconds since the last message or the last publisher, whichever is later (None: nothing yet)."""
        if self.last_message_at is None:
            return None
        return time.monotonic() - max(self.last_message_at, self.last_publisher_at or 0.0)

    @staticmethod
    def _qos(publishers):
        """Reliable only if every publisher is (a reliable reader never matches a best-effort writer)."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
        latched = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
        return QoSProfile(depth=100,
                          reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

    def _writer_of(self, topic: str):
        def write(data: bytes) -> None:
            self.writer.write(topic, self.node.get_clock().now().nanoseconds, data)
            self.last_message_at = time.monotonic()

        return write


class _StopFlag:
    """Set by SIGINT / SIGTERM, so that the loop ends and the bag is closed."""

    def __init__(self) -> None:
        self.set = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, _signum, _frame) -> None:
        self.set = True


def record(config: RecordConfig) -> dict[str, int]:
    """Record until a stop condition; returns the number of messages written per topic."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from gs4_slam.ros.bag_io import BagWriter

    writer = BagWriter(config.out, config.storage, config.version)
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    stop = _StopFlag()
    node = rclpy.create_node("gs4_record", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    recorder = Recorder(node, writer, config.resolved_topics())
    start = next_graph_check = time.monotonic()
    try:
        while not stop.set and not _done(config, recorder, start):
            if time.monotonic() >= next_graph_check:
                recorder.discover()
                recorder.note_publishers()
                next_graph_check = time.monotonic() + 0.5
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        writer.close()
    return dict(writer.counts)


def _done(config: RecordConfig, recorder: Recorder, start: float) -> bool:
    now = time.monotonic()
    if config.duration_s > 0 and now - start >= config.duration_s:
        return True
    idle_s = recorder.idle_s()
    return config.idle_stop_s > 0 and idle_s is not None and idle_s >= config.idle_stop_s


def _run(args: argparse.Namespace) -> int:
    from gs4_slam.ros.processes import safe_ros_environment

    out = Path(args.out).resolve()
    os.environ.update(safe_ros_environment(Path(tempfile.gettempdir()) / "gs4_slam_ros_home"))
    config = RecordConfig(out=out, topics=tuple(args.topics or DEFAULT_TOPICS), namespace=args.namespace,
                          duration_s=args.duration, idle_stop_s=args.idle_stop, storage=args.storage,
                          version=args.bag_version)
    try:
        counts = record(config)
    except ImportError as exc:  # a plain pip install without ROS 2
        print(f"gs4-slam record needs rclpy (`make setup`, or a ROS 2 distribution): {exc}", file=sys.stderr)
        return 2
    except (FileExistsError, ValueError) as exc:
        print(f"gs4-slam record: {exc}", file=sys.stderr)
        return 2
    for topic, count in counts.items():
        print(f"{count:>7}  {topic}")
    if not counts:
        print(f"gs4-slam record: none of {config.resolved_topics()} had a publisher; the bag is empty",
              file=sys.stderr)
        return 1
    print(f"bag written to {out} (replay: gs4-slam replay bag {out})")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("record", help="record the RealSense topics (or others) into a rosbag2 bag",
                                   description="Record live ROS 2 topics into a rosbag2 bag through rosbags "
                                   "(no ros2 bag needed); the bag replays with `gs4-slam replay bag`.")
    parser.add_argument("--out", required=True, help="bag folder to create")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC",
                        help=f"topics (relative ones under --namespace); default: {' '.join(DEFAULT_TOPICS)}")
    parser.add_argument("--namespace", default="", help="namespace of relative topics (default: none)")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: never)")
    parser.add_argument("--idle-stop", type=float, default=0.0,
                        help="stop this many seconds after the last message, once the recorded topics have no "
                        "publisher left (a paused player keeps the recording open; 0: never)")
    parser.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    parser.add_argument("--bag-version", type=int, choices=(8, 9), default=8,
                        help="rosbag2 format: 8 is read by Iron and newer, 9 by Jazzy and newer (default 8)")
    parser.set_defaults(func=_run)
