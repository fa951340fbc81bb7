"""Training of the Gaussian Refinement Network (``gs4-slam train refiner``).

A training sample is a short sequence of frames of one synthetic room (every
``frame_gap``-th frame, ground-truth poses). The map is built frame by frame as
the pipeline does (frozen Prediction Model, insertion where the map is empty or
behind), and after each insertion the network refines the new and the seen
Gaussians. The refined map is rendered into the current frame and into another
frame from the sequence's span (mostly one between mapped frames, like the
evaluation's views), both masked to where the map covered them before refinement:
colour 0.8·L1 + 0.2·(1−SSIM), depth L1, 0.1 × rendered semantic
cross-entropy, plus a small L1 on the refined Gaussians' opacities, so that
Gaussians the views do not need fade and are pruned. Sequences grow over the run
(curriculum 2 → 4 → 8 frames). The map is detached between frames (truncated
back-propagation), the optimiser steps once per sequence.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gs4_slam import config as config_io
from gs4_slam.training import loss_log, overrides_from_args, start_run, truncate_loss_csv, write_card
from gs4_slam.frame import IGNORE_LABEL, Frame
from gs4_slam.gaussians import GaussianMap, GaussianSet
from gs4_slam.losses import color_loss, depth_l1, semantic_nll
from gs4_slam.mapping.insertion import InsertionConfig, select_new
from gs4_slam.metrics.image import depth_l1_cm, psnr
from gs4_slam.predictor.data import CachedSequence, load_sequences
from gs4_slam.predictor.predictor import GaussianPredictor, PredictorConfig
from gs4_slam.refiner.model import RefinementNet, RefinerNetConfig
from gs4_slam.refiner.refiner import (
    DEFAULT_WEIGHTS,
    FrameEvidence,
    RefinerConfig,
    apply_updates,
    map_values,
    merge_duplicates,
    network_inputs,
    neighbours,
    save_weights,
    select_queries,
)
from gs4_slam.render import render

log = logging.getLogger(__name__)

LOSS_COLUMNS = ("step", "frames", "total", "color", "novel_color", "depth", "semantic", "opacity", "gaussians",
                "seconds")


@dataclass
class RefinerTrainConfig:
    """Settings of a refiner training run (YAML: config/train_refiner.yaml)."""

    out_dir: str = "build/train/refiner"
    cache_dir: str = "build/cache/synthetic"
    weights_out: str = ""  # empty: weights/refiner.pt
    predictor_weights: str = ""  # empty: the shipped weights/predictor.pt (frozen)
    train_seeds: tuple[int, ...] = (0, 64)  # [first, end) of the training rooms
    heldout_seeds: tuple[int, ...] = (10000, 10004)  # never used for training
    frames_per_sequence: int = 40
    width: int = 320
    height: int = 240
    curriculum: tuple[int, ...] = (2, 4, 8)  # frames per training sequence, stage by stage
    stage_steps: tuple[int, ...] = (150, 150, 300)  # optimiser steps of each stage
    frame_gap: int = 3  # frames between consecutive frames of a sequence
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    depth_weight: float = 1.0
    semantic_weight: float = 0.1
    novel_weight: float = 1.0
    opacity_weight: float = 0.0  # L1 on refined opacities (0.01 was tried: it lowered opacities, which made insertion add more)
    checkpoint_every: int = 50
    log_every: int = 5
    seed: int = 0
    device: str = "cpu"
    threads: int = 0  # 0: torch's default
    eval_frames: int = 10  # frames mapped per held-out room in the evaluation
    net: RefinerNetConfig = field(default_factory=RefinerNetConfig)
    refine: RefinerConfig = field(default_factory=RefinerConfig)
    insertion: InsertionConfig = field(default_factory=InsertionConfig)

    def __post_init__(self) -> None:
        if len(self.curriculum) != len(self.stage_steps) or not self.curriculum:
            raise ValueError("curriculum and stage_steps must have the same, non-zero length")

    @property
    def steps(self) -> int:
        return int(sum(self.stage_steps))

    def frames_at(self, step: int) -> int:
        edges = np.cumsum(self.stage_steps)
        return int(self.curriculum[min(int(np.searchsorted(edges, step, side="right")), len(edges) - 1)])


# ---------------------------------------------------------------- one frame of mapping


def _evidence(frame: Frame, device) -> FrameEvidence:
    color = torch.from_numpy(frame.color_rgb).to(device).permute(2, 0, 1).float().div(255.0)
    depth = torch.from_numpy(frame.depth_m).to(device)
    T_cam_world = torch.as_tensor(np.linalg.inv(frame.T_world_cam_gt.matrix), dtype=torch.float32, device=device)
    return FrameEvidence(color, depth, frame.intrinsics, T_cam_world)


def insert(gmap: GaussianMap, prediction: GaussianSet, evidence: FrameEvidence, cfg: InsertionConfig) -> torch.Tensor:
    """Add the prediction where the map is empty or behind; indices of the added Gaussians."""
    candidates = prediction
    if len(gmap):
        with torch.no_grad():
            out = render(gmap, evidence.intrinsics, evidence.T_cam_world, channels=("alpha", "depth"),
                         normalize_depth=True)
        keep = select_new(candidates, evidence.T_cam_world, evidence.intrinsics, out.alpha, out.depth, cfg)
        candidates = candidates.index(keep)
    return gmap.add(candidates)


def refined_map(gmap: GaussianMap, net: RefinementNet, new: torch.Tensor, evidence: FrameEvidence,
                cfg: RefinerConfig) -> tuple[GaussianSet, torch.Tensor, dict[str, torch.Tensor]]:
    """The whole map with the queries' refined values (differentiable in the network), the queries, their values."""
    queries = select_queries(gmap, new, evidence, cfg)
    values = map_values(gmap)
    is_new = torch.zeros(len(gmap), dtype=torch.bool, device=gmap.device)
    is_new[new] = True
    idx, mask = neighbours(gmap.means, queries, net.config.neighbours, cfg.voxel_size_m)
    own, edges = network_inputs(values, gmap.n_refinements, is_new, queries, idx, mask, evidence)
    refined = apply_updates(values, queries, net.split(net(own, edges, mask)))
    full = {name: tensor.detach() for name, tensor in values.items()}
    for name, value in refined.items():
        full[name] = full[name].index_put((queries,), value)
    return GaussianSet(**full), queries, refined


