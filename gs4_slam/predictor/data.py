"""Training and evaluation data for the predictor: cached synthetic sequences.

Rendering a procedural room is much slower than a training step, so each
sequence is rendered once into a compact ``.npz`` (colour uint8, depth uint16
millimetres as ScanNet stores it, labels uint8, poses) under a cache folder and reused by later runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.frame import Frame

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass(frozen=True)
class SequenceSpec:
    seed: int
    frames: int = 40
    width: int = 320
    height: int = 240
    noise: bool = True

    def cache_name(self) -> str:
        noise = "noisy" if self.noise else "clean"
        return f"v{CACHE_VERSION}_seed{self.seed}_{self.frames}f_{self.width}x{self.height}_{noise}.npz"


class CachedSequence:
    """Frames of one synthetic sequence held in memory."""

    def __init__(self, spec: SequenceSpec, arrays: dict[str, np.ndarray]) -> None:
        self.spec = spec
        self.color = arrays["color"]  # [N, H, W, 3] uint8
        self.depth_mm = arrays["depth_mm"]  # [N, H, W] uint16 millimetres
        self.labels = arrays["labels"]  # [N, H, W] uint8 train ids
        self.poses = arrays["poses"]  # [N, 4, 4] camera-to-world
        k = arrays["intrinsics"]
        self.intrinsics = Intrinsics(spec.width, spec.height, float(k[0]), float(k[1]), float(k[2]), float(k[3]))

    def __len__(self) -> int:
        return len(self.poses)

    def frame(self, i: int) -> Frame:
        return Frame(
            timestamp_s=i / 30.0,
            color_rgb=self.color[i],
            depth_m=self.depth_mm[i].astype(np.float32) / 1000.0,
            intrinsics=self.intrinsics,
            T_world_cam_gt=Pose(self.poses[i]),
            labels=self.labels[i],
            index=i,
        )


def load_or_render(spec: SequenceSpec, cache_dir: Path) -> CachedSequence:
    """The cached sequence, rendering (and caching) it first when needed."""
    path = Path(cache_dir) / spec.cache_name()
    if path.is_file():
        try:
            with np.load(path) as data:
                return CachedSequence(spec, {k: data[k] for k in data.files})
        except (OSError, ValueError, KeyError) as exc:
            log.warning("cache file %s is unreadable (%s); rendering again", path, exc)
    arrays = _render(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return CachedSequence(spec, arrays)


def _render(spec: SequenceSpec) -> dict[str, np.ndarray]:
    from gs4_slam.synthetic.generator import SyntheticConfig, SyntheticSequence

    sequence = SyntheticSequence(
        SyntheticConfig(seed=spec.seed, frames=spec.frames, width=spec.width, height=spec.height, noise=spec.noise)
    )
    frames = [sequence.frame(i) for i in range(len(sequence))]
    k = sequence.intrinsics
    return {
        "color": np.stack([f.color_rgb for f in frames]),
        "depth_mm": np.round(np.stack([f.depth_m for f in frames]) * 1000.0).clip(0, 65535).astype(np.uint16),
        "labels": np.stack([f.labels for f in frames]),
        "poses": np.asarray(sequence.poses, dtype=np.float64),
        "intrinsics": np.array([k.fx, k.fy, k.cx, k.cy]),
    }


def load_sequences(seeds: range | list[int], cache_dir: Path, frames: int, width: int, height: int,
                   noise: bool = True, progress: bool = False) -> list[CachedSequence]:
    seeds = list(seeds)
    iterator = seeds
    if progress:
        from tqdm import tqdm

        iterator = tqdm(seeds, desc="synthetic sequences", unit="seq")
    return [load_or_render(SequenceSpec(s, frames, width, height, noise), cache_dir) for s in iterator]
