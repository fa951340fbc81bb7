"""What every dataset reader shares: options, image loading with clear errors, resizing.

Readers are lazy: construction reads only the small index files (lists, poses,
intrinsics); images are read when a frame is asked for, so a sequence of any
length costs the memory of one frame.
"""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.datasets.args import TIMESTAMP_SOURCES
from gs4_slam.frame import Frame

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or inconsistent; the message names it."""


@dataclass(frozen=True)
class ReaderOptions:
    """Options every reader accepts.

    Attributes:
        stride: keep every ``stride``-th frame.
        start: index (in the full sequence) of the first frame to keep.
        limit: keep at most this many frames (after start and stride); None = all.
        resize: (width, height) of the frames handed out; None = native size.
            Colour is resampled by area (down) or linearly (up), depth and labels
            by nearest neighbour so that no invalid mix of values appears.
        fx, fy, cx, cy: override the dataset's intrinsics (native resolution, pixels).
        distortion: OpenCV (k1, k2, p1, p2, k3) to use instead of the dataset's;
            when fx/fy/cx/cy are overridden and this is None, no distortion is assumed.
        depth_scale: raw depth units per metre, replacing the dataset's default.
        depth_range_m: a frame whose mean valid depth falls outside this range is
            rejected as a probably wrong depth scale.
        max_time_diff_s: the largest timestamp difference accepted when associating.
        label_set: label set (name or YAML path) that source label ids map to.
        rate_hz: frame rate assumed for datasets without timestamps.
        preset: TUM intrinsics preset (``fr1``, ``fr2``, ``fr3``, ``default``);
            None = guess from the folder name.
        timestamps: whose time a frame carries (and picks its ground-truth pose
            by) where colour and depth were captured apart (TUM): ``depth``
            (default) or ``color``. The tracker's point-to-plane term outweighs
            its photometric one, so its pose is the camera's when the depth image
            was taken: on TUM fr1/xyz (colour and depth 6.3 ms apart on average)
            the same tracked poses score 1.04 cm ATE at the depth times and
            1.18 cm at the colour times.
    """

    stride: int = 1
    start: int = 0
    limit: int | None = None
    resize: tuple[int, int] | None = None
    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    distortion: tuple[float, ...] | None = None
    depth_scale: float | None = None
    depth_range_m: tuple[float, float] = (0.05, 50.0)
    max_time_diff_s: float = 0.02
    label_set: str = "scannet20"
    rate_hz: float = 30.0
    preset: str | None = None
    timestamps: str = "depth"

    def __post_init__(self) -> None:
        if self.timestamps not in TIMESTAMP_SOURCES:
            raise ValueError(f"timestamps must be one of {', '.join(TIMESTAMP_SOURCES)}, got {self.timestamps!r}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.start < 0:
            raise ValueError(f"start must be >= 0, got {self.start}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {self.limit}")
        if self.resize is not None:
            if len(self.resize) != 2 or min(self.resize) <= 0:
                raise ValueError(f"resize must be (width, height) > 0, got {self.resize}")
            object.__setattr__(self, "resize", (int(self.resize[0]), int(self.resize[1])))
        if self.depth_scale is not None and not self.depth_scale > 0:
            raise ValueError(f"depth_scale must be > 0 (raw units per metre), got {self.depth_scale}")
        for name in ("fx", "fy"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not 0 <= self.depth_range_m[0] < self.depth_range_m[1]:
            raise ValueError(f"depth_range_m must be (low, high) with 0 <= low < high, got {self.depth_range_m}")
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")

    @property
    def overrides_intrinsics(self) -> bool:
        return any(v is not None for v in (self.fx, self.fy, self.cx, self.cy))

    def apply_intrinsics(self, native: Intrinsics) -> Intrinsics:
        """``native`` with the overridden fields replaced (still native resolution)."""
        distortion = native.distortion
        if self.distortion is not None:
            distortion = tuple(self.distortion)
        elif self.overrides_intrinsics:
            # Another sensor's pinhole values with the preset's lens model would be wrong.
            distortion = ()
        return Intrinsics(
            width=native.width,
            height=native.height,
            fx=native.fx if self.fx is None else float(self.fx),
            fy=native.fy if self.fy is None else float(self.fy),
            cx=native.cx if self.cx is None else float(self.cx),
            cy=native.cy if self.cy is None else float(self.cy),
            distortion=distortion,
        )

    def selected(self, num_frames: int) -> range:
        """Indices into the full sequence that this selection keeps."""
        chosen = range(self.start, num_frames, self.stride)
        return chosen if self.limit is None else chosen[: self.limit]

    def with_updates(self, **changes) -> ReaderOptions:
        return replace(self, **changes)


# ----------------------------------------------------------------------------- files


def require_file(path: Path) -> Path:
    """``path`` if it is a non-empty file, else a DatasetError saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    if not path.is_file():
        raise DatasetError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise DatasetError(f"{path}: file is not readable (permission denied)")
    return path


def require_dir(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} folder not found")
    return path


