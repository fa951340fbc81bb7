"""Training of the Gaussian Prediction Model (``gs4-slam train predictor``).

Losses follow GS4: the Gaussians predicted from a frame are rendered into that
frame and into a nearby overlapping frame (masked to what the input frame sees);
colour 0.8·L1 + 0.2·(1−SSIM), depth L1, 0.1 × cross-entropy of the rendered
semantic map, plus a per-pixel semantic cross-entropy on the backbone's dense head.

Runs on CPU or CUDA (``--device``), with fixed seeds, a progress bar, periodic
checkpoints, ``--resume``, and loss curves as CSV and PNG in the output folder.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from gs4_slam import config as config_io
from gs4_slam.training import loss_log, overrides_from_args, start_run, truncate_loss_csv, write_card
from gs4_slam.frame import IGNORE_LABEL, Frame
from gs4_slam.losses import color_loss, depth_l1, semantic_nll
from gs4_slam.predictor.data import CachedSequence, load_sequences
from gs4_slam.predictor.decode import DecodeConfig, decode_image, pool_tokens
from gs4_slam.predictor.evaluate import covisible_mask, evaluate_frames
from gs4_slam.predictor.model import TOKEN_FIELDS, GaussianPredictionNet, PredictorNetConfig
from gs4_slam.predictor.predictor import (
    DEFAULT_WEIGHTS,
    GaussianPredictor,
    PredictorConfig,
    check_precision,
    frame_tensors,
    graph_dtype,
    load_weights,
    save_weights,
)
from gs4_slam.render import render

log = logging.getLogger(__name__)

LOSS_COLUMNS = ("step", "total", "color", "depth", "semantic_render", "semantic_dense", "novel_color",
                "semantic_token", "geometry_distill", "seconds")


@dataclass
class TrainConfig:
    """Settings of a training run (YAML: config/train_predictor.yaml)."""

    out_dir: str = "build/train/predictor"
    cache_dir: str = "build/cache/synthetic"
    weights_out: str = ""  # empty: weights/predictor.pt
    train_seeds: tuple[int, ...] = (0, 64)  # [first, end) of the training rooms
    #: More training rooms [first, end), shorter (``extra_frames_per_sequence``):
    #: class recognition needs many layouts more than many views of one.
    extra_train_seeds: tuple[int, ...] = ()
    extra_frames_per_sequence: int = 16
    #: Many short rooms [first, end) (``wide_frames_per_sequence`` frames each) for the
    #: semantics pass: held-out class accuracy grew with the number of layouts seen.
    wide_train_seeds: tuple[int, ...] = ()
    wide_frames_per_sequence: int = 4
    heldout_seeds: tuple[int, ...] = (10000, 10008)  # never used for training
    frames_per_sequence: int = 40
    width: int = 320
    height: int = 240
    steps: int = 3000
    batch_size: int = 4
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    strides: tuple[int, ...] = (4, 8, 8, 16)  # drawn uniformly per step: stride 8 twice as often
    pair_offsets: tuple[int, ...] = (3, 10)  # [min, max] frames between input and nearby view
    depth_weight: float = 1.0
    semantic_render_weight: float = 0.1
    semantic_dense_weight: float = 1.0
    novel_weight: float = 1.0
    #: Inverse class-frequency exponent of the semantic cross-entropies (0: unweighted,
    #: 0.5: square-root balancing); rare classes are otherwise never predicted.
    class_balance: float = 0.0
    #: Extra frames per step through a semantics-only pass (dense and token
    #: cross-entropy, no rendering): cheap, so the backbone sees many more layouts.
    semantic_batch: int = 0
    #: Weight of the token-level cross-entropy of that pass.
    semantic_token_weight: float = 1.0
    #: Mirror each frame of that pass left-right with probability 0.5.
    semantic_flip: bool = False
    #: Scale each of that pass's frames' colours by a brightness in [1 - j, 1 + j]
    #: and per-channel gains in [1 - j/3, 1 + j/3] (0: off).
    semantic_color_jitter: float = 0.0
    #: Start from these weights (a fresh optimiser and schedule) instead of a random
    #: network; empty: random. Later stages fine-tune earlier ones this way.
    init_weights: str = ""
    #: Steps run the semantics pass only (no rendering): the geometry heads and the
    #: batch-norm statistics stay as ``init_weights`` left them, and
    #: ``geometry_distill_weight`` keeps the geometry outputs where they were.
    semantic_only: bool = False
    #: Weight of the L1 between the geometry token outputs and those of the
    #: ``init_weights`` network on the semantics pass's frames (0: off).
    geometry_distill_weight: float = 0.0
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    #: Arithmetic of the network's forward pass (weights, optimiser and rendering stay
    #: float32): float32, bfloat16 (autocast), or auto (bfloat16 on CPUs with native
    #: bf16 instructions and on CUDA GPUs that support it, float32 elsewhere).
    precision: str = "auto"
    threads: int = 0  # 0: torch's default
    eval_frames_per_sequence: int = 4
    net: PredictorNetConfig = field(default_factory=PredictorNetConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        check_precision("precision", self.precision)
        if not 0.0 <= self.semantic_color_jitter < 1.0:
            raise ValueError(f"semantic_color_jitter must be in [0, 1), got {self.semantic_color_jitter}")
        if self.semantic_only and self.semantic_batch <= 0:
            raise ValueError("semantic_only needs semantic_batch > 0 (the frames of each step)")
        if self.geometry_distill_weight > 0 and not self.init_weights:
            raise ValueError("geometry_distill_weight needs init_weights (the network whose geometry is kept)")


class PairSampler:
    """Draws (input frame, nearby frame) pairs from the training sequences."""

    def __init__(self, sequences: list[CachedSequence], offsets: tuple[int, int], seed: int) -> None:
        self.sequences = sequences
        self.offsets = offsets
        self.rng = np.random.default_rng(seed)

    def sample(self, count: int) -> list[tuple[Frame, Frame]]:
        pairs = []
        for _ in range(count):
            seq = self.sequences[self.rng.integers(len(self.sequences))]
            i = int(self.rng.integers(len(seq)))
            offset = int(self.rng.integers(self.offsets[0], self.offsets[1] + 1))
            j = i + offset if i + offset < len(seq) else i - offset
            j = int(np.clip(j, 0, len(seq) - 1))
            pairs.append((seq.frame(i), seq.frame(j)))
        return pairs


def autocast_bfloat16(cfg: TrainConfig) -> bool:
    """Whether the network's forward pass runs under bfloat16 autocast (see ``TrainConfig.precision``)."""
    if cfg.precision == "auto" and torch.device(cfg.device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    return graph_dtype(cfg.precision) == torch.bfloat16  # the inference graph's rule on CPU


def network_outputs(net, rgb: torch.Tensor, depth: torch.Tensor, stride: int, cfg: TrainConfig) -> dict:
    """The training forward pass, outputs in float32.

    Why autocast: on 2 CPU cores with AMX, a semantics pass of 8 frames (forward and
    backward) took 0.47 s in bfloat16 against 0.75 s in float32, and the convolutions
    are most of a training step. The decoded Gaussians and their rendering stay float32.
    """
    device_type = torch.device(cfg.device).type
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=autocast_bfloat16(cfg)):
        out = net(rgb, depth, stride, dense_semantics=True)
    return {
        "tokens": {name: value.float() for name, value in out["tokens"].items()},
        "dense_semantic": out["dense_semantic"].float(),
    }


