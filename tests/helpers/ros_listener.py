"""In-test ROS side of the node tests: records the node's outputs and calls its services.

Runs in the test process with its own rclpy context, so several tests can each
make one without sharing global rclpy state.
"""
from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry, Path as PathMsg
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2

from gs4_slam.msg import SlamStatus

REPO = Path(__file__).resolve().parents[2]
PLAYER = Path(__file__).resolve().parent / "frame_player.py"

OUTPUTS = {
    "pose": PoseStamped,
    "odometry": Odometry,
    "path": PathMsg,
    "map_cloud": PointCloud2,
    "render/color": Image,
    "render/depth": Image,
    "render/semantic": Image,
    "render/semantic_confidence": Image,
    "status": SlamStatus,
}


class Listener:
    """Subscribes to every output of ``/<node_name>`` and keeps what arrives (bounded)."""

    def __init__(self, namespace: str, node_name: str = "slam_node", keep: int = 2000) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("test_listener", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, collections.deque] = {name: collections.deque(maxlen=keep) for name in OUTPUTS}
        self.received["diagnostics"] = collections.deque(maxlen=keep)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        for name, msg_type in OUTPUTS.items():
            qos = latched if name in ("path", "map_cloud") else reliable
            self.node.create_subscription(msg_type, f"/{namespace}/{node_name}/{name}", self._keeper(name), qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._keeper("diagnostics"), reliable)
        self.prefix = f"/{namespace}/{node_name}"

    def _keeper(self, name: str):
        return lambda msg: self.received[name].append(msg)

    def wait_for_node(self, timeout_s: float = 90.0) -> bool:
        """Until every output topic has a matched publisher and a status message came in."""
        topics = [f"{self.prefix}/{name}" for name in OUTPUTS]
        return self.spin_until(
            lambda: self.received["status"] and all(self.node.count_publishers(t) > 0 for t in topics), timeout_s
        )

    def spin_until(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if predicate():
                return True
        return False

    def call(self, srv_type, name: str, request, timeout_s: float = 60.0):
        client = self.node.create_client(srv_type, f"{self.prefix}/{name}")
        try:
            assert self.spin_until(client.service_is_ready, 20.0), f"service {name} never appeared"
            future = client.call_async(request)
            assert self.spin_until(future.done, timeout_s), f"service {name} did not answer"
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def start_node(out_dir: Path, namespace: str, *ros_args: str) -> subprocess.Popen:
    """``python -m gs4_slam.ros.slam_node`` in ``/namespace``, stdout/stderr in ``out_dir/node.log``.

    Each test has its own namespace, so nodes of tests that overlap never see each other's frames.
    """
    log = open(out_dir / "node.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "gs4_slam.ros.slam_node", "--ros-args", "-r", f"__ns:=/{namespace}",
         "-p", f"output_dir:={out_dir}", *ros_args],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )


def start_player(out_dir: Path, namespace: str, *args: str) -> subprocess.Popen:
    log = open(out_dir / "player.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, str(PLAYER), "--namespace", namespace, *args], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen, timeout_s: float = 20.0) -> int:
    """SIGINT (the node shuts down cleanly), then kill if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")
