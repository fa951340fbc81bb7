"""A small TUM RGB-D folder made here (colour, depth and ground-truth lists), for reader and player tests."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def make_tum(
    root: Path,
    n: int = 6,
    size: tuple[int, int] = (640, 480),
    depth_m: float = 1.5,
    color_ext: str = ".png",
) -> Path:
    """A TUM-layout sequence: depth 4 ms after colour, one extra unmatched depth, GT at 100 Hz."""
    w, h = size
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines, depth_lines = ["# color images"], ["# depth maps"]
    for i in range(n):
        t = 10.0 + i / 30.0
        color = np.full((h, w, 3), (10 * i, 100, 200), np.uint8)
        cv2.imwrite(str(root / "rgb" / f"{t:.6f}{color_ext}"), color)
        depth = np.full((h, w), int(round(depth_m * 5000 + i)), np.uint16)
        depth[0, 0] = 0
        cv2.imwrite(str(root / "depth" / f"{t + 0.004:.6f}.png"), depth)
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}{color_ext}")
        depth_lines.append(f"{t + 0.004:.6f} depth/{t + 0.004:.6f}.png")
    depth_lines.append("99.000000 depth/99.000000.png")  # no colour near it: never associated
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    gt = ["# timestamp tx ty tz qx qy qz qw"]
    for k in range(int(n / 30.0 * 100) + 5):
        t = 10.0 + k / 100.0
        gt.append(f"{t:.4f} {k * 0.01:.4f} 0 0 0 0 0 1")
    (root / "groundtruth.txt").write_text("\n".join(gt) + "\n")
    return root