def _view_losses(gaussians, frame: Frame, T_world_source: torch.Tensor, source: Frame | None, cfg: TrainConfig):
    """Losses of Gaussians rendered into ``frame``; ``source`` set for a nearby view."""
    intrinsics = frame.intrinsics.without_distortion()
    T_world_view = torch.tensor(frame.T_world_cam_gt.matrix, dtype=torch.float32)
    out = render(gaussians, intrinsics, torch.linalg.inv(T_world_view), channels=("color", "depth", "semantics"))
    target_rgb = torch.from_numpy(frame.color_rgb).float().div(255.0).permute(2, 0, 1)
    target_depth = torch.from_numpy(frame.depth_m)
    labels = torch.from_numpy(frame.labels.astype(np.int64))
    mask = None
    if source is not None:
        mask = covisible_mask(target_depth, T_world_view, torch.from_numpy(source.depth_m), T_world_source, intrinsics)
        labels = torch.where(mask, labels, torch.full_like(labels, IGNORE_LABEL))
    rendered_rgb = out.color.permute(2, 0, 1)
    color = color_loss(rendered_rgb[None], target_rgb[None], None if mask is None else mask[None, None])
    depth = depth_l1(out.depth, target_depth, mask)
    sem = semantic_nll(out.semantics.permute(2, 0, 1)[None], labels[None])
    return color, depth, sem


