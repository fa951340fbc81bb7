"""Build the compiled CPU render kernels; run by scripts/setup.sh.

    python gs4_slam/render/csrc/build_ext.py [--quiet]

Builds into ``<repo>/build/kernels/<module>`` (see gs4_slam/render/kernels.py),
checks that the module loads and runs, removes older builds, and exits non-zero
on failure (the renderer then falls back to PyTorch with a warning).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def smoke_test(module) -> None:
    """Render one Gaussian and check the result is plausible."""
    import torch

    means2d = torch.tensor([[8.0, 8.0]])
    conics = torch.tensor([[0.25, 0.0, 0.25]])
    opacities = torch.tensor([0.9])
    valid = torch.ones(1, dtype=torch.bool)
    offsets, ids, bbox, _ = module.bin_tiles(means2d, conics, opacities, torch.ones(1), valid, 16, 16, 16, 8)
    colors = torch.ones(1, 1)
    image, final_t, *_ = module.rasterize_forward(means2d, conics, opacities, colors, offsets, ids, bbox, 16, 16, 16, 8)
    if not (abs(float(image[7, 7, 0]) - 0.9 * float(torch.exp(torch.tensor(-0.0625)))) < 1e-5):
        raise RuntimeError(f"smoke test rendered {float(image[7, 7, 0])} at the centre")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="hide the compiler output")
    args = parser.parse_args(argv)

    from gs4_slam.render import kernels

    spec = kernels.kernel_spec()
    start = time.monotonic()
    try:
        module = kernels.import_built(spec) or kernels.build(spec, verbose=not args.quiet)
        smoke_test(module)
    except Exception as exc:  # noqa: BLE001 - report every failure the same way
        print(f"[build_ext] FAILED to build {spec.name}: {exc}", file=sys.stderr)
        return 1
    kernels.remove_stale_builds(spec)
    print(f"[build_ext] {spec.library} ready ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
