"""Metrics: hand-computed cases for every metric, alignment invariance, the eval command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gs4_slam import cli
from gs4_slam.frame import IGNORE_LABEL
from gs4_slam.metrics import (
    ConfusionMatrix,
    Trajectory,
    TrajectoryError,
    associate,
    ate,
    depth_l1_cm,
    psnr,
    read_tum,
    rpe,
    ssim,
    umeyama_alignment,
    write_tum,
)
from gs4_slam.metrics.image import SSIM_SIGMA, SSIM_WINDOW, ssim_map


def _poses(positions: np.ndarray, yaws_rad: np.ndarray | None = None) -> np.ndarray:
    poses = np.tile(np.eye(4), (len(positions), 1, 1))
    if yaws_rad is not None:
        poses[:, :3, :3] = Rotation.from_euler("z", np.asarray(yaws_rad)[:, None]).as_matrix()
    poses[:, :3, 3] = positions
    return poses


def _wobbly_trajectory(n: int = 50, seed: int = 0) -> Trajectory:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 30.0
    positions = np.column_stack([np.sin(t), np.cos(0.7 * t), 0.3 * t]) + 0.01 * rng.standard_normal((n, 3))
    rotations = Rotation.from_euler("xyz", np.column_stack([0.1 * t, 0.2 * np.sin(t), t])).as_matrix()
    poses = _poses(positions)
    poses[:, :3, :3] = rotations
    return Trajectory(t, poses)


# ----------------------------------------------------------------------------- association


def test_associate_takes_nearest_within_threshold_and_uses_each_stamp_once():
    a = np.array([0.0, 1.0, 2.0])
    b = np.array([0.01, 1.03, 1.99, 2.005])
    ia, ib = associate(a, b, max_dt_s=0.02)
    assert ia.tolist() == [0, 2] and ib.tolist() == [0, 3]
    ia, ib = associate(np.array([0.0, 0.005]), np.array([0.002]), max_dt_s=0.02)
    assert ia.tolist() == [0] and ib.tolist() == [0]


def test_associate_unsorted_input():
    ia, ib = associate(np.array([2.0, 0.0]), np.array([0.001, 2.001]))
    assert sorted(zip(ia.tolist(), ib.tolist())) == [(0, 1), (1, 0)]


# ----------------------------------------------------------------------------- alignment / ATE / RPE


def test_umeyama_recovers_rotation_translation_and_scale():
    rng = np.random.default_rng(1)
    src = rng.standard_normal((20, 3))
    rotation = Rotation.from_euler("xyz", [0.3, -0.5, 1.2]).as_matrix()
    translation = np.array([1.0, -2.0, 0.5])
    r, t, s = umeyama_alignment(src, src @ rotation.T + translation)
    np.testing.assert_allclose(r, rotation, atol=1e-10)
    np.testing.assert_allclose(t, translation, atol=1e-10)
    assert s == 1.0
    r, t, s = umeyama_alignment(src, 2.5 * src @ rotation.T + translation, with_scale=True)
    assert s == pytest.approx(2.5)
    np.testing.assert_allclose(r, rotation, atol=1e-10)


def test_ate_of_rigidly_transformed_copy_is_zero():
    gt = _wobbly_trajectory()
    transform = np.eye(4)
    transform[:3, :3] = Rotation.from_euler("zyx", [40, -20, 10], degrees=True).as_matrix()
    transform[:3, 3] = [3.0, -1.0, 2.0]
    # Estimate on another world frame, at slightly different timestamps.
    moved = Trajectory(gt.timestamps_s + 0.004, transform @ gt.poses)
    result = ate(moved, gt)
    assert result.num_pairs == len(gt)
    assert result.rmse_m < 1e-9 and result.max_m < 1e-9
    np.testing.assert_allclose(result.T_gt_est, np.linalg.inv(transform), atol=1e-9)
    assert rpe(moved, gt).trans_rmse_m < 1e-9


def test_ate_hand_case_saddle_offsets_cannot_be_aligned_away():
    corners = np.array([[1, 1, 0], [1, -1, 0], [-1, 1, 0], [-1, -1, 0]], dtype=float)
    d = 0.05
    est_xyz = corners + np.array([[0, 0, d], [0, 0, -d], [0, 0, -d], [0, 0, d]])
    t = np.arange(4.0)
    result = ate(Trajectory(t, _poses(est_xyz)), Trajectory(t, _poses(corners)))
    assert result.rmse_m == pytest.approx(d, rel=1e-9)
    unaligned = ate(Trajectory(t, _poses(corners + [0.1, 0, 0])), Trajectory(t, _poses(corners)), align=False)
    assert unaligned.rmse_m == pytest.approx(0.1)


def test_rpe_hand_cases():
    t = np.arange(4.0)
    gt = Trajectory(t, _poses(np.column_stack([t, 0 * t, 0 * t])))
    stretched = Trajectory(t, _poses(np.column_stack([1.1 * t, 0 * t, 0 * t])))
    result = rpe(stretched, gt)
    assert result.num_pairs == 3
    assert result.trans_rmse_m == pytest.approx(0.1)
    assert result.rot_rmse_deg == pytest.approx(0.0, abs=1e-6)
    turning = Trajectory(t, _poses(np.zeros((4, 3)), np.radians(t)))
    still = Trajectory(t, _poses(np.zeros((4, 3))))
    assert rpe(turning, still).rot_rmse_deg == pytest.approx(1.0)
    assert rpe(turning, still, delta=2).rot_mean_deg == pytest.approx(2.0)


def test_too_few_associated_poses_is_a_clear_error():
    gt = _wobbly_trajectory(10)
    shifted = Trajectory(gt.timestamps_s + 100.0, gt.poses)
    with pytest.raises(TrajectoryError, match="ground-truth pose within"):
        ate(shifted, gt)


# ----------------------------------------------------------------------------- TUM files


def test_tum_round_trip(tmp_path):
    original = _wobbly_trajectory(20)
    write_tum(tmp_path / "t.txt", original)
    loaded = read_tum(tmp_path / "t.txt")
    np.testing.assert_allclose(loaded.timestamps_s, original.timestamps_s, atol=1e-6)
    np.testing.assert_allclose(loaded.poses, original.poses, atol=1e-6)


@pytest.mark.parametrize(
    "content, message",
    [
        ("# only a comment\n", "no poses"),
        ("1.0 0 0 0 0 0 0 1\n2.0 0 0 0 0 0 1\n", ":2: expected 8 values"),
        ("1.0 0 0 x 0 0 0 1\n", ":1: not numbers"),
        ("1.0 0 0 0 0 0 0 0\n", "zero quaternion"),
        ("1.0 0 0 nan 0 0 0 1\n", "non-finite"),
    ],
)
def test_read_tum_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(TrajectoryError, match=message) as info:
        read_tum(path)
    assert "bad.txt" in str(info.value)


def test_read_tum_missing_file(tmp_path):
    with pytest.raises(TrajectoryError, match="not found"):
        read_tum(tmp_path / "absent.txt")


# ----------------------------------------------------------------------------- images


def test_psnr_hand_cases():
    zeros = np.zeros((4, 5, 3))
    assert psnr(zeros + 0.1, zeros) == pytest.approx(20.0)
    assert psnr(np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8)) == pytest.approx(0.0)
    assert psnr(zeros, zeros) == float("inf")
    half = zeros.copy()
    half[:, :2] = 1.0
    mask = np.zeros((4, 5), bool)
    mask[:, 2:] = True
    assert psnr(half, zeros, mask=mask) == float("inf")
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(zeros, zeros[:2])


def test_ssim_identical_and_constant_images():
    rng = np.random.default_rng(0)
    image = rng.random((32, 40, 3))
    assert ssim(image, image) == pytest.approx(1.0)
    a, b = np.full((40, 40), 0.5), np.full((40, 40), 0.25)
    c1 = 0.01**2
    expected_centre = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)  # variances are 0 away from borders
    assert ssim_map(a, b)[20, 20] == pytest.approx(expected_centre)
    assert ssim(image, np.clip(image + 0.2 * rng.standard_normal(image.shape), 0, 1)) < 0.9


def test_ssim_matches_the_3dgs_convolution():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(3)
    a = rng.random((3, 24, 30))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    x = np.arange(SSIM_WINDOW) - SSIM_WINDOW // 2
    g = np.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    g /= g.sum()
    window = torch.tensor(np.outer(g, g))[None, None].repeat(3, 1, 1, 1)

    def blur(t):
        return functional.conv2d(t, window, padding=SSIM_WINDOW // 2, groups=3)

    ta, tb = torch.tensor(a)[None], torch.tensor(b)[None]
    mu_a, mu_b = blur(ta), blur(tb)
    var_a, var_b = blur(ta * ta) - mu_a**2, blur(tb * tb) - mu_b**2
    cov = blur(ta * tb) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    reference = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    assert ssim(a.transpose(1, 2, 0), b.transpose(1, 2, 0)) == pytest.approx(float(reference.mean()), abs=1e-10)


def test_depth_l1_counts_only_valid_ground_truth():
    pred = np.array([1.0, 2.0, 0.0, 5.0])
    gt = np.array([1.1, 0.0, 2.0, np.nan])
    assert depth_l1_cm(pred, gt) == pytest.approx((10.0 + 200.0) / 2)
    with pytest.raises(ValueError, match="no valid"):
        depth_l1_cm(pred, np.zeros(4))


# ----------------------------------------------------------------------------- semantics


def test_confusion_matrix_hand_case():
    pred = np.array([0, 0, 1, 1, 1, 2])
    gt = np.array([0, 1, 1, 1, IGNORE_LABEL, IGNORE_LABEL])
    matrix = ConfusionMatrix.from_labels(pred, gt, num_classes=3)
    assert matrix.counts.tolist() == [[1, 0, 0], [1, 2, 0], [0, 0, 0]]
    scores = matrix.scores()
    assert scores.iou[0] == pytest.approx(0.5)
    assert scores.iou[1] == pytest.approx(2 / 3)
    assert np.isnan(scores.iou[2])  # absent from ground truth and prediction
    assert scores.miou == pytest.approx((0.5 + 2 / 3) / 2)
    assert scores.mean_accuracy == pytest.approx((1 + 2 / 3) / 2)
    assert scores.overall_accuracy == pytest.approx(3 / 4)
    assert scores.num_pixels == 4


def test_unknown_prediction_is_a_miss_and_matrices_accumulate():
    gt = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, IGNORE_LABEL], [1, 0]])
    scores = ConfusionMatrix.from_labels(pred, gt, 2).scores()
    # class 0: TP 1, FN 1 (unknown), FP 1 -> 1/3; class 1: TP 1, FN 1 -> 1/2
    assert scores.iou.tolist() == pytest.approx([1 / 3, 1 / 2])
    assert scores.overall_accuracy == pytest.approx(0.5)
    accumulated = ConfusionMatrix.empty(2)
    accumulated.update(pred[:1], gt[:1])
    accumulated.update(pred[1:], gt[1:])
    assert np.array_equal(accumulated.counts, ConfusionMatrix.from_labels(pred, gt, 2).counts)
    table = scores.table(["wall", "floor"])
    assert "wall" in table and "mIoU" in table and "41.67" in table


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        ConfusionMatrix.from_labels(np.zeros(3, int), np.zeros(4, int), 2)
    with pytest.raises(ValueError, match="outside 0..1"):
        ConfusionMatrix.from_labels(np.zeros(2, int), np.array([0, 7]), 2)


# ----------------------------------------------------------------------------- gs4-slam eval


def test_eval_command_prints_numbers_and_writes_plot(tmp_path, capsys):
    gt = _wobbly_trajectory(60)
    rng = np.random.default_rng(5)
    noisy = gt.poses.copy()
    noisy[:, :3, 3] += 0.01 * rng.standard_normal((len(gt), 3))
    transform = np.eye(4)
    transform[:3, :3] = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    write_tum(tmp_path / "gt.txt", gt)
    write_tum(tmp_path / "est.txt", Trajectory(gt.timestamps_s, transform @ noisy))
    out = tmp_path / "eval"
    rc = cli.main(["eval", "--est", str(tmp_path / "est.txt"), "--gt", str(tmp_path / "gt.txt"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "ATE RMSE" in printed and "RPE" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.005 < metrics["ate_rmse_m"] < 0.03
    assert (out / "trajectory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_command_reports_bad_input_without_traceback(tmp_path, capsys):
    (tmp_path / "gt.txt").write_text("0 0 0 0 0 0 0 1\n")
    rc = cli.main(
        ["eval", "--est", str(tmp_path / "missing.txt"), "--gt", str(tmp_path / "gt.txt"), "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "missing.txt" in err and "not found" in err and "Traceback" not in err
