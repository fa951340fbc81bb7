"""Synthetic semantic RGB-D sequences: in memory, or written in the ScanNet layout.

One seed fixes everything (room, furniture, materials, lights, camera path and
sensor noise), so a sequence can be regenerated bit for bit instead of stored.
The written folder is read back by :class:`gs4_slam.datasets.ScanNetReader`::

    color/<i>.jpg   depth/<i>.png (uint16 mm)   pose/<i>.txt (4x4 camera-to-world)
    label-filt/<i>.png (NYU40 ids)   intrinsic/intrinsic_{color,depth}.txt (4x4)
    groundtruth_tum.txt (TUM format, timestamps i / rate_hz)   scene.json
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.frame import Frame
from gs4_slam.labels import LabelSet, load_label_set
from gs4_slam.metrics.trajectory import Trajectory, write_tum
from gs4_slam.synthetic.layout import random_scene
from gs4_slam.synthetic.render import RenderedView, SceneRenderer, kinect_noise
from gs4_slam.synthetic.trajectory import PathConfig, camera_path

log = logging.getLogger(__name__)

#: Sub-folders of the ScanNet layout this module writes (and may replace).
LAYOUT_DIRS = ("color", "depth", "pose", "label-filt", "intrinsic")


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate.

    Attributes:
        seed: fixes the scene, the path and the noise.
        frames: number of frames.
        width, height: image size in pixels.
        noise: add Kinect-like depth noise and holes (and mild colour noise).
        speed_mps: camera speed along its path.
        rate_hz: frame rate (timestamps are i / rate_hz).
        jpeg_quality: of the written colour images.
        label_set: label set that in-memory frames' labels are mapped to.
    """

    seed: int = 0
    frames: int = 100
    width: int = 320
    height: int = 240
    noise: bool = False
    speed_mps: float = 0.3
    rate_hz: float = 30.0
    jpeg_quality: int = 95
    label_set: str = "scannet20"

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.width < 8 or self.height < 8:
            raise ValueError(f"image size must be at least 8x8, got {self.width}x{self.height}")
        if not (self.speed_mps > 0 and self.rate_hz > 0):
            raise ValueError("speed_mps and rate_hz must be > 0")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1..100, got {self.jpeg_quality}")


def synthetic_intrinsics(width: int, height: int) -> Intrinsics:
    """A Kinect-like field of view (fx = 525 at 640 px wide), principal point at the centre."""
    focal = 525.0 * width / 640.0
    return Intrinsics(width, height, focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)


class SyntheticSequence:
    """A generated sequence rendered on demand (nothing is stored but the poses).

    Attributes:
        scene: the procedural room.
        poses: float64 [N, 4, 4] ground-truth camera-to-world poses.
        intrinsics: of every frame.
    """

    def __init__(self, config: SyntheticConfig | None = None, path_config: PathConfig | None = None) -> None:
        self.config = config or SyntheticConfig()
        rng = np.random.default_rng([self.config.seed, 1])
        self.scene = random_scene(self.config.seed)
        self.renderer = SceneRenderer(self.scene)
        path_config = path_config or PathConfig(speed_mps=self.config.speed_mps, rate_hz=self.config.rate_hz)
        self.poses = camera_path(self.scene, self.config.frames, rng, path_config)
        self.intrinsics = synthetic_intrinsics(self.config.width, self.config.height)
        self._label_set: LabelSet | None = None

    @property
    def label_set(self) -> LabelSet:
        if self._label_set is None:
            self._label_set = load_label_set(self.config.label_set)
        return self._label_set

    def __len__(self) -> int:
        return len(self.poses)

    def timestamp_s(self, i: int) -> float:
        return i / self.config.rate_hz

    def view(self, i: int) -> RenderedView:
        """Frame ``i`` as rendered (with sensor noise when configured); NYU40 labels."""
        return self.with_noise(self.renderer.render(self.poses[i], self.intrinsics), i)

    def with_noise(self, view: RenderedView, i: int) -> RenderedView:
        """Frame ``i``'s sensor noise applied to ``view`` (unchanged when noise is off)."""
        if not self.config.noise:
            return view
        # A generator per frame keeps each frame's noise independent of which frames are rendered.
        return kinect_noise(view, np.random.default_rng([self.config.seed, 2, i]))

    def frame(self, i: int) -> Frame:
        """Frame ``i`` with labels mapped to the label set (train ids).

        Depth is kept at float precision here; the written sequence rounds it to mm.
        """
        view = self.view(i)
        return Frame(
            timestamp_s=self.timestamp_s(i),
            color_rgb=view.color_rgb,
            depth_m=view.depth_m,
            intrinsics=self.intrinsics,
            T_world_cam_gt=Pose(self.poses[i]),
            labels=self.label_set.map_source(view.nyu40),
            index=i,
        )

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self.frame(i)

    def trajectory(self) -> Trajectory:
        return Trajectory(np.arange(len(self)) / self.config.rate_hz, self.poses)


