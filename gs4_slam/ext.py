"""Compiled CPU extensions (C++ through torch's cpp_extension): find, build, load.

Each extension (the render kernels, the tracking kernel) declares a
:class:`CompiledExtension`; this module does the rest the same way for all:

* builds go to ``<repo>/build/kernels/<name>`` in a writable source checkout,
  else to a per-user cache folder;
* the module name carries a hash of the sources, the flags and the torch/Python
  versions, so a stale build is never imported by mistake;
* importing the package never compiles anything: the set-up builds ahead of
  time (``python -m gs4_slam.ext``), and a first use that finds no build
  compiles it once (logged) or, failing that, returns None so the caller uses
  its PyTorch/NumPy twin.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import importlib.util
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

log = logging.getLogger(__name__)

#: Modules that declare an extension as ``EXTENSION`` (and a ``check(module)``).
EXTENSION_MODULES = ("gs4_slam.render.kernels", "gs4_slam.tracking.kernels")


@dataclass(frozen=True)
class BuildSpec:
    """Where one build of an extension lives."""

    name: str  # Python module name, unique per sources/flags/toolchain
    build_dir: Path
    sources: tuple[Path, ...]

    @property
    def library(self) -> Path:
        return self.build_dir / f"{self.name}.so"


@dataclass(frozen=True)
class CompiledExtension:
    """A C++ extension: its sources, flags and what it is for (in log messages)."""

    prefix: str  # module names are prefix + hash
    csrc_dir: Path
    sources: tuple[str, ...]
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    purpose: str = "CPU kernels"
    fallback: str = "the slower PyTorch path"

    def spec(self, build_root: Path | None = None) -> BuildSpec:
        import torch

        sources = tuple(self.csrc_dir / s for s in self.sources)
        digest = hashlib.sha256()
        for path in sources:
            digest.update(path.read_bytes())
        toolchain = (self.cflags, self.ldflags, torch.__version__, sys.version, platform.machine())
        digest.update(repr(toolchain).encode())
        name = self.prefix + digest.hexdigest()[:12]
        return BuildSpec(name, (build_root or default_build_root()) / name, sources)

    def import_built(self, spec: BuildSpec) -> ModuleType | None:
        """The built module, or None when it is absent or does not load."""
        if not spec.library.is_file():
            return None
        module_spec = importlib.util.spec_from_file_location(spec.name, spec.library)
        if module_spec is None or module_spec.loader is None:
            return None
        module = importlib.util.module_from_spec(module_spec)
        try:
            import torch  # noqa: F401 - the extension links against libraries torch loads

            module_spec.loader.exec_module(module)
        except ImportError as exc:
            log.warning("could not import %s (%s); it will be rebuilt", spec.library, exc)
            return None
        return module

    def build(self, spec: BuildSpec, verbose: bool = False) -> ModuleType:
        """Compile with torch's cpp_extension (needs a C++17 compiler and ninja)."""
        from torch.utils import cpp_extension

        spec.build_dir.mkdir(parents=True, exist_ok=True)
        # ninja may live only in the venv's bin folder, which is not on PATH when
        # the venv's python is called directly.
        old_path = os.environ.get("PATH", "")
        os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), old_path])
        try:
            return cpp_extension.load(
                name=spec.name,
                sources=[str(s) for s in spec.sources],
                build_directory=str(spec.build_dir),
                extra_cflags=list(self.cflags),
                extra_ldflags=list(self.ldflags),
                verbose=verbose,
            )
        finally:
            os.environ["PATH"] = old_path

    def remove_stale_builds(self, spec: BuildSpec) -> None:
        """Delete other builds of this extension next to ``spec``'s."""
        for path in spec.build_dir.parent.glob(self.prefix + "*"):
            if path.is_dir() and path.name != spec.name:
                shutil.rmtree(path, ignore_errors=True)

    def load(self, build_if_missing: bool = True) -> ModuleType | None:
        """The compiled module (built once if missing), or None; cached per process."""
        return _load(self, build_if_missing)


@functools.cache
def _load(extension: CompiledExtension, build_if_missing: bool) -> ModuleType | None:
    try:
        spec = extension.spec()
    except ImportError:  # no torch: nothing can be built or loaded
        return None
    module = extension.import_built(spec)
    if module is not None or not build_if_missing:
        return module
    log.warning("%s not built yet: compiling %s (one-off, under a minute)", extension.purpose, spec.library)
    try:
        module = extension.build(spec)
    except Exception as exc:  # noqa: BLE001 - any build failure means "use the fallback"
        log.warning("%s failed to build (%s); using %s. Run `python -m gs4_slam.ext` to see the compiler output.",
                    extension.purpose, exc, extension.fallback)
        return None
    extension.remove_stale_builds(spec)
    return module


def default_build_root() -> Path:
    """``<repo>/build/kernels`` in a writable source checkout, else a per-user cache folder."""
    repo = Path(__file__).resolve().parents[1]
    if (repo / "setup.py").is_file() and os.access(repo, os.W_OK):
        return repo / "build" / "kernels"
    return Path.home() / ".cache" / "gs4_slam" / "kernels"


def build_all(verbose: bool = False) -> int:
    """Build (or find) every declared extension and run its check; the number that failed."""
    failures = 0
    for module_name in EXTENSION_MODULES:
        declaring = importlib.import_module(module_name)
        extension: CompiledExtension = declaring.EXTENSION
        check: Callable[[ModuleType], None] = declaring.check
        spec = extension.spec()
        start = time.monotonic()
        try:
            module = extension.import_built(spec) or extension.build(spec, verbose=verbose)
            check(module)
        except Exception as exc:  # noqa: BLE001 - report every failure the same way
            print(f"[ext] FAILED: {extension.purpose} ({spec.name}): {exc}; {extension.fallback} will be used",
                  file=sys.stderr)
            failures += 1
            continue
        extension.remove_stale_builds(spec)
        print(f"[ext] {extension.purpose}: {spec.library} ready ({time.monotonic() - start:.1f} s)")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the compiled CPU extensions (run by scripts/setup.sh).")
    parser.add_argument("--quiet", action="store_true", help="hide the compiler output")
    args = parser.parse_args(argv)
    return 1 if build_all(verbose=not args.quiet) else 0


if __name__ == "__main__":
    sys.exit(main())
