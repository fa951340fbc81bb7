"""Finding, and if need be building, the compiled tracking kernel.

``csrc/track_cpu.cpp`` is compiled with torch's cpp_extension into
``<repo>/build/kernels/gs4_track_cpu_<hash>`` (``csrc/build_ext.py`` does it
ahead of time; otherwise the first tracker that wants it builds it once, in about
15 s). The name hashes the source, the flags and the toolchain, so a stale build
is never imported. Without a compiler the tracker uses the NumPy path in
:mod:`gs4_slam.tracking.solver` (same results, about 10x slower per iteration).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

_LOG = logging.getLogger(__name__)

CSRC_DIR = Path(__file__).resolve().parent / "csrc"
SOURCES = ("track_cpu.cpp",)
MODULE_PREFIX = "gs4_track_cpu_"
# No -march: the build must run on any machine of the same architecture.
# No -ffast-math: the kernel must agree with the NumPy oracle to float rounding.
CFLAGS = ("-O3", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math")
#: Set to 1 to force the NumPy path (benchmarks of the fallback, debugging).
DISABLE_ENV = "GS4_TRACKING_NO_KERNEL"


@dataclass(frozen=True)
class KernelSpec:
    """Where one build of the kernel lives."""

    name: str
    build_dir: Path
    sources: tuple[Path, ...]

    @property
    def library(self) -> Path:
        return self.build_dir / f"{self.name}.so"


def default_build_root() -> Path:
    """``<repo>/build/kernels`` in a writable source checkout, else a per-user cache."""
    repo = Path(__file__).resolve().parents[2]
    if (repo / "setup.py").is_file() and os.access(repo, os.W_OK):
        return repo / "build" / "kernels"
    return Path.home() / ".cache" / "gs4_slam" / "kernels"


def kernel_spec(build_root: Path | None = None) -> KernelSpec:
    import torch

    sources = tuple(CSRC_DIR / s for s in SOURCES)
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.read_bytes())
    digest.update(repr((CFLAGS, torch.__version__, sys.version, platform.machine())).encode())
    name = MODULE_PREFIX + digest.hexdigest()[:12]
    return KernelSpec(name, (build_root or default_build_root()) / name, sources)


def import_built(spec: KernelSpec) -> ModuleType | None:
    """The built module, or None when absent or unloadable."""
    if not spec.library.is_file():
        return None
    module_spec = importlib.util.spec_from_file_location(spec.name, spec.library)
    if module_spec is None or module_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(module_spec)
    try:
        # The extension links against torch's libraries, which importing torch loads.
        import torch  # noqa: F401

        module_spec.loader.exec_module(module)
    except ImportError as exc:
        _LOG.warning("could not import %s (%s); it will be rebuilt", spec.library, exc)
        return None
    return module


def build(spec: KernelSpec, verbose: bool = False) -> ModuleType:
    """Compile with torch's cpp_extension (needs a C++17 compiler and ninja)."""
    from torch.utils import cpp_extension

    spec.build_dir.mkdir(parents=True, exist_ok=True)
    # ninja may live only in the venv's bin folder, which is not on PATH when the
    # venv's python is called directly.
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), old_path])
    try:
        return cpp_extension.load(
            name=spec.name,
            sources=[str(s) for s in spec.sources],
            build_directory=str(spec.build_dir),
            extra_cflags=list(CFLAGS),
            verbose=verbose,
        )
    finally:
        os.environ["PATH"] = old_path


def remove_stale_builds(spec: KernelSpec) -> None:
    for path in spec.build_dir.parent.glob(MODULE_PREFIX + "*"):
        if path.is_dir() and path.name != spec.name:
            shutil.rmtree(path, ignore_errors=True)


@functools.cache
def load_kernel(build_if_missing: bool = True) -> ModuleType | None:
    """The compiled kernel (built once if missing), or None; cached per process."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None
    try:
        spec = kernel_spec()
    except ImportError:
        return None
    module = import_built(spec)
    if module is not None or not build_if_missing:
        return module
    _LOG.warning("tracking kernel not built yet: compiling %s (one-off, about 15 s)", spec.library)
    try:
        module = build(spec)
    except Exception as exc:  # noqa: BLE001 - any build failure means "use the NumPy path"
        _LOG.warning("tracking kernel failed to build (%s); using the slower NumPy path", exc)
        return None
    remove_stale_builds(spec)
    return module
