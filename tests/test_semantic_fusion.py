"""Per-Gaussian class fusion, rendered class views, class queries and the semantic metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.config import ConfigError
from gs4_slam.frame import IGNORE_LABEL
from gs4_slam.gaussians import GaussianMap, GaussianSet, rgb_to_sh_dc
from gs4_slam.mapping.semantic_fusion import (
    SemanticFusionConfig,
    SemanticObservation,
    combine,
    external_observation,
    observe,
    rendered_classes,
)
from gs4_slam.metrics.semantic_map import LabelView, multiview_consistency
from gs4_slam.semantic_query import QueryConfig, UnknownClassError, query_class

C = 4
NAMES = ("wall", "floor", "chair", "table")
K = Intrinsics(64, 48, 50.0, 50.0, 31.5, 23.5)
IDENTITY = torch.eye(4)


def _gaussians(means, classes=None, num_classes=C) -> GaussianSet:
    means = torch.as_tensor(means, dtype=torch.float32)
    n = len(means)
    semantics = torch.full((n, num_classes), 1.0 / num_classes)
    if classes is not None:
        semantics = torch.nn.functional.one_hot(torch.as_tensor(classes), num_classes).float() * 0.7 + 0.3 / num_classes
    return GaussianSet(
        means=means,
        log_scales=torch.full((n, 3), np.log(0.03)),
        quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        opacity_logits=torch.full((n,), 4.0),
        sh_dc=rgb_to_sh_dc(torch.full((n, 3), 0.5)),
        semantics=semantics,
    )


def _wall_map(depth_m: float = 2.0) -> GaussianMap:
    """A 9x7 grid of Gaussians on a fronto-parallel plane ``depth_m`` in front of the camera."""
    xs, ys = np.meshgrid(np.linspace(-0.8, 0.8, 9), np.linspace(-0.6, 0.6, 7))
    means = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, depth_m)], axis=1)
    return GaussianMap.from_set(_gaussians(means), label_names=NAMES)


def _labels(value: int) -> np.ndarray:
    return np.full((K.height, K.width), value, dtype=np.uint8)


def _observe_labels(gmap, value, depth_m=2.0, config=SemanticFusionConfig(source="external")):
    obs = external_observation(_labels(value), C, config.external_confidence)
    depth = torch.full((K.height, K.width), depth_m)
    return observe(gmap, obs, depth, K, IDENTITY, config)


def test_external_labels_become_soft_one_hot_and_ignore_is_no_observation():
    labels = _labels(2)
    labels[0, 0] = IGNORE_LABEL
    obs = external_observation(labels, C, confidence=0.8)
    assert obs.probabilities.shape == (K.height, K.width, C)
    assert torch.allclose(obs.probabilities.sum(-1), torch.ones(K.height, K.width))
    assert obs.probabilities[5, 5, 2] == pytest.approx(0.8)
    assert obs.weight[0, 0] == 0 and obs.weight[5, 5] == 1
    with pytest.raises(ValueError, match="outside the label set"):
        external_observation(_labels(7), C, confidence=0.8)


def test_fusion_accumulates_evidence_instead_of_taking_the_last_frame():
    gmap = _wall_map()
    assert _observe_labels(gmap, 2) == len(gmap)
    _observe_labels(gmap, 2)
    _observe_labels(gmap, 3)  # one contradicting frame after two agreeing ones
    assert torch.all(gmap.semantics.argmax(dim=1) == 2)
    assert torch.allclose(gmap.semantic_weight, torch.full((len(gmap),), 3.0))
    assert torch.allclose(gmap.semantics.sum(dim=1), torch.ones(len(gmap)))
    for _ in range(3):
        _observe_labels(gmap, 3)
    assert torch.all(gmap.semantics.argmax(dim=1) == 3)  # persistent evidence does change it


def test_evidence_cap_keeps_the_class_changeable():
    gmap = _wall_map()
    capped = SemanticFusionConfig(source="external", max_weight=2.0)
    for _ in range(20):
        _observe_labels(gmap, 1, config=capped)
    assert torch.all(gmap.semantic_weight == 2.0)
    for _ in range(3):
        _observe_labels(gmap, 0, config=capped)
    assert torch.all(gmap.semantics.argmax(dim=1) == 0)


def test_gaussians_hidden_behind_the_measured_surface_are_not_updated():
    gmap = _wall_map(depth_m=3.0)
    assert _observe_labels(gmap, 2, depth_m=1.5) == 0  # something stands in front of them
    assert torch.all(gmap.semantic_weight == 0)


def test_combining_sources_weights_them():
    a = SemanticObservation(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[1.0]]))
    b = SemanticObservation(torch.tensor([[[0.0, 1.0]]]), torch.tensor([[1.0]]))
    mixed = combine([(a, 3.0), (b, 1.0)])
    assert torch.allclose(mixed.probabilities, torch.tensor([[[0.75, 0.25]]]))
    assert mixed.weight.item() == pytest.approx(4.0)
    assert combine([(a, 0.0)]) is None


def test_rendered_classes_ignore_uncovered_pixels():
    semantics = torch.tensor([[[0.1, 0.6, 0.1], [0.0, 0.0, 0.01]]])
    alpha = torch.tensor([[0.8, 0.01]])
    labels, confidence = rendered_classes(semantics, alpha)
    assert labels.tolist() == [[1, IGNORE_LABEL]]
    assert confidence[0, 0].item() == pytest.approx(0.75) and confidence[0, 1] == 0


def test_invalid_fusion_settings_are_refused():
    with pytest.raises(ValueError, match="source"):
        SemanticFusionConfig(source="magic")
    with pytest.raises(ValueError, match="external_confidence"):
        SemanticFusionConfig(external_confidence=0.0)
    from gs4_slam.slam import load_slam_config

    with pytest.raises((ConfigError, ValueError), match="source"):
        load_slam_config(overrides={"mapping": {"semantics": {"source": "magic"}}})


def _two_chairs_and_a_table() -> GaussianSet:
    rng = np.random.default_rng(0)
    chair_a = rng.normal([0, 0, 0], 0.03, (30, 3))
    chair_b = rng.normal([2, 0, 0], 0.03, (20, 3))
    table = rng.normal([1, 1, 0], 0.03, (25, 3))
    stray = np.array([[5.0, 5.0, 5.0]])
    means = np.concatenate([chair_a, chair_b, table, stray])
    classes = [2] * 50 + [3] * 25 + [2]
    return _gaussians(means, classes)


def test_query_counts_and_clusters_a_class():
    result = query_class(_two_chairs_and_a_table(), NAMES, "chair", QueryConfig(cluster_radius_m=0.2))
    assert result.class_id == 2 and result.count == 51
    assert [c.count for c in result.clusters] == [30, 20]  # the single stray Gaussian is no object
    first, second = result.clusters
    assert np.allclose(first.centroid_m, [0, 0, 0], atol=0.03) and np.allclose(second.centroid_m, [2, 0, 0], atol=0.03)
    for c in result.clusters:
        assert np.all(np.array(c.bbox_min_m) <= c.centroid_m) and np.all(np.array(c.centroid_m) <= c.bbox_max_m)
    assert query_class(_two_chairs_and_a_table(), NAMES, "wall").count == 0
    high = query_class(_two_chairs_and_a_table(), NAMES, "chair", QueryConfig(min_confidence=0.9))
    assert high.count == 0  # their class probability is 0.775


def test_unknown_class_lists_the_valid_ones():
    with pytest.raises(UnknownClassError, match="valid classes: wall, floor, chair, table"):
        query_class(_two_chairs_and_a_table(), NAMES, "sofa")


def test_query_command_reads_a_saved_map(tmp_path, capsys):
    from gs4_slam.cli import main
    from gs4_slam.map_io import save_map

    path = tmp_path / "map.ply"
    save_map(GaussianMap.from_set(_two_chairs_and_a_table(), label_names=NAMES), path)
    assert main(["query", str(path), "--class", "table", "--cluster-radius", "0.2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["count"] == 25 and len(result["clusters"]) == 1
    assert main(["query", str(path), "--class", "sofa"]) == 2


def test_fused_weights_and_label_colours_survive_save_and_load(tmp_path):
    from gs4_slam.map_io import load_map, save_map

    gmap = _wall_map()
    _observe_labels(gmap, 2)
    gmap.metadata["label_colors"] = [[1, 2, 3]] * C
    save_map(gmap, tmp_path / "m.ply")
    loaded = load_map(tmp_path / "m.ply")
    assert torch.equal(loaded.semantic_weight, gmap.semantic_weight)
    assert loaded.label_names == NAMES and loaded.metadata["label_colors"][0] == [1, 2, 3]


def test_multiview_consistency_counts_gaussians_seen_twice():
    means = torch.tensor([[0.0, 0.0, 2.0], [0.5, 0.0, 2.0], [0.0, 3.0, 2.0]])  # the last is outside every view
    gaussians = _gaussians(means)
    depth = torch.full((K.height, K.width), 2.0)
    left_half = torch.zeros(K.height, K.width, dtype=torch.int64)
    changed = left_half.clone()
    changed[:, 40:] = 1  # the second Gaussian projects to column ~44
    views = [LabelView(left_half, depth, K, Pose(np.eye(4))), LabelView(changed, depth, K, Pose(np.eye(4)))]
    fraction, counted = multiview_consistency(gaussians, views)
    assert counted == 2 and fraction == pytest.approx(0.5)


def test_semantics_benchmark_smoke(tmp_path, capsys):
    """One small held-out room through every set-up: the JSON line has the figures, in range."""
    from bench.semantics import main

    assert main(["--rooms", "1", "--frames", "10", "--cache-dir", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("miou_gt_stream", "miou_learned", "consistency"):
        assert 0.0 <= summary[key] <= 100.0, key
    # Fusing the ground truth must beat the learned head on the same room.
    assert summary["miou_gt_stream"] > summary["miou_learned"]
    assert 0.5 < summary["consistency"] <= 1.0


def test_default_cluster_radius_follows_the_spacing_of_the_gaussians():
    """Gaussians 0.2 m apart in two rows 1 m apart: two objects, whatever the map's resolution."""
    xs = np.arange(10) * 0.2
    means = np.concatenate([np.stack([xs, np.zeros(10), np.zeros(10)], 1), np.stack([xs, np.ones(10), np.zeros(10)], 1)])
    result = query_class(_gaussians(means, [2] * 20), NAMES, "chair")
    assert [c.count for c in result.clusters] == [10, 10]
