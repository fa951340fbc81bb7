"""Semantic mapping on held-out synthetic rooms: fused class maps against ground truth.

    python -m bench.semantics [--rooms 4] [--frames 40]

Each held-out room (seeds never used to train the predictor) runs through the
full pipeline (tracking included, mapping inline for reproducibility) in three
set-ups; the final map's fused classes are then rendered at every 5th estimated
pose and compared with the ground-truth label images:

- ``gt_stream``: the ground-truth label images fused as if they came from an
  external 2D segmenter (``mapping.semantics.source: external``);
- ``gt_stream_stride4``: the same with one Gaussian per 4x4 pixels instead of 8x8
  (``predictor.stride: 4``), since thin and small objects need the resolution;
- ``learned``: the Gaussian Prediction Model's semantic head only (the default);
- ``learned_last``: the same observations without fusion (evidence capped near 0,
  so the last observation wins), to show what fusing buys.

Consistency: of the Gaussians seen (on the measured surface) in two or more
evaluation views, the fraction whose class is the same in all of them, on the
learned map's rendered views (``consistency``) and on the per-frame predictions
before fusion (``consistency_raw``). Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gs4_slam.mapping.semantic_fusion import predicted_observation, rendered_classes
from gs4_slam.metrics.semantic_map import LabelView, confusion_of_views, multiview_consistency, render_labels
from gs4_slam.predictor.data import load_sequences
from gs4_slam.slam import Slam, load_slam_config

REPO_ROOT = Path(__file__).resolve().parents[1]
HELDOUT_FIRST_SEED = 10000
SETUPS = {  # overrides of config/slam.yaml
    "gt_stream": {"mapping": {"semantics": {"source": "external"}}},
    "gt_stream_stride4": {"mapping": {"semantics": {"source": "external"}}, "predictor": {"stride": 4}},
    "learned": {"mapping": {"semantics": {"source": "predicted"}}},
    "learned_last": {"mapping": {"semantics": {"source": "predicted", "max_weight": 1e-3}}},
}


def run_room(sequence, setup: dict, eval_every: int) -> dict:
    from gs4_slam.config import merge

    slam = Slam(load_slam_config(overrides=merge({"mapping": {"threaded": False}}, setup)))
    frames = [sequence.frame(i) for i in range(len(sequence))]
    start = time.perf_counter()
    results = [slam.process(f) for f in frames]
    slam.flush()
    slam.refine_final_map()  # as `gs4-slam run` does once the last frame is in
    fps = len(frames) / (time.perf_counter() - start)
    gaussians = slam.map_set()
    views, raw_views, predicted, truth = [], [], [], []
    for i in range(0, len(frames), eval_every):
        frame = slam.prepare(frames[i])
        pose = results[i].T_world_cam
        labels = render_labels(gaussians, frame.intrinsics, pose)
        predicted.append(labels.numpy())
        truth.append(frame.labels)
        depth = torch.from_numpy(frame.depth_m)
        views.append(LabelView(labels, depth, frame.intrinsics, pose))
        if slam.config.mapping.semantics.source == "predicted":
            raw_views.append(LabelView(_raw_prediction(slam, frame, pose), depth, frame.intrinsics, pose))
    consistency, counted = multiview_consistency(gaussians, views)
    out = {"confusion": confusion_of_views(predicted, truth, slam.label_set.num_classes), "fps": fps,
           "n_gaussians": len(gaussians), "consistency": consistency, "consistency_counted": counted,
           "class_names": slam.label_set.class_names}
    if raw_views:
        out["consistency_raw"] = multiview_consistency(gaussians, raw_views)[0]
    slam.close()
    return out


def _raw_prediction(slam: Slam, frame, pose) -> torch.Tensor:
    """The frame's own prediction as a class image (what fusion receives from it)."""
    with torch.no_grad():
        prediction = slam.predictor.predict(frame, pose).gaussians
        T_cam_world = torch.as_tensor(np.array(pose.inverse().matrix), dtype=torch.float32)
        observation = predicted_observation(prediction, frame.intrinsics, T_cam_world)
    return rendered_classes(observation.probabilities * observation.weight[..., None], observation.weight)[0]


def _table(rows: dict[str, dict]) -> str:
    lines = [f"{'set-up':<18} {'mIoU':>6} {'pixel acc':>9} {'consistency':>11} {'Gaussians':>9} {'fps':>6}"]
    for name, row in rows.items():
        lines.append(f"{name:<18} {row['miou']:6.1f} {row['pixel_accuracy']:9.1f} {row['consistency']:11.3f} "
                     f"{row['n_gaussians']:9.0f} {row['fps']:6.1f}")
    return "\n".join(lines)


def _per_class(rows: dict[str, dict], class_names) -> str:
    names = list(rows)
    lines = [f"{'class':<16}" + "".join(f"{n:>19}" for n in names)]
    for c, cname in enumerate(class_names):
        cells = [rows[n]["per_class_iou"][c] for n in names]
        lines.append(f"{cname:<16}" + "".join(f"{'-':>19}" if v is None else f"{v:19.1f}" for v in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=4, help="held-out rooms (seeds 10000, 10001, ...)")
    parser.add_argument("--frames", type=int, default=40, help="frames per room")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / "build" / "cache" / "synthetic")
    args = parser.parse_args(argv)
    sequences = load_sequences(range(HELDOUT_FIRST_SEED, HELDOUT_FIRST_SEED + args.rooms), args.cache_dir,
                               args.frames, 320, 240)
    rows: dict[str, dict] = {}
    class_names: tuple[str, ...] = ()
    for name, setup in SETUPS.items():
        per_room = [run_room(seq, setup, args.eval_every) for seq in sequences]
        confusion = per_room[0]["confusion"]
        for room in per_room[1:]:
            confusion = confusion + room["confusion"]
        scores = confusion.scores()
        class_names = per_room[0]["class_names"]
        row = {
            "miou": 100.0 * scores.miou,
            "pixel_accuracy": 100.0 * scores.overall_accuracy,
            "per_class_iou": [None if np.isnan(v) else round(100.0 * float(v), 1) for v in scores.iou],
            "consistency": float(np.nanmean([r["consistency"] for r in per_room])),
            "n_gaussians": float(np.mean([r["n_gaussians"] for r in per_room])),
            "fps": float(np.mean([r["fps"] for r in per_room])),
        }
        if "consistency_raw" in per_room[0]:
            row["consistency_raw"] = float(np.nanmean([r["consistency_raw"] for r in per_room]))
        rows[name] = row
        print(f"{name}: mIoU {row['miou']:.1f}", file=sys.stderr)
    print(f"held-out rooms {HELDOUT_FIRST_SEED}..{HELDOUT_FIRST_SEED + args.rooms - 1}, {args.frames} frames each, "
          f"evaluated on every {args.eval_every}th frame at the estimated pose\n")
    print(_table(rows))
    print(f"\nlearned: consistency of the per-frame predictions before fusion {rows['learned']['consistency_raw']:.3f}")
    print("\nper-class IoU\n" + _per_class(rows, class_names))
    summary = {
        "miou_gt_stream": rows["gt_stream"]["miou"],
        "miou_gt_stream_stride4": rows["gt_stream_stride4"]["miou"],
        "miou_learned": rows["learned"]["miou"],
        "miou_learned_last_observation": rows["learned_last"]["miou"],
        "consistency": rows["learned"]["consistency"],
        "consistency_raw_predictions": rows["learned"]["consistency_raw"],
        "per_class_iou_gt_stream": rows["gt_stream"]["per_class_iou"],
        "per_class_iou_learned": rows["learned"]["per_class_iou"],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
