"""A separate ROS process for the interface tests: publishes gs4_slam/SlamStatus on
`status` and serves gs4_slam/SaveMap on `save_map` (writes a small file at the
requested path), until it is terminated or --seconds pass."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import rclpy
from rclpy.node import Node

from gs4_slam.msg import SlamStatus
from gs4_slam.srv import SaveMap


class StatusPeer(Node):
    def __init__(self) -> None:
        super().__init__("status_peer")
        self._publisher = self.create_publisher(SlamStatus, "status", 10)
        self.create_service(SaveMap, "save_map", self._save_map)
        self.create_timer(0.05, self._publish)
        self._count = 0

    def _publish(self) -> None:
        self._count += 1
        msg = SlamStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "map"
        msg.tracking_state = SlamStatus.TRACKING_OK
        msg.tracking_state_name = "OK"
        msg.input_frames = self._count
        msg.processed_frames = self._count
        msg.fps = 20.0
        msg.num_gaussians = 1234
        msg.stage_names = ["track", "map"]
        msg.stage_times_ms = [1.5, 2.5]
        self._publisher.publish(msg)

    def _save_map(self, request: SaveMap.Request, response: SaveMap.Response) -> SaveMap.Response:
        try:
            Path(request.path).write_text("saved by status_peer\n")
        except OSError as exc:
            response.success, response.message = False, str(exc)
        else:
            response.success, response.message = True, f"wrote {request.path}"
        return response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    rclpy.init()
    node = StatusPeer()
    deadline = time.monotonic() + args.seconds
    try:
        while rclpy.ok() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