@dataclass
class GenerationReport:
    """What :func:`write_sequence` did and how long each stage took (seconds)."""

    out_dir: Path
    frames: int
    room_type: str
    nyu40_ids: list[int]
    num_triangles: int = 0
    setup_s: float = 0.0
    render_s: float = 0.0
    noise_s: float = 0.0
    write_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.setup_s + self.render_s + self.noise_s + self.write_s

    @property
    def frames_per_s(self) -> float:
        """Frames per second of the per-frame work (render, noise, write)."""
        per_frame = self.render_s + self.noise_s + self.write_s
        return self.frames / per_frame if per_frame > 0 else float("inf")


def _matrix_text(matrix: np.ndarray) -> str:
    return "\n".join(" ".join(f"{v:.9g}" for v in row) for row in matrix) + "\n"


def _imwrite(path: Path, image: np.ndarray, params: list[int] | None = None) -> None:
    if not cv2.imwrite(str(path), image, params or []):
        raise OSError(f"{path}: could not write the image")


def _prepare_output(out_dir: Path, overwrite: bool) -> None:
    existing = [out_dir / d for d in LAYOUT_DIRS if (out_dir / d).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a sequence ({existing[0].name}/); pass overwrite=True (--overwrite)"
        )
    for folder in existing:
        shutil.rmtree(folder)
    for name in LAYOUT_DIRS:
        (out_dir / name).mkdir(parents=True, exist_ok=True)


def write_sequence(
    out_dir: str | Path,
    config: SyntheticConfig | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationReport:
    """Generate a sequence and write it in the ScanNet layout under ``out_dir``.

    Args:
        out_dir: destination folder (created).
        config: what to generate.
        overwrite: replace a sequence already in ``out_dir``.
        progress: called with (frames done, total) after each frame.
    """
    config = config or SyntheticConfig()
    out_dir = Path(out_dir)
    _prepare_output(out_dir, overwrite)
    start = time.perf_counter()
    sequence = SyntheticSequence(config)
    report = GenerationReport(
        out_dir,
        config.frames,
        sequence.scene.room_type,
        sorted(sequence.scene.class_ids()),
        sequence.renderer.num_triangles,
    )
    k4 = np.eye(4)
    k4[:3, :3] = sequence.intrinsics.K
    for name in ("intrinsic_color.txt", "intrinsic_depth.txt"):
        (out_dir / "intrinsic" / name).write_text(_matrix_text(k4))
    write_tum(out_dir / "groundtruth_tum.txt", sequence.trajectory())
    description = {
        "generator": "gs4_slam.synthetic",
        "config": dataclasses.asdict(config),
        "intrinsics": dataclasses.asdict(sequence.intrinsics),
        "scene": dataclasses.asdict(sequence.scene),
    }
    (out_dir / "scene.json").write_text(json.dumps(description, indent=1))
    report.setup_s = time.perf_counter() - start

    jpeg = [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]
    for i in range(len(sequence)):
        t0 = time.perf_counter()
        view = sequence.renderer.render(sequence.poses[i], sequence.intrinsics)
        t1 = time.perf_counter()
        view = sequence.with_noise(view, i)
        t2 = time.perf_counter()
        depth_mm = np.clip(np.round(view.depth_m * 1000.0), 0, 65535).astype(np.uint16)
        _imwrite(out_dir / "color" / f"{i}.jpg", cv2.cvtColor(view.color_rgb, cv2.COLOR_RGB2BGR), jpeg)
        _imwrite(out_dir / "depth" / f"{i}.png", depth_mm)
        _imwrite(out_dir / "label-filt" / f"{i}.png", view.nyu40)
        (out_dir / "pose" / f"{i}.txt").write_text(_matrix_text(sequence.poses[i]))
        t3 = time.perf_counter()
        report.render_s += t1 - t0
        report.noise_s += t2 - t1
        report.write_s += t3 - t2
        if progress is not None:
            progress(i + 1, len(sequence))
    log.info(
        "wrote %d frames of a %s to %s (%.1f frames/s)", config.frames, report.room_type, out_dir, report.frames_per_s
    )
    return report
