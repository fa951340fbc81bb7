"""Lazy RGB-D sequence readers: TUM RGB-D, ScanNet (and generated sequences), Replica.

    >>> reader = open_dataset("tum", "../shared/data/tum_fr1_xyz", stride=2, resize=(320, 240))
    >>> for frame in reader: ...

Every reader is a :class:`SequenceReader`: ``len()``, iteration, indexing,
``intrinsics`` and ``name``; images are read one frame at a time.

The names below load on first use, so that the command line can import the
light ``gs4_slam.datasets.args`` without OpenCV.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DatasetError": "gs4_slam.datasets.base",
    "ReaderOptions": "gs4_slam.datasets.base",
    "SequenceReader": "gs4_slam.datasets.base",
    "TumReader": "gs4_slam.datasets.tum",
    "ScanNetReader": "gs4_slam.datasets.scannet",
    "ReplicaReader": "gs4_slam.datasets.replica",
    "READERS": "gs4_slam.datasets.factory",
    "detect_kind": "gs4_slam.datasets.factory",
    "open_dataset": "gs4_slam.datasets.factory",
    "add_reader_arguments": "gs4_slam.datasets.args",
    "options_from_args": "gs4_slam.datasets.args",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
