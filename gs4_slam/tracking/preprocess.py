"""Input conditioning for the tracker: undistortion and image pyramids.

fr1-style cameras have enough lens distortion (k1 = 0.26) to bend straight edges
by several pixels at the image border, which is centimetres of drift for a dense
aligner, so frames are undistorted once on entry with OpenCV maps computed once
per camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gs4_slam.camera import Intrinsics


class Undistorter:
    """Removes lens distortion from colour and depth, keeping the camera matrix.

    Maps are cached per :class:`Intrinsics` (the dataclass is frozen and hashable),
    so a stream from one camera computes them once.
    """

    def __init__(self) -> None:
        self._maps: dict[Intrinsics, tuple[np.ndarray, np.ndarray]] = {}

    def _maps_for(self, intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        maps = self._maps.get(intrinsics)
        if maps is None:
            camera_matrix = intrinsics.K
            # Fixed-point maps: remap runs about twice as fast as with float maps.
            maps = cv2.initUndistortRectifyMap(
                camera_matrix,
                np.asarray(intrinsics.distortion, dtype=np.float64),
                None,
                camera_matrix,
                (intrinsics.width, intrinsics.height),
                cv2.CV_16SC2,
            )
            self._maps[intrinsics] = maps
        return maps

    def gray(self, gray: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        """Undistort a single-channel image [H, W] (bilinear)."""
        if not intrinsics.has_distortion:
            return gray
        map1, map2 = self._maps_for(intrinsics)
        return cv2.remap(gray, map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def color(self, color_rgb: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        """Undistort a colour image [H, W, 3] (bilinear)."""
        return self.gray(color_rgb, intrinsics)

    def depth(self, depth_m: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        """Undistort a depth map [H, W]; nearest neighbour, so no depth is invented
        across object boundaries, and 0 (invalid) outside the source image."""
        if not intrinsics.has_distortion:
            return depth_m
        map1, map2 = self._maps_for(intrinsics)
        return cv2.remap(depth_m, map1, map2, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def to_gray(color_rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> uint8 luminance [H, W]."""
    return cv2.cvtColor(color_rgb, cv2.COLOR_RGB2GRAY)


