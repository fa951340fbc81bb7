"""One replay run over ROS: the player and ``slam_node`` as processes, watched from this process.

The player publishes the sequence with the dataset's own stamps; this process
collects the node's poses, keeps the node's queue short by pausing the player
while the backlog is long (so that nothing is dropped and memory stays flat, at
any playback rate), waits until every published frame was processed or dropped,
asks the node to save its map, and stops both processes, killing them when
something goes wrong, so that nothing lingers.
"""
from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path as PathMsg
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import UInt32
from std_srvs.srv import Trigger

from gs4_slam.camera import Pose
from gs4_slam.msg import SlamStatus
from gs4_slam.ros import conversions as conv
from gs4_slam.ros.processes import NodeProcess
from gs4_slam.ros.sync import stamp_ns
from gs4_slam.srv import SaveMap

log = logging.getLogger(__name__)

PLAYER_MODULE = "gs4_slam.ros.dataset_player_node"
NODE_MODULE = "gs4_slam.ros.slam_node"


class ReplayError(RuntimeError):
    """The replay could not finish; the message says why and quotes the node's log."""


@dataclass(frozen=True)
class SessionOptions:
    namespace: str = ""  # ROS namespace of both nodes ("" = the root, as in the launch files)
    max_backlog: int = 30  # frames waiting in the node before the player is paused
    stall_timeout_s: float = 180.0  # no progress for this long (start-up included) is an error
    status_rate_hz: float = 10.0
    map_name: str = "map.ply"

    @property
    def prefix(self) -> str:
        return f"/{self.namespace.strip('/')}" if self.namespace.strip("/") else ""

    @property
    def node_queue_size(self) -> int:
        """Room for the frames sent while a pause request is on its way."""
        return min(1000, 4 * self.max_backlog + 8)


@dataclass
class SessionResult:
    poses: list[tuple[int, Pose]]  # (stamp in ns, T_world_cam) of every processed frame, in order
    published: int
    input_frames: int
    processed: int
    dropped: int
    fps: float
    wall_s: float
    map_path: Path
    save_s: float = 0.0  # the save_map call, the node's final refinement included
    status: SlamStatus | None = None
    notes: list[str] = field(default_factory=list)


