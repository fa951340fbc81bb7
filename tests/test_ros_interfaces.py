"""The package's own interfaces work between two processes over loopback DDS."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros
HELPER = Path(__file__).parent / "helpers" / "status_peer.py"


@pytest.fixture
def peer():
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    proc = subprocess.Popen([sys.executable, str(HELPER), "--seconds", "60"])
    yield proc
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def node():
    import rclpy

    rclpy.init()
    node = rclpy.create_node("interface_test_client")
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


def _spin_until(node, predicate, timeout_s: float) -> bool:
    import rclpy

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if predicate():
            return True
    return False


def test_status_message_crosses_processes(peer, node):
    from gs4_slam.msg import SlamStatus

    received: list[SlamStatus] = []
    node.create_subscription(SlamStatus, "status", received.append, 10)
    assert _spin_until(node, lambda: len(received) >= 3, 20.0), "no SlamStatus from the peer process"
    msg = received[-1]
    assert msg.header.frame_id == "map"
    assert msg.tracking_state == SlamStatus.TRACKING_OK and msg.tracking_state_name == "OK"
    assert msg.num_gaussians == 1234
    assert list(msg.stage_names) == ["track", "map"]
    assert list(msg.stage_times_ms) == pytest.approx([1.5, 2.5])
    assert received[-1].input_frames > received[0].input_frames


def test_save_map_service_across_processes(peer, node, tmp_path):
    from gs4_slam.srv import SaveMap

    client = node.create_client(SaveMap, "save_map")
    assert _spin_until(node, client.service_is_ready, 20.0), "save_map service never appeared"
    target = tmp_path / "map.ply"
    future = client.call_async(SaveMap.Request(path=str(target)))
    assert _spin_until(node, future.done, 10.0), "save_map call timed out"
    assert future.result().success, future.result().message
    assert target.read_text() == "saved by status_peer\n"

    future = client.call_async(SaveMap.Request(path=str(tmp_path / "missing_dir" / "map.ply")))
    assert _spin_until(node, future.done, 10.0)
    assert not future.result().success
    assert "missing_dir" in future.result().message