def backproject(depth_m: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Depth [H, W] -> vertex map [H, W, 3] float32 in the camera frame."""
    h, w = depth_m.shape
    u = (np.arange(w, dtype=np.float32) - intrinsics.cx) / intrinsics.fx
    v = (np.arange(h, dtype=np.float32) - intrinsics.cy) / intrinsics.fy
    vertices = np.empty((h, w, 3), dtype=np.float32)
    vertices[..., 0] = depth_m * u[None, :]
    vertices[..., 1] = depth_m * v[:, None]
    vertices[..., 2] = depth_m
    return vertices


def _in_color_camera(depth_m: np.ndarray, intrinsics: Intrinsics, T_depth_color: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where each depth pixel's 3D point appears in the colour camera: u, v (px), its depth
    there (m) and whether it has one (measured, in front of the camera); [H, W] each."""
    points = backproject(depth_m.astype(np.float32), intrinsics)
    T_color_depth = np.linalg.inv(T_depth_color).astype(np.float32)
    points = points @ T_color_depth[:3, :3].T + T_color_depth[:3, 3]
    z = points[..., 2]
    valid = (depth_m > 0) & (z > 1e-6)
    z_safe = np.where(valid, z, 1.0)
    return (points[..., 0] / z_safe * intrinsics.fx + intrinsics.cx,
            points[..., 1] / z_safe * intrinsics.fy + intrinsics.cy, z, valid)


def gray_at_depth_time(gray: np.ndarray, depth_m: np.ndarray, intrinsics: Intrinsics,
                       T_depth_color: np.ndarray) -> np.ndarray:
    """Resample ``gray`` [H, W] (taken from pose ``T_depth_color`` relative to the depth
    camera) onto the depth image's pixels: each pixel with depth takes the intensity
    where its 3D point appears in the colour image; pixels without depth keep theirs.

    Unsynchronised sensors (TUM's Kinect: colour and depth about 6 ms apart)
    otherwise pair every depth point with an intensity the camera saw from
    elsewhere, which biases the photometric term whenever the camera moves.
    cv2.remap does the bilinear lookup; the map is one vectorised projection.
    """
    h, w = depth_m.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    u_color, v_color, _, valid = _in_color_camera(depth_m, intrinsics, T_depth_color)
    map_u = np.where(valid, u_color, u).astype(np.float32)
    map_v = np.where(valid, v_color, v).astype(np.float32)
    return cv2.remap(gray, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def depth_at_color_time(depth_m: np.ndarray, intrinsics: Intrinsics, T_depth_color: np.ndarray) -> np.ndarray:
    """``depth_m`` [H, W] as the colour camera (pose ``T_depth_color`` relative to the
    depth camera) would have measured it: each 3D point moves to its pixel in the colour
    image, the nearest one winning where several land; pixels no point reaches are 0.

    The inverse of :func:`gray_at_depth_time` for mapping, which fits the map to the
    colour image as taken and so needs its depth and pose at the colour's time. A
    forward splat rather than a lookup: depth must not be interpolated across edges.
    """
    h, w = depth_m.shape
    u_color, v_color, z, valid = _in_color_camera(depth_m, intrinsics, T_depth_color)
    u, v = np.rint(u_color).astype(np.int64), np.rint(v_color).astype(np.int64)
    valid &= (u >= 0) & (u < w) & (v >= 0) & (v < h)
    z, target = z[valid], (v * w + u)[valid]
    far_first = np.argsort(-z, kind="stable")  # later writes win: the nearest point
    out = np.zeros(h * w, dtype=np.float32)
    out[target[far_first]] = z[far_first]
    return out.reshape(h, w)


def clean_depth(depth_m: np.ndarray, min_depth_m: float, max_depth_m: float) -> np.ndarray:
    """Depth with non-finite and out-of-range values set to 0 (invalid), float32."""
    depth = np.nan_to_num(np.asarray(depth_m, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    depth[(depth < min_depth_m) | (depth > max_depth_m)] = 0.0
    return depth


def downsample_gray(gray: np.ndarray) -> np.ndarray:
    """Halve a float image by 2x2 block means (the pixel-centre convention of
    :meth:`Intrinsics.scaled`); odd trailing rows/columns are dropped."""
    h, w = gray.shape[0] // 2 * 2, gray.shape[1] // 2 * 2
    return cv2.resize(gray[:h, :w], (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def downsample_depth(depth_m: np.ndarray, max_relative_spread: float = 0.05) -> np.ndarray:
    """Halve a depth map by 2x2 means of the valid pixels.

    A block whose valid depths spread more than ``max_relative_spread`` of their
    mean straddles an occlusion boundary; it becomes invalid rather than a
    depth that lies on neither surface.
    """
    h, w = depth_m.shape[0] // 2 * 2, depth_m.shape[1] // 2 * 2
    # The four pixels of each block as four quarter-size views: elementwise
    # operations on them are several times faster than reductions over a
    # reshaped [h/2, w/2, 4] array.
    corners = (depth_m[0:h:2, 0:w:2], depth_m[0:h:2, 1:w:2], depth_m[1:h:2, 0:w:2], depth_m[1:h:2, 1:w:2])
    total = corners[0] + corners[1] + corners[2] + corners[3]
    count = (
        (corners[0] > 0).astype(np.float32)
        + (corners[1] > 0).astype(np.float32)
        + (corners[2] > 0).astype(np.float32)
        + (corners[3] > 0).astype(np.float32)
    )
    high = np.maximum(np.maximum(corners[0], corners[1]), np.maximum(corners[2], corners[3]))
    big = np.float32(np.inf)
    low = np.minimum(
        np.minimum(np.where(corners[0] > 0, corners[0], big), np.where(corners[1] > 0, corners[1], big)),
        np.minimum(np.where(corners[2] > 0, corners[2], big), np.where(corners[3] > 0, corners[3], big)),
    )
    mean = total / np.maximum(count, np.float32(1.0))
    keep = (count > 0) & (high - low <= np.float32(max_relative_spread) * mean)
    return np.where(keep, mean, np.float32(0.0)).astype(np.float32, copy=False)


@dataclass(frozen=True)
class ImageLevel:
    """One pyramid level: intensity in [0, 1] and depth, with matching intrinsics."""

    intrinsics: Intrinsics
    gray: np.ndarray  # [H, W] float32
    depth_m: np.ndarray  # [H, W] float32, 0 = invalid


def build_pyramid(gray: np.ndarray, depth_m: np.ndarray, intrinsics: Intrinsics, levels: int) -> list[ImageLevel]:
    """Finest-first list of ``levels`` levels from undistorted float gray and depth."""
    pyramid = [ImageLevel(intrinsics, gray, depth_m)]
    for _ in range(levels - 1):
        prev = pyramid[-1]
        small_gray = downsample_gray(prev.gray)
        small_depth = downsample_depth(prev.depth_m)
        h, w = small_depth.shape
        # Scaling the cropped-to-even size keeps the pixel-centre mapping exact.
        even = Intrinsics(w * 2, h * 2, prev.intrinsics.fx, prev.intrinsics.fy, prev.intrinsics.cx, prev.intrinsics.cy)
        pyramid.append(ImageLevel(even.scaled(w, h), small_gray, small_depth))
    return pyramid