class _Monitor:
    """The ROS side of this process: the node's status and poses, the player's end, the services."""

    def __init__(self, prefix: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("gs4_replay", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.status: SlamStatus | None = None
        self.poses: dict[int, Pose] = {}  # stamp in ns -> T_world_cam
        self.pose_times: list[float] = []
        self.end_count: int | None = None
        self.node.create_subscription(SlamStatus, f"{prefix}/slam_node/status", self._on_status, reliable)
        self.node.create_subscription(PoseStamped, f"{prefix}/slam_node/pose", self._on_pose, reliable)
        # A reader starved of CPU can miss single poses; the latched path repeats all of them.
        self.node.create_subscription(PathMsg, f"{prefix}/slam_node/path", self._on_path, latched)
        self.node.create_subscription(UInt32, f"{prefix}/dataset_player/end_of_sequence", self._on_end, latched)
        self.save_map = self.node.create_client(SaveMap, f"{prefix}/slam_node/save_map")
        self.pause = self.node.create_client(Trigger, f"{prefix}/dataset_player/pause")
        self.resume = self.node.create_client(Trigger, f"{prefix}/dataset_player/resume")

    def _on_status(self, msg: SlamStatus) -> None:
        self.status = msg

    def _on_pose(self, msg: PoseStamped) -> None:
        self.poses[stamp_ns(msg)] = conv.pose_from_pose_msg(msg.pose)
        self.pose_times.append(time.monotonic())

    def _on_path(self, msg: PathMsg) -> None:
        for pose in msg.poses:
            self.poses.setdefault(stamp_ns(pose), conv.pose_from_pose_msg(pose.pose))

    def _on_end(self, msg: UInt32) -> None:
        self.end_count = int(msg.data)

    def spin(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=max(0.0, min(0.05, deadline - time.monotonic())))

    def call(self, client, request, timeout_s: float):
        if not client.wait_for_service(timeout_sec=min(timeout_s, 30.0)):
            raise ReplayError(f"service {client.srv_name} is not available")
        future = client.call_async(request)
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        if not future.done():
            raise ReplayError(f"service {client.srv_name} did not answer within {timeout_s:.0f} s")
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@dataclass
class _Progress:
    """When the replay last moved, to tell a slow pipeline from a stuck one."""

    timeout_s: float
    value: tuple = ()
    since: float = field(default_factory=time.monotonic)

    def update(self, value: tuple) -> None:
        if value != self.value:
            self.value, self.since = value, time.monotonic()

    @property
    def stalled(self) -> bool:
        return time.monotonic() - self.since > self.timeout_s


class ReplaySession:
    """Runs the player and slam_node (started by the caller's arguments) until the sequence is processed."""

    def __init__(self, options: SessionOptions, env: dict[str, str], log_dir: Path) -> None:
        self.options = options
        self.env = env
        self.log_dir = log_dir
        self.processes: list[NodeProcess] = []
        self._paused = False

    def run(self, params_file: Path, node_overrides: dict[str, str], player_overrides: dict[str, str],
            out_dir: Path) -> SessionResult:
        """Both nodes read ``params_file``; ``*_overrides`` are ``{name: value text}`` given as ``-p``."""
        start = time.monotonic()
        monitor = _Monitor(self.options.prefix)
        try:
            node = self._start("slam_node", NODE_MODULE, params_file, node_overrides, {
                "output_dir": json.dumps(str(out_dir)), "queue_size": str(self.options.node_queue_size),
                # The player publishes in bursts faster than the node's executor may take them
                # (it shares the cores with the pipeline): DDS keeps as many as the queue holds.
                "input_depth": str(self.options.node_queue_size),
                "status_rate_hz": repr(float(self.options.status_rate_hz))})
            # A caller may wait for more subscribers (a recorder too); the rest the session relies on.
            player = self._start("dataset_player", PLAYER_MODULE, params_file,
                                 {"wait_for_subscribers": "1", **player_overrides},
                                 {"stamps": "dataset", "loop": "false", "paused": "false", "exit_at_end": "true"})
            notes = self._wait_until_processed(monitor, node, player)
            saving = time.monotonic()
            map_path = self._save_map(monitor, node, out_dir)
            save_s = time.monotonic() - saving
            player.wait(15.0)  # it exits by itself once subscribers acknowledged its last frame
            result = self._result(monitor, time.monotonic() - start, map_path, notes, save_s)
        finally:
            self.stop()
            monitor.close()
        return result

    def _start(self, name: str, module: str, params_file: Path, overrides: dict[str, str],
               required: dict[str, str]) -> NodeProcess:
        """Every ``-p`` after ``--params-file``: rcl applies the file's node-specific section after the
        ``-p`` values when any ``-p`` comes first, which would let the file win."""
        ros_args = ["-r", f"__ns:={self.options.prefix}"] if self.options.prefix else []
        ros_args += ["--params-file", str(params_file)]
        for key, value in {**overrides, **required}.items():
            ros_args += ["-p", f"{key}:={value}"]
        log.info("starting %s: python -m %s --ros-args %s", name, module, " ".join(ros_args))
        process = NodeProcess.start(name, module, ros_args, self.log_dir / f"{name}.log", self.env)
        self.processes.append(process)
        return process

    def _check_alive(self, node: NodeProcess, player: NodeProcess) -> None:
        if node.returncode is not None:
            raise ReplayError(f"slam_node exited with code {node.returncode}:\n{node.log_tail()}")
        if player.returncode not in (None, 0):
            raise ReplayError(f"dataset_player exited with code {player.returncode}:\n{player.log_tail()}")

    def _wait_until_processed(self, monitor: _Monitor, node: NodeProcess, player: NodeProcess) -> list[str]:
        """Spin until the player has finished and the node has handled every frame it received."""
        progress = _Progress(self.options.stall_timeout_s)
        idle_since: float | None = None
        while True:
            monitor.spin(0.1)
            self._check_alive(node, player)
            status = monitor.status
            counts = (status.input_frames, status.processed_frames, status.dropped_frames) if status else ()
            progress.update((*counts, monitor.end_count))
            if status is not None:
                self._limit_backlog(monitor, status)
            if status is not None and monitor.end_count is not None and self._queued(status) == 0:
                handled = status.processed_frames + status.dropped_frames
                if handled >= monitor.end_count and len(monitor.poses) >= status.processed_frames:
                    return self._check_processed(status, node)
                # Frames lost on the way never arrive: give them a few seconds, then go on and say so.
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 5.0:
                    return self._check_processed(status, node) + self._shortfalls(monitor, status)
            else:
                idle_since = None
            if progress.stalled:
                what = "no status from slam_node" if status is None else f"status {counts}"
                raise ReplayError(f"no progress for {self.options.stall_timeout_s:.0f} s ({what}, end of sequence "
                                  f"{monitor.end_count}); slam_node log:\n{node.log_tail()}\n"
                                  f"dataset_player log:\n{player.log_tail(1500)}")

    @staticmethod
    def _check_processed(status: SlamStatus, node: NodeProcess) -> list[str]:
        if status.processed_frames == 0:
            raise ReplayError(f"slam_node processed none of the {status.input_frames} frames it received "
                              f"({status.dropped_frames} dropped); its log:\n{node.log_tail()}")
        return []

    @staticmethod
    def _shortfalls(monitor: _Monitor, status: SlamStatus) -> list[str]:
        notes = []
        if status.input_frames < monitor.end_count:
            notes.append(f"{monitor.end_count - status.input_frames} of {monitor.end_count} published frames "
                         "never reached slam_node")
        if len(monitor.poses) < status.processed_frames:
            notes.append(f"poses of {status.processed_frames - len(monitor.poses)} processed frames were not "
                         "received (evaluated without them)")
        return notes

    @staticmethod
    def _queued(status: SlamStatus) -> int:
        return status.input_frames - status.processed_frames - status.dropped_frames

    def _limit_backlog(self, monitor: _Monitor, status: SlamStatus) -> None:
        queued = self._queued(status)
        if not self._paused and queued > self.options.max_backlog:
            monitor.pause.call_async(Trigger.Request())
            self._paused = True
        elif self._paused and queued <= self.options.max_backlog // 2:
            monitor.resume.call_async(Trigger.Request())
            self._paused = False

    def _save_map(self, monitor: _Monitor, node: NodeProcess, out_dir: Path) -> Path:
        response = monitor.call(monitor.save_map, SaveMap.Request(path=self.options.map_name), timeout_s=600.0)
        if not response.success:
            raise ReplayError(f"save_map failed: {response.message}\n{node.log_tail()}")
        log.info("slam_node: %s", response.message)
        monitor.spin(0.3)  # the last status after saving
        return out_dir / self.options.map_name

    @staticmethod
    def _result(monitor: _Monitor, wall_s: float, map_path: Path, notes: list[str], save_s: float) -> SessionResult:
        status = monitor.status
        times = monitor.pose_times
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        return SessionResult(poses=sorted(monitor.poses.items()), published=monitor.end_count or 0,
                             input_frames=status.input_frames, processed=status.processed_frames,
                             dropped=status.dropped_frames, fps=fps, wall_s=wall_s, map_path=map_path,
                             save_s=save_s, status=status, notes=notes)

    def stop(self) -> None:
        """Stop every started process (SIGINT, then SIGKILL); never leaves one running."""
        for process in reversed(self.processes):
            code = process.stop()
            if code not in (0, -signal.SIGINT):
                log.warning("%s exited with code %s (log: %s)", process.name, code, process.log_path)