def class_weights(sequences: list[CachedSequence], num_classes: int, exponent: float) -> torch.Tensor | None:
    """Inverse-frequency class weights (frequency / median) ** -exponent, clipped to [0.2, 5]; None at 0."""
    if exponent <= 0:
        return None
    counts = np.zeros(num_classes, dtype=np.float64)
    for seq in sequences:
        ids = seq.labels[seq.labels < num_classes]
        counts += np.bincount(ids.ravel(), minlength=num_classes)[:num_classes]
    present = counts > 0
    freq = counts / counts.sum()
    weights = np.ones(num_classes)
    weights[present] = np.clip((freq[present] / np.median(freq[present])) ** -exponent, 0.2, 5.0)
    return torch.as_tensor(weights, dtype=torch.float32)


def token_labels(labels: torch.Tensor, stride: int, num_classes: int, min_share: float = 0.5) -> torch.Tensor:
    """Majority class of each ``stride`` x ``stride`` token [B, H/s, W/s]; ignore where no class has ``min_share``."""
    valid = labels < num_classes
    one_hot = F.one_hot(torch.where(valid, labels, 0), num_classes).permute(0, 3, 1, 2).float()
    one_hot = one_hot * valid[:, None].float()
    share, majority = F.avg_pool2d(one_hot, stride).max(dim=1)
    return torch.where(share >= min_share, majority, torch.full_like(majority, IGNORE_LABEL))


def augment_semantic_batch(rgb: torch.Tensor, depth: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig,
                           rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mirrored and re-lit copies of the semantics pass's frames ([B,3,H,W], [B,1,H,W], [B,H,W]).

    Why only this pass: its frames are never rendered, so a mirrored frame needs no
    mirrored camera, and the class of a surface depends on neither its side nor its
    lighting. More apparent layouts for the same rooms, which held-out classes lack.
    """
    count = rgb.shape[0]
    if cfg.semantic_flip:
        flip = torch.from_numpy(rng.random(count) < 0.5).to(rgb.device)
        rgb = torch.where(flip[:, None, None, None], rgb.flip(-1), rgb)
        depth = torch.where(flip[:, None, None, None], depth.flip(-1), depth)
        labels = torch.where(flip[:, None, None], labels.flip(-1), labels)
    if cfg.semantic_color_jitter > 0:
        j = cfg.semantic_color_jitter
        gain = rng.uniform(1 - j, 1 + j, (count, 1, 1, 1)) * rng.uniform(1 - j / 3, 1 + j / 3, (count, 3, 1, 1))
        rgb = (rgb * torch.from_numpy(gain).to(rgb)).clamp(0.0, 1.0)
    return rgb, depth, labels


def semantic_step_loss(net, frames: list[Frame], stride: int, cfg: TrainConfig, weights,
                       rng: np.random.Generator | None = None, teacher=None) -> tuple[torch.Tensor, dict[str, float]]:
    """Dense plus token cross-entropy of a semantics-only forward pass (no rendering),
    plus the geometry distillation to ``teacher`` when given; returns (loss, logged terms)."""
    rgb, depth = frame_tensors(frames, cfg.device)
    labels = torch.from_numpy(np.stack([f.labels for f in frames]).astype(np.int64)).to(cfg.device)
    if rng is not None:
        rgb, depth, labels = augment_semantic_batch(rgb, depth, labels, cfg, rng)
    out = network_outputs(net, rgb, depth, stride, cfg)
    dense = F.cross_entropy(out["dense_semantic"], labels, weight=weights, ignore_index=IGNORE_LABEL)
    tokens = token_labels(labels, stride, net.config.num_classes)
    token = F.cross_entropy(out["tokens"]["semantic"], tokens, weight=weights, ignore_index=IGNORE_LABEL)
    loss = cfg.semantic_dense_weight * dense + cfg.semantic_token_weight * token
    terms = {"semantic_dense": dense.item(), "semantic_token": token.item(), "geometry_distill": 0.0}
    if teacher is not None:
        distill = geometry_distillation(out["tokens"], teacher, rgb, depth, stride, cfg)
        loss = loss + cfg.geometry_distill_weight * distill
        terms["geometry_distill"] = distill.item()
    return loss, terms


def geometry_distillation(tokens: dict, teacher, rgb: torch.Tensor, depth: torch.Tensor, stride: int,
                          cfg: TrainConfig) -> torch.Tensor:
    """Mean L1 between the geometry token outputs and the teacher's on the same input."""
    student = torch.cat([tokens[name] for name, _ in TOKEN_FIELDS], dim=1)
    with torch.no_grad(), torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16,
                                         enabled=autocast_bfloat16(cfg)):
        target = teacher.token_outputs(rgb, depth, stride)[0].float()
    return (student - target).abs().mean()


