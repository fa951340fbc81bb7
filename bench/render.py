"""Renderer benchmark: forward and forward+backward times and peak memory.

    python -m bench.render            # 5k/20k/100k Gaussians x 160x120/320x240/640x480
    python -m bench.render --quick    # 20k at 320x240 only

Scene: a room seen from inside (walls, floor, ceiling, two boxes), with the
Gaussians on the surfaces the camera sees, like a SLAM map built from it: flat
discs whose size follows the sampling density (so 5k Gaussians are larger than
100k), projecting to about 1 to a few tens of pixels (see ``make_scene``). Channels: colour, depth
and alpha. Times are medians over several runs after a warm-up; forward runs
with gradients enabled (as in tracking and mapping). Memory is the peak
resident-set growth over the set-up (each configuration runs in a fresh
process; CPU) or torch's peak allocation (CUDA). The last line printed is one JSON object
of all figures. OMP_WAIT_POLICY defaults to PASSIVE here (see below); export
GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=100000000000
before running to keep page faults out of the figures as the SLAM process would.
"""
from __future__ import annotations

import os

# Spinning OpenMP workers starve each other on a shared 2-core machine (measured
# here: 450 ms instead of 64 ms per forward+backward at 2 threads); libgomp reads
# this when torch loads it, so it is set before the import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from gs4_slam.camera import Intrinsics  # noqa: E402
from gs4_slam.gaussians import GaussianSet, rgb_to_sh_dc  # noqa: E402
from gs4_slam.render import has_cpu_kernels, render  # noqa: E402
from gs4_slam.render.api import gsplat_cuda_available  # noqa: E402

SIZES = {"5k": 5_000, "20k": 20_000, "100k": 100_000}
RESOLUTIONS = ((160, 120), (320, 240), (640, 480))
CHANNELS = ("color", "depth", "alpha")


def intrinsics_for(width: int, height: int) -> Intrinsics:
    """A 60-degree horizontal field of view, like an RGB-D sensor."""
    f = 0.5 * width / math.tan(math.radians(30))
    return Intrinsics(width, height, f, f, (width - 1) / 2, (height - 1) / 2)


