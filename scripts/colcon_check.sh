#!/usr/bin/env bash
# Builds this repository as src/gs4_slam of an empty colcon workspace, the way a
# ROS user does, and checks the installed interfaces and Python package import.
# Here the ROS 2 packages come from the PyPI wheels in the venv; on a distro,
# `source /opt/ros/<distro>/setup.bash` replaces the AMENT_PREFIX_PATH line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GS4_VENV:-$ROOT/.venv}"
WS="${1:-$(mktemp -d /tmp/gs4_colcon_ws.XXXXXX)}"

export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE="$ROOT/config/fastdds_loopback.xml"
export ROS_HOME="$WS/ros_home" ROS_LOG_DIR="$WS/ros_home/log"
export PATH="$VENV/bin:$PATH"
if [[ -z "${ROS_DISTRO:-}" ]]; then
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
fi

mkdir -p "$WS/src/gs4_slam"
# Only what git tracks: the same tree a fresh clone has.
git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 tar -cf -) | tar -xf - -C "$WS/src/gs4_slam"

cd "$WS"
np_inc="$(python -c 'import numpy; print(numpy.get_include())')"
colcon build --event-handlers console_direct- \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DPython3_NumPy_INCLUDE_DIR="$np_inc" \
  -DBUILD_TESTING=OFF

set +u
# shellcheck disable=SC1091
source install/setup.bash
set -u
python - <<'PY'
import os, sys
import gs4_slam
from gs4_slam.msg import SlamStatus
from gs4_slam.srv import LoadMap, QueryClass, SaveMap
prefix = os.path.join(os.environ["COLCON_PREFIX_PATH"].split(os.pathsep)[0], "gs4_slam")
assert gs4_slam.__path__[0].startswith(prefix), gs4_slam.__path__
import gs4_slam.msg
assert gs4_slam.msg.__file__.startswith(prefix), gs4_slam.msg.__file__
assert "extend_path" in open(gs4_slam.__file__).read(), "rosidl's __init__.py was not replaced"
assert "rclpy" not in sys.modules
print("colcon install OK:", gs4_slam.__path__, SlamStatus.__name__, SaveMap.__name__, LoadMap.__name__, QueryClass.__name__)
PY
echo "workspace: $WS"
