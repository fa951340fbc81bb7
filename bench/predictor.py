"""Quality and speed of the Gaussian Prediction Model against the non-learned baseline.

    python -m bench.predictor [--data ../shared/data/tum_fr1_xyz] [--weights weights/predictor.pt]

On held-out synthetic rooms (seeds never used for training): a frame's Gaussians
rendered into its own view (PSNR, depth L1, 2D semantic mIoU of the rendered
semantic map) and into the view 10 frames later (PSNR on what both views see), at
strides 8 (default), 4 and 16; on real TUM fr1/xyz frames (no semantics): PSNR on
the own view. Network and baseline run on identical input, side by side. Also
the network's inference time at 320x240. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gs4_slam.predictor.data import load_sequences
from gs4_slam.predictor.evaluate import evaluate_frames
from gs4_slam.predictor.predictor import DEFAULT_WEIGHTS, GaussianPredictor, PredictorConfig, frame_tensors
from gs4_slam.predictor.train import TrainConfig, evaluate_heldout

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TUM = REPO_ROOT.parent / "shared" / "data" / "tum_fr1_xyz"


def _tum_frames(path: Path, count: int):
    from gs4_slam.datasets import open_dataset

    reader = open_dataset("tum", path, resize=(320, 240))
    indices = np.linspace(0, len(reader) - 1, count).astype(int)
    return [reader[int(i)] for i in indices]


def _pooled_image_psnr(frames, stride: int = 8) -> float:
    """PSNR of each frame against itself area-averaged to one colour per token and
    bilinearly interpolated back: what a token grid's colours alone can show,
    whatever the Gaussians' shapes (a reference, not a model)."""
    import cv2
    from gs4_slam.metrics.image import psnr

    values = []
    for frame in frames:
        small = cv2.resize(frame.color_rgb, (frame.width // stride, frame.height // stride), interpolation=cv2.INTER_AREA)
        back = cv2.resize(small, (frame.width, frame.height), interpolation=cv2.INTER_LINEAR)
        values.append(psnr(back.astype(np.float64) / 255.0, frame.color_rgb.astype(np.float64) / 255.0))
    return float(np.mean(values))


def _kept_token_image_psnr(frames, stride: int = 8) -> float:
    """PSNR of each frame against itself kept exactly wherever its token survives
    decoding and black (the renderer's background) where the token is dropped for
    lack of valid depth: roughly what the own-view PSNR can reach when tokens without
    depth get no Gaussian (the neighbours' Gaussians may spill a little into them)."""
    import cv2
    from gs4_slam.metrics.image import psnr
    from gs4_slam.predictor.decode import DecodeConfig, pool_tokens

    values = []
    for frame in frames:
        rgb, depth = frame_tensors([frame])
        kept = pool_tokens(rgb, depth, stride, DecodeConfig().min_valid_fraction).valid[0, 0].numpy()
        kept_px = cv2.resize(kept.astype(np.uint8), (frame.width, frame.height), interpolation=cv2.INTER_NEAREST)
        target = frame.color_rgb.astype(np.float64) / 255.0
        values.append(psnr(target * kept_px[..., None], target))
    return float(np.mean(values))


def _inference_ms(predictor: GaussianPredictor, frame, repeats: int = 20) -> float:
    pose = frame.T_world_cam_gt
    for _ in range(3):
        predictor.predict(frame, pose)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(frame, pose)
        times.append(1000.0 * (time.perf_counter() - start))
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_TUM, help="TUM RGB-D sequence (fr1/xyz)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--frames-per-room", type=int, default=4)
    parser.add_argument("--tum-frames", type=int, default=20)
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / "build" / "cache" / "synthetic")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)

    train_cfg = TrainConfig()
    heldout = load_sequences(range(*train_cfg.heldout_seeds), args.cache_dir, train_cfg.frames_per_sequence,
                             train_cfg.width, train_cfg.height)
    rows, figures = [], {}
    for stride in (8, 4, 16):
        for name, cfg in (("network", PredictorConfig(weights=str(args.weights), stride=stride)),
                          ("baseline", PredictorConfig(use_baseline=True, stride=stride))):
            result = evaluate_heldout(GaussianPredictor(cfg), heldout, args.frames_per_room)
            rows.append((name, stride, "synthetic", result))
            figures[(name, stride)] = result

    tum_rows, pooled_tum, kept_tum = {}, None, None
    if args.data.is_dir():
        tum = _tum_frames(args.data, args.tum_frames)
        for name, cfg in (("network", PredictorConfig(weights=str(args.weights))),
                          ("baseline", PredictorConfig(use_baseline=True))):
            predictor = GaussianPredictor(cfg)
            result = evaluate_frames(lambda f, p: predictor.predict(f, p).gaussians, tum, [None] * len(tum),
                                     predictor.num_classes)
            tum_rows[name] = result
            rows.append((name, 8, "tum_fr1_xyz", result))
        pooled_tum = _pooled_image_psnr(tum)
        kept_tum = _kept_token_image_psnr(tum)
    else:
        print(f"note: {args.data} not found; TUM figures skipped", file=sys.stderr)

    network = GaussianPredictor(PredictorConfig(weights=str(args.weights)))
    infer_ms = _inference_ms(network, heldout[0].frame(0))
    precision = network.network_precision
    float32 = GaussianPredictor(PredictorConfig(weights=str(args.weights), precision="float32"))
    infer_ms_float32 = _inference_ms(float32, heldout[0].frame(0))

    print(f"{'model':<9} {'stride':>6} {'data':<12} {'PSNR dB':>8} {'w/ depth':>9} {'novel dB':>9} {'depth cm':>9} "
          f"{'mIoU':>6} {'frames':>6}")
    for name, stride, data, r in rows:
        miou = f"{r['miou']:.1f}" if "miou" in r and data == "synthetic" else "-"
        print(f"{name:<9} {stride:>6} {data:<12} {r['psnr']:>8.2f} {r['psnr_with_depth']:>9.2f} {r['psnr_novel']:>9.2f} "
              f"{r['depth_l1_cm']:>9.2f} {miou:>6} {r['frames']:>6}")
    if pooled_tum is not None:
        print(f"reference: TUM frames averaged over 8x8 tokens and interpolated back: {pooled_tum:.2f} dB")
        print(f"reference: TUM frames exact where a token has depth, black where it is dropped: {kept_tum:.2f} dB")
    print(f"network inference at 320x240, stride 8: {infer_ms:.1f} ms in {precision} (the default here; "
          f"float32: {infer_ms_float32:.1f} ms), median, {torch.get_num_threads()} threads")

    out = {
        "psnr_synth": figures[("network", 8)]["psnr"],
        "depth_l1_cm_synth": figures[("network", 8)]["depth_l1_cm"],
        "miou_synth": figures[("network", 8)].get("miou"),
        "psnr_novel_synth": figures[("network", 8)]["psnr_novel"],
        "baseline_psnr_synth": figures[("baseline", 8)]["psnr"],
        "baseline_depth_l1_cm_synth": figures[("baseline", 8)]["depth_l1_cm"],
        "baseline_psnr_novel_synth": figures[("baseline", 8)]["psnr_novel"],
        "psnr_tum": tum_rows.get("network", {}).get("psnr"),
        "baseline_psnr_tum": tum_rows.get("baseline", {}).get("psnr"),
        "psnr_tum_with_depth": tum_rows.get("network", {}).get("psnr_with_depth"),
        "pooled_image_psnr_tum": pooled_tum,
        "kept_token_image_psnr_tum": kept_tum,
        "infer_ms_320x240": infer_ms,
        "infer_precision": precision,
        "infer_ms_320x240_float32": infer_ms_float32,
    }
    for stride in (4, 16):
        for name in ("network", "baseline"):
            prefix = "" if name == "network" else "baseline_"
            r = figures[(name, stride)]
            out[f"{prefix}psnr_synth_s{stride}"] = r["psnr"]
            out[f"{prefix}depth_l1_cm_synth_s{stride}"] = r["depth_l1_cm"]
            if name == "network":
                out[f"miou_synth_s{stride}"] = r.get("miou")
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
