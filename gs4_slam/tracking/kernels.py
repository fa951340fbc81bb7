"""The compiled tracking kernel (``csrc/track_cpu.cpp``): one-pass linearisation.

Built ahead of time by the set-up (``python -m gs4_slam.ext``), else once on
first use; see :mod:`gs4_slam.ext`. Without it the tracker uses the NumPy path
in :mod:`gs4_slam.tracking.solver` (same results, about 5x slower per frame);
``TrackerConfig.use_kernel = False`` forces that path.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from gs4_slam.ext import CompiledExtension

EXTENSION = CompiledExtension(
    prefix="gs4_track_cpu_",
    csrc_dir=Path(__file__).resolve().parent / "csrc",
    sources=("track_cpu.cpp",),
    # No -march: the build must run on any machine of the same architecture.
    # No -ffast-math: the kernel must agree with the NumPy oracle to float rounding.
    cflags=("-O3", "-fno-math-errno"),
    purpose="tracking kernel",
    fallback="the slower NumPy tracker",
)


def load_kernel(build_if_missing: bool = True) -> ModuleType | None:
    """The compiled kernel (built once if missing), or None; cached per process."""
    return EXTENSION.load(build_if_missing)


def check(module: ModuleType) -> None:
    """Raise if a build disagrees with the NumPy oracle on a small scene."""
    from gs4_slam.tracking.solver import check_kernel

    check_kernel(module)
