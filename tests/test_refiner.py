"""The Gaussian Refinement Network stage: queries, update cap, merging, pruning, weights, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gs4_slam.camera import Intrinsics
from gs4_slam.gaussians import GaussianMap, GaussianSet, rgb_to_sh_dc
from gs4_slam.refiner.model import RefinementNet, RefinerNetConfig
from gs4_slam.refiner.refiner import (
    FrameEvidence,
    GaussianRefiner,
    RefinerConfig,
    RefinerWeightsError,
    load_weights,
    merge_duplicates,
    save_weights,
)

C, F = 4, 3
K = Intrinsics(64, 48, 50.0, 50.0, 31.5, 23.5)


def _set(means, rgb=(0.5, 0.5, 0.5), opacity=0.9, cls=1, scale=0.05) -> GaussianSet:
    means = torch.as_tensor(means, dtype=torch.float32).reshape(-1, 3)
    n = len(means)
    semantics = torch.full((n, C), 0.1)
    semantics[:, cls] = 0.7
    return GaussianSet(
        means=means,
        log_scales=torch.full((n, 3), float(np.log(scale))),
        quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        opacity_logits=torch.full((n,), float(np.log(opacity / (1 - opacity)))),
        sh_dc=rgb_to_sh_dc(torch.tensor([rgb], dtype=torch.float32).repeat(n, 1)),
        semantics=semantics,
        features=torch.zeros(n, F),
    )


def _wall(n_side: int = 6, depth_m: float = 2.0) -> GaussianSet:
    xs, ys = np.meshgrid(np.linspace(-0.5, 0.5, n_side), np.linspace(-0.4, 0.4, n_side))
    return _set(np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, depth_m)], axis=1))


def _evidence(depth_m: float = 2.0) -> FrameEvidence:
    return FrameEvidence(torch.full((3, K.height, K.width), 0.8), torch.full((K.height, K.width), depth_m), K,
                         torch.eye(4))


@pytest.fixture
def weights(tmp_path):
    """An untrained network (zero output layer) with one non-zero opacity output bias."""
    net = RefinementNet(RefinerNetConfig(num_classes=C, feature_dim=F, hidden=16, neighbours=4))
    path = tmp_path / "refiner.pt"
    save_weights(path, net)
    return path, net


def test_untrained_network_changes_nothing_but_counts_the_update(weights):
    path, _ = weights
    gmap = GaussianMap.from_set(_wall())
    before = gmap.as_set().detach().clone()
    refiner = GaussianRefiner(RefinerConfig(weights=str(path), merge=False), C, F)
    report = refiner.refine(gmap, torch.zeros(0, dtype=torch.long), _evidence())
    assert report.refined == len(gmap) == len(before)
    after = gmap.as_set()
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh_dc"):
        assert torch.allclose(getattr(after, name), getattr(before, name), atol=1e-6), name
    assert torch.allclose(after.semantics, before.semantics, atol=1e-4)
    assert torch.all(gmap.n_refinements == 1)


def test_each_gaussian_is_refined_at_most_max_updates_times(weights):
    path, _ = weights
    gmap = GaussianMap.from_set(_wall())
    refiner = GaussianRefiner(RefinerConfig(weights=str(path), merge=False, max_updates=3), C, F)
    counts = [refiner.refine(gmap, torch.zeros(0, dtype=torch.long), _evidence()).refined for _ in range(5)]
    assert counts == [len(gmap)] * 3 + [0, 0]
    assert torch.all(gmap.n_refinements == 3)


def test_hidden_gaussians_are_not_queried(weights):
    path, _ = weights
    gmap = GaussianMap.from_set(_wall(depth_m=3.0))
    refiner = GaussianRefiner(RefinerConfig(weights=str(path), merge=False), C, F)
    assert refiner.refine(gmap, torch.zeros(0, dtype=torch.long), _evidence(depth_m=1.0)).refined == 0


def test_network_updates_are_applied_and_transparent_gaussians_pruned(weights):
    path, net = weights
    with torch.no_grad():
        net.head[-1].bias[10] = -12.0  # opacity logit update: everything fades below 0.005
    save_weights(path, net)
    gmap = GaussianMap.from_set(_wall())
    report = GaussianRefiner(RefinerConfig(weights=str(path), merge=False), C, F).refine(
        gmap, torch.zeros(0, dtype=torch.long), _evidence())
    assert report.refined == 36 and report.pruned == 36 and len(gmap) == 0


def test_duplicates_merge_into_the_mapped_gaussian():
    gmap = GaussianMap.from_set(_set([[0, 0, 2.0], [1, 0, 2.0]], opacity=0.5), label_names=())
    new = gmap.add(GaussianSet.cat([
        _set([[0.01, 0, 2.0]], opacity=0.5),  # duplicate of the first
        _set([[1.01, 0, 2.0]], rgb=(0.9, 0.1, 0.1)),  # same place as the second, other colour: kept
        _set([[0.0, 0.02, 2.0]], cls=2),  # other class: kept
    ]))
    merged = merge_duplicates(gmap, new, RefinerConfig())
    assert merged == 1 and len(gmap) == 4
    assert torch.allclose(gmap.means[0], torch.tensor([0.005, 0, 2.0]), atol=1e-5)
    assert gmap.opacities()[0].item() == pytest.approx(0.75, abs=1e-4)


def test_missing_or_mismatched_weights_say_how_to_retrain(tmp_path, weights):
    with pytest.raises(RefinerWeightsError, match="gs4-slam train refiner"):
        load_weights(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RefinerWeightsError, match="unreadable"):
        load_weights(tmp_path / "bad.pt")
    with pytest.raises(RefinerWeightsError, match="classes"):
        GaussianRefiner(RefinerConfig(weights=str(weights[0])), 20, 16)


def test_disabled_refiner_is_the_insert_only_baseline():
    gmap = GaussianMap.from_set(_wall())
    report = GaussianRefiner(RefinerConfig(enabled=False, merge=False), C, F).refine(
        gmap, torch.zeros(0, dtype=torch.long), _evidence())
    assert report.refined == 0 and len(gmap) == 36


def test_training_smoke(tmp_path):
    """Two tiny curriculum stages end to end: checkpoint, curve, weights and a side-by-side card."""
    from gs4_slam.config import load
    from gs4_slam.refiner.train import RefinerTrainConfig, train

    cfg = load(RefinerTrainConfig, overrides={
        "train_seeds": [900, 901], "heldout_seeds": [901, 902], "frames_per_sequence": 12, "width": 160,
        "height": 128, "curriculum": [2, 3], "stage_steps": [1, 1], "frame_gap": 2, "eval_frames": 2,
        "out_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
        "weights_out": str(tmp_path / "refiner.pt"), "log_every": 1, "threads": 1,
    })
    card = train(cfg, progress=False)
    assert (tmp_path / "refiner.pt").is_file() and (tmp_path / "refiner.json").is_file()
    rows = (tmp_path / "out" / "losses.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].split(",")[1] == "2" and rows[2].split(",")[1] == "3"
    for side in ("refined", "baseline_insert_only_and_opacity_pruning"):
        assert card["heldout"][side]["n_gaussians"] > 0 and np.isfinite(card["heldout"][side]["psnr"])
    load_weights(tmp_path / "refiner.pt")


def test_training_resumes_from_its_checkpoint(tmp_path):
    import dataclasses

    from gs4_slam.config import load
    from gs4_slam.refiner.train import RefinerTrainConfig, train

    cfg = load(RefinerTrainConfig, overrides={
        "train_seeds": [900, 901], "heldout_seeds": [901, 902], "frames_per_sequence": 12, "width": 160,
        "height": 128, "curriculum": [2, 3], "stage_steps": [1, 1], "frame_gap": 2, "eval_frames": 2,
        "out_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
        "weights_out": str(tmp_path / "refiner.pt"), "log_every": 1, "checkpoint_every": 1, "threads": 1,
    })
    first = train(cfg, progress=False)
    resumed = train(dataclasses.replace(cfg, stage_steps=(1, 2)), resume=True, progress=False)
    rows = (tmp_path / "out" / "losses.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3], "resume continues, it does not restart"
    assert resumed["steps"] == 3 and resumed["training_seconds"] > first["training_seconds"]


def test_side_by_side_benchmark_smoke(tmp_path, capsys):
    """One short held-out room through both arms: the JSON line has the figures, in range."""
    import json

    from bench.refiner import main

    assert main(["--rooms", "1", "--frames", "8", "--cache-dir", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for prefix in ("", "baseline_", "no_merging_"):
        assert 15.0 < summary[f"{prefix}psnr"] < 60.0, prefix
        assert summary[f"{prefix}n_gaussians"] > 100, prefix
    assert summary["beats_baseline"] == (summary["psnr"] > summary["baseline_psnr"]
                                         and summary["n_gaussians"] < summary["baseline_n_gaussians"])
