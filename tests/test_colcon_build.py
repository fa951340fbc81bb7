"""`colcon build` of the repository as src/gs4_slam of an empty workspace."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.ros
@pytest.mark.slow
def test_colcon_build_installs_interfaces_and_package(tmp_path):
    venv_bin = Path(os.environ.get("GS4_VENV", REPO_ROOT / ".venv")) / "bin"
    if shutil.which("colcon", path=str(venv_bin)) is None and shutil.which("colcon") is None:
        pytest.skip("colcon is not installed")
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "colcon_check.sh"), str(tmp_path / "ws")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "colcon install OK" in result.stdout
    share = tmp_path / "ws" / "install" / "gs4_slam" / "share" / "gs4_slam"
    assert (share / "config" / "fastdds_loopback.xml").is_file()
    assert (share / "msg" / "SlamStatus.msg").is_file()
