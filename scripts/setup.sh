#!/usr/bin/env bash
# One-command set-up of the development environment in ./.venv. Idempotent: each
# step records a stamp (a hash of its inputs) and is skipped when nothing changed,
# so a second run takes a few seconds.
#
#   scripts/setup.sh            everything (core, ROS wheels, interfaces, C++ kernels)
#   GS4_PYTHON=python3.12 ...   choose the base interpreter
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GS4_VENV:-$ROOT/.venv}"
BASE_PYTHON="${GS4_PYTHON:-python3}"
STAMPS="$VENV/.gs4_stamps"
TORCH_VERSION="2.13.0"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" >"$STAMPS/$1"; }

create_venv() {
  [[ -x "$VENV/bin/python" ]] && return
  command -v "$BASE_PYTHON" >/dev/null || die "no '$BASE_PYTHON' on PATH (set GS4_PYTHON)"
  # A machine that already has a (CUDA) torch keeps it: the venv sees the base
  # interpreter's packages and torch is not installed again.
  if "$BASE_PYTHON" -c 'import torch' >/dev/null 2>&1; then
    log "base interpreter has torch $("$BASE_PYTHON" -c 'import torch; print(torch.__version__)'): reusing it"
    "$BASE_PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$BASE_PYTHON" -m venv "$VENV"
  fi
  log "created $VENV"
}

install_torch() {
  if "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then return; fi
  # Exactly this version resolves to the CPU build on these machines; any other
  # requirement would pull several GB of CUDA packages.
  log "installing torch==$TORCH_VERSION"
  "$VENV/bin/pip" install -q "torch==$TORCH_VERSION"
}

install_system_libs() {
  # open3d's wheel links libusb-1.0 without shipping it.
  ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' && return
  log "installing Debian's libusb-1.0-0 (needed by open3d)"
  local sudo=""
  [[ "$(id -u)" != 0 ]] && sudo="sudo"
  if ! { $sudo apt-get install -y -qq libusb-1.0-0 >/dev/null 2>&1 ||
         { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq libusb-1.0-0 >/dev/null; }; }; then
    die "could not install libusb-1.0-0; install it with your package manager and re-run"
  fi
}

install_requirements() {
  local key
  key="$(hash_of "$ROOT"/requirements/*.txt)"
  stamp_ok requirements "$key" && return
  log "installing Python requirements"
  local ros_req="$ROOT/requirements/ros.txt"
  # On a ROS 2 distribution rclpy comes from the distro; the PyPI wheels are only
  # for machines without one.
  if [[ -n "${ROS_DISTRO:-}" ]] && "$VENV/bin/python" -c 'import rclpy' >/dev/null 2>&1; then
    ros_req=/dev/null
  fi
  "$VENV/bin/pip" install -q -r "$ROOT/requirements/core.txt" -r "$ros_req" -r "$ROOT/requirements/dev.txt"
  stamp_set requirements "$key"
}

patch_ros_cmake_exports() {
  # The wheels' exported CMake files name the wheel builder's Python and numpy
  # include dirs; point them at this venv's so rosidl's Python generator compiles.
  local key py_inc np_inc
  key="$(hash_of "$STAMPS/requirements")"
  stamp_ok cmake_exports "$key" && return
  py_inc="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_inc="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
  if [[ -d "$VENV/share" ]]; then
    grep -rlE '/opt/python/cp[0-9]+-cp[0-9]+' "$VENV/share" --include='*.cmake' 2>/dev/null |
      xargs -r sed -i -E \
        -e "s#/opt/python/cp[0-9]+-cp[0-9]+/lib/python[0-9.]+/site-packages/numpy/_core/include#$np_inc#g" \
        -e "s#/opt/python/cp[0-9]+-cp[0-9]+/include/python[0-9.]+#$py_inc#g"
  fi
  stamp_set cmake_exports "$key"
}

build_interfaces() {
  # Generates gs4_slam/msg and gs4_slam/srv into the venv: libraries into
  # $VENV/lib (already on the ROS wheels' LD_LIBRARY_PATH), Python into a folder of
  # its own that a .pth file appends to sys.path. gs4_slam/__init__.py extends its
  # package path over it, so the source tree stays the one gs4_slam.
  if [[ ! -d "$VENV/share/rosidl_default_generators" ]]; then
    log "no ROS wheels in the venv (ROS_DISTRO=${ROS_DISTRO:-unset}): build the interfaces with colcon (README)"
    return
  fi
  local key py_dir build_dir
  key="$(hash_of "$ROOT"/msg/*.msg "$ROOT"/srv/*.srv "$ROOT/CMakeLists.txt" "$ROOT/package.xml" "$STAMPS/cmake_exports")"
  py_dir="$VENV/gs4_slam_interfaces"
  stamp_ok interfaces "$key" && [[ -d "$py_dir/gs4_slam/msg" ]] && return
  log "building ROS interfaces (msg/, srv/)"
  build_dir="$ROOT/build/interfaces"
  rm -rf "$build_dir" "$py_dir"
  mkdir -p "$build_dir"
  local np_inc
  np_inc="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
  (
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    cmake -S "$ROOT" -B "$build_dir" -DGS4_INSTALL_PYTHON=OFF -DBUILD_TESTING=OFF \
      -DCMAKE_INSTALL_PREFIX="$VENV" -DPYTHON_INSTALL_DIR=gs4_slam_interfaces \
      -DPython3_EXECUTABLE="$VENV/bin/python" -DPython3_NumPy_INCLUDE_DIR="$np_inc" \
      -DCMAKE_BUILD_TYPE=Release >"$build_dir.log" 2>&1 &&
    cmake --build "$build_dir" -j "$(nproc)" >>"$build_dir.log" 2>&1 &&
    cmake --install "$build_dir" >>"$build_dir.log" 2>&1
  ) || die "interface build failed, see $build_dir.log"
  # rosidl's empty __init__.py would shadow ours if this folder came first on
  # sys.path, and pip would take its egg-info for an installed gs4_slam.
  rm -rf "$py_dir/gs4_slam/__init__.py" "$py_dir"/*.egg-info
  local site
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$py_dir" >"$site/zz_gs4_slam_interfaces.pth"
  stamp_set interfaces "$key"
}

install_project() {
  local key
  key="$(hash_of "$ROOT/setup.py")"
  stamp_ok project "$key" && "$VENV/bin/python" -c 'import gs4_slam' >/dev/null 2>&1 && return
  log "installing gs4_slam (editable)"
  # compat mode puts the source root on sys.path through a .pth file, so the
  # regular package in the source tree wins over the generated interface folder.
  "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$ROOT" \
    --config-settings editable_mode=compat
  stamp_set project "$key"
}

build_kernels() {
  # Compiled CPU kernels (render, tracking) through torch's cpp_extension; each
  # falls back to its PyTorch/NumPy twin, with a warning, when it cannot build.
  local key
  key="$(hash_of "$ROOT"/gs4_slam/*/csrc/* "$ROOT"/gs4_slam/*/kernels.py "$ROOT/gs4_slam/ext.py")"
  stamp_ok kernels "$key" && return
  log "building the compiled CPU kernels"
  if "$VENV/bin/python" -m gs4_slam.ext --quiet; then
    stamp_set kernels "$key"
  else
    log "WARNING: some CPU kernels did not build; their slower fallbacks will be used"
  fi
}

main() {
  create_venv
  install_torch
  install_system_libs
  install_requirements
  patch_ros_cmake_exports
  build_interfaces
  install_project
  build_kernels
  log "ready: $VENV"
}

main "$@"
