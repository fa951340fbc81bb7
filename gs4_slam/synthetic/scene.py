"""Procedural indoor scenes: a room of parametric boxes and cylinders with classes and materials.

World frame: x along the room's width, y along its depth, z up; the floor is
z = 0 and the room interior is [0, W] x [0, D] x [0, H] metres. Every object is
made of parts; each part carries its NYU40 class id (what ScanNet's
``label-filt`` images hold) and a procedural material.

Furniture is built in a local frame whose origin is the centre of its
footprint on the floor, with its front facing local +y; placing it against a
wall turns that front into the room.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

#: NYU40 ids of the classes the generator uses (see gs4_slam.labels.NYU40_NAMES).
NYU40 = {
    "wall": 1,
    "floor": 2,
    "cabinet": 3,
    "bed": 4,
    "chair": 5,
    "sofa": 6,
    "table": 7,
    "door": 8,
    "window": 9,
    "bookshelf": 10,
    "picture": 11,
    "counter": 12,
    "desk": 14,
    "curtain": 16,
    "pillow": 18,
    "ceiling": 22,
    "books": 23,
    "refrigerator": 24,
    "shower curtain": 28,
    "toilet": 33,
    "sink": 34,
    "bathtub": 36,
    "otherfurniture": 39,
}

Pattern = Literal["plain", "noise", "stripes", "tiles", "wood", "patches"]
PATTERNS: tuple[str, ...] = ("plain", "noise", "stripes", "tiles", "wood", "patches")

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Material:
    """Procedural surface colour, evaluated from world coordinates at render time.

    Attributes:
        base_rgb: main albedo, each channel in [0, 1].
        accent_rgb: second albedo the pattern blends towards.
        pattern: one of :data:`PATTERNS`.
        scale_m: size of the pattern's features, metres.
        contrast: blend amount in [0, 1] between base and accent.
    """

    base_rgb: RGB
    accent_rgb: RGB
    pattern: Pattern = "noise"
    scale_m: float = 0.3
    contrast: float = 0.3


@dataclass(frozen=True)
class Box:
    """An oriented box: ``size_m`` along its local x, y, z, turned by ``yaw_rad`` about z."""

    center_m: tuple[float, float, float]
    size_m: tuple[float, float, float]
    nyu40_id: int
    material: Material
    yaw_rad: float = 0.0


@dataclass(frozen=True)
class Cylinder:
    """A vertical cylinder standing on ``base_center_m``."""

    base_center_m: tuple[float, float, float]
    radius_m: float
    height_m: float
    nyu40_id: int
    material: Material
    segments: int = 16


Part = Box | Cylinder


@dataclass(frozen=True)
class PointLight:
    position_m: tuple[float, float, float]
    color_rgb: RGB
    intensity: float


@dataclass(frozen=True)
class Scene:
    """A complete room: geometry, lights and the room type it was drawn as."""

    room_size_m: tuple[float, float, float]
    parts: tuple[Part, ...]
    lights: tuple[PointLight, ...]
    ambient: float
    room_type: str
    #: Footprints (x0, y0, x1, y1) of floor-standing objects the camera must avoid.
    obstacles_xy: tuple[tuple[float, float, float, float], ...] = field(default=())

    def class_ids(self) -> set[int]:
        return {p.nyu40_id for p in self.parts}


# ----------------------------------------------------------------------------- helpers


def _rotate_xy(x: float, y: float, yaw: float) -> tuple[float, float]:
    c, s = math.cos(yaw), math.sin(yaw)
    return c * x - s * y, s * x + c * y


def place(parts: list[Part], x: float, y: float, yaw: float, z: float = 0.0) -> list[Part]:
    """Move parts built in a local frame to floor position (x, y), heading yaw, lifted by z."""
    out: list[Part] = []
    for part in parts:
        if isinstance(part, Box):
            px, py = _rotate_xy(part.center_m[0], part.center_m[1], yaw)
            out.append(replace(part, center_m=(px + x, py + y, part.center_m[2] + z), yaw_rad=part.yaw_rad + yaw))
        else:
            px, py = _rotate_xy(part.base_center_m[0], part.base_center_m[1], yaw)
            out.append(replace(part, base_center_m=(px + x, py + y, part.base_center_m[2] + z)))
    return out


def as_rgb(values: np.ndarray | tuple[float, ...]) -> RGB:
    """Three floats clipped to [0, 1]."""
    r, g, b = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return float(r), float(g), float(b)


def jitter(rng: np.random.Generator, rgb: RGB, amount: float = 0.06) -> RGB:
    return as_rgb(np.asarray(rgb) + rng.uniform(-amount, amount, 3))


def darker(rgb: RGB, factor: float) -> RGB:
    return as_rgb(np.asarray(rgb) * factor)


WOODS: tuple[RGB, ...] = ((0.55, 0.36, 0.20), (0.70, 0.52, 0.33), (0.40, 0.26, 0.15), (0.80, 0.66, 0.48))
FABRICS: tuple[RGB, ...] = (
    (0.30, 0.35, 0.55),
    (0.55, 0.25, 0.22),
    (0.35, 0.45, 0.30),
    (0.60, 0.55, 0.45),
    (0.25, 0.25, 0.28),
)
PAINTS: tuple[RGB, ...] = (
    (0.88, 0.86, 0.80),
    (0.80, 0.85, 0.88),
    (0.86, 0.80, 0.72),
    (0.78, 0.84, 0.76),
    (0.90, 0.78, 0.74),
)
LACQUERS: tuple[RGB, ...] = ((0.92, 0.92, 0.90), (0.20, 0.22, 0.25), (0.62, 0.64, 0.66), (0.72, 0.30, 0.20))


def pick_color(rng: np.random.Generator, options: tuple[RGB, ...]) -> RGB:
    return jitter(rng, options[int(rng.integers(len(options)))])


def wood(rng: np.random.Generator) -> Material:
    base = pick_color(rng, WOODS)
    return Material(base, darker(base, 0.6), "wood", float(rng.uniform(0.15, 0.3)), float(rng.uniform(0.4, 0.7)))


def fabric(rng: np.random.Generator) -> Material:
    base = pick_color(rng, FABRICS)
    pattern = "stripes" if rng.random() < 0.3 else "noise"
    return Material(base, darker(base, 0.55), pattern, float(rng.uniform(0.05, 0.15)), float(rng.uniform(0.3, 0.6)))


def lacquer(rng: np.random.Generator) -> Material:
    base = pick_color(rng, LACQUERS)
    return Material(base, darker(base, 0.75), "noise", float(rng.uniform(0.1, 0.4)), float(rng.uniform(0.15, 0.35)))


def metal(rng: np.random.Generator) -> Material:
    base = jitter(rng, (0.7, 0.72, 0.75), 0.05)
    return Material(base, darker(base, 0.6), "noise", 0.05, 0.3)


def colourful(rng: np.random.Generator, scale_m: float) -> Material:
    return Material(as_rgb(rng.uniform(0.1, 0.95, 3)), as_rgb(rng.uniform(0.1, 0.95, 3)), "patches", scale_m, 1.0)


# ----------------------------------------------------------------------------- furniture


def box(cx: float, cy: float, z0: float, sx: float, sy: float, sz: float, cls: str, mat: Material) -> Box:
    """Axis-aligned local box from its footprint centre, bottom height and size."""
    return Box((cx, cy, z0 + sz / 2), (sx, sy, sz), NYU40[cls], mat)


def legs(w: float, d: float, h: float, t: float, cls: str, mat: Material) -> list[Part]:
    inset_x, inset_y = w / 2 - t / 2 - 0.03, d / 2 - t / 2 - 0.03
    return [box(sx * inset_x, sy * inset_y, 0, t, t, h, cls, mat) for sx in (-1, 1) for sy in (-1, 1)]


def table(rng: np.random.Generator, w: float, d: float, h: float = 0.75, cls: str = "table") -> list[Part]:
    mat = wood(rng)
    return [box(0, 0, h - 0.04, w, d, 0.04, cls, mat), *legs(w, d, h - 0.04, 0.06, cls, mat)]


def chair(rng: np.random.Generator, mat: Material | None = None) -> list[Part]:
    mat = mat or wood(rng)
    seat = fabric(rng) if rng.random() < 0.5 else mat
    s, h = 0.45, 0.45
    return [
        *legs(s, s, h - 0.05, 0.04, "chair", mat),
        box(0, 0, h - 0.05, s, s, 0.05, "chair", seat),
        box(0, -s / 2 + 0.025, h, s, 0.05, 0.45, "chair", mat),
    ]


def desk(rng: np.random.Generator) -> list[Part]:
    mat = lacquer(rng) if rng.random() < 0.5 else wood(rng)
    w, d, h = rng.uniform(1.1, 1.6), rng.uniform(0.6, 0.75), 0.74
    return [
        box(0, 0, h - 0.03, w, d, 0.03, "desk", mat),
        box(-w / 2 + 0.02, 0, 0, 0.04, d, h - 0.03, "desk", mat),
        box(w / 2 - 0.22, 0, 0.1, 0.4, d - 0.04, h - 0.13, "desk", mat),  # drawer block
    ]


def sofa(rng: np.random.Generator) -> list[Part]:
    mat = fabric(rng)
    w, d = rng.uniform(1.7, 2.3), rng.uniform(0.85, 0.95)
    return [
        box(0, 0.05, 0, w - 0.4, d - 0.1, 0.42, "sofa", mat),
        box(0, -d / 2 + 0.1, 0, w, 0.2, 0.85, "sofa", mat),
        box(-w / 2 + 0.1, 0, 0, 0.2, d, 0.6, "sofa", mat),
        box(w / 2 - 0.1, 0, 0, 0.2, d, 0.6, "sofa", mat),
    ]


def bed(rng: np.random.Generator) -> list[Part]:
    frame, sheet = wood(rng), fabric(rng)
    w, length = rng.uniform(1.4, 1.8), rng.uniform(2.0, 2.1)
    pillow = Material((0.92, 0.92, 0.9), (0.8, 0.8, 0.78), "noise", 0.05, 0.3)
    return [
        box(0, 0, 0, w, length, 0.3, "bed", frame),
        box(0, 0.02, 0.3, w - 0.06, length - 0.1, 0.22, "bed", sheet),
        box(0, -length / 2 + 0.04, 0, w, 0.08, 1.0, "bed", frame),
        box(-w / 4, -length / 2 + 0.35, 0.52, w * 0.4, 0.4, 0.12, "pillow", pillow),
        box(w / 4, -length / 2 + 0.35, 0.52, w * 0.4, 0.4, 0.12, "pillow", pillow),
    ]


def bookshelf(rng: np.random.Generator) -> list[Part]:
    mat = wood(rng)
    w, d, h = rng.uniform(0.8, 1.2), 0.32, rng.uniform(1.7, 2.1)
    shelves = int(rng.integers(4, 6))
    parts: list[Part] = [
        box(-w / 2 + 0.01, 0, 0, 0.02, d, h, "bookshelf", mat),
        box(w / 2 - 0.01, 0, 0, 0.02, d, h, "bookshelf", mat),
        box(0, -d / 2 + 0.01, 0, w, 0.02, h, "bookshelf", mat),
    ]
    gap = h / shelves
    for k in range(shelves + 1):
        parts.append(box(0, 0, min(k * gap, h - 0.02), w, d, 0.02, "bookshelf", mat))
        if k == shelves:
            break
        # A row of books of random widths and heights on each shelf.
        x = -w / 2 + 0.03
        while x < w / 2 - 0.08 and rng.random() > 0.05:
            bw, bh = rng.uniform(0.025, 0.06), rng.uniform(0.5, 0.85) * (gap - 0.04)
            if rng.random() < 0.85:
                parts.append(box(x + bw / 2, 0.02, k * gap + 0.02, bw, d - 0.08, bh, "books", colourful(rng, 0.5)))
            x += bw + 0.003
    return parts


def cabinet(rng: np.random.Generator) -> list[Part]:
    mat = lacquer(rng) if rng.random() < 0.6 else wood(rng)
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.4, 0.5), rng.uniform(0.8, 1.1)
    handle = metal(rng)
    return [
        box(0, 0, 0, w, d, h, "cabinet", mat),
        box(-0.05, d / 2 + 0.01, h * 0.55, 0.02, 0.02, 0.15, "cabinet", handle),
        box(0.05, d / 2 + 0.01, h * 0.55, 0.02, 0.02, 0.15, "cabinet", handle),
    ]


def counter_with_sink(rng: np.random.Generator) -> list[Part]:
    body, top = lacquer(rng), Material(pick_color(rng, LACQUERS), (0.3, 0.3, 0.3), "noise", 0.04, 0.5)
    w, d, h = rng.uniform(1.6, 2.6), 0.62, 0.9
    steel = metal(rng)
    sink_x = rng.uniform(-w / 2 + 0.4, w / 2 - 0.4)
    return [
        box(0, -0.02, 0, w, d - 0.04, h - 0.04, "cabinet", body),
        box(0, 0, h - 0.04, w, d, 0.04, "counter", top),
        box(sink_x, 0.02, h, 0.5, 0.4, 0.015, "sink", steel),
        Cylinder((sink_x, -0.22, h), 0.02, 0.3, NYU40["sink"], steel, 10),
    ]


def refrigerator(rng: np.random.Generator) -> list[Part]:
    body = lacquer(rng)
    w, d, h = rng.uniform(0.6, 0.8), 0.68, rng.uniform(1.7, 1.9)
    handle = metal(rng)
    return [
        box(0, 0, 0, w, d, h, "refrigerator", body),
        box(w / 2 - 0.08, d / 2 + 0.02, h * 0.45, 0.03, 0.03, 0.4, "refrigerator", handle),
    ]


def stool(rng: np.random.Generator) -> list[Part]:
    mat = fabric(rng)
    return [Cylinder((0, 0, 0), rng.uniform(0.2, 0.3), rng.uniform(0.4, 0.5), NYU40["otherfurniture"], mat, 16)]


def toilet(rng: np.random.Generator) -> list[Part]:
    china = Material((0.93, 0.93, 0.92), (0.8, 0.82, 0.85), "noise", 0.05, 0.2)
    return [
        box(0, -0.25, 0, 0.4, 0.2, 0.8, "toilet", china),
        box(0, 0.05, 0, 0.3, 0.3, 0.3, "toilet", china),
        Cylinder((0, 0.12, 0.3), 0.2, 0.1, NYU40["toilet"], china, 16),
    ]


def bathtub(rng: np.random.Generator) -> list[Part]:
    china = Material((0.92, 0.93, 0.94), (0.75, 0.78, 0.82), "noise", 0.08, 0.25)
    w = rng.uniform(1.5, 1.7)
    return [box(0, 0, 0, w, 0.75, 0.55, "bathtub", china)]


def shower_curtain(rng: np.random.Generator) -> list[Part]:
    cloth = fabric(rng)
    return [box(0, 0, 0.3, rng.uniform(0.9, 1.3), 0.04, 1.7, "shower curtain", replace(cloth, pattern="stripes"))]


def door(rng: np.random.Generator) -> list[Part]:
    mat = wood(rng) if rng.random() < 0.5 else lacquer(rng)
    knob = metal(rng)
    return [box(0, 0, 0, 0.9, 0.04, 2.05, "door", mat), box(0.35, 0.04, 1.0, 0.1, 0.04, 0.04, "door", knob)]


def window(rng: np.random.Generator, w: float, h: float) -> list[Part]:
    frame = Material((0.95, 0.95, 0.95), (0.8, 0.8, 0.8), "noise", 0.1, 0.1)
    sky = Material(jitter(rng, (0.70, 0.82, 0.95)), (0.95, 0.97, 1.0), "noise", 0.6, 0.5)
    return [
        box(0, 0, 0, w, 0.03, h, "window", frame),
        box(0, 0.02, 0.06, w - 0.12, 0.02, h - 0.12, "window", sky),
        box(0, 0.035, h / 2 - 0.02, w - 0.12, 0.03, 0.04, "window", frame),
    ]


def picture(rng: np.random.Generator, w: float, h: float) -> list[Part]:
    frame = wood(rng)
    return [
        box(0, 0, 0, w, 0.03, h, "picture", frame),
        box(0, 0.02, 0.04, w - 0.08, 0.02, h - 0.08, "picture", colourful(rng, float(rng.uniform(0.05, 0.2)))),
    ]


def curtain(rng: np.random.Generator, w: float, h: float) -> list[Part]:
    return [box(0, 0, 0, w, 0.06, h, "curtain", replace(fabric(rng), pattern="stripes"))]
