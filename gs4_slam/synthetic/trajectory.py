"""Smooth hand-held-like camera paths through a scene's free space.

Positions follow a cubic spline through a random walk of waypoints (turning
gradually, never through furniture or closer to the walls than a margin);
the camera looks at a second spline of targets, so the view direction also
turns smoothly. A slow roll wobble imitates a hand-held camera. Samples are
equally spaced along the path (constant speed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from gs4_slam.synthetic.scene import Scene


class TrajectoryError(RuntimeError):
    """No collision-free path could be drawn (room too cluttered for the margins)."""


@dataclass(frozen=True)
class PathConfig:
    """How the camera moves.

    Attributes:
        speed_mps: constant speed along the path.
        rate_hz: frames per second (sets the spacing of samples).
        height_range_m: camera heights above the floor.
        wall_margin_m: closest approach to a wall.
        obstacle_margin_m: closest approach (in plan view) to floor-standing furniture.
        waypoint_spacing_m: range of distances between spline waypoints.
        max_turn_deg: largest change of heading between waypoints.
        pitch_range_deg: downward tilt of the view (negative = looking down).
        roll_amplitude_deg: amplitude of the hand-held roll wobble.
    """

    speed_mps: float = 0.3
    rate_hz: float = 30.0
    height_range_m: tuple[float, float] = (1.1, 1.7)
    wall_margin_m: float = 0.6
    obstacle_margin_m: float = 0.35
    waypoint_spacing_m: tuple[float, float] = (0.4, 0.9)
    max_turn_deg: float = 35.0
    pitch_range_deg: tuple[float, float] = (-35.0, -5.0)
    roll_amplitude_deg: float = 2.0


def is_free(scene: Scene, points: np.ndarray, config: PathConfig) -> np.ndarray:
    """bool [N]: which (N, 3) points keep the margins to walls, floor, ceiling and furniture."""
    w, d, h = scene.room_size_m
    m = config.wall_margin_m
    free = (points[:, 0] > m) & (points[:, 0] < w - m) & (points[:, 1] > m) & (points[:, 1] < d - m)
    free &= (points[:, 2] > 0.8) & (points[:, 2] < h - 0.3)
    g = config.obstacle_margin_m
    for x0, y0, x1, y1 in scene.obstacles_xy:
        inside = (points[:, 0] > x0 - g) & (points[:, 0] < x1 + g) & (points[:, 1] > y0 - g) & (points[:, 1] < y1 + g)
        free &= ~inside
    return free


def _direction(yaw: float, pitch: float) -> np.ndarray:
    return np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _random_walk(
    scene: Scene, length_m: float, rng: np.random.Generator, config: PathConfig
) -> tuple[np.ndarray, np.ndarray] | None:
    """Waypoints [K, 3] and look-at targets [K, 3] covering ``length_m``, or None."""
    w, d, _ = scene.room_size_m
    centre = np.array([w / 2, d / 2])
    candidates = np.column_stack(
        [rng.uniform(0, w, 200), rng.uniform(0, d, 200), rng.uniform(*config.height_range_m, 200)]
    )
    free = candidates[is_free(scene, candidates, config)]
    if len(free) == 0:
        return None
    points = [free[0]]
    heading = float(rng.uniform(-math.pi, math.pi))
    view_yaw = math.atan2(*(centre - free[0][:2])[::-1])
    targets = []
    max_turn = math.radians(config.max_turn_deg)
    travelled = 0.0
    while True:
        pitch = math.radians(rng.uniform(*config.pitch_range_deg))
        targets.append(points[-1] + 2.0 * _direction(view_yaw, pitch))
        # Two extra waypoints past the needed length keep the spline's ends out of use.
        if travelled > length_m and len(points) >= 4:
            break
        for attempt in range(40):
            turn = max_turn if attempt < 20 else math.pi
            new_heading = heading + rng.uniform(-turn, turn)
            step = rng.uniform(*config.waypoint_spacing_m)
            z = np.clip(points[-1][2] + rng.uniform(-0.1, 0.1), *config.height_range_m)
            candidate = points[-1] + step * np.array([math.cos(new_heading), math.sin(new_heading), 0.0])
            candidate[2] = z
            segment = points[-1] + np.linspace(0, 1, 12)[:, None] * (candidate - points[-1])
            if is_free(scene, segment, config).all():
                break
        else:
            return None
        travelled += float(np.linalg.norm(candidate - points[-1]))
        points.append(candidate)
        heading = new_heading
        # The view turns gradually and is pulled towards the room's centre, so the
        # camera mostly sees the furnished room rather than a wall at arm's length.
        to_centre = math.atan2(*(centre - candidate[:2])[::-1])
        view_yaw = _wrap(view_yaw + rng.uniform(-max_turn, max_turn) + 0.3 * _wrap(to_centre - view_yaw))
    return np.asarray(points), np.asarray(targets)


def look_at(position: np.ndarray, target: np.ndarray, roll_rad: float = 0.0) -> np.ndarray:
    """4x4 camera-to-world pose of an OpenCV camera at ``position`` looking at ``target`` (z up)."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c, s = math.cos(roll_rad), math.sin(roll_rad)
    right, down = c * right + s * down, -s * right + c * down
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, position
    return pose


def camera_path(
    scene: Scene, num_frames: int, rng: np.random.Generator, config: PathConfig | None = None
) -> np.ndarray:
    """float64 [num_frames, 4, 4] camera-to-world poses of a smooth collision-free path."""
    config = config or PathConfig()
    step_m = config.speed_mps / config.rate_hz
    length_m = max(num_frames - 1, 1) * step_m
    for _ in range(60):
        walk = _random_walk(scene, length_m, rng, config)
        if walk is None:
            continue
        waypoints, targets = walk
        chord = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(waypoints, axis=0), axis=1))]
        path, aim = CubicSpline(chord, waypoints, bc_type="natural"), CubicSpline(chord, targets, bc_type="natural")
        dense_s = np.linspace(0.0, chord[-1], 40 * len(waypoints))
        dense = path(dense_s)
        if not is_free(scene, dense, config).all():
            continue
        arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))]
        if arc[-1] < length_m:
            continue
        # Constant speed: invert arc length to the spline parameter.
        sample_s = np.interp(np.arange(num_frames) * step_m, arc, dense_s)
        positions, aims = path(sample_s), aim(sample_s)
        times = np.arange(num_frames) / config.rate_hz
        amplitude = math.radians(rng.uniform(0.3, 1.0) * config.roll_amplitude_deg)
        roll = amplitude * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * times + rng.uniform(0, 2 * np.pi))
        return np.stack([look_at(p, a, r) for p, a, r in zip(positions, aims, roll)])
    raise TrajectoryError(
        f"could not draw a collision-free camera path of {length_m:.1f} m in this {scene.room_type} "
        f"({scene.room_size_m[0]:.1f} x {scene.room_size_m[1]:.1f} m)"
    )