def semantic_only_step(net, optimiser, frames: list[Frame], stride: int, cfg: TrainConfig, weights=None,
                       augment_rng: np.random.Generator | None = None, teacher=None) -> dict[str, float]:
    """One step of the semantics pass alone (``TrainConfig.semantic_only``)."""
    net.train()
    freeze_batch_norm(net)
    if weights is not None:
        weights = weights.to(cfg.device)
    loss, terms = semantic_step_loss(net, frames, stride, cfg, weights, augment_rng, teacher)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad], 5.0)
    optimiser.step()
    return {"total": loss.item(), "color": 0.0, "depth": 0.0, "semantic_render": 0.0, "novel_color": 0.0, **terms}


def freeze_batch_norm(net) -> None:
    """Batch norm in inference mode: its statistics stay those the rendering stages settled,
    so a network that has not moved yet gives exactly the geometry it started with."""
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()


def train_step(net, optimiser, pairs, stride: int, cfg: TrainConfig, weights=None,
               semantic_frames: list[Frame] | None = None,
               augment_rng: np.random.Generator | None = None) -> dict[str, float]:
    net.train()
    frames = [p[0] for p in pairs]
    rgb, depth = frame_tensors(frames, cfg.device)
    out = network_outputs(net, rgb, depth, stride, cfg)
    grid = pool_tokens(rgb, depth, stride, cfg.decode.min_valid_fraction)
    labels = torch.from_numpy(np.stack([f.labels for f in frames]).astype(np.int64)).to(cfg.device)
    if weights is not None:
        weights = weights.to(cfg.device)
    sem_dense = F.cross_entropy(out["dense_semantic"], labels, weight=weights, ignore_index=IGNORE_LABEL)
    terms = {"color": 0.0, "depth": 0.0, "semantic_render": 0.0, "novel_color": 0.0}
    total = cfg.semantic_dense_weight * sem_dense
    semantic_terms = {}
    if semantic_frames:
        semantic_loss, semantic_terms = semantic_step_loss(net, semantic_frames, stride, cfg, weights, augment_rng)
        total = total + semantic_loss
    for b, (source, nearby) in enumerate(pairs):
        gaussians = decode_image(out["tokens"], grid, b, source.intrinsics, source.T_world_cam_gt.matrix, cfg.decode)
        T_world_source = torch.tensor(source.T_world_cam_gt.matrix, dtype=torch.float32)
        c_own, d_own, s_own = _view_losses(gaussians, source, T_world_source, None, cfg)
        c_new, d_new, s_new = _view_losses(gaussians, nearby, T_world_source, source, cfg)
        per_image = (
            c_own + cfg.novel_weight * c_new
            + cfg.depth_weight * (d_own + cfg.novel_weight * d_new)
            + cfg.semantic_render_weight * (s_own + cfg.novel_weight * s_new)
        )  # fmt: skip
        total = total + per_image / len(pairs)
        terms["color"] += c_own.item() / len(pairs)
        terms["depth"] += d_own.item() / len(pairs)
        terms["semantic_render"] += s_own.item() / len(pairs)
        terms["novel_color"] += c_new.item() / len(pairs)
    optimiser.zero_grad(set_to_none=True)
    total.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    optimiser.step()
    return {"total": total.item(), "semantic_dense": sem_dense.item(),
            "semantic_token": semantic_terms.get("semantic_token", 0.0), "geometry_distill": 0.0, **terms}


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over the first 5 % of steps, then cosine decay to 1 % at ``cfg.steps``.

    A function of the step alone (no scheduler state), so a resumed run with more
    steps simply continues on the longer schedule.
    """
    warmup = max(1, int(0.05 * cfg.steps))
    if step < warmup:
        return cfg.learning_rate * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, cfg.steps - warmup))
    return cfg.learning_rate * (0.01 + 0.99 * 0.5 * (1.0 + np.cos(np.pi * progress)))


def _save_checkpoint(path: Path, net, optimiser, step: int, sampler: PairSampler, elapsed_s: float,
                     runs: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "step": step,
            "elapsed_s": elapsed_s,
            "runs": runs,
            "net": net.state_dict(),
            "optimiser": optimiser.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "sampler_rng": sampler.rng.bit_generator.state,
            "python_rng": random.getstate(),
        },
        tmp,
    )
    tmp.replace(path)


def _load_checkpoint(path: Path, net, optimiser, sampler: PairSampler) -> tuple[int, float, list[dict]]:
    """Restore a checkpoint; returns (step, training seconds so far, the runs that made it)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    net.load_state_dict(state["net"])
    optimiser.load_state_dict(state["optimiser"])
    torch.set_rng_state(state["torch_rng"])
    sampler.rng.bit_generator.state = state["sampler_rng"]
    random.setstate(state["python_rng"])
    step, elapsed_s = int(state["step"]), float(state.get("elapsed_s", 0.0))
    # Checkpoints written before runs were recorded count as one run of unknown settings.
    runs = state.get("runs") or [
        {"steps": [0, step], "seconds": round(elapsed_s, 1) if "elapsed_s" in state else None}
    ]
    return step, elapsed_s, runs