def write_back(gmap: GaussianMap, queries: torch.Tensor, refined: dict[str, torch.Tensor], new: torch.Tensor,
               cfg: RefinerConfig) -> None:
    with torch.no_grad():
        for name, value in refined.items():
            gmap.field(name)[queries] = value.detach()
        gmap.field("n_refinements")[queries] += 1
        if cfg.merge and new.numel():
            merge_duplicates(gmap, new, cfg)
        if cfg.prune:
            gmap.prune(min_opacity=cfg.min_opacity)


# ---------------------------------------------------------------- losses


def coverage(gmap: GaussianMap, frame: Frame, min_alpha: float = 0.5) -> torch.Tensor:
    """[H, W] bool: pixels the map covers at ``frame``'s pose (before refinement, no gradient)."""
    T_cam_world = torch.as_tensor(np.linalg.inv(frame.T_world_cam_gt.matrix), dtype=torch.float32)
    with torch.no_grad():
        return render(gmap, frame.intrinsics, T_cam_world, channels=("alpha",)).alpha > min_alpha


def view_loss(gaussians: GaussianSet, frame: Frame, mask: torch.Tensor):
    """(colour, depth, semantic) losses of ``gaussians`` rendered into ``frame`` on ``mask`` [H, W].

    The mask is what the map covered before refinement: the network cannot lower
    the loss by growing Gaussians over holes (which blurs every other view), only
    by fitting what is there better.
    """
    T_cam_world = torch.as_tensor(np.linalg.inv(frame.T_world_cam_gt.matrix), dtype=torch.float32)
    out = render(gaussians, frame.intrinsics, T_cam_world, channels=("color", "depth", "semantics"),
                 normalize_depth=True)
    target = torch.from_numpy(frame.color_rgb).float().div(255.0).permute(2, 0, 1)
    depth = torch.from_numpy(frame.depth_m)
    labels = torch.from_numpy(frame.labels.astype(np.int64))
    labels = torch.where(mask, labels, torch.full_like(labels, IGNORE_LABEL))
    color = color_loss(out.color.permute(2, 0, 1)[None], target[None], mask[None, None])
    return color, depth_l1(out.depth, depth, mask), semantic_nll(out.semantics.permute(2, 0, 1)[None], labels[None])


