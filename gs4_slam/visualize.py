"""Images for people: depth colour maps, semantic colouring, input|render panels."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gs4_slam.labels import LabelSet


def depth_to_rgb(depth_m: np.ndarray, max_depth_m: float | None = None) -> np.ndarray:
    """float [H, W] metres -> uint8 [H, W, 3] (turbo colour map; no depth = black)."""
    valid = np.isfinite(depth_m) & (depth_m > 0)
    top = max_depth_m or (float(np.percentile(depth_m[valid], 99)) if valid.any() else 1.0)
    scaled = np.clip(np.nan_to_num(depth_m) / max(top, 1e-6), 0, 1)
    bgr = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    rgb = bgr[..., ::-1].copy()
    rgb[~valid] = 0
    return rgb


def color_to_uint8(color: np.ndarray) -> np.ndarray:
    """float [H, W, 3] in [0, 1] (or uint8) -> uint8."""
    if color.dtype == np.uint8:
        return color
    return (np.clip(color, 0, 1) * 255 + 0.5).astype(np.uint8)


def comparison_panel(rows: list[tuple[str, np.ndarray, np.ndarray]]) -> np.ndarray:
    """One row per (title, input image, rendered image), inputs left, renders right."""
    out_rows = []
    for title, left, right in rows:
        row = np.concatenate([left, right], axis=1)
        row = np.ascontiguousarray(row)
        cv2.putText(row, f"{title}: input | render", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
        out_rows.append(row)
    return np.concatenate(out_rows, axis=0)


def frame_panel(color_in: np.ndarray, depth_in: np.ndarray, labels_in: np.ndarray | None,
                color_out: np.ndarray, depth_out: np.ndarray, labels_out: np.ndarray | None,
                label_set: LabelSet) -> np.ndarray:
    """Colour, depth and (when present) semantics of an input frame next to its rendering."""
    top = float(np.percentile(depth_in[depth_in > 0], 99)) if (depth_in > 0).any() else None
    rows = [
        ("color", color_to_uint8(color_in), color_to_uint8(color_out)),
        ("depth", depth_to_rgb(depth_in, top), depth_to_rgb(depth_out, top)),
    ]
    if labels_in is not None and labels_out is not None:
        rows.append(("semantic", label_set.colorize(labels_in), label_set.colorize(labels_out)))
    return comparison_panel(rows)


def write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"could not write {path}")
