"""Synthetic scenes: determinism, labels, geometric consistency, camera paths, noise, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gs4_slam import cli
from gs4_slam.datasets import ScanNetReader
from gs4_slam.labels import load_label_set
from gs4_slam.synthetic.generator import SyntheticConfig, SyntheticSequence, write_sequence
from gs4_slam.synthetic.layout import random_scene
from gs4_slam.synthetic.scene import NYU40
from gs4_slam.synthetic.trajectory import PathConfig, is_free


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A 160x120 generated sequence read back through the ScanNet reader."""
    out = tmp_path_factory.mktemp("synthetic") / "seq"
    write_sequence(out, SyntheticConfig(seed=4, frames=16, width=160, height=120))
    return ScanNetReader(out)


def test_same_seed_same_images_other_seed_other_images():
    config = SyntheticConfig(seed=7, frames=3, width=64, height=48, noise=True)
    a, b = SyntheticSequence(config), SyntheticSequence(config)
    np.testing.assert_array_equal(a.poses, b.poses)
    for i in range(3):
        va, vb = a.view(i), b.view(i)
        assert np.array_equal(va.color_rgb, vb.color_rgb)
        assert np.array_equal(va.depth_m, vb.depth_m)
        assert np.array_equal(va.nyu40, vb.nyu40)
    other = SyntheticSequence(SyntheticConfig(seed=8, frames=3, width=64, height=48, noise=True))
    assert not np.array_equal(other.view(0).color_rgb, a.view(0).color_rgb)


def test_written_files_are_reproducible(tmp_path):
    config = SyntheticConfig(seed=3, frames=2, width=48, height=32)
    write_sequence(tmp_path / "a", config)
    write_sequence(tmp_path / "b", config)
    for name in ("color/1.jpg", "depth/1.png", "label-filt/1.png", "pose/1.txt", "intrinsic/intrinsic_depth.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_scenes_hold_several_classes():
    for seed in range(12):
        scene = random_scene(seed)
        ids = scene.class_ids()
        assert {NYU40["wall"], NYU40["floor"], NYU40["ceiling"], NYU40["door"]} <= ids, seed
        furniture = ids - {NYU40[n] for n in ("wall", "floor", "ceiling", "door", "window", "picture", "curtain")}
        assert len(furniture) >= 3, (seed, scene.room_type, ids)


def test_sequence_labels_cover_several_scannet20_classes(written):
    labels = load_label_set("scannet20")
    seen = set()
    for frame in written:
        seen |= set(np.unique(frame.labels).tolist())
    seen.discard(255)
    assert {labels.id_of("wall"), labels.id_of("floor")} <= seen
    assert len(seen) >= 4, [labels.class_names[i] for i in seen]


def test_depth_reprojects_consistently_under_ground_truth_poses(written):
    a, b = written[0], written[10]
    k = a.intrinsics
    v, u = np.nonzero(a.depth_m > 0)
    z = a.depth_m[v, u].astype(np.float64)
    points_a = np.column_stack([(u - k.cx) / k.fx * z, (v - k.cy) / k.fy * z, z])
    T_b_a = b.T_world_cam_gt.inverse() @ a.T_world_cam_gt
    points_b = T_b_a.transform_points(points_a)
    in_front = points_b[:, 2] > 0.1
    ub = np.round(points_b[:, 0] / points_b[:, 2] * k.fx + k.cx).astype(int)
    vb = np.round(points_b[:, 1] / points_b[:, 2] * k.fy + k.cy).astype(int)
    inside = in_front & (ub >= 0) & (ub < k.width) & (vb >= 0) & (vb < k.height)
    assert inside.mean() > 0.3  # the frames overlap
    observed = b.depth_m[vb[inside], ub[inside]]
    error = np.abs(observed - points_b[inside, 2])[observed > 0]
    assert np.median(error) < 0.01
    assert np.mean(error < 0.03) > 0.8  # the rest are occlusion boundaries


def test_camera_path_is_smooth_and_collision_free():
    sequence = SyntheticSequence(SyntheticConfig(seed=5, frames=60, width=32, height=24))
    poses = sequence.poses
    rotations = poses[:, :3, :3]
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.tile(np.eye(3), (60, 1, 1)), atol=1e-9)
    assert np.allclose(np.linalg.det(rotations), 1.0)
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    np.testing.assert_allclose(steps, 0.3 / 30.0, rtol=0.05)  # constant hand-held speed
    turn_deg = np.degrees(Rotation.from_matrix(rotations[:-1].transpose(0, 2, 1) @ rotations[1:]).magnitude())
    assert turn_deg.max() < 3.0
    assert is_free(sequence.scene, poses[:, :3, 3], PathConfig()).all()
    # The camera looks roughly level or down, never at the ceiling.
    assert (poses[:, 2, 2] < 0.2).all()


def test_depth_noise_adds_holes_and_small_errors():
    clean = SyntheticSequence(SyntheticConfig(seed=1, frames=1, width=160, height=120)).view(0)
    noisy = SyntheticSequence(SyntheticConfig(seed=1, frames=1, width=160, height=120, noise=True)).view(0)
    holes = (noisy.depth_m == 0) & (clean.depth_m > 0)
    assert 0.005 < holes.mean() < 0.3
    both = (noisy.depth_m > 0) & (clean.depth_m > 0)
    error = np.abs(noisy.depth_m - clean.depth_m)[both]
    assert 0.0005 < np.median(error) < 0.02
    assert np.array_equal(noisy.nyu40, clean.nyu40)


def test_in_memory_frames_are_valid_frames():
    sequence = SyntheticSequence(SyntheticConfig(seed=0, frames=2, width=40, height=30))
    frame = sequence.frame(1)
    assert frame.color_rgb.shape == (30, 40, 3) and frame.labels.dtype == np.uint8
    assert frame.T_world_cam_gt is not None and frame.timestamp_s == pytest.approx(1 / 30)
    assert frame.valid_depth_mask().all()  # a closed room: every ray hits


def test_generate_command(tmp_path, capsys):
    out = tmp_path / "gen"
    args = ["generate", "--out", str(out), "--seed", "1", "--frames", "2", "--width", "40", "--height", "30", "--noise"]
    assert cli.main(args) == 0
    assert "2 frames" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "color").iterdir()) == ["0.jpg", "1.jpg"]
    assert (out / "groundtruth_tum.txt").is_file() and (out / "scene.json").is_file()
    assert cli.main(args) == 1  # refuses to mix with an existing sequence
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(args + ["--overwrite", "--frames", "1"]) == 0
    assert sorted(p.name for p in (out / "color").iterdir()) == ["0.jpg"]
    assert cli.main(["generate", "--out", str(out), "--frames", "0"]) == 2
