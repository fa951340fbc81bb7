"""ScanNet in its exported layout (also what the synthetic generator writes).

::

    color/<i>.jpg            colour (any resolution; resized to the depth's)
    depth/<i>.png            uint16 millimetres
    pose/<i>.txt             4x4 camera-to-world; ScanNet marks lost frames with -inf
    intrinsic/intrinsic_depth.txt   4x4 (or 3x3) camera matrix of the depth image
    label-filt/<i>.png       optional NYU40 ids, mapped to the chosen label set

Frames whose pose is not finite are skipped and counted (``skipped_invalid_pose``).
ScanNet has no timestamps; frame ``i`` is at ``i / rate_hz``.
"""

from __future__ import annotations

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
    read_image_size,
    read_label_image,
    read_matrix,
    read_numbers,
    require_dir,
    resize_color,
    resize_nearest,
)
from gs4_slam.labels import LabelSet, load_label_set

SCANNET_DEPTH_SCALE = 1000.0
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_intrinsic_matrix(path: Path) -> np.ndarray:
    """3x3 camera matrix from ScanNet's 4x4 (or a plain 3x3) text file."""
    values = read_numbers(path)
    if values.size not in (9, 16):
        raise DatasetError(f"{path}: expected a 4x4 or 3x3 matrix (16 or 9 numbers), found {values.size}")
    k = values.reshape(4, 4)[:3, :3] if values.size == 16 else values.reshape(3, 3)
    if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise DatasetError(f"{path}: not a valid camera matrix (focal lengths must be finite and > 0)")
    return k


class ScanNetReader(SequenceReader):
    """Frames of an exported ScanNet scene (or a generated synthetic sequence)."""

    kind = "scannet"

    def _scan(self) -> tuple[Intrinsics, int]:
        color_dir = require_dir(self.root / "color", "colour image")
        depth_dir = require_dir(self.root / "depth", "depth image")
        pose_dir = require_dir(self.root / "pose", "pose")
        colors = index_files(color_dir, _IMAGE_SUFFIXES)
        if not colors:
            raise DatasetError(f"{color_dir}: no numbered colour images (<i>.jpg or <i>.png)")
        depths = index_files(depth_dir, (".png",))
        poses = index_files(pose_dir, (".txt",))
        check_same_frames(colors, "colour image", depths, "depth image")
        check_same_frames(colors, "colour image", poses, "pose")
        label_dir = self.root / "label-filt"
        labels = index_files(label_dir, (".png",)) if label_dir.is_dir() else {}
        if labels:
            check_same_frames(colors, "colour image", labels, "label image")
        self.label_set: LabelSet = load_label_set(self.options.label_set)

        numbers = sorted(colors)
        matrices = [read_matrix(poses[n], 4, 4) for n in numbers]
        finite = [bool(np.all(np.isfinite(m))) for m in matrices]
        self.skipped_invalid_pose = [n for n, ok in zip(numbers, finite) if not ok]
        log_skipped(self.root, len(self.skipped_invalid_pose), "non-finite pose")
        self._numbers = [n for n, ok in zip(numbers, finite) if ok]
        if not self._numbers:
            raise DatasetError(f"{pose_dir}: every pose is non-finite; no usable frame")
        self._poses = [m for m, ok in zip(matrices, finite) if ok]
        self._colors, self._depths = colors, depths
        self._labels = labels or None
        self.depth_scale = self.options.depth_scale or SCANNET_DEPTH_SCALE

        k = read_intrinsic_matrix(self.root / "intrinsic" / "intrinsic_depth.txt")
        width, height = read_image_size(depths[self._numbers[0]])
        native = Intrinsics(width, height, k[0, 0], k[1, 1], k[0, 2], k[1, 2])
        return native, len(self._numbers)

    @property
    def num_skipped(self) -> int:
        """Frames left out because their pose is not finite."""
        return len(self.skipped_invalid_pose)

    def _timestamp_s(self, i: int) -> float:
        return self._numbers[i] / self.options.rate_hz

    def _gt_pose(self, i: int) -> Pose:
        return Pose(self._poses[i])

    def _load_images(self, i: int) -> RawImages:
        k = self.native_intrinsics
        number = self._numbers[i]
        depth = read_depth(self._depths[number], self.depth_scale, self.options.depth_range_m)
        check_size(self._depths[number], depth, k.width, k.height)
        # ScanNet's colour camera has a higher resolution; the depth camera is the reference.
        color = resize_color(read_color(self._colors[number]), k.width, k.height)
        labels = None
        if self._labels is not None:
            source_ids = resize_nearest(read_label_image(self._labels[number]), k.width, k.height)
            labels = self.label_set.map_source(source_ids)
        return RawImages(color, depth, labels)
