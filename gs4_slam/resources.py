"""Where the package's data files (config/, weights/) are found.

The same files are reachable three ways, searched in this order:
  1. the source tree (development, editable installs): ``<repo>/config``;
  2. a colcon install: ``$AMENT_PREFIX_PATH/*/share/gs4_slam/<folder>``;
  3. a plain ``pip install .``: ``<sys.prefix>/share/gs4_slam/<folder>`` (setup.py's data_files).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "gs4_slam"
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def data_dirs(folder: str) -> list[Path]:
    """Candidate locations of a data folder (``config``, ``config/labels``, ``weights``)."""
    dirs = [SOURCE_ROOT / folder]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / PACKAGE / folder)
    dirs.append(Path(sys.prefix) / "share" / PACKAGE / folder)
    return dirs


def find_data_file(relative: str) -> Path | None:
    """The first existing ``<dir>/<relative>`` over :func:`data_dirs`, or None."""
    folder, _, name = relative.rpartition("/")
    for directory in data_dirs(folder or "."):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None
