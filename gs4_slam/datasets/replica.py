"""Replica as rendered for NICE-SLAM / SplaTAM.

::

    <scene>/results/frame<NNNNNN>.jpg   colour
    <scene>/results/depth<NNNNNN>.png   uint16, metres = value / 6553.5
    <scene>/traj.txt                    one row-major 4x4 camera-to-world per line
    cam_params.json                     in <scene>/ or its parent (the Replica root)

Frame number ``n`` takes line ``n`` of ``traj.txt``. Without ``cam_params.json``
the published values of these renders are used (with a warning).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.datasets.base import (
    DatasetError,
    RawImages,
    SequenceReader,
    check_same_frames,
    check_size,
    index_files,
    log_skipped,
    read_color,
    read_depth,
    read_numbers,
    require_dir,
)

log = logging.getLogger(__name__)

#: The NICE-SLAM renders' camera (``cam_params.json`` of the Replica download).
REPLICA_DEFAULT_CAMERA = {"w": 1200, "h": 680, "fx": 600.0, "fy": 600.0, "cx": 599.5, "cy": 339.5, "scale": 6553.5}


def read_cam_params(scene: Path) -> dict:
    """The ``camera`` entry of cam_params.json next to or above the scene folder."""
    for path in (scene / "cam_params.json", scene.parent / "cam_params.json"):
        if not path.exists():
            continue
        try:
            camera = json.loads(path.read_text())["camera"]
            return {key: float(camera[key]) for key in REPLICA_DEFAULT_CAMERA}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{path}: not readable JSON: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(
                f"{path}: expected {{'camera': {{{', '.join(REPLICA_DEFAULT_CAMERA)}}}}} with numbers ({exc})"
            ) from exc
    log.warning("%s: no cam_params.json here or in the parent; using the NICE-SLAM Replica camera", scene)
    return dict(REPLICA_DEFAULT_CAMERA)


class ReplicaReader(SequenceReader):
    """Frames of one NICE-SLAM-layout Replica scene folder (e.g. ``office0``)."""

    kind = "replica"

    def _scan(self) -> tuple[Intrinsics, int]:
        results = require_dir(self.root / "results", "results (frame*.jpg, depth*.png)")
        colors = index_files(results, (".jpg", ".jpeg", ".png"), prefix="frame")
        if not colors:
            raise DatasetError(f"{results}: no frame<N>.jpg colour images")
        depths = index_files(results, (".png",), prefix="depth")
        check_same_frames(colors, "colour image", depths, "depth image")

        traj_path = self.root / "traj.txt"
        values = read_numbers(traj_path)
        if values.size % 16:
            raise DatasetError(f"{traj_path}: {values.size} numbers is not a whole number of 4x4 poses")
        poses = values.reshape(-1, 4, 4)
        numbers = sorted(colors)
        if numbers[-1] >= len(poses):
            raise DatasetError(
                f"{traj_path}: has {len(poses)} poses but {colors[numbers[-1]]} needs pose number {numbers[-1]}"
            )
        finite = [bool(np.all(np.isfinite(poses[n]))) for n in numbers]
        self.skipped_invalid_pose = [n for n, ok in zip(numbers, finite) if not ok]
        log_skipped(self.root, len(self.skipped_invalid_pose), "non-finite pose")
        self._numbers = [n for n, ok in zip(numbers, finite) if ok]
        if not self._numbers:
            raise DatasetError(f"{traj_path}: every pose of the frames present is non-finite")
        self._poses = poses
        self._colors, self._depths = colors, depths

        camera = read_cam_params(self.root)
        self.depth_scale = self.options.depth_scale or camera["scale"]
        native = Intrinsics(int(camera["w"]), int(camera["h"]), camera["fx"], camera["fy"], camera["cx"], camera["cy"])
        return native, len(self._numbers)

    def _timestamp_s(self, i: int) -> float:
        return self._numbers[i] / self.options.rate_hz

    def _gt_pose(self, i: int) -> Pose:
        return Pose(self._poses[self._numbers[i]])

    def _load_images(self, i: int) -> RawImages:
        k = self.native_intrinsics
        number = self._numbers[i]
        color = read_color(self._colors[number])
        check_size(self._colors[number], color, k.width, k.height)
        depth = read_depth(self._depths[number], self.depth_scale, self.options.depth_range_m)
        check_size(self._depths[number], depth, k.width, k.height)
        return RawImages(color, depth)
