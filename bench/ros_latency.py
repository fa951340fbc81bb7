"""ROS node latency: image stamp -> pose publish, with TUM frames published at 30 Hz.

Run from the repository root::

    python -m bench.ros_latency --data ../shared/data/tum_fr1_xyz [--limit 300] [--rate-hz 30]

Three processes on loopback DDS only (this script sets the network-safety
environment before any of them starts): a player that publishes the sequence like
a RealSense driver (640x480 rgb8, 16UC1 depth in mm, camera_info; each frame
stamped with the wall clock when it is sent), the SLAM node with its default
parameters (``config/slam.yaml``; the non-learned predictor baseline when no
trained weights are installed), and this process, which records when each pose
arrives. Latency = arrival time - the pose's stamp (= its image's stamp), so it
covers transport in, queueing, processing and transport out. The achieved rate is
poses per second while frames were arriving. Frames are decoded before publishing
starts so that decoding does not disturb the 30 Hz pacing. The last line printed
is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "gs4_bench"


def network_safe_env(ros_home: str) -> dict[str, str]:
    """Loopback-only DDS and a private ROS home, for this process and every child."""
    env = {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_loopback.xml"),
        "ROS_HOME": ros_home,
        "ROS_LOG_DIR": os.path.join(ros_home, "log"),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    os.environ.update(env)
    return dict(os.environ)


# ----------------------------------------------------------------------------- player process


def play(data: Path, limit: int, rate_hz: float) -> int:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from gs4_slam.datasets import open_dataset
    from gs4_slam.ros import conversions as conv

    reader = open_dataset("tum", data, limit=limit)
    frames = [(f.color_rgb, f.depth_m) for f in reader]
    intrinsics = reader.intrinsics
    rclpy.init()
    node = rclpy.create_node("tum_player", namespace=NAMESPACE)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    color_pub = node.create_publisher(Image, "camera/color/image_raw", qos)
    depth_pub = node.create_publisher(Image, "camera/aligned_depth_to_color/image_raw", qos)
    info_pub = node.create_publisher(CameraInfo, "camera/color/camera_info", qos)
    frame_id = "camera_color_optical_frame"
    try:
        deadline = time.monotonic() + 120.0
        while color_pub.get_subscription_count() == 0 or depth_pub.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                print("player: the node never subscribed", flush=True)
                return 1
            time.sleep(0.05)
        info_pub.publish(conv.camera_info_from_intrinsics(intrinsics, frame_id, node.get_clock().now().to_msg()))
        time.sleep(0.5)
        print(f"start {len(frames)}", flush=True)
        started = next_t = time.monotonic()
        for color_rgb, depth_m in frames:
            stamp = node.get_clock().now().to_msg()
            info_pub.publish(conv.camera_info_from_intrinsics(intrinsics, frame_id, stamp))
            depth_pub.publish(conv.image_msg_from_depth(depth_m, frame_id, stamp, encoding="16UC1"))
            color_pub.publish(conv.image_msg_from_rgb(color_rgb, frame_id, stamp))
            next_t += 1.0 / rate_hz
            time.sleep(max(0.0, next_t - time.monotonic()))
        print(f"done {time.monotonic() - started:.3f}", flush=True)
        time.sleep(1.0)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


# ----------------------------------------------------------------------------- measuring process


def node_command(use_baseline: bool, overrides: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "gs4_slam.ros.slam_node", "--ros-args", "-r", f"__ns:=/{NAMESPACE}",
           "-p", f"output_dir:={tempfile.mkdtemp(prefix='gs4_bench_maps_')}"]
    cmd += ["-p", "predictor.use_baseline:=true"] if use_baseline else []
    return cmd + [arg for override in overrides for arg in ("-p", override)]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(args: argparse.Namespace, env: dict[str, str], use_baseline: bool, logs: Path) -> dict:
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from gs4_slam.msg import SlamStatus

    arrivals: list[tuple[float, float]] = []  # (arrival, stamp) in seconds, system clock
    statuses: list[SlamStatus] = []
    rclpy.init()
    listener = rclpy.create_node("latency_probe")
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    listener.create_subscription(
        PoseStamped, f"/{NAMESPACE}/slam_node/pose",
        lambda m: arrivals.append((time.time(), m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)), qos)
    listener.create_subscription(SlamStatus, f"/{NAMESPACE}/slam_node/status", statuses.append, qos)
    node_log = open(logs / "node.log", "w")  # noqa: SIM115 - lives as long as the node
    node = subprocess.Popen(node_command(use_baseline, args.param), cwd=REPO, env=env, stdout=node_log,
                            stderr=subprocess.STDOUT)
    player = None
    try:
        if not spin_until(listener, lambda: statuses or node.poll() is not None, 120.0) or node.poll() is not None:
            raise SystemExit(f"bench.ros_latency: the node did not start; see {logs / 'node.log'}:\n"
                             + (logs / "node.log").read_text()[-2000:])
        player_cmd = [sys.executable, "-m", "bench.ros_latency", "--player", "--data", str(args.data),
                      "--limit", str(args.limit), "--rate-hz", str(args.rate_hz)]
        player = subprocess.Popen(player_cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=open(
            logs / "player.log", "w"), text=True)
        started = player.stdout.readline().strip()  # "start N" once decoded and connected
        if not started.startswith("start"):
            raise SystemExit(f"bench.ros_latency: the player failed: {started}; see {logs / 'player.log'}")
        first_publish = time.time()
        spin_until(listener, lambda: player.poll() is not None, args.limit / args.rate_hz + 60.0)
        done = player.stdout.read().split()  # "done <seconds spent publishing>"
        last_publish = first_publish + float(done[1]) if done[:1] == ["done"] else time.time()
        spin_until(listener, lambda: False, 3.0)  # the queue drains
    finally:
        if player is not None:
            stop(player)
        stop(node)
        listener.destroy_node()
        rclpy.try_shutdown()
    return summarise(arrivals, statuses, int(started.split()[1]), first_publish, last_publish)


def spin_until(node, predicate, timeout_s: float) -> bool:
    import rclpy

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
        if predicate():
            return True
    return False


def summarise(arrivals, statuses, published: int, first_publish: float, last_publish: float) -> dict:
    latency_ms = np.array([(arrival - stamp) * 1000.0 for arrival, stamp in arrivals])
    during = [a for a, _ in arrivals if a <= last_publish]
    span = (during[-1] - during[0]) if len(during) > 1 else float("nan")
    final = statuses[-1] if statuses else None
    states = [s.tracking_state_name for s in statuses if s.processed_frames > 0]
    return {
        "published": published,
        "input_rate_hz": published / max(last_publish - first_publish, 1e-9),
        "poses": len(arrivals),
        "dropped": final.dropped_frames if final else -1,
        "rate_hz": (len(during) - 1) / span if len(during) > 1 else 0.0,
        "latency_ms_p50": float(np.percentile(latency_ms, 50)) if len(latency_ms) else float("nan"),
        "latency_ms_p95": float(np.percentile(latency_ms, 95)) if len(latency_ms) else float("nan"),
        "latency_ms_max": float(latency_ms.max()) if len(latency_ms) else float("nan"),
        "tracking": final.tracking_state_name if final else "",
        "tracking_states": {name: states.count(name) for name in sorted(set(states))},
        "stage_ms": dict(zip(final.stage_names, (round(v, 1) for v in final.stage_times_ms))) if final else {},
    }


def print_table(r: dict, args: argparse.Namespace, predictor: str) -> None:
    load = os.getloadavg()[0]
    overrides = f" with {' '.join(args.param)}" if args.param else ""
    print(f"ROS node latency, TUM {Path(args.data).name}: {r['published']} frames (640x480) published at "
          f"{r['input_rate_hz']:.1f} Hz; node defaults (config/slam.yaml){overrides}, predictor {predictor}; "
          f"{os.cpu_count()} CPU(s) ({platform.machine()}), load average {load:.1f}")
    print(f"{'poses':>6} {'dropped':>8} {'rate Hz':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  tracking")
    print(f"{r['poses']:>6} {r['dropped']:>8} {r['rate_hz']:>8.1f} {r['latency_ms_p50']:>8.1f} "
          f"{r['latency_ms_p95']:>8.1f} {r['latency_ms_max']:>8.1f}  {r['tracking']}")
    print(f"tracking state in status samples: {r['tracking_states']}; last frame's stage times (ms): {r['stage_ms']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/tum_fr1_xyz", help="TUM sequence folder")
    parser.add_argument("--limit", type=int, default=300, help="frames to publish (decoded up front)")
    parser.add_argument("--rate-hz", type=float, default=30.0)
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="slam_node parameter override (repeatable), e.g. -p queue_size:=1")
    parser.add_argument("--player", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    data = Path(args.data)
    if not (data / "rgb.txt").is_file():
        print(f"bench.ros_latency: TUM sequence not found at {data} (needs rgb.txt); nothing to measure.")
        return 0
    env = network_safe_env(os.environ.get("ROS_HOME") if args.player else tempfile.mkdtemp(prefix="gs4_ros_home_"))
    if args.player:
        return play(data, args.limit, args.rate_hz)
    try:
        import rclpy  # noqa: F401
        from gs4_slam.msg import SlamStatus  # noqa: F401
    except ImportError as exc:
        print(f"bench.ros_latency: ROS 2 (rclpy and the gs4_slam interfaces) is not available: {exc}")
        return 0
    from gs4_slam.resources import find_data_file

    use_baseline = find_data_file("weights/predictor.pt") is None
    predictor = "baseline (no trained weights installed)" if use_baseline else "network"
    logs = Path(tempfile.mkdtemp(prefix="gs4_bench_logs_"))
    result = measure(args, env, use_baseline, logs)
    print_table(result, args, predictor)
    skip = ("stage_ms", "tracking_states")
    summary = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items() if k not in skip}
    summary["predictor"] = "baseline" if use_baseline else "network"
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
