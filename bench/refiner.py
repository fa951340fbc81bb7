"""The Gaussian Refinement Network against the non-learned baseline, side by side.

    python -m bench.refiner [--weights weights/refiner.pt] [--predictor weights/predictor.pt] [--rooms 4]

On held-out synthetic rooms (seeds never used to train either network): each
room's map is built from 10 of its 40 frames at the ground-truth poses with the
current Prediction Model, once with the refinement stage (network, merging,
opacity pruning: ``config/slam.yaml``'s refinement settings) and once with the
baseline (insert-only + opacity pruning), and rendered into every other frame
of the room: PSNR, depth L1 and the map's Gaussians. Both arms see identical
input, so unlike the TUM rows of ``bench.slam`` (mapping in a background thread
that skips different jobs run to run) the difference is the stage's alone. The
same evaluation fills the refiner card's held-out figures when it is trained,
against the predictor weights of that time; this runs it against today's.
Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="", help="refiner weights (default: the shipped weights/refiner.pt)")
    parser.add_argument("--predictor", default="", help="predictor weights (default: the shipped weights/predictor.pt)")
    parser.add_argument("--rooms", type=int, default=4, help="held-out rooms (seeds 10000 on, at most 8)")
    parser.add_argument("--frames", type=int, default=40, help="frames per room (the card's figures: 40)")
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / "build" / "cache" / "synthetic",
                        help="rendered synthetic rooms")
    args = parser.parse_args(argv)
    if not 1 <= args.rooms <= 8:
        parser.error("--rooms must be in 1..8")
    if args.frames < 4:
        parser.error("--frames must be at least 4")

    import dataclasses

    from gs4_slam.predictor.data import load_sequences
    from gs4_slam.predictor.predictor import GaussianPredictor, PredictorConfig
    from gs4_slam.refiner.refiner import DEFAULT_WEIGHTS, load_weights
    from gs4_slam.refiner.train import RefinerTrainConfig, evaluate
    from gs4_slam.slam import load_slam_config

    cfg = RefinerTrainConfig(cache_dir=str(args.cache_dir), heldout_seeds=(10000, 10000 + args.rooms),
                             frames_per_sequence=args.frames, eval_frames=min(10, args.frames // 2))
    rooms = load_sequences(range(*cfg.heldout_seeds), Path(cfg.cache_dir), cfg.frames_per_sequence, cfg.width,
                           cfg.height, progress=True)
    predictor = GaussianPredictor(PredictorConfig(weights=args.predictor))
    net = load_weights(Path(args.weights) if args.weights else DEFAULT_WEIGHTS)
    stage = load_slam_config().mapping.refinement
    baseline = stage.insert_only_baseline()
    arms = (("network + merging + pruning", net, stage),
            ("network only (no merging)", net, dataclasses.replace(stage, merge=False)),
            ("insert-only + opacity pruning", None, baseline))
    results = {}
    for name, arm_net, arm_cfg in arms:
        start = time.perf_counter()
        results[name] = evaluate(predictor, arm_net, rooms, cfg, arm_cfg)
        results[name]["seconds"] = time.perf_counter() - start
        print(f"done: {name}", flush=True)

    print()
    print(f"{args.rooms} held-out rooms, {cfg.eval_frames} of {args.frames} frames mapped per room at ground-truth "
          "poses, every other frame rendered")
    print(f"{'refinement':<32} {'PSNR dB':>8} {'depth L1 cm':>12} {'Gaussians':>10} {'s':>6}")
    for name, r in results.items():
        print(f"{name:<32} {r['psnr']:>8.2f} {r['depth_l1_cm']:>12.2f} {r['n_gaussians']:>10.1f} {r['seconds']:>6.1f}")
    full, base = results[arms[0][0]], results[arms[-1][0]]
    summary = {"psnr": full["psnr"], "depth_l1_cm": full["depth_l1_cm"], "n_gaussians": full["n_gaussians"],
               "no_merging_psnr": results[arms[1][0]]["psnr"],
               "no_merging_n_gaussians": results[arms[1][0]]["n_gaussians"],
               "baseline_psnr": base["psnr"], "baseline_depth_l1_cm": base["depth_l1_cm"],
               "baseline_n_gaussians": base["n_gaussians"],
               "beats_baseline": bool(full["psnr"] > base["psnr"] and full["n_gaussians"] < base["n_gaussians"]),
               "rooms": args.rooms}
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
