"""Test-wide settings: ROS traffic stays on loopback and writes nothing to ~/.ros."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Set before anything can start rclpy, so that every process a test starts inherits it.
_ROS_HOME = tempfile.mkdtemp(prefix="gs4_ros_home_")
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO_ROOT / "config" / "fastdds_loopback.xml")
os.environ["ROS_HOME"] = _ROS_HOME
os.environ["ROS_LOG_DIR"] = os.path.join(_ROS_HOME, "log")


def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001 - pytest hook signature
    shutil.rmtree(_ROS_HOME, ignore_errors=True)


def ros_available() -> bool:
    try:
        import rclpy  # noqa: F401
        from gs4_slam.msg import SlamStatus  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config, items):  # noqa: ARG001 - pytest hook signature
    if ros_available():
        return
    skip = pytest.mark.skip(reason="rclpy or the gs4_slam interfaces are not available")
    for item in items:
        if "ros" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip when a user's clone does not have it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def python_exe() -> str:
    return sys.executable
