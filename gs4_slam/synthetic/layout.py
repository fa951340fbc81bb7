"""Random room layouts: which furniture goes where, drawn from one seed.

Placement is rejection sampling of axis-aligned 3-D boxes: an item fits when
its bounding box (plus a small gap) overlaps nothing placed before it, so a
window may sit above a low cabinet but not behind a bookshelf.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gs4_slam.synthetic import scene as S

#: Room types and how likely each is.
ROOM_TYPES: dict[str, float] = {"living": 0.25, "bedroom": 0.2, "office": 0.25, "kitchen": 0.2, "bathroom": 0.1}

Builder = Callable[[np.random.Generator], tuple[list[S.Part], float, float, float]]


@dataclass(frozen=True)
class _Item:
    """Parts in a local frame centred on a (width x depth) footprint, front = +y."""

    parts: list[S.Part]
    width_m: float
    depth_m: float
    height_m: float


def _measure(parts: list[S.Part]) -> _Item:
    """Wrap parts with their footprint, recentred on it."""
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for p in parts:
        if isinstance(p, S.Box):
            half = np.abs(_yaw_matrix(p.yaw_rad)) @ (np.asarray(p.size_m) / 2)
            c = np.asarray(p.center_m)
            lo, hi = np.minimum(lo, c - half), np.maximum(hi, c + half)
        else:
            c = np.asarray(p.base_center_m)
            r = np.array([p.radius_m, p.radius_m, 0.0])
            lo = np.minimum(lo, c - r)
            hi = np.maximum(hi, c + r + np.array([0, 0, p.height_m]))
    cx, cy = (lo[:2] + hi[:2]) / 2
    return _Item(S.place(parts, -cx, -cy, 0.0), float(hi[0] - lo[0]), float(hi[1] - lo[1]), float(hi[2]))


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


class _Room:
    """Accumulates parts and occupied boxes while a layout is drawn."""

    def __init__(self, rng: np.random.Generator, size_m: tuple[float, float, float]) -> None:
        self.rng = rng
        self.width, self.depth, self.height = size_m
        self.parts: list[S.Part] = []
        self.occupied: list[np.ndarray] = []  # [2, 3] (min, max) corners
        self.obstacles: list[tuple[float, float, float, float]] = []

    def wall_pose(self, wall: int, s: float, offset: float) -> tuple[float, float, float]:
        """Floor (x, y, yaw) of a point ``s`` along wall ``wall``, ``offset`` into the room."""
        w, d = self.width, self.depth
        return [
            (s, offset, 0.0),
            (w - offset, s, math.pi / 2),
            (w - s, d - offset, math.pi),
            (offset, d - s, -math.pi / 2),
        ][wall]

    def wall_length(self, wall: int) -> float:
        return self.width if wall in (0, 2) else self.depth

    def aabb(self, item: _Item, x: float, y: float, yaw: float, z0: float) -> np.ndarray:
        half = np.abs(_yaw_matrix(yaw)[:2, :2]) @ np.array([item.width_m / 2, item.depth_m / 2])
        return np.array([[x - half[0], y - half[1], z0], [x + half[0], y + half[1], z0 + item.height_m]])

    def fits(self, box: np.ndarray, gap: float = 0.05) -> bool:
        inside = box[0, 0] >= -1e-6 and box[0, 1] >= -1e-6 and box[1, 0] <= self.width + 1e-6
        inside = inside and box[1, 1] <= self.depth + 1e-6 and box[1, 2] <= self.height
        return inside and all(
            np.any(box[1] + gap <= other[0]) or np.any(other[1] + gap <= box[0]) for other in self.occupied
        )

    def commit(self, item: _Item, x: float, y: float, yaw: float, z0: float, obstacle: bool) -> np.ndarray:
        """Add ``item`` at floor position (x, y), heading yaw, lifted z0; returns its box."""
        self.parts.extend(S.place(item.parts, x, y, yaw, z0))
        box = self.aabb(item, x, y, yaw, z0)
        self.occupied.append(box)
        if obstacle:
            self.obstacles.append((box[0, 0], box[0, 1], box[1, 0], box[1, 1]))
        return box

    def on_wall(
        self, item: _Item, z0: float = 0.0, obstacle: bool = True, keep_out_m: float = 0.0, tries: int = 40
    ) -> tuple[int, float] | None:
        """Put ``item`` with its back to a random wall.

        Args:
            keep_out_m: depth of floor in front of the item that stays empty (doors).

        Returns:
            (wall, position along it) where it went, None when it did not fit.
        """
        for _ in range(tries):
            wall = int(self.rng.integers(4))
            length = self.wall_length(wall)
            if item.width_m + 0.1 > length:
                continue
            s = self.rng.uniform(item.width_m / 2 + 0.05, length - item.width_m / 2 - 0.05)
            x, y, yaw = self.wall_pose(wall, s, item.depth_m / 2 + 0.005)
            if not self.fits(self.aabb(item, x, y, yaw, z0)):
                continue
            self.commit(item, x, y, yaw, z0, obstacle)
            if keep_out_m > 0:
                front = _Item([], item.width_m + 0.2, keep_out_m, 2.1)
                fx, fy, _ = self.wall_pose(wall, s, keep_out_m / 2)
                self.occupied.append(self.aabb(front, fx, fy, yaw, 0.0))
            return wall, s
        return None

    def free_standing(self, item: _Item, tries: int = 40) -> bool:
        """Put ``item`` somewhere inside the room, at least 0.6 m from the walls."""
        for _ in range(tries):
            yaw = float(self.rng.choice([0.0, math.pi / 2]))
            span_x, span_y = (item.width_m, item.depth_m) if yaw == 0.0 else (item.depth_m, item.width_m)
            lo_x, hi_x = span_x / 2 + 0.6, self.width - span_x / 2 - 0.6
            lo_y, hi_y = span_y / 2 + 0.6, self.depth - span_y / 2 - 0.6
            if lo_x > hi_x or lo_y > hi_y:
                return False
            x, y = self.rng.uniform(lo_x, hi_x), self.rng.uniform(lo_y, hi_y)
            if self.fits(self.aabb(item, x, y, yaw, 0.0), gap=0.3):
                self.commit(item, x, y, yaw, 0.0, obstacle=True)
                return True
        return False


# ----------------------------------------------------------------------------- compounds


def _dining_set(rng: np.random.Generator) -> _Item:
    w, d = rng.uniform(1.1, 1.6), rng.uniform(0.75, 0.95)
    mat = S.wood(rng)
    parts = S.table(rng, w, d)
    chairs = [(0.0, -d / 2 - 0.2, 0.0), (0.0, d / 2 + 0.2, math.pi)]
    if rng.random() < 0.6:
        chairs += [(-w / 2 - 0.2, 0.0, -math.pi / 2), (w / 2 + 0.2, 0.0, math.pi / 2)]
    for cx, cy, yaw in chairs:
        parts += S.place(S.chair(rng, mat), cx, cy, yaw)
    return _measure(parts)


def _desk_with_chair(rng: np.random.Generator) -> _Item:
    parts = S.desk(rng)
    depth = max(p.size_m[1] for p in parts if isinstance(p, S.Box))
    return _measure(parts + S.place(S.chair(rng), 0.0, depth / 2 + 0.15, math.pi))


def _bathtub_with_curtain(rng: np.random.Generator) -> _Item:
    tub = S.bathtub(rng)
    width = _measure(tub).width_m
    curtain = S.place(S.shower_curtain(rng), -width / 4, 0.4, 0.0)
    return _measure(tub + curtain)


def _single(build: Callable[[np.random.Generator], list[S.Part]]) -> Callable[[np.random.Generator], _Item]:
    return lambda rng: _measure(build(rng))


def _coffee_table(rng: np.random.Generator) -> _Item:
    return _measure(S.table(rng, rng.uniform(0.8, 1.1), rng.uniform(0.45, 0.6), 0.45))


# (builder, against a wall?, probability of including it)
_FURNITURE: dict[str, list[tuple[Callable[[np.random.Generator], _Item], bool, float]]] = {
    "living": [
        (_single(S.sofa), True, 1.0),
        (_coffee_table, False, 0.9),
        (_single(S.bookshelf), True, 0.8),
        (_single(S.cabinet), True, 0.7),
        (_single(S.stool), False, 0.5),
        (_dining_set, False, 0.4),
    ],
    "bedroom": [
        (_single(S.bed), True, 1.0),
        (_single(S.cabinet), True, 0.9),
        (_single(S.cabinet), True, 0.5),
        (_desk_with_chair, True, 0.7),
        (_single(S.bookshelf), True, 0.5),
        (_single(S.stool), False, 0.3),
    ],
    "office": [
        (_desk_with_chair, True, 1.0),
        (_desk_with_chair, True, 0.7),
        (_single(S.bookshelf), True, 1.0),
        (_single(S.bookshelf), True, 0.5),
        (_single(S.cabinet), True, 0.8),
        (_dining_set, False, 0.5),
    ],
    "kitchen": [
        (_single(S.counter_with_sink), True, 1.0),
        (_single(S.refrigerator), True, 1.0),
        (_single(S.cabinet), True, 0.8),
        (_dining_set, False, 0.9),
        (_single(S.stool), False, 0.3),
    ],
    "bathroom": [
        (_bathtub_with_curtain, True, 1.0),
        (_single(S.toilet), True, 1.0),
        (_single(S.counter_with_sink), True, 0.9),
        (_single(S.cabinet), True, 0.5),
    ],
}


# ----------------------------------------------------------------------------- room shell


def _shell(rng: np.random.Generator, room_type: str, size: tuple[float, float, float]) -> list[S.Part]:
    w, d, h = size
    t = 0.1
    paint = S.pick_color(rng, S.PAINTS)
    if rng.random() < 0.3:
        wall_mat = S.Material(paint, S.darker(paint, 0.8), "stripes", float(rng.uniform(0.08, 0.2)), 0.35)
    else:
        wall_mat = S.Material(
            paint, S.darker(paint, 0.75), "noise", float(rng.uniform(0.15, 0.4)), float(rng.uniform(0.2, 0.35))
        )
    if room_type in ("kitchen", "bathroom"):
        tile = S.pick_color(rng, S.LACQUERS)
        floor_mat = S.Material(tile, S.darker(tile, 0.5), "tiles", float(rng.uniform(0.3, 0.6)), 0.5)
    elif rng.random() < 0.7:
        floor_mat = S.wood(rng)
    else:
        carpet = S.pick_color(rng, S.FABRICS)
        floor_mat = S.Material(carpet, S.darker(carpet, 0.6), "noise", 0.1, 0.5)
    ceiling_mat = S.Material((0.93, 0.93, 0.92), (0.8, 0.8, 0.8), "noise", 0.4, 0.15)
    wall, floor, ceiling = S.NYU40["wall"], S.NYU40["floor"], S.NYU40["ceiling"]
    return [
        S.Box((w / 2, -t / 2, h / 2), (w + 2 * t, t, h), wall, wall_mat),
        S.Box((w / 2, d + t / 2, h / 2), (w + 2 * t, t, h), wall, wall_mat),
        S.Box((-t / 2, d / 2, h / 2), (t, d, h), wall, wall_mat),
        S.Box((w + t / 2, d / 2, h / 2), (t, d, h), wall, wall_mat),
        S.Box((w / 2, d / 2, -t / 2), (w + 2 * t, d + 2 * t, t), floor, floor_mat),
        S.Box((w / 2, d / 2, h + t / 2), (w + 2 * t, d + 2 * t, t), ceiling, ceiling_mat),
    ]


def _lights(rng: np.random.Generator, size: tuple[float, float, float]) -> tuple[tuple[S.PointLight, ...], float]:
    w, d, h = size
    count = int(rng.integers(1, 4))
    total = rng.uniform(0.7, 1.1)
    lights = []
    warm, cool = np.array([1.0, 0.88, 0.72]), np.array([0.85, 0.93, 1.0])
    for _ in range(count):
        # Colour temperature varies per light between warm bulbs and cool daylight.
        mix = rng.uniform(0.0, 1.0)
        color = tuple(float(c) for c in (1 - mix) * warm + mix * cool)
        position = (rng.uniform(0.2, w - 0.2), rng.uniform(0.2, d - 0.2), h - 0.25)
        lights.append(S.PointLight(tuple(float(v) for v in position), color, float(total / count)))
    return tuple(lights), float(rng.uniform(0.3, 0.5))


def _add_curtains(room: _Room, rng: np.random.Generator, wall: int, s_window: float, window_width_m: float) -> None:
    """Curtains hanging on both sides of a window, where there is room for them."""
    width = 0.3
    height = min(2.3, room.height - 0.1) - 0.05
    for side in (-1, 1):
        s = s_window + side * (window_width_m / 2 + width / 2 + 0.02)
        if not width / 2 < s < room.wall_length(wall) - width / 2:
            continue
        x, y, yaw = room.wall_pose(wall, s, 0.035)
        item = _measure(S.curtain(rng, width, height))
        if room.fits(room.aabb(item, x, y, yaw, 0.05), gap=0.0):
            room.commit(item, x, y, yaw, 0.05, obstacle=False)


def random_scene(seed: int) -> S.Scene:
    """A furnished room drawn deterministically from ``seed``."""
    rng = np.random.default_rng(seed)
    names = list(ROOM_TYPES)
    room_type = names[int(rng.choice(len(names), p=np.array(list(ROOM_TYPES.values()))))]
    if room_type == "bathroom":
        dims = rng.uniform([2.8, 2.8, 2.4], [3.6, 3.6, 2.7])
    else:
        dims = rng.uniform([4.0, 3.6, 2.5], [6.5, 5.5, 3.0])
    size = (float(dims[0]), float(dims[1]), float(dims[2]))
    room = _Room(rng, size)
    room.parts.extend(_shell(rng, room_type, size))

    room.on_wall(_measure(S.door(rng)), obstacle=False, keep_out_m=0.9)
    for build, against_wall, probability in _FURNITURE[room_type]:
        if rng.random() < probability:
            item = build(rng)
            if against_wall:
                room.on_wall(item)
            else:
                room.free_standing(item)
    for _ in range(int(rng.integers(1, 3))):
        w, h = rng.uniform(0.8, 1.5), rng.uniform(0.9, 1.3)
        placed = room.on_wall(_measure(S.window(rng, w, h)), z0=0.9, obstacle=False)
        if placed is not None and rng.random() < 0.6:
            _add_curtains(room, rng, *placed, window_width_m=w)
    for _ in range(int(rng.integers(1, 4))):
        w, h = rng.uniform(0.35, 0.9), rng.uniform(0.3, 0.7)
        room.on_wall(_measure(S.picture(rng, w, h)), z0=float(rng.uniform(1.2, 1.7)), obstacle=False)

    lights, ambient = _lights(rng, size)
    return S.Scene(
        room_size_m=size,
        parts=tuple(room.parts),
        lights=lights,
        ambient=ambient,
        room_type=room_type,
        obstacles_xy=tuple((float(a), float(b), float(c), float(d)) for a, b, c, d in room.obstacles),
    )
