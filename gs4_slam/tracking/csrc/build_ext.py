"""Build the compiled tracking kernel ahead of time (else the first tracker builds it).

    python gs4_slam/tracking/csrc/build_ext.py [--quiet]

Builds into ``<repo>/build/kernels/<module>``, checks it against the NumPy
oracle on a small problem, and exits non-zero on failure (the tracker then uses
the NumPy path).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="hide the compiler output")
    args = parser.parse_args(argv)

    from gs4_slam.tracking import kernels, solver

    spec = kernels.kernel_spec()
    start = time.monotonic()
    try:
        module = kernels.import_built(spec) or kernels.build(spec, verbose=not args.quiet)
        solver.check_kernel(module)
    except Exception as exc:  # noqa: BLE001 - report every failure the same way
        print(f"[build_ext] FAILED to build {spec.name}: {exc}", file=sys.stderr)
        return 1
    kernels.remove_stale_builds(spec)
    print(f"[build_ext] {spec.library} ready ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
