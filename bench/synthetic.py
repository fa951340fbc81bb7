"""Benchmark of the synthetic sequence generator: frames per second at 320x240.

Run from the repository root::

    python -m bench.synthetic [--frames 60] [--seeds 0 1 2]

Prints a table per seed (with and without sensor noise) and ends with one line
holding a JSON object of the summary numbers. Everything is measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np


def run(seeds: list[int], frames: int, width: int, height: int) -> dict:
    from gs4_slam.synthetic.generator import SyntheticConfig, write_sequence

    rows = []
    cpu_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gs4_bench_synth_") as tmp:
        for seed in seeds:
            for noise in (False, True):
                config = SyntheticConfig(seed=seed, frames=frames, width=width, height=height, noise=noise)
                cpu_start = time.process_time()
                report = write_sequence(os.path.join(tmp, f"s{seed}_{int(noise)}"), config)
                # CPU time is less sensitive than wall time to other jobs sharing the cores.
                cpu_ms.append(1000 * (time.process_time() - cpu_start) / frames)
                rows.append((seed, noise, report))

    header = (
        f"{'seed':>4}  {'room':<9} {'noise':<5} {'tris':>5}  {'setup s':>7}  "
        f"{'render ms':>9}  {'noise ms':>8}  {'write ms':>8}  {'frames/s':>8}  {'cpu ms':>6}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"synthetic generation, {frames} frames per run at {width}x{height}, "
        f"{os.cpu_count()} CPU(s), load average {load:.1f}"
    )
    print(header)
    print("-" * len(header))
    for (seed, noise, r), cpu in zip(rows, cpu_ms):
        n = r.frames
        print(
            f"{seed:>4}  {r.room_type:<9} {'yes' if noise else 'no':<5} {r.num_triangles:>5}  {r.setup_s:>7.3f}  "
            f"{1000 * r.render_s / n:>9.1f}  {1000 * r.noise_s / n:>8.1f}  {1000 * r.write_s / n:>8.1f}  "
            f"{r.frames_per_s:>8.1f}  {cpu:>6.1f}"
        )

    def overall_fps(with_noise: bool) -> float:
        chosen = [r for _, noise, r in rows if noise == with_noise]
        per_frame_s = sum(r.render_s + r.noise_s + r.write_s for r in chosen)
        return sum(r.frames for r in chosen) / per_frame_s

    key = f"{width}x{height}"
    clean = [r for _, noise, r in rows if not noise]
    return {
        f"synth_fps_{key}": round(overall_fps(False), 2),
        f"synth_fps_{key}_noise": round(overall_fps(True), 2),
        f"synth_render_ms_{key}": round(1000 * float(np.mean([r.render_s / r.frames for r in clean])), 2),
        f"synth_write_ms_{key}": round(1000 * float(np.mean([r.write_s / r.frames for r in clean])), 2),
        f"synth_cpu_ms_per_frame_{key}": round(
            float(np.mean([c for c, (_, noise, _) in zip(cpu_ms, rows) if not noise])), 2
        ),
        "load_average": round(load, 2),
        "synth_setup_s": round(float(np.mean([r.setup_s for _, _, r in rows])), 3),
        "frames_per_run": frames,
        "seeds": seeds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per run (default 60)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="scene seeds (default 0 1 2)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args()
    summary = run(args.seeds, args.frames, args.width, args.height)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
