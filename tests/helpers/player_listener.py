"""In-test ROS side of the player tests: starts ``dataset_player`` and records what it publishes."""
from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import UInt32

REPO = Path(__file__).resolve().parents[2]

TOPICS = {
    "color": ("camera/color/image_raw", Image),
    "depth": ("camera/aligned_depth_to_color/image_raw", Image),
    "info": ("camera/color/camera_info", CameraInfo),
    "depth_info": ("camera/aligned_depth_to_color/camera_info", CameraInfo),
    "labels": ("camera/labels/image_raw", Image),
    "ground_truth": ("ground_truth/pose", PoseStamped),
}


class PlayerListener:
    """Subscribes to the player's topics in ``/namespace`` and keeps (arrival time, message)."""

    def __init__(self, namespace: str) -> None:
        self.prefix = f"/{namespace}"
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("player_listener", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=500))
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for name, (topic, msg_type) in TOPICS.items():
            self.node.create_subscription(msg_type, f"{self.prefix}/{topic}", self._keeper(name), reliable)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(UInt32, f"{self.prefix}/dataset_player/end_of_sequence",
                                      self._keeper("end"), latched)

    def _keeper(self, name: str):
        return lambda msg: self.received[name].append((time.monotonic(), msg))

    def messages(self, name: str) -> list:
        return [msg for _, msg in self.received[name]]

    def spin_until(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if predicate():
                return True
        return False

    def call(self, srv_type, name: str, request, timeout_s: float = 20.0):
        client = self.node.create_client(srv_type, f"{self.prefix}/dataset_player/{name}")
        try:
            assert self.spin_until(client.service_is_ready, timeout_s), f"service {name} never appeared"
            future = client.call_async(request)
            assert self.spin_until(future.done, timeout_s), f"service {name} did not answer"
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def start_player(log_path: Path, namespace: str, *params: str) -> subprocess.Popen:
    """``python -m gs4_slam.ros.dataset_player_node`` in ``/namespace`` with ``-p`` for each of ``params``."""
    args = [a for p in params for a in ("-p", p)]
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "gs4_slam.ros.dataset_player_node", "--ros-args",
                             "-r", f"__ns:=/{namespace}", *args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
