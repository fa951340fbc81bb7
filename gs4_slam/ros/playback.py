"""What the dataset player plays and when: its settings, the frame order and the wall-clock schedule.

Nothing here imports rclpy, so the timing logic is tested without ROS. The player
node (``dataset_player_node``) declares :class:`PlayerConfig` as its parameters and
asks :class:`~gs4_slam.playback_clock.PlaybackClock` whether the next frame is due on
every timer tick.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.frame import Frame

DatasetKind = Literal["auto", "tum", "scannet", "replica", "synthetic"]


@dataclass(frozen=True)
class ReaderParams:
    """Dataset reading options (gs4_slam.datasets.ReaderOptions), in ROS parameter form."""

    stride: int = 1  # publish every N-th frame of the sequence
    start: int = 0  # index of the first frame in the full sequence
    limit: int = 0  # at most this many frames (0: all)
    width: int = 0  # resize frames to width x height (0: native size)
    height: int = 0
    depth_scale: float = 0.0  # raw depth units per metre (0: the dataset's own, TUM 5000, ScanNet 1000)
    preset: str = ""  # TUM intrinsics preset fr1/fr2/fr3/default ("": guessed from the folder name)
    intrinsics: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)  # fx, fy, cx, cy replacing the dataset's (0: keep)

    def __post_init__(self) -> None:
        if (self.width == 0) != (self.height == 0):
            raise ValueError("reader.width and reader.height must both be 0 or both be set")
        if len(self.intrinsics) != 4:
            raise ValueError(f"reader.intrinsics needs fx, fy, cx, cy (4 values, 0 = keep), got {self.intrinsics}")


@dataclass(frozen=True)
class GeneratedRoom:
    """The synthetic room rendered in memory when ``dataset`` is synthetic and ``path`` is empty."""

    seed: int = 100  # fixes room, camera path and sensor noise (100: not a training room)
    frames: int = 60
    width: int = 320
    height: int = 240
    noise: bool = True  # Kinect-like depth noise and holes


@dataclass(frozen=True)
class PlayerConfig:
    """Parameters of the ``dataset_player`` node."""

    dataset: DatasetKind = "auto"  # layout of the folder at path (auto: detect from its files)
    path: str = ""  # dataset folder ("" with dataset synthetic: generate a room in memory)
    bag: str = ""  # rosbag2 folder to play instead of a dataset folder (colour, aligned depth, camera_info)
    reader: ReaderParams = field(default_factory=ReaderParams)
    synthetic: GeneratedRoom = field(default_factory=GeneratedRoom)
    rate: float = 1.0  # real-time factor: 2.0 plays twice as fast as recorded
    start_offset_s: float = 0.0  # skip the first seconds of the sequence
    loop: bool = False  # start again at the end (stamps keep increasing)
    paused: bool = False  # start paused (~/resume starts playing)
    stamps: Literal["now", "dataset"] = "now"  # header stamps: the time of publishing, or the dataset's own
    frame_id: str = "camera_color_optical_frame"  # frame_id of images and camera_info
    map_frame: str = "map"  # frame_id of the ground-truth pose
    publish_labels: bool = True  # class ids on camera/labels/image_raw when the dataset has labels
    publish_ground_truth: bool = True  # ground_truth/pose when the dataset has poses
    ground_truth_relative: bool = True  # ground truth relative to the first frame (starts at identity, like SLAM)
    wait_for_subscribers: int = 0  # hold the first frame until colour, depth and camera_info have this many
    exit_at_end: bool = False  # exit once the sequence has been played (never with loop)

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0 (a real-time factor), got {self.rate}")
        if self.start_offset_s < 0:
            raise ValueError(f"start_offset_s must be >= 0, got {self.start_offset_s}")
        if self.wait_for_subscribers < 0:
            raise ValueError(f"wait_for_subscribers must be >= 0, got {self.wait_for_subscribers}")
        if not self.frame_id or not self.map_frame:
            raise ValueError("frame_id and map_frame must not be empty")
        if self.path and self.bag:
            raise ValueError(f"set either path ({self.path!r}) or bag ({self.bag!r}), not both")


class FrameSource(Protocol):
    """What the player needs of a sequence: dataset readers, generated rooms and bags all qualify."""

    name: str
    intrinsics: Intrinsics

    def __len__(self) -> int: ...

    def __getitem__(self, k: int) -> Frame: ...

    def timestamps_s(self) -> np.ndarray: ...


class GeneratedSequence:
    """A synthetic room rendered frame by frame on demand (no folder needed)."""

    def __init__(self, room: GeneratedRoom) -> None:
        from gs4_slam.synthetic.generator import SyntheticConfig, SyntheticSequence

        self._sequence = SyntheticSequence(SyntheticConfig(seed=room.seed, frames=room.frames, width=room.width,
                                                           height=room.height, noise=room.noise))
        self.name = f"synthetic:seed{room.seed}"
        self.intrinsics = self._sequence.intrinsics

    def __len__(self) -> int:
        return len(self._sequence)

    def __getitem__(self, k: int) -> Frame:
        return self._sequence.frame(k)

    def timestamps_s(self) -> np.ndarray:
        return np.array([self._sequence.timestamp_s(i) for i in range(len(self))], dtype=np.float64)

    def gt_poses(self) -> list[Pose]:
        return [Pose(matrix) for matrix in self._sequence.poses]


def reader_options(params: ReaderParams):
    """ReaderOptions equivalent to the player's ``reader.*`` parameters."""
    from gs4_slam.datasets.base import ReaderOptions

    fx, fy, cx, cy = (value or None for value in params.intrinsics)
    return ReaderOptions(stride=params.stride, start=params.start, limit=params.limit or None,
                         resize=(params.width, params.height) if params.width else None,
                         depth_scale=params.depth_scale or None, preset=params.preset or None,
                         fx=fx, fy=fy, cx=cx, cy=cy)


