"""The compiled CPU render kernels (``csrc/render_cpu.cpp``).

Built ahead of time by the set-up (``python -m gs4_slam.ext``), else once on
first use; see :mod:`gs4_slam.ext`. When no build can be had the renderer falls
back to the PyTorch twins in ``_torch_impl.py``.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from gs4_slam.ext import CompiledExtension

EXTENSION = CompiledExtension(
    prefix="gs4_render_cpu_",
    csrc_dir=Path(__file__).resolve().parent / "csrc",
    sources=("render_cpu.cpp",),
    # -O3 vectorises the span and channel loops for the baseline x86-64/aarch64 ISA
    # (no -march: the build must run on any machine of the same architecture);
    # -fno-trapping-math allows the branch-free falloff loop to vectorise;
    # fp-contract=off keeps the forward and backward alpha tests bit-identical.
    cflags=("-O3", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"),
    ldflags=("-fopenmp",),
    purpose="CPU render kernels",
    fallback="the slower PyTorch renderer",
)


def load_cpu_kernels(build_if_missing: bool = True) -> ModuleType | None:
    """The compiled kernels, building them if missing; None if impossible (cached per process)."""
    return EXTENSION.load(build_if_missing)


def has_cpu_kernels(build_if_missing: bool = True) -> bool:
    """Whether the compiled CPU kernels can be used in this process."""
    return load_cpu_kernels(build_if_missing) is not None


def check(module: ModuleType) -> None:
    """Render one Gaussian with a freshly built module and check the centre pixel."""
    import torch

    means2d = torch.tensor([[8.0, 8.0]])
    conics = torch.tensor([[0.25, 0.0, 0.25]])
    opacities = torch.tensor([0.9])
    valid = torch.ones(1, dtype=torch.bool)
    offsets, ids, bbox, _ = module.bin_tiles(means2d, conics, opacities, torch.ones(1), valid, 16, 16, 16, 8)
    colors = torch.ones(1, 1)
    image, *_ = module.rasterize_forward(means2d, conics, opacities, colors, offsets, ids, bbox, 16, 16, 16, 8)
    expected = 0.9 * float(torch.exp(torch.tensor(-0.0625)))
    if abs(float(image[7, 7, 0]) - expected) > 1e-5:
        raise RuntimeError(f"render kernel check: {float(image[7, 7, 0])} at the centre, expected {expected}")
