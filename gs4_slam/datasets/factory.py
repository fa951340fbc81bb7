"""Open a dataset folder by kind (or detect the kind from its files)."""

from __future__ import annotations

from pathlib import Path

from gs4_slam.datasets.base import DatasetError, ReaderOptions, SequenceReader
from gs4_slam.datasets.replica import ReplicaReader
from gs4_slam.datasets.scannet import ScanNetReader
from gs4_slam.datasets.tum import TumReader

#: Dataset kinds accepted by :func:`open_dataset` ("synthetic" = the generator's ScanNet layout).
READERS: dict[str, type[SequenceReader]] = {
    "tum": TumReader,
    "scannet": ScanNetReader,
    "synthetic": ScanNetReader,
    "replica": ReplicaReader,
}


def detect_kind(path: str | Path) -> str:
    """Guess the layout of a dataset folder from the files it holds."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if (root / "rgb.txt").is_file() and (root / "depth.txt").is_file():
        return "tum"
    if (root / "color").is_dir() and (root / "pose").is_dir():
        return "scannet"
    if (root / "results").is_dir() and (root / "traj.txt").is_file():
        return "replica"
    raise DatasetError(
        f"{root}: not a known dataset layout (TUM: rgb.txt + depth.txt; ScanNet: color/ + pose/; "
        "Replica: results/ + traj.txt)"
    )


def open_dataset(kind: str, path: str | Path, options: ReaderOptions | None = None, **option_fields) -> SequenceReader:
    """Open a sequence folder.

    Args:
        kind: "tum", "scannet", "synthetic", "replica" or "auto" (detect from the files).
        path: the sequence folder.
        options: reader options; ``option_fields`` (e.g. ``stride=2``) update them.

    Raises:
        DatasetError: the folder or one of its index files is missing or invalid.
    """
    if kind == "auto":
        kind = detect_kind(path)
    if kind not in READERS:
        raise DatasetError(f"unknown dataset kind {kind!r}; one of {sorted(READERS)} or 'auto'")
    options = options or ReaderOptions()
    if option_fields:
        options = options.with_updates(**option_fields)
    return READERS[kind](path, options)
