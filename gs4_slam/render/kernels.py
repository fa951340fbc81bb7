"""Finding, and if need be building, the compiled CPU render kernels.

The kernels (``csrc/render_cpu.cpp``) are built by the set-up
(``scripts/setup.sh`` runs ``csrc/build_ext.py``) into ``<repo>/build/kernels``.
Importing :mod:`gs4_slam.render` never compiles anything; the first render on
the CPU backend imports the built module and, only if it is missing, builds it
once (logged as a warning: it takes about a minute). When no module can be had
the renderer falls back to the PyTorch twins in ``_torch_impl.py``.

The module name carries a hash of the sources, the compiler flags and the
torch/Python versions, so a stale build is never imported by mistake.
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

import torch

_LOG = logging.getLogger(__name__)

CSRC_DIR = Path(__file__).resolve().parent / "csrc"
SOURCES = ("render_cpu.cpp",)
MODULE_PREFIX = "gs4_render_cpu_"
# -O3 vectorises the span and channel loops for the baseline x86-64/aarch64 ISA
# (no -march: the build must run on any machine of the same architecture);
# -fno-trapping-math allows the branch-free falloff loop to vectorise;
# fp-contract=off keeps the forward and backward alpha tests bit-identical.
CFLAGS = ("-O3", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math")
LDFLAGS = ("-fopenmp",)


@dataclass(frozen=True)
class KernelSpec:
    """Where a given build of the kernels lives."""

    name: str  # Python module name, unique per sources/flags/toolchain
    build_dir: Path
    sources: tuple[Path, ...]

    @property
    def library(self) -> Path:
        return self.build_dir / f"{self.name}.so"


def default_build_root() -> Path:
    """``<repo>/build/kernels`` in a source checkout, else a per-user cache folder."""
    repo = Path(__file__).resolve().parents[2]
    if (repo / "setup.py").is_file() and os.access(repo, os.W_OK):
        return repo / "build" / "kernels"
    return Path.home() / ".cache" / "gs4_slam" / "kernels"


def kernel_spec(build_root: Path | None = None) -> KernelSpec:
    """The build the running interpreter and torch need."""
    sources = tuple(CSRC_DIR / s for s in SOURCES)
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.read_bytes())
    toolchain = (CFLAGS, LDFLAGS, torch.__version__, sys.version, platform.machine())
    digest.update(repr(toolchain).encode())
    name = MODULE_PREFIX + digest.hexdigest()[:12]
    return KernelSpec(name=name, build_dir=(build_root or default_build_root()) / name, sources=sources)


def import_built(spec: KernelSpec) -> ModuleType | None:
    """The built module, or ``None`` when it is absent or does not load."""
    if not spec.library.is_file():
        return None
    module_spec = importlib.util.spec_from_file_location(spec.name, spec.library)
    if module_spec is None or module_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except ImportError as exc:
        _LOG.warning("could not import %s (%s); it will be rebuilt", spec.library, exc)
        return None
    return module


def build(spec: KernelSpec, verbose: bool = False) -> ModuleType:
    """Compile the kernels with torch's cpp_extension (needs a C++17 compiler and ninja)."""
    from torch.utils import cpp_extension

    spec.build_dir.mkdir(parents=True, exist_ok=True)
    # ninja is often only in the venv's bin folder, which is not on PATH when the
    # venv's python is called directly.
    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), old_path])
    try:
        return cpp_extension.load(
            name=spec.name,
            sources=[str(s) for s in spec.sources],
            build_directory=str(spec.build_dir),
            extra_cflags=list(CFLAGS),
            extra_ldflags=list(LDFLAGS),
            verbose=verbose,
        )
    finally:
        os.environ["PATH"] = old_path


def remove_stale_builds(spec: KernelSpec) -> None:
    """Delete other builds of the kernels next to ``spec``'s."""
    for path in spec.build_dir.parent.glob(MODULE_PREFIX + "*"):
        if path.is_dir() and path.name != spec.name:
            shutil.rmtree(path, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def load_cpu_kernels(build_if_missing: bool = True) -> ModuleType | None:
    """The compiled kernels, building them if missing; ``None`` if impossible.

    The result is cached for the process, so a failed build is tried once.
    """
    spec = kernel_spec()
    module = import_built(spec)
    if module is not None or not build_if_missing:
        return module
    _LOG.warning("CPU render kernels not built yet: compiling %s (one-off, about a minute)", spec.library)
    try:
        return build(spec)
    except Exception as exc:  # noqa: BLE001 - any build failure means "use the fallback"
        _LOG.warning(
            "CPU render kernels failed to build (%s); falling back to the slower PyTorch renderer. "
            "Re-run `python gs4_slam/render/csrc/build_ext.py` to see the compiler output.",
            exc,
        )
        return None


def has_cpu_kernels(build_if_missing: bool = True) -> bool:
    """Whether the compiled CPU kernels can be used in this process."""
    return load_cpu_kernels(build_if_missing) is not None
