"""The Gaussian Prediction Model: decoding, the baseline, weights files, training."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.frame import Frame
from gs4_slam.predictor.decode import DecodeConfig, baseline_tokens, decode_image, pool_tokens
from gs4_slam.predictor.evaluate import covisible_mask
from gs4_slam.predictor.model import GaussianPredictionNet, PredictorNetConfig
from gs4_slam.predictor.predictor import (
    GaussianPredictor,
    PredictorConfig,
    PredictorWeightsError,
    frame_tensors,
    load_weights,
    save_weights,
)

INTRINSICS = Intrinsics(64, 48, 60.0, 60.0, 31.5, 23.5)


def _plane_frame(depth_m: float = 2.0, hole: bool = False) -> Frame:
    rng = np.random.default_rng(0)
    color = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    depth = np.full((48, 64), depth_m, dtype=np.float32)
    if hole:
        depth[:16, :16] = 0.0  # the top-left 2x2 tokens of stride 8 have no depth
    labels = np.zeros((48, 64), dtype=np.uint8)
    return Frame(0.0, color, depth, INTRINSICS, Pose.identity(), labels)


def test_network_is_small_enough():
    assert GaussianPredictionNet().num_parameters() <= 5_000_000


def test_baseline_places_tokens_on_the_measured_surface():
    frame = _plane_frame(2.0, hole=True)
    rgb, depth = frame_tensors([frame])
    grid = pool_tokens(rgb, depth, 8, 0.25)
    tokens = baseline_tokens(grid, 20, 16)
    T_world_cam = np.eye(4)
    T_world_cam[:3, 3] = [1.0, 2.0, 3.0]
    g = decode_image(tokens, grid, 0, INTRINSICS, T_world_cam, DecodeConfig())
    assert len(g) == 6 * 8 - 4, "tokens without valid depth must be dropped"
    assert torch.allclose(g.means[:, 2], torch.full((len(g),), 5.0))  # z = 2 m in front + 3 m offset
    # The first kept token is (row 0, col 2): pixel centre u = 2*8 + 3.5.
    expected_x = (19.5 - INTRINSICS.cx) / INTRINSICS.fx * 2.0 + 1.0
    assert g.means[0, 0].item() == pytest.approx(expected_x, abs=1e-5)
    pooled = rgb[0, :, 0:8, 16:24].mean(dim=(1, 2))
    assert torch.allclose(g.colors_rgb()[0], pooled, atol=1e-5)
    footprint = 2.0 * 8 * DecodeConfig().footprint_scale / 60.0
    assert torch.allclose(g.scales(), torch.full_like(g.scales(), footprint), rtol=1e-5)
    assert torch.allclose(g.opacities(), torch.full((len(g),), DecodeConfig().base_opacity), atol=1e-6)


def test_untrained_network_reproduces_the_baseline():
    frame = _plane_frame(1.5)
    rgb, depth = frame_tensors([frame])
    net = GaussianPredictionNet().eval()
    with torch.no_grad():
        out = net(rgb, depth, 8, dense_semantics=True)
    grid = pool_tokens(rgb, depth, 8, 0.25)
    learned = decode_image(out["tokens"], grid, 0, INTRINSICS, np.eye(4), DecodeConfig())
    baseline = decode_image(baseline_tokens(grid, 20, 16), grid, 0, INTRINSICS, np.eye(4), DecodeConfig())
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh_dc"):
        assert torch.allclose(getattr(learned, name), getattr(baseline, name), atol=1e-6), name
    assert out["dense_semantic"].shape == (1, 20, 48, 64)
    assert torch.allclose(learned.semantics.sum(dim=1), torch.ones(len(learned)), atol=1e-5)


@pytest.mark.parametrize("stride", [4, 8, 16])
def test_frozen_cpu_graph_gives_the_eager_network_outputs(tmp_path, stride):
    torch.manual_seed(0)
    net = GaussianPredictionNet(PredictorNetConfig(widths=(8, 16, 16, 16)))
    for module in net.modules():  # non-trivial heads and batch-norm statistics, so folding is exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.2)
    save_weights(tmp_path / "w.pt", net, DecodeConfig())
    frame = _plane_frame(1.5, hole=True)
    eager = GaussianPredictor(PredictorConfig(weights=str(tmp_path / "w.pt"), stride=stride, freeze=False))
    frozen = GaussianPredictor(PredictorConfig(weights=str(tmp_path / "w.pt"), stride=stride, precision="float32"))
    assert eager._frozen is None and frozen._frozen is not None
    a, b = eager.predict(frame, Pose.identity()).gaussians, frozen.predict(frame, Pose.identity()).gaussians
    assert len(a) == len(b) > 0
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "semantics", "features"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-4), name
    assert not torch.allclose(a.means, eager_baseline_means(frame, stride), atol=1e-4), "weights had no effect"
    # A second image size gets its own graph rather than a wrong reuse of the first.
    big = Frame(0.0, np.tile(frame.color_rgb, (2, 2, 1)), np.tile(frame.depth_m, (2, 2)),
                Intrinsics(128, 96, 60.0, 60.0, 63.5, 47.5), Pose.identity())
    assert len(frozen.predict(big, Pose.identity()).gaussians) == len(eager.predict(big, Pose.identity()).gaussians)


def _random_net(widths=(8, 16, 16, 16)) -> GaussianPredictionNet:
    torch.manual_seed(0)
    net = GaussianPredictionNet(PredictorNetConfig(widths=widths))
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.1)
    return net


def test_bfloat16_graph_stays_close_to_float32(tmp_path):
    save_weights(tmp_path / "w.pt", _random_net(), DecodeConfig())
    frame = _plane_frame(1.5, hole=True)
    outputs = {}
    for precision in ("float32", "bfloat16"):
        predictor = GaussianPredictor(PredictorConfig(weights=str(tmp_path / "w.pt"), precision=precision))
        assert predictor._frozen.dtype == getattr(torch, precision)
        outputs[precision] = predictor.predict(frame, Pose.identity()).gaussians
    a, b = outputs["float32"], outputs["bfloat16"]
    assert b.means.dtype == torch.float32 and len(a) == len(b) > 0
    assert not torch.equal(a.means, b.means), "the bfloat16 graph gave bit-identical outputs: not bfloat16"
    # bfloat16 keeps 8 bits of mantissa: centres to millimetres at 1.5 m, colours to a few levels.
    assert (a.means - b.means).abs().max() < 0.01
    assert (a.sh_dc - b.sh_dc).abs().max() < 0.05
    assert (a.semantics - b.semantics).abs().max() < 0.05


def test_auto_precision_follows_the_cpu(tmp_path, monkeypatch):
    from gs4_slam.predictor import predictor as module

    save_weights(tmp_path / "w.pt", _random_net(), DecodeConfig())
    for native, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(module, "cpu_has_native_bf16", lambda native=native: native)
        assert GaussianPredictor(PredictorConfig(weights=str(tmp_path / "w.pt")))._frozen.dtype == dtype
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16"):
        PredictorConfig(precision="fp16")


def test_predictor_falls_back_to_the_eager_network_when_freezing_fails(tmp_path, monkeypatch, caplog):
    net = GaussianPredictionNet(PredictorNetConfig(widths=(8, 16, 16, 16)))
    save_weights(tmp_path / "w.pt", net, DecodeConfig())
    frame = _plane_frame(1.5)

    def no_torchscript(*args, **kwargs):
        raise RuntimeError("TorchScript is not available")

    monkeypatch.setattr(torch.jit, "trace", no_torchscript)
    predictor = GaussianPredictor(PredictorConfig(weights=str(tmp_path / "w.pt")))
    with caplog.at_level("WARNING"):
        gaussians = predictor.predict(frame, Pose.identity()).gaussians
    assert "running it eagerly" in caplog.text
    assert len(gaussians) == 6 * 8


def eager_baseline_means(frame: Frame, stride: int) -> torch.Tensor:
    return GaussianPredictor(PredictorConfig(use_baseline=True, stride=stride)).predict(frame, Pose.identity()).gaussians.means


def test_rejects_sizes_and_strides_it_cannot_handle():
    net = GaussianPredictionNet()
    with pytest.raises(ValueError, match="multiple of 16"):
        net(torch.zeros(1, 3, 50, 64), torch.zeros(1, 1, 50, 64))
    with pytest.raises(ValueError, match="stride 2 not supported"):
        net(torch.zeros(1, 3, 48, 64), torch.zeros(1, 1, 48, 64), stride=2)
    with pytest.raises(ValueError, match="4, 8 or 16"):
        PredictorConfig(stride=5)


def test_weights_round_trip_and_clear_errors(tmp_path):
    net = GaussianPredictionNet(PredictorNetConfig(widths=(8, 16, 16, 16)))
    path = tmp_path / "w.pt"
    save_weights(path, net, DecodeConfig(footprint_scale=0.6))
    loaded, decode, _ = load_weights(path)
    assert decode.footprint_scale == 0.6
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)

    with pytest.raises(PredictorWeightsError, match="not found.*gs4-slam train predictor"):
        load_weights(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:100])
    with pytest.raises(PredictorWeightsError, match="unreadable.*gs4-slam train predictor"):
        load_weights(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"hello": 1}, foreign)
    with pytest.raises(PredictorWeightsError, match="not a gs4_slam.predictor"):
        GaussianPredictor(PredictorConfig(weights=str(foreign)))


def test_covisible_mask():
    depth = torch.full((48, 64), 2.0)
    eye = torch.eye(4)
    assert covisible_mask(depth, eye, depth, eye, INTRINSICS).all()
    moved = torch.eye(4)
    moved[0, 3] = 1.0  # the view is 1 m to the right: its right part is outside the source image
    mask = covisible_mask(depth, moved, depth, eye, INTRINSICS)
    assert 0.3 < mask.float().mean() < 0.8
    assert mask[:, 0].all() and not mask[:, -1].any()
    occluder = depth.clone()
    occluder[:, :] = 1.0  # the source saw a nearer surface everywhere
    assert not covisible_mask(depth, eye, occluder, eye, INTRINSICS).any()


@pytest.mark.slow
def test_training_smoke_writes_everything_and_resumes(tmp_path):
    from gs4_slam.predictor.train import TrainConfig, train

    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
        weights_out=str(tmp_path / "run" / "predictor.pt"),
        train_seeds=(0, 1),
        heldout_seeds=(500, 501),
        frames_per_sequence=12,
        width=64,
        height=48,
        steps=2,
        batch_size=2,
        checkpoint_every=1,
        log_every=1,
        eval_frames_per_sequence=1,
        net=PredictorNetConfig(widths=(8, 16, 16, 16)),
    )
    card = train(cfg, progress=False)
    assert card["training_seconds"] > 0
    run = tmp_path / "run"
    for name in ("losses.csv", "losses.png", "checkpoint.pt", "predictor.pt", "predictor.json", "train_config.yaml"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "losses.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["total"])) for r in rows)
    assert card["steps"] == 2 and set(card["heldout_metrics"]) == {"stride4", "stride8", "stride16"}
    assert np.isfinite(card["heldout_metrics"]["stride8"]["psnr"])

    import dataclasses

    # The second-stage options (more rooms, class balancing, a semantics-only pass) on resume.
    resumed = train(dataclasses.replace(cfg, steps=3, extra_train_seeds=(1, 2), extra_frames_per_sequence=12,
                                        class_balance=0.5, semantic_batch=1), resume=True, progress=False)
    assert resumed["training_data"]["train_seeds"] == [0, 1]
    assert resumed["training_seconds"] > card["training_seconds"], "training time accumulates over resumes"
    rows = list(csv.DictReader((run / "losses.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3], "resume must continue, not restart"
    assert GaussianPredictor(PredictorConfig(weights=str(run / "predictor.pt"))).card["steps"] == 3
    assert [r["steps"] for r in resumed["training_runs"]] == [[0, 2], [2, 3]], "each run is recorded"


@pytest.mark.slow
def test_semantic_fine_tuning_keeps_geometry_and_records_its_start(tmp_path):
    import dataclasses

    from gs4_slam.predictor.train import TrainConfig, train

    start = tmp_path / "start.pt"
    save_weights(start, _random_net(), DecodeConfig(), extra={"steps": 7})
    (tmp_path / "start.json").write_text('{"steps": 7, "training_data": {"train_seeds": [42]}}')
    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), weights_out=str(tmp_path / "tuned.pt"),
        train_seeds=(0, 1), wide_train_seeds=(600, 602), wide_frames_per_sequence=2, heldout_seeds=(500, 501),
        frames_per_sequence=12, width=64, height=48, steps=2, semantic_batch=2, learning_rate=0.05,
        log_every=1, eval_frames_per_sequence=1, precision="float32", net=PredictorNetConfig(widths=(8, 16, 16, 16)),
        init_weights=str(start), semantic_only=True, geometry_distill_weight=1.0,
    )
    card = train(cfg, progress=False)
    before, tuned = load_weights(start)[0].state_dict(), load_weights(tmp_path / "tuned.pt")[0].state_dict()
    geometry = [k for k in before if k.startswith("geometry_heads.")]
    statistics = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert geometry and statistics
    assert all(torch.equal(before[k], tuned[k]) for k in geometry + statistics), "geometry heads and BN stay"
    assert not torch.equal(before["dense_semantic_head.2.weight"], tuned["dense_semantic_head.2.weight"])
    assert not torch.equal(before["enc8.0.0.weight"], tuned["enc8.0.0.weight"]), "the backbone learns"
    rows = list(csv.DictReader((tmp_path / "run" / "losses.csv").open()))
    distill = [float(r["geometry_distill"]) for r in rows]
    assert distill[0] < 1e-6 < distill[1], "starts at the teacher, then moves and is measured"
    assert all(float(r["color"]) == 0.0 for r in rows), "no rendering"
    assert card["init_weights_card"]["steps"] == 7
    assert card["training_data"]["train_seeds"] == [0, 42, 600, 601]

    with pytest.raises(ValueError, match="semantic_batch"):
        dataclasses.replace(cfg, semantic_batch=0)
    with pytest.raises(ValueError, match="init_weights"):
        dataclasses.replace(cfg, init_weights="")
    other = dataclasses.replace(cfg, out_dir=str(tmp_path / "other"), net=PredictorNetConfig(widths=(8, 16, 16, 32)))
    with pytest.raises(ValueError, match="init_weights"):
        train(other, progress=False)
    with pytest.raises(ValueError, match="wide training seeds"):
        train(dataclasses.replace(cfg, out_dir=str(tmp_path / "overlap"), wide_train_seeds=(0, 2)), progress=False)


@pytest.mark.parametrize("name", ["train_predictor.yaml", "train_predictor_stage2.yaml", "train_predictor_stage3.yaml"])
def test_shipped_training_configs_load(name):
    from pathlib import Path

    from gs4_slam import config as config_io
    from gs4_slam.demo import DEMO_SEED
    from gs4_slam.predictor.train import TrainConfig

    repo = Path(__file__).resolve().parents[1]
    cfg = config_io.load(TrainConfig, repo / "config" / name)
    seen = set(range(*cfg.train_seeds)) | set(range(*(cfg.extra_train_seeds or (0, 0))))
    seen |= set(range(*(cfg.wide_train_seeds or (0, 0))))
    assert DEMO_SEED not in seen and not seen & set(range(*cfg.heldout_seeds))
    if cfg.init_weights:
        assert (repo / cfg.init_weights).is_file()


def test_training_precision_setting(monkeypatch):
    import dataclasses

    from gs4_slam.predictor import predictor as predictor_module
    from gs4_slam.predictor import train as train_module

    cfg = train_module.TrainConfig(net=PredictorNetConfig(widths=(8, 16, 16, 16)))
    assert not train_module.autocast_bfloat16(dataclasses.replace(cfg, precision="float32"))
    assert train_module.autocast_bfloat16(dataclasses.replace(cfg, precision="bfloat16"))
    for native in (True, False):
        monkeypatch.setattr(predictor_module, "cpu_has_native_bf16", lambda native=native: native)
        assert train_module.autocast_bfloat16(cfg) is native
    with pytest.raises(ValueError, match="precision"):
        train_module.autocast_bfloat16(dataclasses.replace(cfg, precision="fp16"))


def test_bfloat16_training_pass_gives_float32_outputs_and_gradients():
    import dataclasses

    from gs4_slam.predictor.train import TrainConfig, network_outputs

    torch.manual_seed(0)
    net = _random_net()
    rgb, depth = torch.rand(2, 3, 48, 64), 1.0 + torch.rand(2, 1, 48, 64)
    outputs = {}
    for precision in ("float32", "bfloat16"):
        out = network_outputs(net, rgb, depth, 8, dataclasses.replace(TrainConfig(), precision=precision))
        assert out["dense_semantic"].dtype == torch.float32
        assert all(v.dtype == torch.float32 for v in out["tokens"].values())
        outputs[precision] = out
    net.zero_grad()
    outputs["bfloat16"]["dense_semantic"].square().mean().backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in net.parameters())
    assert net.dense_semantic_head[-1].weight.grad.abs().sum() > 0
    ref, low = outputs["float32"]["dense_semantic"], outputs["bfloat16"]["dense_semantic"]
    assert not torch.equal(ref, low), "autocast did not change the arithmetic"
    assert (ref - low).abs().max() < 0.05 * ref.abs().max() + 1e-3


def test_semantic_pass_augmentation_mirrors_frames_with_their_labels_and_relights_colour():
    import dataclasses

    from gs4_slam.predictor.train import TrainConfig, augment_semantic_batch

    rgb = torch.rand(16, 3, 6, 10)
    depth = torch.rand(16, 1, 6, 10) + 1.0
    labels = torch.randint(0, 20, (16, 6, 10))
    off = TrainConfig()
    same = augment_semantic_batch(rgb, depth, labels, off, np.random.default_rng(0))
    assert all(torch.equal(a, b) for a, b in zip(same, (rgb, depth, labels))), "off by default"

    flip = dataclasses.replace(off, semantic_flip=True)
    out_rgb, out_depth, out_labels = augment_semantic_batch(rgb, depth, labels, flip, np.random.default_rng(0))
    mirrored = [bool(torch.equal(out_labels[i], labels[i].flip(-1))) for i in range(16)]
    assert 0 < sum(mirrored) < 16, "about half the frames are mirrored"
    for i, m in enumerate(mirrored):
        expected = (rgb[i].flip(-1), depth[i].flip(-1)) if m else (rgb[i], depth[i])
        assert torch.equal(out_rgb[i], expected[0]) and torch.equal(out_depth[i], expected[1])

    jitter = dataclasses.replace(off, semantic_color_jitter=0.3)
    out_rgb, out_depth, out_labels = augment_semantic_batch(rgb, depth, labels, jitter, np.random.default_rng(0))
    assert torch.equal(out_depth, depth) and torch.equal(out_labels, labels), "only colour changes"
    assert not torch.equal(out_rgb, rgb) and out_rgb.min() >= 0 and out_rgb.max() <= 1
    ratio = out_rgb / rgb.clamp_min(1e-3)
    unclamped = (out_rgb < 1) & (rgb > 1e-3)
    assert ratio[unclamped].min() >= 0.7 * 0.9 - 1e-5 and ratio[unclamped].max() <= 1.3 * 1.1 + 1e-5
    with pytest.raises(ValueError, match="semantic_color_jitter"):
        TrainConfig(semantic_color_jitter=1.0)