def _random_rotation_to(normals: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Quaternions (w, x, y, z) [N, 4] rotating +z onto ``normals`` [N, 3], random spin about it."""
    z = torch.tensor([0.0, 0.0, 1.0])
    axis = torch.cross(z.expand_as(normals), normals, dim=-1)
    s = axis.norm(dim=-1, keepdim=True)
    c = normals[:, 2:3]
    half = torch.atan2(s, c) / 2
    axis = torch.where(s > 1e-8, axis / s.clamp_min(1e-8), torch.tensor([1.0, 0.0, 0.0]))
    align = torch.cat([half.cos(), half.sin() * axis], dim=-1)
    spin_angle = torch.rand(len(normals), 1, generator=gen) * math.pi
    spin = torch.cat([spin_angle.cos(), torch.zeros(len(normals), 2), spin_angle.sin()], dim=-1)
    w1, v1 = align[:, :1], align[:, 1:]
    w2, v2 = spin[:, :1], spin[:, 1:]
    return torch.cat([w1 * w2 - (v1 * v2).sum(-1, keepdim=True), w1 * v2 + w2 * v1 + torch.cross(v1, v2, dim=-1)], -1)


# Room interior (x right, y down, z forward; camera at the origin) and boxes on its floor.
_ROOM_MIN, _ROOM_MAX = (-2.0, -1.25, -0.5), (2.0, 1.25, 4.5)
_BOXES = (((-1.2, 0.45, 2.2), (-0.4, 1.25, 3.0)), ((0.55, -0.05, 2.9), (1.25, 1.25, 3.5)))
_REFERENCE = (640, 480)  # resolution whose pixels set the Gaussians' sizes


def _cast_rays(dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First surface hit (distance [N], normal [N, 3]) of rays from the origin."""
    lo, hi = torch.tensor(_ROOM_MIN), torch.tensor(_ROOM_MAX)
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    # Leaving the room: the nearest wall ahead on each axis.
    t_axis = torch.where(dirs > 0, hi * inv, lo * inv)  # [N, 3]
    t_hit, axis = t_axis.min(dim=1)
    normal = torch.zeros_like(dirs)
    normal[torch.arange(len(dirs)), axis] = -torch.sign(dirs[torch.arange(len(dirs)), axis])
    for box_lo, box_hi in _BOXES:
        t0, t1 = torch.tensor(box_lo) * inv, torch.tensor(box_hi) * inv
        t_near, near_axis = torch.minimum(t0, t1).max(dim=1)
        t_far = torch.maximum(t0, t1).min(dim=1).values
        hit = (t_near <= t_far) & (t_near > 0) & (t_near < t_hit)
        t_hit = torch.where(hit, t_near, t_hit)
        box_normal = torch.zeros_like(dirs)
        box_normal[torch.arange(len(dirs)), near_axis] = -torch.sign(dirs[torch.arange(len(dirs)), near_axis])
        normal = torch.where(hit[:, None], box_normal, normal)
    return t_hit, normal


def make_scene(n: int, seed: int = 0) -> GaussianSet:
    """``n`` Gaussians on the surfaces the benchmark camera sees, like a SLAM map built from it.

    Centres are surface points behind uniformly random pixels (10% margin around
    the view); each is a disc facing along the surface normal whose size is
    log-uniform in 0.3..1 x the mean pixel spacing of the centres at 640x480,
    with 5% of them 2..6 times larger. At 320x240 and 20k Gaussians that is a
    footprint sigma of about 1 to 3 px, and up to ~15 px for the large ones.
    """
    gen = torch.Generator().manual_seed(seed)
    width, height = _REFERENCE
    intr = intrinsics_for(width, height)
    margin = 1.1
    u = (torch.rand(n, generator=gen) - 0.5) * width * margin + intr.cx
    v = (torch.rand(n, generator=gen) - 0.5) * height * margin + intr.cy
    dirs = torch.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, torch.ones(n)], -1)
    dist, normal = _cast_rays(dirs)
    means = dirs * dist[:, None]
    spacing_px = math.sqrt(width * height * margin * margin / n)
    size = torch.exp(torch.empty(n).uniform_(math.log(0.3), math.log(1.0), generator=gen))
    large = torch.rand(n, generator=gen) < 0.05
    size = torch.where(large, size * torch.empty(n).uniform_(2.0, 6.0, generator=gen), size)
    # World size of a pixel-sized disc at this depth, widened on slanted surfaces.
    cos_incidence = (normal * dirs / dirs.norm(dim=-1, keepdim=True)).sum(-1).abs().clamp_min(0.3)
    sigma = size * spacing_px * means[:, 2] / intr.fx / cos_incidence.sqrt()
    aspect = torch.empty(n).uniform_(0.6, 1.0, generator=gen)
    log_scales = torch.stack([sigma, sigma * aspect, sigma * 0.1], -1).log()
    t = torch.tensor
    rgb = 0.5 + 0.3 * torch.sin(means * t([2.0, 3.0, 1.5])) + 0.1 * torch.randn(n, 3, generator=gen)
    return GaussianSet(
        means=means.float(),
        log_scales=log_scales.float(),
        quats=_random_rotation_to(normal, gen).float(),
        opacity_logits=(2.0 + torch.randn(n, generator=gen)).float(),
        sh_dc=rgb_to_sh_dc(rgb.clamp(0, 1)).float(),
    )


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_backend(backend: str, scene: GaussianSet, width: int, height: int, repeats: int) -> dict:
    """Median forward and forward+backward milliseconds and peak memory (MiB)."""
    device = torch.device("cuda" if backend == "gsplat" else "cpu")
    params = scene.to(device).map_tensors(lambda x: x.detach().requires_grad_())
    intrinsics = intrinsics_for(width, height)
    pose = torch.eye(4, device=device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        _reset_peak_rss()
        base = _rss_kib("VmRSS")

    def forward():
        return render(params, intrinsics, pose, channels=CHANNELS, backend=backend)

    def forward_backward():
        out = forward()
        loss = out.color.sum() + out.depth.sum() + out.alpha.sum()
        loss.backward()
        for p in (params.means, params.log_scales, params.quats, params.opacity_logits, params.sh_dc):
            p.grad = None

    timings = {}
    for name, fn in (("fwd", forward), ("fwdbwd", forward_backward)):
        fn()  # warm-up (allocator, caches)
        samples = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            samples.append((time.perf_counter() - start) * 1e3)
        timings[name] = statistics.median(samples)
    if device.type == "cuda":
        peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_mib = max(0, _rss_kib("VmHWM") - base) / 1024
    return {"fwd_ms": timings["fwd"], "fwdbwd_ms": timings["fwdbwd"], "peak_mib": peak_mib}


def available_backends(include_torch: bool) -> list[str]:
    backends = []
    if has_cpu_kernels():
        backends.append("cpu")
    if include_torch:
        backends.append("torch")
    if gsplat_cuda_available():
        backends.append("gsplat")
    return backends


def run_config(backend: str, n: int, width: int, height: int, repeats: int) -> dict:
    """One configuration in a fresh interpreter, so that its peak memory is its own."""
    cmd = [sys.executable, "-m", "bench.render", "--worker", backend, str(n), str(width), str(height),
           "--repeats", str(repeats)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the Gaussian renderer backends.")
    parser.add_argument("--quick", action="store_true", help="20k Gaussians at 320x240 only")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure (median)")
    parser.add_argument("--no-torch", action="store_true", help="skip the (slow) PyTorch fallback")
    parser.add_argument("--torch-max-gaussians", type=int, default=20_000,
                        help="largest scene timed on the PyTorch fallback (slow, GBs of memory beyond)")  # fmt: skip
    parser.add_argument("--worker", nargs=4, metavar=("BACKEND", "N", "W", "H"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        backend, n, width, height = args.worker[0], *map(int, args.worker[1:])
        print(json.dumps(time_backend(backend, make_scene(n), width, height, args.repeats)))
        return 0

    sizes = {"20k": SIZES["20k"]} if args.quick else SIZES
    resolutions = ((320, 240),) if args.quick else RESOLUTIONS
    backends = available_backends(include_torch=not args.no_torch)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')}, backends: {', '.join(backends)}")  # fmt: skip
    print(f"channels: {'+'.join(CHANNELS)}; median of {args.repeats} runs (3 on torch); one process per row\n")
    header = f"{'backend':8} {'gaussians':>9} {'resolution':>10} {'fwd ms':>9} {'fwd+bwd ms':>11} {'peak MiB':>9}"
    print(header)
    print("-" * len(header))
    figures: dict[str, float] = {}
    for backend in backends:
        for label, n in sizes.items():
            for width, height in resolutions:
                if backend == "torch" and n > args.torch_max_gaussians:
                    continue
                r = run_config(backend, n, width, height, args.repeats if backend != "torch" else 3)
                print(f"{backend:8} {label:>9} {f'{width}x{height}':>10} {r['fwd_ms']:9.1f} "
                      f"{r['fwdbwd_ms']:11.1f} {r['peak_mib']:9.1f}", flush=True)  # fmt: skip
                key = f"{label}_{width}x{height}"
                figures[f"{backend}_fwd_ms_{key}"] = round(r["fwd_ms"], 2)
                figures[f"{backend}_fwdbwd_ms_{key}"] = round(r["fwdbwd_ms"], 2)
                figures[f"{backend}_peak_mib_{key}"] = round(r["peak_mib"], 1)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
