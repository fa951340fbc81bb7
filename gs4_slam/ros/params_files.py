"""Reading ROS 2 parameter files and ``name:=value`` overrides the way the nodes will (no rclpy).

``gs4-slam replay`` hands the same files to the nodes it starts and needs to know
what they will use (which frames the player reads, which pipeline settings the
SLAM node runs with) to evaluate the result in-process with identical settings.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gs4_slam import config as config_io


def _node_pattern(key: str) -> re.Pattern[str]:
    """rcl's node-name matching: ``/**`` is any number of namespace tokens, ``/*`` exactly one."""
    key = key if key.startswith("/") else "/" + key
    pattern = re.escape(key).replace(r"/\*\*", "(?:/[^/]+)*").replace(r"/\*", "/[^/]+")
    return re.compile(pattern)


def node_parameters(path: str | Path, node_fqn: str) -> dict[str, Any]:
    """Flat (dotted) parameters that ``path`` gives the node ``node_fqn`` (e.g. ``/slam_node``); later sections win."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise config_io.ConfigError(f"{path}: cannot read the parameter file: {exc}") from exc
    if not isinstance(data, dict):
        raise config_io.ConfigError(f"{path}: a parameter file is a mapping of node names")
    out: dict[str, Any] = {}
    for key, section in data.items():
        if isinstance(section, dict) and _node_pattern(str(key)).fullmatch(node_fqn):
            out.update(config_io.flatten(section.get("ros__parameters") or {}))
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``name:=value`` (the ``-p`` syntax) as (name, value); the value is read as YAML, like ROS does."""
    name, sep, value = text.partition(":=")
    if not sep or not name.strip():
        raise ValueError(f"expected NAME:=VALUE, got {text!r}")
    return name.strip(), yaml.safe_load(value) if value.strip() else ""


def fully_qualified(namespace: str, node_name: str) -> str:
    namespace = namespace.strip("/")
    return f"/{namespace}/{node_name}" if namespace else f"/{node_name}"
