"""`gs4-slam info`: what this installation can do (versions, backends, ROS)."""
from __future__ import annotations

import argparse
import importlib
import json
import platform


def _version(module_name: str) -> str | None:
    try:
        module = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return None
    return str(getattr(module, "__version__", "present"))


def collect() -> dict:
    """Return a JSON-serialisable report of the environment."""
    report: dict = {
        "gs4_slam": _version("gs4_slam"),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "torch": _version("torch"),
        "open3d": _version("open3d"),
        "opencv": _version("cv2"),
        "gsplat": _version("gsplat"),
    }
    try:
        import torch

        report["cuda_available"] = bool(torch.cuda.is_available())
        report["torch_threads"] = torch.get_num_threads()
    except ImportError:
        report["cuda_available"] = False
    # The ROS layer is optional: report whether rclpy and the generated interfaces import.
    report["rclpy"] = _version("rclpy")
    report["ros_interfaces"] = _version("gs4_slam.msg") is not None and _version("gs4_slam.srv") is not None
    return report


def _run(args: argparse.Namespace) -> int:
    report = collect()
    if args.json:
        print(json.dumps(report))
    else:
        width = max(len(key) for key in report)
        for key, value in report.items():
            print(f"{key:<{width}}  {'not installed' if value is None else value}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="report versions, compute backends and ROS availability")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run)
