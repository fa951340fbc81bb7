"""Mapping stage: insertion, joint optimisation, floater removal, the backend queue."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.gaussians import GaussianMap, GaussianSet, rgb_to_sh_dc
from gs4_slam.mapping.backend import MappingBackend, MappingConfig, MappingJob
from gs4_slam.mapping.insertion import InsertionConfig, select_new
from gs4_slam.mapping.optimizer import (
    KeyframeMemory,
    KeyframeView,
    OptimizationConfig,
    apply,
    free_space_floaters,
    optimize_window,
)
from gs4_slam.refiner.refiner import RefinerConfig
from gs4_slam.render import render

#: Queue mechanics on class-less maps: the refinement network (20 classes) stays out.
NO_NET = RefinerConfig(enabled=False)

K = Intrinsics(64, 48, 50.0, 50.0, 31.5, 23.5)


def _plane(depth_m: float, n_side: int = 24, color=(0.8, 0.3, 0.2), seed: int = 0, extent: float = 1.0) -> GaussianSet:
    """Gaussians tiling a fronto-parallel plane that fills the view of K at identity (``extent`` > 1 overhangs)."""
    rng = np.random.default_rng(seed)
    half_w = extent * depth_m * 32 / 50.0
    half_h = extent * depth_m * 24 / 50.0
    xs, ys = np.meshgrid(np.linspace(-half_w, half_w, n_side), np.linspace(-half_h, half_h, n_side))
    n = xs.size
    means = np.stack([xs.ravel(), ys.ravel(), np.full(n, depth_m)], 1)
    spacing = 2 * half_w / (n_side - 1)
    rgb = np.clip(np.asarray(color) + 0.1 * rng.standard_normal((n, 3)), 0, 1)
    return GaussianSet(
        means=torch.tensor(means, dtype=torch.float32),
        log_scales=torch.full((n, 3), float(np.log(0.7 * spacing))),
        quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        opacity_logits=torch.full((n,), 3.0),
        sh_dc=rgb_to_sh_dc(torch.tensor(rgb, dtype=torch.float32)),
    )


def _render(gaussians, T_world_cam=Pose.identity()):
    return render(gaussians, K, T_world_cam.inverse(), channels=("color", "depth", "alpha"), normalize_depth=True)


def test_insertion_keeps_only_unmapped_or_nearer_candidates():
    mapped = _plane(2.0, n_side=32, extent=1.4)
    out = _render(mapped)
    eye = torch.eye(4)
    cfg = InsertionConfig()
    same_surface = _plane(2.0, seed=1)
    assert select_new(same_surface, eye, K, out.alpha, out.depth, cfg).float().mean() < 0.2
    nearer = _plane(1.0)
    assert select_new(nearer, eye, K, out.alpha, out.depth, cfg).float().mean() > 0.9
    behind = _plane(3.0)
    assert select_new(behind, eye, K, out.alpha, out.depth, cfg).float().mean() < 0.2
    empty_alpha = torch.zeros_like(out.alpha)
    assert select_new(same_surface, eye, K, empty_alpha, out.depth, cfg).all()
    assert (out.alpha > 0.9).all(), "the mapped plane must cover the whole view for this test"


def _view(target: GaussianSet, T_world_cam: Pose, keyframe_id: int) -> KeyframeView:
    with torch.no_grad():
        out = _render(target, T_world_cam)
    return KeyframeView(keyframe_id, out.color.permute(2, 0, 1).contiguous(), out.depth, K, T_world_cam)


def test_joint_optimisation_reduces_the_loss_and_refines_poses():
    target = _plane(2.0, color=(0.2, 0.6, 0.9))
    poses = [Pose.identity(), Pose.from_rt(np.eye(3), [0.05, 0.0, 0.0]), Pose.from_rt(np.eye(3), [-0.05, 0.02, 0.0])]
    views = [_view(target, p, i) for i, p in enumerate(poses)]
    # The map starts off: shifted colours; the second keyframe's pose is 1.5 cm off.
    start = target.clone()
    start.sh_dc = rgb_to_sh_dc(torch.full_like(start.sh_dc, 0.5))
    gmap = GaussianMap.from_set(start)
    noisy = Pose.from_rt(np.eye(3), [0.065, 0.0, 0.0])
    views[1].T_world_cam = noisy
    cfg = OptimizationConfig(iterations=1, lr_color=0.05, lr_pose=2e-3)
    first_report = optimize_window(gmap, views, cfg)
    assert torch.equal(gmap.sh_dc, start.sh_dc), "optimising alone must not write the map"
    apply(gmap, first_report)
    assert not torch.equal(gmap.sh_dc, start.sh_dc) and int(gmap.n_updates.max()) == 1
    first = first_report.final_loss
    report = optimize_window(gmap, views, OptimizationConfig(iterations=40, lr_color=0.05, lr_pose=2e-3))
    assert report.final_loss < 0.5 * first
    assert report.gaussians_optimised == len(gmap)
    refined = report.refined_poses[1]
    assert abs(refined.translation[0] - 0.05) < abs(noisy.translation[0] - 0.05)
    assert np.allclose(report.refined_poses[0].matrix, np.eye(4), atol=1e-6), "the oldest keyframe anchors the gauge"


def test_views_drawn_from_older_keyframes_keep_their_poses():
    target = _plane(2.0, color=(0.2, 0.6, 0.9))
    poses = [Pose.from_rt(np.eye(3), [x, 0.0, 0.0]) for x in (-0.04, 0.0, 0.04)]
    views = [_view(target, p, i) for i, p in enumerate(poses)]
    views[2].T_world_cam = Pose.from_rt(np.eye(3), [0.055, 0.0, 0.0])
    report = optimize_window(GaussianMap.from_set(target), views, OptimizationConfig(iterations=5, lr_pose=2e-3),
                             fixed_poses=2)
    assert all(np.allclose(report.refined_poses[i].matrix, views[i].T_world_cam.matrix, atol=1e-6) for i in (0, 1))
    assert not np.allclose(report.refined_poses[2].matrix, views[2].T_world_cam.matrix)


def test_keyframe_memory_is_bounded_and_draws_distinct_views():
    target = _plane(2.0, color=(0.2, 0.6, 0.9))
    memory = KeyframeMemory(capacity=4, seed=1)
    original = {}
    for i in range(10):
        view = _view(target, Pose.from_rt(np.eye(3), [0.01 * i, 0.0, 0.0]), i)
        original[i] = view.color
        memory.add(view)
    assert len(memory) == 4
    drawn = memory.draw(3)
    ids = [v.keyframe_id for v in drawn]
    assert len(set(ids)) == 3 and ids == sorted(ids)
    for view in drawn:  # colour kept in 8 bits, returned in [0, 1]
        assert view.color.dtype == torch.float32
        assert float((view.color - original[view.keyframe_id]).abs().max()) <= 0.5 / 255 + 1e-6
    assert len(memory.draw(10)) == 4
    assert KeyframeMemory(capacity=0).draw(2) == []
    with pytest.raises(ValueError, match="random_keyframes"):
        OptimizationConfig(random_keyframes=3, stored_keyframes=2)


def test_backend_draws_older_keyframes_into_the_window():
    cfg = MappingConfig(threaded=False, refinement=RefinerConfig(enabled=False, merge=False, prune=False),
                        optimization=OptimizationConfig(iterations=1, window=2, random_keyframes=2))
    backend = MappingBackend(cfg, num_classes=0, feature_dim=0, label_names=())
    for k in range(5):
        backend.submit(_job(k, keyframe_id=k))
    assert len(backend.older_keyframes) == 3  # five keyframes, two in the window
    assert backend.stats.optimisations == 5
    backend.submit(_job(5, keyframe_id=None))
    runs = backend.stats.stage_runs
    assert runs["insert_ms"] == 6 and runs["optimize_ms"] == 5  # stage means are over the jobs that ran them
    assert set(backend.stats.stage_ms_mean()) == set(runs)


def test_free_space_floaters_are_found():
    surface = _plane(2.0)
    floater = GaussianSet(
        means=torch.tensor([[0.0, 0.0, 1.0]]),
        log_scales=torch.full((1, 3), -3.0),
        quats=torch.tensor([[1.0, 0, 0, 0]]),
        opacity_logits=torch.tensor([3.0]),
        sh_dc=torch.zeros(1, 3),
    )
    gmap = GaussianMap.from_set(GaussianSet.cat([surface, floater]))
    views = [_view(surface, Pose.identity(), 0), _view(surface, Pose.from_rt(np.eye(3), [0.02, 0, 0]), 1)]
    flagged = free_space_floaters(gmap, views, OptimizationConfig())
    assert flagged[-1] and flagged[:-1].float().mean() < 0.05


def _job(index: int, keyframe_id: int | None) -> MappingJob:
    gaussians = _plane(2.0, n_side=8, seed=index)
    return MappingJob(index, torch.zeros(3, 48, 64), torch.full((48, 64), 2.0), K, Pose.identity(), gaussians,
                      keyframe_id)


def test_backend_never_drops_keyframes_and_counts_skips():
    cfg = MappingConfig(threaded=True, queue_size=1, optimization=OptimizationConfig(iterations=1), refinement=NO_NET)
    backend = MappingBackend(cfg, num_classes=0, feature_dim=0, label_names=())
    try:
        with backend.lock:  # hold the worker so that jobs pile up
            accepted = [backend.submit(_job(i, i if i % 3 == 0 else None)) for i in range(9)]
        backend.flush()
        keyframes = [i for i in range(9) if i % 3 == 0]
        assert all(accepted[i] for i in keyframes)
        assert backend.stats.jobs_skipped == 9 - backend.stats.jobs_done
        assert backend.stats.jobs_done >= len(keyframes)
        assert backend.stats.optimisations == len(keyframes)
    finally:
        backend.close()


def test_backend_bounds_pending_keyframes():
    cfg = MappingConfig(threaded=True, queue_size=1, max_pending_keyframes=2, refinement=NO_NET,
                        optimization=OptimizationConfig(iterations=1))
    backend = MappingBackend(cfg, num_classes=0, feature_dim=0, label_names=())
    try:
        with backend.lock:  # hold the worker: every job is a keyframe and they pile up
            for i in range(8):
                backend.submit(_job(i, i))
            pending = len(backend._pending)
        backend.flush()
        assert pending <= 3  # at most max_pending_keyframes waiting (+ the one being handled)
        assert backend.stats.keyframes_skipped >= 8 - 3
        assert backend.stats.jobs_done + backend.stats.keyframes_skipped == 8
    finally:
        backend.close()


def test_backend_inline_mode_is_immediate():
    backend = MappingBackend(MappingConfig(threaded=False, refinement=NO_NET), num_classes=0, feature_dim=0, label_names=())
    assert backend.submit(_job(0, None))
    assert len(backend) == 64 and backend.stats.jobs_done == 1


def test_config_validation():
    with pytest.raises(ValueError, match="queue_size"):
        MappingConfig(queue_size=0)
    with pytest.raises(ValueError, match="iterations"):
        OptimizationConfig(iterations=-1)


def test_densify_adds_finer_gaussians_only_where_the_render_is_wrong():
    from gs4_slam.mapping.densify import DensifyConfig, block_errors, densify

    h, w = K.height, K.width
    color = torch.full((3, h, w), 0.5)
    rendered = color.clone()
    rendered[:, :, : w // 2] = 0.1  # the left half renders badly
    depth = torch.full((h, w), 2.0)
    depth[:8] = 0.0  # no depth at the top: nothing can be added there
    config = DensifyConfig(enabled=True, stride=4, min_color_error=0.1)
    extra = densify(block_errors(rendered, color, None, None, config), color, depth, K, Pose(np.eye(4)),
                    num_classes=3, feature_dim=2, config=config)
    u = extra.means[:, 0] / extra.means[:, 2] * K.fx + K.cx
    v = extra.means[:, 1] / extra.means[:, 2] * K.fy + K.cy
    assert len(extra) == (w // 2 // 4) * ((h - 8) // 4)
    assert bool((u < w / 2).all()) and bool((v >= 8).all())
    assert torch.allclose(extra.means[:, 2], torch.full((len(extra),), 2.0))
    assert extra.semantics.shape == (len(extra), 3) and torch.allclose(extra.semantics.sum(1), torch.ones(len(extra)))
    capped_config = DensifyConfig(enabled=True, stride=4, min_color_error=0.1, max_per_frame=5)
    capped = densify(block_errors(rendered, color, None, None, capped_config), color, depth, K, Pose(np.eye(4)), 3, 2,
                     capped_config)
    assert len(capped) == 5


def test_label_errors_mark_blocks_whose_rendered_class_contradicts_the_label_image():
    from gs4_slam.frame import IGNORE_LABEL
    from gs4_slam.mapping.densify import DensifyConfig, block_errors

    h, w = K.height, K.width
    color = torch.zeros(3, h, w)
    labels = torch.zeros(h, w, dtype=torch.uint8)
    rendered = torch.zeros(h, w, dtype=torch.long)
    rendered[:4, :4] = 1  # first block: every pixel wrong
    rendered[:4, 4:8] = torch.tensor([1, 0, 0, 0])  # second block: a quarter wrong
    labels[4:8, :4] = IGNORE_LABEL
    rendered[4:8, :4] = 2  # third block: wrong, but nobody labelled it
    config = DensifyConfig(stride=4, min_label_error=0.5)
    score = block_errors(None, color, rendered, labels, config)
    assert score.shape == (h // 4, w // 4)
    assert score[0, 0] == pytest.approx(2.0) and score[0, 1] == pytest.approx(0.5)
    assert score[1, 0] == 0.0 and int((score > 1).sum()) == 1
    assert DensifyConfig().active(has_labels=True) and not DensifyConfig().active(has_labels=False)
    assert not DensifyConfig(label_errors=False).active(has_labels=True)
