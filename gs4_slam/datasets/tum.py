"""TUM RGB-D layout: ``rgb.txt``, ``depth.txt``, optional ``groundtruth.txt``.

Colour and depth are associated one-to-one by nearest timestamp (at most
``max_time_diff_s`` apart, 0.02 s by default, as the benchmark's associate.py).
A frame carries the depth image's time (``ReaderOptions.timestamps``: the
tracked pose follows the depth) and takes the ground-truth pose nearest to it
within the same bound.
Depth is 16-bit PNG in units of 1/5000 m. The same layout serves sequences
recorded with other sensors through the intrinsics and depth-scale overrides.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.datasets.base import (
    DatasetError,
    RawImages,
    ReaderOptions,
    SequenceReader,
    check_size,
    read_color,
    read_depth,
    read_image_size,
    require_file,
)
from gs4_slam.metrics.trajectory import TrajectoryError, associate, nearest, read_tum

log = logging.getLogger(__name__)

TUM_DEPTH_SCALE = 5000.0

#: The benchmark's published calibrations (640x480; distortion k1, k2, p1, p2, k3).
TUM_PRESETS: dict[str, Intrinsics] = {
    "fr1": Intrinsics(640, 480, 517.3, 516.5, 318.6, 255.3, (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),
    "fr2": Intrinsics(640, 480, 520.9, 521.0, 325.1, 249.7, (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)),
    "fr3": Intrinsics(640, 480, 535.4, 539.2, 320.1, 247.6),
    # The ROS default for a Kinect, used when the sequence's camera is unknown.
    "default": Intrinsics(640, 480, 525.0, 525.0, 319.5, 239.5),
}

_PRESET_PATTERN = re.compile(r"(?:freiburg|fr)([123])(?![0-9])", re.IGNORECASE)


def guess_preset(folder: Path) -> str:
    """``fr1``/``fr2``/``fr3`` from a folder name such as ``rgbd_dataset_freiburg1_xyz``."""
    match = _PRESET_PATTERN.search(folder.resolve().name)
    return f"fr{match.group(1)}" if match else "default"


def read_file_list(path: Path) -> tuple[np.ndarray, list[str]]:
    """(timestamps [N], relative file names) of a TUM ``timestamp filename`` list."""
    require_file(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read as text: {exc}") from exc
    stamps, names = [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 2:
            raise DatasetError(f"{path}:{line_no}: expected 'timestamp filename', got {line.strip()!r}")
        try:
            stamps.append(float(fields[0]))
        except ValueError:
            raise DatasetError(f"{path}:{line_no}: timestamp {fields[0]!r} is not a number") from None
        names.append(fields[1])
    if not names:
        raise DatasetError(f"{path}: lists no images")
    return np.asarray(stamps, dtype=np.float64), names


class TumReader(SequenceReader):
    """Frames of a TUM RGB-D sequence folder."""

    kind = "tum"

    def _scan(self) -> tuple[Intrinsics, int]:
        opts: ReaderOptions = self.options
        rgb_list, depth_list = self.root / "rgb.txt", self.root / "depth.txt"
        rgb_t, rgb_names = read_file_list(rgb_list)
        depth_t, depth_names = read_file_list(depth_list)
        i_rgb, i_depth = associate(rgb_t, depth_t, opts.max_time_diff_s)
        if i_rgb.size == 0:
            raise DatasetError(f"{rgb_list} and {depth_list}: no colour/depth pair within {opts.max_time_diff_s} s")
        if i_rgb.size < 0.5 * min(rgb_t.size, depth_t.size):
            log.warning("%s: only %d of %d colour images have a depth image", self.root, i_rgb.size, rgb_t.size)
        self._timestamps = depth_t[i_depth] if opts.timestamps == "depth" else rgb_t[i_rgb]
        self._color_delays_s = rgb_t[i_rgb] - depth_t[i_depth]
        self._color_paths = [self.root / rgb_names[i] for i in i_rgb]
        self._depth_paths = [self.root / depth_names[i] for i in i_depth]
        self._gt_matrices = self._associate_ground_truth(opts.max_time_diff_s)
        self.depth_scale = opts.depth_scale or TUM_DEPTH_SCALE
        self.preset = opts.preset or guess_preset(self.root)
        if self.preset not in TUM_PRESETS:
            raise DatasetError(f"unknown TUM intrinsics preset {self.preset!r}; one of {sorted(TUM_PRESETS)}")
        width, height = read_image_size(self._color_paths[0])
        native = TUM_PRESETS[self.preset]
        if (width, height) != (native.width, native.height):
            if not opts.overrides_intrinsics:
                raise DatasetError(
                    f"{self._color_paths[0]}: image is {width}x{height} but the TUM {self.preset} intrinsics are "
                    f"for {native.width}x{native.height}; give this sensor's --fx --fy --cx --cy"
                )
            native = Intrinsics(width, height, native.fx, native.fy, native.cx, native.cy)
        return native, len(self._color_paths)

    def _associate_ground_truth(self, max_dt_s: float) -> np.ndarray | None:
        gt_path = self.root / "groundtruth.txt"
        self.frames_without_gt = 0
        if not gt_path.exists():
            return None
        try:
            trajectory = read_tum(gt_path)
        except TrajectoryError as exc:
            raise DatasetError(str(exc)) from exc
        match = nearest(self._timestamps, trajectory.timestamps_s, max_dt_s)
        self.frames_without_gt = int((match < 0).sum())
        if self.frames_without_gt:
            log.info(
                "%s: %d frame(s) have no ground-truth pose within %g s", self.root, self.frames_without_gt, max_dt_s
            )
        matrices = np.full((match.size, 4, 4), np.nan)
        matrices[match >= 0] = trajectory.poses[match[match >= 0]]
        return matrices

    def _timestamp_s(self, i: int) -> float:
        return float(self._timestamps[i])

    def _color_delay_s(self, i: int) -> float:
        return float(self._color_delays_s[i])

    def _gt_pose(self, i: int) -> Pose | None:
        if self._gt_matrices is None or not np.isfinite(self._gt_matrices[i, 0, 0]):
            return None
        return Pose(self._gt_matrices[i])

    def _load_images(self, i: int) -> RawImages:
        k = self.native_intrinsics
        color = read_color(self._color_paths[i])
        check_size(self._color_paths[i], color, k.width, k.height)
        depth = read_depth(self._depth_paths[i], self.depth_scale, self.options.depth_range_m)
        check_size(self._depth_paths[i], depth, k.width, k.height)
        return RawImages(color, depth)