def _imread(path: Path, flags: int) -> np.ndarray:
    require_file(path)
    try:
        image = cv2.imread(str(path), flags)
    except cv2.error as exc:  # pragma: no cover - OpenCV reports most failures as None
        raise DatasetError(f"{path}: cannot decode image: {exc}") from exc
    if image is None:
        raise DatasetError(f"{path}: cannot decode image (corrupt or not an image format)")
    if image.size == 0 or image.shape[0] == 0 or image.shape[1] == 0:
        raise DatasetError(f"{path}: image has zero size {list(image.shape)}")
    return image


def read_color(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] RGB image from any format OpenCV reads (grey becomes RGB)."""
    image = _imread(path, cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file (decodes it; used once per sequence)."""
    image = _imread(path, cv2.IMREAD_UNCHANGED)
    return int(image.shape[1]), int(image.shape[0])


def read_depth(path: Path, depth_scale: float, depth_range_m: tuple[float, float] = (0.05, 50.0)) -> np.ndarray:
    """float32 [H, W] metres from a single-channel depth image, 0 = no measurement.

    Args:
        path: 16-bit (or 8-bit / float) single-channel image.
        depth_scale: raw units per metre (TUM 5000, ScanNet 1000, Replica 6553.5).
        depth_range_m: plausible range of the mean valid depth; outside it the
            scale is almost certainly wrong and a DatasetError says so.
    """
    raw = _imread(path, cv2.IMREAD_UNCHANGED)
    if raw.ndim != 2:
        raise DatasetError(f"{path}: depth image must have one channel, got shape {list(raw.shape)}")
    if raw.dtype not in (np.uint16, np.uint8, np.float32, np.float64, np.int32):
        raise DatasetError(f"{path}: unsupported depth pixel type {raw.dtype}")
    depth_m = raw.astype(np.float32) * np.float32(1.0 / depth_scale)
    depth_m[~np.isfinite(depth_m) | (depth_m < 0)] = 0.0
    valid = depth_m > 0
    if valid.any():
        mean_m = float(depth_m[valid].mean())
        low, high = depth_range_m
        if not low <= mean_m <= high:
            raise DatasetError(
                f"{path}: mean depth {mean_m:.4g} m with depth scale {depth_scale:g} is implausible "
                f"(expected {low:g}..{high:g} m); is the depth scale right? (--depth-scale)"
            )
    return depth_m


def read_label_image(path: Path) -> np.ndarray:
    """Integer [H, W] label ids (8- or 16-bit single-channel PNG)."""
    raw = _imread(path, cv2.IMREAD_UNCHANGED)
    if raw.ndim != 2 or not np.issubdtype(raw.dtype, np.integer):
        raise DatasetError(f"{path}: label image must be one integer channel, got {raw.dtype} {list(raw.shape)}")
    return raw


def check_size(path: Path, image: np.ndarray, width: int, height: int) -> None:
    if image.shape[:2] != (height, width):
        raise DatasetError(
            f"{path}: image is {image.shape[1]}x{image.shape[0]}, expected {width}x{height} "
            "(as the intrinsics / the rest of the sequence)"
        )


def read_numbers(path: Path) -> np.ndarray:
    """All whitespace-separated numbers of a text file, float64 (inf/nan allowed)."""
    require_file(path)
    try:
        return np.array(path.read_text().split(), dtype=np.float64)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a text file of numbers: {exc}") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc


def read_matrix(path: Path, rows: int, cols: int) -> np.ndarray:
    """A rows x cols float64 matrix from a text file (non-finite entries allowed)."""
    values = read_numbers(path)
    if values.size != rows * cols:
        raise DatasetError(f"{path}: expected {rows}x{cols} = {rows * cols} numbers, found {values.size}")
    return values.reshape(rows, cols)


# ----------------------------------------------------------------------------- resizing