def plot_losses(csv_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(csv_path.open()))
    if not rows:
        return
    steps = np.array([int(r["step"]) for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    def column(name: str) -> list[float]:  # rows logged before a column existed read as NaN
        return [float(r.get(name) or "nan") for r in rows]

    for name in ("total", "color", "novel_color", "depth"):
        axes[0].plot(steps, column(name), label=name)
    for name in ("semantic_render", "semantic_dense", "semantic_token", "geometry_distill"):
        axes[1].plot(steps, column(name), label=name)
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_title("appearance and geometry losses")
    axes[1].set_title("semantic losses")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def evaluate_heldout(predictor: GaussianPredictor, sequences: list[CachedSequence], frames_per_sequence: int,
                     novel_offset: int = 10) -> dict:
    """Held-out figures: own view, a view ``novel_offset`` frames later, semantics."""
    frames, novel = [], []
    for seq in sequences:
        last = max(len(seq) - novel_offset - 1, 1)
        for i in np.linspace(0, last, frames_per_sequence).astype(int):
            frames.append(seq.frame(int(i)))
            j = int(i) + novel_offset
            novel.append(seq.frame(j) if j < len(seq) else None)
    return evaluate_frames(lambda f, p: predictor.predict(f, p).gaussians, frames, novel, predictor.num_classes)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train, write weights and their card, return the card."""
    start_time = time.time()
    out_dir = start_run(cfg)
    cache_dir = Path(cfg.cache_dir)
    train_seqs = load_sequences(range(*cfg.train_seeds), cache_dir, cfg.frames_per_sequence, cfg.width, cfg.height,
                                progress=progress)
    heldout_seqs = load_sequences(range(*cfg.heldout_seeds), cache_dir, cfg.frames_per_sequence, cfg.width,
                                  cfg.height, progress=progress)
    overlap = set(range(*cfg.train_seeds)) & set(range(*cfg.heldout_seeds))
    if overlap:
        raise ValueError(f"held-out seeds {sorted(overlap)} are also training seeds")

    taken = set(range(*cfg.heldout_seeds)) | set(range(*cfg.train_seeds))
    for name, seeds, frames in (("extra", cfg.extra_train_seeds, cfg.extra_frames_per_sequence),
                                ("wide", cfg.wide_train_seeds, cfg.wide_frames_per_sequence)):
        if seeds:
            train_seqs = train_seqs + _more_rooms(name, seeds, frames, taken, cfg, progress)
            taken |= set(range(*seeds))
    weights = class_weights(train_seqs, cfg.net.num_classes, cfg.class_balance)
    if weights is not None:
        log.info("class weights: %s", np.round(weights.numpy(), 2).tolist())

    net, teacher, previous_card = _initial_network(cfg, out_dir)
    if cfg.semantic_only:
        net.geometry_heads.requires_grad_(False)
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sampler = PairSampler(train_seqs, (cfg.pair_offsets[0], cfg.pair_offsets[1]), cfg.seed)
    checkpoint = out_dir / "checkpoint.pt"
    csv_path = out_dir / "losses.csv"
    step, elapsed_before, earlier_runs = 0, 0.0, []
    if resume and checkpoint.is_file():
        step, elapsed_before, earlier_runs = _load_checkpoint(checkpoint, net, optimiser, sampler)
        truncate_loss_csv(csv_path, step)
        log.info("resumed from %s at step %d", checkpoint, step)
    elif csv_path.exists():
        csv_path.unlink()

    first_step = step
    # Resolved once: "auto" asks the hardware, which need not happen every step.
    cfg = dataclasses.replace(cfg, precision="bfloat16" if autocast_bfloat16(cfg) else "float32")
    log.info("training forward pass in %s", cfg.precision)

    def elapsed() -> float:  # training time over all runs of this output folder
        return elapsed_before + time.time() - start_time

    def runs(last_step: int) -> list[dict]:  # the earlier runs of this output folder, then this one
        this_run = {"steps": [first_step, last_step], "seconds": round(time.time() - start_time, 1),
                    "precision": cfg.precision, "device": cfg.device}
        return earlier_runs + [this_run]

    step = _run_steps(cfg, net, optimiser, sampler, step, csv_path, checkpoint, progress, elapsed, runs, weights,
                      teacher)
    _save_checkpoint(checkpoint, net, optimiser, step, sampler, elapsed(), runs(step))
    plot_losses(csv_path, out_dir / "losses.png")
    return _finish(cfg, net, heldout_seqs, step, elapsed(), out_dir, runs(step), previous_card)


def _more_rooms(name: str, seeds: tuple[int, ...], frames: int, taken: set[int], cfg: TrainConfig,
                progress: bool) -> list[CachedSequence]:
    """The rooms [first, end) of ``seeds``, which must not be among the ``taken`` ones."""
    overlap = set(range(*seeds)) & taken
    if overlap:
        raise ValueError(f"{name} training seeds {sorted(overlap)[:5]}... overlap the other seed ranges")
    return load_sequences(range(*seeds), Path(cfg.cache_dir), frames, cfg.width, cfg.height, progress=progress)


def _initial_network(cfg: TrainConfig, out_dir: Path):
    """(network to train, frozen teacher or None, card of the initial weights or None).

    The initial weights are copied into the run's folder first, so that a resumed
    run distils towards them even after ``weights_out`` (often the same file) has
    been overwritten by this run.
    """
    net = GaussianPredictionNet(cfg.net).to(cfg.device)
    if not cfg.init_weights:
        return net, None, None
    kept = out_dir / "init_weights.pt"
    if not kept.is_file():
        shutil.copyfile(cfg.init_weights, kept)
        card = Path(cfg.init_weights).with_suffix(".json")
        if card.is_file():
            shutil.copyfile(card, kept.with_suffix(".json"))
    start, _, _ = load_weights(kept, cfg.device)
    if start.config != cfg.net:
        raise ValueError(f"init_weights {cfg.init_weights} have network {start.config}, the run asks for {cfg.net}")
    net.load_state_dict(start.state_dict())
    teacher = None
    if cfg.geometry_distill_weight > 0:
        teacher = start.eval().requires_grad_(False)
    card_path = kept.with_suffix(".json")
    previous = json.loads(card_path.read_text()) if card_path.is_file() else None
    return net, teacher, previous


def _run_steps(cfg, net, optimiser, sampler, step, csv_path, checkpoint, progress, elapsed, runs, weights=None,
               teacher=None) -> int:
    stride_rng = np.random.default_rng([cfg.seed, 7])
    for _ in range(step):
        stride_rng.integers(len(cfg.strides))  # keep the stride sequence identical on resume
    with loss_log(csv_path, LOSS_COLUMNS, cfg.steps, step, progress, "train predictor", "step") as loss_rows:
        while step < cfg.steps:
            t0 = time.perf_counter()
            stride = int(cfg.strides[stride_rng.integers(len(cfg.strides))])
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(step, cfg)
            semantic_frames = [p[0] for p in sampler.sample(cfg.semantic_batch)] if cfg.semantic_batch else None
            # Seeded by step, so a resumed run draws the same augmentations.
            augment_rng = np.random.default_rng([cfg.seed, 13, step])
            if cfg.semantic_only:
                losses = semantic_only_step(net, optimiser, semantic_frames, stride, cfg, weights, augment_rng, teacher)
            else:
                losses = train_step(net, optimiser, sampler.sample(cfg.batch_size), stride, cfg, weights,
                                    semantic_frames, augment_rng)
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                loss_rows.row([step] + [f"{losses[k]:.6f}" for k in LOSS_COLUMNS[1:-1]]
                              + [f"{time.perf_counter() - t0:.3f}"])
                loss_rows.bar.set_postfix(loss=f"{losses['total']:.4f}", color=f"{losses['color']:.4f}")
            if step % cfg.checkpoint_every == 0:
                _save_checkpoint(checkpoint, net, optimiser, step, sampler, elapsed(), runs(step))
                plot_losses(csv_path, csv_path.with_suffix(".png"))
            loss_rows.bar.update(1)
    return step


def _finish(cfg: TrainConfig, net, heldout_seqs, step: int, seconds: float, out_dir: Path, runs: list[dict],
            previous_card: dict | None = None) -> dict:
    weights_path = Path(cfg.weights_out) if cfg.weights_out else DEFAULT_WEIGHTS
    save_weights(weights_path, net.cpu(), cfg.decode, extra={"steps": step})
    metrics = {}
    for stride in (8, 4, 16):
        learned = GaussianPredictor(PredictorConfig(weights=str(weights_path), stride=stride))
        metrics[f"stride{stride}"] = evaluate_heldout(learned, heldout_seqs, cfg.eval_frames_per_sequence)
    card = {
        "model": "gs4_slam Gaussian Prediction Model",
        "weights": weights_path.name,
        "parameters": net.num_parameters(),
        "label_set": "scannet20",
        "input": f"RGB-D {cfg.width}x{cfg.height}",
        "training_data": {
            "generator": "gs4_slam.synthetic (procedural rooms, Kinect-like noise)",
            "train_seeds": _all_train_seeds(cfg, previous_card),
            "heldout_seeds": list(range(*cfg.heldout_seeds)),
            "frames_per_sequence": cfg.frames_per_sequence,
            "extra_frames_per_sequence": cfg.extra_frames_per_sequence if cfg.extra_train_seeds else None,
            "wide_frames_per_sequence": cfg.wide_frames_per_sequence if cfg.wide_train_seeds else None,
        },
        "steps": step,
        "batch_size": cfg.batch_size,
        "training_seconds": round(seconds, 1),
        "training_runs": runs,  # one entry per `train` call (a resume is a new run), steps [first, end)
        "device": cfg.device,
        "torch": torch.__version__,
        "heldout_metrics": metrics,
        "config": config_io.to_dict(cfg),
    }
    if previous_card is not None:  # the run that made init_weights, and the ones before it
        card["init_weights_card"] = previous_card
    write_card(card, weights_path, out_dir)
    return card


def _all_train_seeds(cfg: TrainConfig, previous_card: dict | None) -> list[int]:
    """Every room these weights saw, the initial weights' included (sorted)."""
    seeds = set(range(*cfg.train_seeds))
    for extra in (cfg.extra_train_seeds, cfg.wide_train_seeds):
        if extra:
            seeds |= set(range(*extra))
    if previous_card is not None:
        seeds |= set(previous_card.get("training_data", {}).get("train_seeds", []))
    return sorted(seeds)


def config_from_args(args) -> TrainConfig:
    keys = ("steps", "batch_size", "device", "out_dir", "weights_out", "threads", "cache_dir")
    overrides = overrides_from_args(args, keys)
    paths = [args.config] if args.config else []
    cfg = config_io.load(TrainConfig, *paths, overrides=overrides)
    return dataclasses.replace(cfg)
