"""The RGB-D frame every stage consumes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gs4_slam.camera import Intrinsics, Pose

#: Class id that marks pixels without a semantic label.
IGNORE_LABEL = 255

#: Colour and depth further apart than this are not one observation.
MAX_COLOR_DELAY_S = 0.5


@dataclass(frozen=True)
class Frame:
    """One RGB-D observation, validated on construction.

    Attributes:
        timestamp_s: capture time in seconds.
        color_rgb: uint8 array [H, W, 3], RGB order.
        depth_m: float32 array [H, W], metres, 0 where there is no measurement.
        intrinsics: of the colour image, which the depth is registered to.
        T_world_cam_gt: ground-truth camera-to-world pose, when the dataset has one.
        labels: uint8 array [H, W] of class ids (IGNORE_LABEL = unlabelled), optional.
        index: position of the frame in its sequence.
        color_delay_s: how much later the colour image was captured than the
            depth image (negative: earlier); 0 for synchronised sensors. The
            tracker uses it to bring the colour to the depth image's time.
    """

    timestamp_s: float
    color_rgb: np.ndarray
    depth_m: np.ndarray
    intrinsics: Intrinsics
    T_world_cam_gt: Pose | None = None
    labels: np.ndarray | None = None
    index: int = 0
    color_delay_s: float = 0.0

    def __post_init__(self) -> None:
        if not abs(self.color_delay_s) < MAX_COLOR_DELAY_S:
            raise ValueError(f"frame {self.index}: colour and depth are {self.color_delay_s} s apart; "
                             f"at most {MAX_COLOR_DELAY_S} s can form one frame")
        h, w = self.intrinsics.height, self.intrinsics.width
        color, depth = self.color_rgb, self.depth_m
        if not isinstance(color, np.ndarray) or color.dtype != np.uint8 or color.shape != (h, w, 3):
            raise ValueError(f"frame {self.index}: color must be uint8 [{h}, {w}, 3], got {_describe(color)}")
        if not isinstance(depth, np.ndarray) or depth.dtype != np.float32 or depth.shape != (h, w):
            raise ValueError(f"frame {self.index}: depth must be float32 [{h}, {w}], got {_describe(depth)}")
        if self.labels is not None and (self.labels.shape != (h, w) or self.labels.dtype != np.uint8):
            raise ValueError(f"frame {self.index}: labels must be uint8 [{h}, {w}], got {_describe(self.labels)}")

    @property
    def height(self) -> int:
        return self.intrinsics.height

    @property
    def width(self) -> int:
        return self.intrinsics.width

    def valid_depth_mask(self) -> np.ndarray:
        return np.isfinite(self.depth_m) & (self.depth_m > 0)


def _describe(array: object) -> str:
    if isinstance(array, np.ndarray):
        return f"{array.dtype} {list(array.shape)}"
    return type(array).__name__
