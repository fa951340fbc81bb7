"""Starting ROS node processes safely: loopback-only environment, logs to files, clean stops.

Nothing here imports rclpy. Commands such as ``gs4-slam replay`` start nodes for a
user who may not have exported anything, so the network-safety settings are put
into the environment of every process they start (and of their own process,
before rclpy starts).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gs4_slam.resources import find_data_file

LOOPBACK_PROFILE = "config/fastdds_loopback.xml"


def safe_ros_environment(ros_home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with DDS confined to this machine.

    Discovery is limited to localhost and the Fast DDS profile whitelists 127.0.0.1
    (plus shared memory), whatever the user had set: these commands never need the
    network. ROS logs go to ``ros_home`` unless the user chose a place. Waiting
    OpenMP threads must not spin on a shared CPU (read when torch loads).
    """
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    profile = find_data_file(LOOPBACK_PROFILE)
    if profile is None:
        raise FileNotFoundError(f"{LOOPBACK_PROFILE} not found in the source tree or the installed share folder")
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    env.setdefault("ROS_HOME", str(ros_home))
    env.setdefault("ROS_LOG_DIR", str(Path(env["ROS_HOME"]) / "log"))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class NodeProcess:
    """A node started as ``python -m <module> --ros-args ...`` with its output in ``log_path``."""

    name: str
    process: subprocess.Popen
    log_path: Path

    @classmethod
    def start(cls, name: str, module: str, ros_args: list[str], log_path: Path, env: Mapping[str, str]) -> NodeProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            process = subprocess.Popen([sys.executable, "-m", module, "--ros-args", *ros_args], stdout=log,
                                       stderr=subprocess.STDOUT, env=dict(env))
        return cls(name, process, log_path)

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait(self, timeout_s: float) -> int | None:
        """The exit code once the process has exited by itself, None if it is still running after ``timeout_s``."""
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGINT (nodes shut down cleanly), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