def resize_color(color_rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if color_rgb.shape[:2] == (height, width):
        return color_rgb
    shrinking = width < color_rgb.shape[1] or height < color_rgb.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(color_rgb, (width, height), interpolation=interpolation)


def resize_nearest(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize: depth and labels must not blend across edges."""
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)


# ----------------------------------------------------------------------------- readers


@dataclass(frozen=True)
class RawImages:
    """One frame's images at the reader's native resolution."""

    color_rgb: np.ndarray
    depth_m: np.ndarray
    labels: np.ndarray | None = None


class SequenceReader(abc.ABC):
    """Lazy, indexable sequence of :class:`~gs4_slam.frame.Frame`.

    Subclasses parse their index files in :meth:`_scan` and read one frame's
    images in :meth:`_load_images`; this class applies the options (selection,
    intrinsics overrides, resize) identically for every dataset.
    """

    #: Short dataset kind, e.g. "tum".
    kind: str = ""

    def __init__(self, root: str | Path, options: ReaderOptions | None = None) -> None:
        self.root = Path(root)
        self.options = options or ReaderOptions()
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder not found")
        native, num_frames = self._scan()
        self._native_intrinsics = self.options.apply_intrinsics(native)
        if self.options.resize is not None:
            self._intrinsics = self._native_intrinsics.scaled(*self.options.resize)
        else:
            self._intrinsics = self._native_intrinsics
        self._selection = self.options.selected(num_frames)
        self._num_total = num_frames

    # -- subclass interface

    @abc.abstractmethod
    def _scan(self) -> tuple[Intrinsics, int]:
        """Parse index files; return (native intrinsics, number of frames)."""

    @abc.abstractmethod
    def _timestamp_s(self, i: int) -> float:
        """Timestamp of frame ``i`` of the full sequence."""

    @abc.abstractmethod
    def _gt_pose(self, i: int) -> Pose | None:
        """Ground-truth camera-to-world pose of frame ``i``, if known."""

    @abc.abstractmethod
    def _load_images(self, i: int) -> RawImages:
        """Read frame ``i``'s images at native resolution (checked sizes)."""

    # -- public interface

    @property
    def name(self) -> str:
        """Human-readable identifier: kind and folder name."""
        return f"{self.kind}:{self.root.name}"

    @property
    def intrinsics(self) -> Intrinsics:
        """Intrinsics of the frames handed out (after overrides and resize)."""
        return self._intrinsics

    @property
    def native_intrinsics(self) -> Intrinsics:
        return self._native_intrinsics

    @property
    def num_total_frames(self) -> int:
        """Frames in the whole sequence, before start/stride/limit."""
        return self._num_total

    @property
    def indices(self) -> range:
        """Indices in the full sequence of the selected frames."""
        return self._selection

    def __len__(self) -> int:
        return len(self._selection)

    def __iter__(self) -> Iterator[Frame]:
        for k in range(len(self)):
            yield self[k]

    def __getitem__(self, k: int) -> Frame:
        if not isinstance(k, (int, np.integer)):
            raise TypeError(f"frame index must be an integer, got {type(k).__name__}")
        i = self._selection[k]  # IndexError for out-of-range, negatives count from the end
        images = self._load_images(i)
        color, depth, labels = images.color_rgb, images.depth_m, images.labels
        if self.options.resize is not None:
            width, height = self.options.resize
            color = resize_color(color, width, height)
            depth = resize_nearest(depth, width, height)
            labels = None if labels is None else resize_nearest(labels, width, height)
        return Frame(
            timestamp_s=self._timestamp_s(i),
            color_rgb=np.ascontiguousarray(color),
            depth_m=np.ascontiguousarray(depth, dtype=np.float32),
            intrinsics=self._intrinsics,
            T_world_cam_gt=self._gt_pose(i),
            labels=labels,
            index=i,
            color_delay_s=self._color_delay_s(i),
        )

    def _color_delay_s(self, i: int) -> float:
        """Colour capture time minus depth capture time of frame ``i`` (0: one time for both)."""
        return 0.0

    def timestamps_s(self) -> np.ndarray:
        """float64 [N] timestamps of the selected frames (no image is read)."""
        return np.array([self._timestamp_s(i) for i in self._selection], dtype=np.float64)

    def gt_poses(self) -> list[Pose | None]:
        """Ground-truth poses of the selected frames (no image is read)."""
        return [self._gt_pose(i) for i in self._selection]

    def __repr__(self) -> str:
        k = self._intrinsics
        return f"<{type(self).__name__} {self.root} frames={len(self)} {k.width}x{k.height}>"


def frame_number(path: Path, prefix: str = "") -> int | None:
    """Integer frame number of ``<prefix><digits>.<ext>``, or None for other names."""
    stem = path.stem
    if not stem.startswith(prefix):
        return None
    digits = stem[len(prefix) :]
    return int(digits) if digits.isdigit() else None


def index_files(folder: Path, suffixes: tuple[str, ...], prefix: str = "") -> dict[int, Path]:
    """{frame number: path} of the files in ``folder`` named ``<prefix><n><suffix>``."""
    found: dict[int, Path] = {}
    for path in folder.iterdir():
        if path.suffix.lower() not in suffixes:
            continue
        number = frame_number(path, prefix)
        if number is None:
            continue
        if number in found:
            raise DatasetError(f"{folder}: two files for frame {number}: {found[number].name}, {path.name}")
        found[number] = path
    return found


def check_same_frames(reference: dict[int, Path], ref_what: str, other: dict[int, Path], other_what: str) -> None:
    """DatasetError naming the first frame one list has and the other lacks."""
    if reference.keys() == other.keys():
        return
    missing = sorted(reference.keys() - other.keys())
    extra = sorted(other.keys() - reference.keys())
    detail = []
    if missing:
        detail.append(f"no {other_what} for {ref_what} {reference[missing[0]]}")
    if extra:
        detail.append(f"no {ref_what} for {other_what} {other[extra[0]]}")
    raise DatasetError(
        f"{ref_what} and {other_what} lists differ in length ({len(reference)} vs {len(other)}): " + "; ".join(detail)
    )


def log_skipped(root: Path, count: int, reason: str) -> None:
    if count:
        log.warning("%s: skipped %d frame(s): %s", root, count, reason)