def open_source(config: PlayerConfig) -> FrameSource:
    """The sequence ``config`` names: a bag, a dataset folder, or a room generated in memory."""
    if config.bag:
        from gs4_slam.ros.bag_io import BagFrameReader

        return BagFrameReader(Path(config.bag), reader_options(config.reader))
    if not config.path:
        if config.dataset != "synthetic":
            raise ValueError("set path (a dataset folder) or bag (a rosbag2 folder); only dataset:=synthetic "
                             "plays without either (a room generated in memory)")
        return GeneratedSequence(config.synthetic)
    from gs4_slam.datasets import open_dataset

    return open_dataset(config.dataset, Path(config.path), reader_options(config.reader))


@dataclass(frozen=True)
class Scheduled:
    """One frame to publish: its index in the source, its time on the unrolled timeline, its pass."""

    index: int
    t_s: float
    pass_number: int
    last_of_pass: bool


def playback_order(timestamps_s: np.ndarray, start_offset_s: float = 0.0, loop: bool = False) -> Iterator[Scheduled]:
    """Frames from ``start_offset_s`` after the first one to the end, repeated forever with ``loop``.

    Each pass is shifted by the played span plus one frame period, so that times
    (and the stamps derived from them) keep increasing across passes.
    """
    t = np.asarray(timestamps_s, dtype=np.float64)
    if len(t) == 0:
        raise ValueError("the sequence has no frames")
    first = int(np.searchsorted(t, t[0] + start_offset_s - 1e-9))
    if first >= len(t):
        raise ValueError(f"start_offset_s={start_offset_s} is beyond the end of the sequence "
                         f"({t[-1] - t[0]:.3f} s long)")
    period = float(np.median(np.diff(t))) if len(t) > 1 else 1.0 / 30.0
    span = t[-1] - t[first] + period
    pass_number = 0
    while True:
        for k in range(first, len(t)):
            yield Scheduled(k, float(t[k] + pass_number * span), pass_number, k == len(t) - 1)
        if not loop:
            return
        pass_number += 1