def sequence_loss(net, predictor, frames: list[Frame], novel: Frame, cfg: RefinerTrainConfig) -> dict[str, float]:
    """Build a map over ``frames`` with refinement, back-propagating each frame's loss; returns the mean terms."""
    gmap = GaussianMap(num_classes=net.config.num_classes, feature_dim=net.config.feature_dim, capacity=4096)
    terms = dict.fromkeys(("total", "color", "novel_color", "depth", "semantic", "opacity"), 0.0)
    for frame in frames:
        evidence = _evidence(frame, cfg.device)
        prediction = predictor.predict(frame, frame.T_world_cam_gt).gaussians
        new = insert(gmap, prediction, evidence, cfg.insertion)
        masks = coverage(gmap, frame), coverage(gmap, novel)
        gaussians, queries, refined = refined_map(gmap, net, new, evidence, cfg.refine)
        c_own, d_own, s_own = view_loss(gaussians, frame, masks[0])
        c_new, d_new, _ = view_loss(gaussians, novel, masks[1])
        opacity = torch.sigmoid(refined["opacity_logits"]).mean()
        loss = (c_own + cfg.novel_weight * c_new + cfg.depth_weight * (d_own + cfg.novel_weight * d_new)
                + cfg.semantic_weight * s_own + cfg.opacity_weight * opacity) / len(frames)
        loss.backward()
        write_back(gmap, queries, refined, new, cfg.refine)
        for key, value in (("total", loss * len(frames)), ("color", c_own), ("novel_color", c_new),
                           ("depth", d_own), ("semantic", s_own), ("opacity", opacity)):
            terms[key] += float(value.detach()) / len(frames)
    terms["gaussians"] = float(len(gmap))
    return terms


# ---------------------------------------------------------------- evaluation


def build_map(predictor, net: RefinementNet | None, frames: list[Frame], cfg: RefinerTrainConfig,
              refine_cfg: RefinerConfig) -> GaussianMap:
    """A map over ``frames`` (ground-truth poses) with the network, or the insert-only baseline (``net`` None)."""
    c = predictor.num_classes, predictor.feature_dim
    gmap = GaussianMap(num_classes=c[0], feature_dim=c[1], capacity=4096)
    with torch.no_grad():
        for frame in frames:
            evidence = _evidence(frame, cfg.device)
            new = insert(gmap, predictor.predict(frame, frame.T_world_cam_gt).gaussians, evidence, cfg.insertion)
            if net is None:
                if refine_cfg.merge and new.numel():
                    merge_duplicates(gmap, new, refine_cfg)
                if refine_cfg.prune:
                    gmap.prune(min_opacity=refine_cfg.min_opacity)
                continue
            _, queries, refined = refined_map(gmap, net, new, evidence, refine_cfg)
            write_back(gmap, queries, refined, new, refine_cfg)
    return gmap


def evaluate(predictor, net: RefinementNet | None, sequences: list[CachedSequence], cfg: RefinerTrainConfig,
             refine_cfg: RefinerConfig) -> dict:
    """Map ``eval_frames`` frames per room; PSNR / depth L1 over every other frame of that stretch; map size."""
    psnrs, depth_errors, sizes = [], [], []
    for seq in sequences:
        mapped = np.linspace(0, len(seq) - 1, cfg.eval_frames).astype(int)
        gmap = build_map(predictor, net, [seq.frame(int(i)) for i in mapped], cfg, refine_cfg)
        sizes.append(len(gmap))
        for i in range(0, len(seq), 2):
            frame = seq.frame(i)
            T_cam_world = torch.as_tensor(np.linalg.inv(frame.T_world_cam_gt.matrix), dtype=torch.float32)
            with torch.no_grad():
                out = render(gmap, frame.intrinsics, T_cam_world, channels=("color", "depth"))
            psnrs.append(psnr(out.color.clamp(0, 1).numpy(), frame.color_rgb))
            depth_errors.append(depth_l1_cm(out.depth.numpy(), frame.depth_m))
    return {"psnr": float(np.mean(psnrs)), "depth_l1_cm": float(np.mean(depth_errors)),
            "n_gaussians": float(np.mean(sizes)), "rooms": len(sequences), "frames_mapped": cfg.eval_frames}


# ---------------------------------------------------------------- the run


class SequenceSampler:
    def __init__(self, sequences: list[CachedSequence], gap: int, seed: int) -> None:
        self.sequences, self.gap = sequences, gap
        self.rng = np.random.default_rng(seed)

    def sample(self, count: int) -> tuple[list[Frame], Frame]:
        """``count`` frames ``gap`` apart, and a frame from their span (or just after) the map is judged in."""
        seq = self.sequences[self.rng.integers(len(self.sequences))]
        span = self.gap * count
        start = int(self.rng.integers(0, max(len(seq) - span, 1)))
        ids = [min(start + self.gap * i, len(seq) - 1) for i in range(count)]
        novel = int(self.rng.integers(start, min(start + span, len(seq))))
        return [seq.frame(i) for i in ids], seq.frame(novel)


