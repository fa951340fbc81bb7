"""The ROS-free core installs with plain pip and never imports rclpy."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)


def test_import_does_not_pull_rclpy():
    code = "import sys, gs4_slam, gs4_slam.cli, gs4_slam.config, gs4_slam.frame; print('rclpy' in sys.modules)"
    result = _run([sys.executable, "-c", code])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.slow
def test_pip_install_in_fresh_venv_without_ros(tmp_path):
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    assert _run([base_python, "-m", "venv", str(venv)], env=env).returncode == 0
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # torch first, pinned: this exact version is the local CPU build (see scripts/setup.sh).
    torch_version = _run([sys.executable, "-c", "import torch; print(torch.__version__.split('+')[0])"]).stdout.strip()
    result = _run(pip + [f"torch=={torch_version}"], env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    result = _run(pip + [str(REPO_ROOT)], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]

    listed = _run([str(venv / "bin" / "python"), "-m", "pip", "list"], env=env).stdout.lower()
    assert "ros-rclpy" not in listed and "\nrclpy" not in listed

    check = "import sys, gs4_slam; print(gs4_slam.__file__); print('rclpy' in sys.modules)"
    result = _run([str(venv / "bin" / "python"), "-c", check], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    installed_at, rclpy_loaded = result.stdout.split()
    assert str(venv) in installed_at, "imported gs4_slam from outside the fresh venv"
    assert rclpy_loaded == "False"

    # Data files (config/) come with the install, not from the source tree.
    check = (
        "from gs4_slam.labels import load_label_set, label_set_dirs; "
        "print(load_label_set().num_classes, [d for d in label_set_dirs() if (d / 'scannet20.yaml').is_file()][0])"
    )
    result = _run([str(venv / "bin" / "python"), "-c", check], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "20" and str(venv) in result.stdout

    result = _run([str(venv / "bin" / "gs4-slam"), "--help"], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "info" in result.stdout
