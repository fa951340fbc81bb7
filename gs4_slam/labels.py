"""Semantic label sets: class names, colours and the mapping from a dataset's ids.

A label set is a YAML file in ``config/labels/`` (see ``scannet20.yaml``)::

    name: scannet20
    source: nyu40            # the id space the dataset's label images use
    classes:
      - {name: wall, color: [174, 199, 232], source_ids: [1]}
      ...

Class ``i`` of the list is train id ``i``; every source id not listed maps to
:data:`~gs4_slam.frame.IGNORE_LABEL`. The loader is generic so that users can add
their own sets next to the built-in one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from gs4_slam import config as config_io
from gs4_slam.resources import data_dirs
from gs4_slam.frame import IGNORE_LABEL

#: The NYU40 class names, index = NYU40 id (0 = unlabelled).
NYU40_NAMES: tuple[str, ...] = (
    "unlabeled",
    "wall",
    "floor",
    "cabinet",
    "bed",
    "chair",
    "sofa",
    "table",
    "door",
    "window",
    "bookshelf",
    "picture",
    "counter",
    "blinds",
    "desk",
    "shelves",
    "curtain",
    "dresser",
    "pillow",
    "mirror",
    "floor mat",
    "clothes",
    "ceiling",
    "books",
    "refrigerator",
    "television",
    "paper",
    "towel",
    "shower curtain",
    "box",
    "whiteboard",
    "person",
    "night stand",
    "toilet",
    "sink",
    "lamp",
    "bathtub",
    "bag",
    "otherstructure",
    "otherfurniture",
    "otherprop",
)

#: Name of the set used when nothing else is asked for.
DEFAULT_LABEL_SET = "scannet20"


class LabelSetError(ValueError):
    """A label-set file is missing or invalid; the message names the file."""


@dataclass(frozen=True)
class _ClassSpec:
    """One class as written in the YAML file (strictly parsed by gs4_slam.config)."""

    name: str
    color: tuple[int, ...]
    source_ids: tuple[int, ...] = ()
    id: int = -1  # optional; when given it must be the class's position (train ids are 0..C-1 in order)


@dataclass(frozen=True)
class _LabelSetSpec:
    name: str
    classes: list[_ClassSpec]
    source: str = "nyu40"


@dataclass(frozen=True)
class LabelSet:
    """Classes with train ids ``0..num_classes-1`` and their source-id mapping.

    Attributes:
        name: identifier of the set (``scannet20``).
        class_names: one name per train id.
        colors_rgb: one (r, g, b) uint8 colour per train id.
        source_ids: per train id, the dataset ids (e.g. NYU40) that map to it.
        source: name of the source id space (``nyu40``).
    """

    name: str
    class_names: tuple[str, ...]
    colors_rgb: tuple[tuple[int, int, int], ...]
    source_ids: tuple[tuple[int, ...], ...]
    source: str = "nyu40"
    ignore_label: int = IGNORE_LABEL
    _lut: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.class_names)
        if n == 0:
            raise LabelSetError(f"label set {self.name!r}: no classes")
        if n >= self.ignore_label:
            raise LabelSetError(f"label set {self.name!r}: {n} classes, at most {self.ignore_label - 1}")
        if len(self.colors_rgb) != n or len(self.source_ids) != n:
            raise LabelSetError(f"label set {self.name!r}: names, colours and source ids differ in length")
        if len(set(self.class_names)) != n:
            raise LabelSetError(f"label set {self.name!r}: duplicate class names")
        for name, color in zip(self.class_names, self.colors_rgb):
            if len(color) != 3 or not all(0 <= c <= 255 for c in color):
                raise LabelSetError(f"label set {self.name!r}: class {name!r} colour must be 3 values 0..255")
        all_ids = [sid for ids in self.source_ids for sid in ids]
        if any(sid < 0 for sid in all_ids):
            raise LabelSetError(f"label set {self.name!r}: negative source id")
        if len(set(all_ids)) != len(all_ids):
            raise LabelSetError(f"label set {self.name!r}: a source id is mapped to two classes")
        lut = np.full(max(all_ids, default=0) + 1, self.ignore_label, dtype=np.uint8)
        for train_id, ids in enumerate(self.source_ids):
            lut[list(ids)] = train_id
        lut.setflags(write=False)
        object.__setattr__(self, "_lut", lut)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def id_of(self, class_name: str) -> int:
        """Train id of ``class_name``; ValueError when the set has no such class."""
        try:
            return self.class_names.index(class_name)
        except ValueError:
            raise ValueError(f"label set {self.name!r} has no class {class_name!r}; "
                             f"valid classes: {', '.join(self.class_names)}") from None

    def map_source(self, source_labels: np.ndarray) -> np.ndarray:
        """Source ids (any integer array) -> uint8 train ids, unknown ids -> ignore."""
        ids = np.asarray(source_labels)
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"label image must hold integers, got {ids.dtype}")
        ids = ids.astype(np.int64, copy=False)
        known = (ids >= 0) & (ids < self._lut.size)
        out = np.full(ids.shape, self.ignore_label, dtype=np.uint8)
        out[known] = self._lut[ids[known]]
        return out

    def palette(self) -> np.ndarray:
        """uint8 [256, 3] colour table indexed by train id; unused ids are black."""
        table = np.zeros((256, 3), dtype=np.uint8)
        table[: self.num_classes] = np.asarray(self.colors_rgb, dtype=np.uint8)
        return table

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """uint8 [H, W] train ids -> uint8 [H, W, 3] RGB image (ignore = black)."""
        return self.palette()[np.asarray(labels, dtype=np.uint8)]


def label_set_dirs() -> list[Path]:
    """Folders searched for ``<name>.yaml``: the source tree, ROS share folders, pip's share folder."""
    return data_dirs("config/labels")


def available_label_sets() -> list[str]:
    names = {p.stem for d in label_set_dirs() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def load_label_set(name_or_path: str | Path = DEFAULT_LABEL_SET) -> LabelSet:
    """Load a label set by name (searched in :func:`label_set_dirs`) or by file path."""
    return _load_cached(str(_resolve(name_or_path)))


def _resolve(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise LabelSetError(f"label set file not found: {candidate}")
        return candidate.resolve()
    for folder in label_set_dirs():
        path = folder / f"{name_or_path}.yaml"
        if path.is_file():
            return path.resolve()
    raise LabelSetError(f"no label set named {str(name_or_path)!r}; available: {available_label_sets()}")


@lru_cache(maxsize=16)
def _load_cached(path_str: str) -> LabelSet:
    # Label sets are immutable, so one parsed copy per file is shared safely.
    path = Path(path_str)
    try:
        spec = config_io.from_dict(_LabelSetSpec, config_io.load_yaml_layers(path), where=str(path))
        for position, c in enumerate(spec.classes):
            if c.id not in (-1, position):
                raise LabelSetError(f"{path}: class {c.name!r} has id {c.id} but is listed at position {position}; "
                                    "ids are the classes' positions 0..C-1, in order")
        return LabelSet(
            name=spec.name,
            class_names=tuple(c.name for c in spec.classes),
            colors_rgb=tuple(tuple(int(v) for v in c.color) for c in spec.classes),
            source_ids=tuple(tuple(c.source_ids) for c in spec.classes),
            source=spec.source,
        )
    except (config_io.ConfigError, LabelSetError) as exc:
        raise LabelSetError(f"{path}: {exc}") from exc