def train(cfg: RefinerTrainConfig, resume: bool = False, progress: bool = True) -> dict:
    start_time = time.time()
    out_dir = start_run(cfg)
    cache = Path(cfg.cache_dir)
    train_seqs = load_sequences(range(*cfg.train_seeds), cache, cfg.frames_per_sequence, cfg.width, cfg.height)
    heldout = load_sequences(range(*cfg.heldout_seeds), cache, cfg.frames_per_sequence, cfg.width, cfg.height)
    if set(range(*cfg.train_seeds)) & set(range(*cfg.heldout_seeds)):
        raise ValueError("held-out seeds overlap the training seeds")
    predictor = GaussianPredictor(PredictorConfig(weights=cfg.predictor_weights, device=cfg.device))
    net_cfg = RefinerNetConfig(predictor.num_classes, predictor.feature_dim, cfg.net.hidden, cfg.net.neighbours)
    net = RefinementNet(net_cfg).to(cfg.device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sampler = SequenceSampler(train_seqs, cfg.frame_gap, cfg.seed)
    checkpoint, csv_path = out_dir / "checkpoint.pt", out_dir / "losses.csv"
    step, elapsed_before = 0, 0.0
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        net.load_state_dict(state["net"])
        optimiser.load_state_dict(state["optimiser"])
        sampler.rng.bit_generator.state = state["sampler_rng"]
        torch.set_rng_state(state["torch_rng"])
        step, elapsed_before = int(state["step"]), float(state["elapsed_s"])
        truncate_loss_csv(csv_path, step)
        log.info("resumed from %s at step %d", checkpoint, step)
    elif csv_path.exists():
        csv_path.unlink()

    def elapsed() -> float:
        return elapsed_before + time.time() - start_time

    def save_checkpoint() -> None:
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"step": step, "elapsed_s": elapsed(), "net": net.state_dict(), "optimiser": optimiser.state_dict(),
                    "sampler_rng": sampler.rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, tmp)
        tmp.replace(checkpoint)

    with loss_log(csv_path, LOSS_COLUMNS, cfg.steps, step, progress, "train refiner", "seq") as loss_rows:
        while step < cfg.steps:
            t0 = time.perf_counter()
            count = cfg.frames_at(step)
            for group in optimiser.param_groups:
                group["lr"] = cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / cfg.steps)))
            net.train()
            optimiser.zero_grad(set_to_none=True)
            frames, novel = sampler.sample(count)
            terms = sequence_loss(net, predictor, frames, novel, cfg)
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                loss_rows.row([step, count] + [f"{terms[k]:.6f}" for k in LOSS_COLUMNS[2:-1]]
                              + [f"{time.perf_counter() - t0:.3f}"])
                loss_rows.bar.set_postfix(loss=f"{terms['total']:.4f}", frames=count)
            if step % cfg.checkpoint_every == 0:
                save_checkpoint()
            loss_rows.bar.update(1)
    save_checkpoint()
    seconds = elapsed()
    return _finish(cfg, net.eval(), predictor, heldout, step, seconds, out_dir)


def _finish(cfg, net, predictor, heldout, step: int, seconds: float, out_dir: Path) -> dict:
    weights_path = Path(cfg.weights_out) if cfg.weights_out else DEFAULT_WEIGHTS
    save_weights(weights_path, net.cpu(), extra={"steps": step})
    learned = evaluate(predictor, net, heldout, cfg, cfg.refine)
    baseline = evaluate(predictor, None, heldout, cfg, cfg.refine.insert_only_baseline())
    card = {
        "model": "gs4_slam Gaussian Refinement Network",
        "weights": weights_path.name,
        "parameters": net.num_parameters(),
        "label_set": "scannet20",
        "predictor": "weights/predictor.pt (frozen during training)",
        "training_data": {"generator": "gs4_slam.synthetic (procedural rooms, Kinect-like noise)",
                          "train_seeds": list(range(*cfg.train_seeds)),
                          "heldout_seeds": list(range(*cfg.heldout_seeds)),
                          "curriculum_frames": list(cfg.curriculum), "stage_steps": list(cfg.stage_steps),
                          "frame_gap": cfg.frame_gap},
        "steps": step,
        "training_seconds": round(seconds, 1),
        "device": cfg.device,
        "torch": torch.__version__,
        "heldout": {"refined": learned, "baseline_insert_only_and_opacity_pruning": baseline},
        "config": config_io.to_dict(cfg),
    }
    write_card(card, weights_path, out_dir)
    return card


def config_from_args(args) -> RefinerTrainConfig:
    overrides = overrides_from_args(args, ("device", "out_dir", "weights_out", "threads", "cache_dir"))
    if getattr(args, "stage_steps", None):
        overrides["stage_steps"] = tuple(args.stage_steps)
    return config_io.load(RefinerTrainConfig, *([args.config] if args.config else []), overrides=overrides)
