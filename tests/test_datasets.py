"""Dataset readers: real TUM and Replica data, small sequences made here, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gs4_slam import cli
from gs4_slam.datasets import DatasetError, ReaderOptions, ScanNetReader, TumReader, detect_kind, open_dataset
from gs4_slam.frame import IGNORE_LABEL
from gs4_slam.labels import load_label_set
from helpers.tum_folder import make_tum

TUM = Path("tum_fr1_xyz")
REPLICA = Path("replica_office0_4frames") / "office0"


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A small generated sequence in the ScanNet layout."""
    from gs4_slam.synthetic.generator import SyntheticConfig, write_sequence

    out = tmp_path_factory.mktemp("synthetic") / "seq"
    write_sequence(out, SyntheticConfig(seed=2, frames=6, width=80, height=60))
    return out


def copy_of(sequence: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sequence, tmp_path / "copy"))


# ----------------------------------------------------------------------------- TUM, real data


def _brute_force_association(a: np.ndarray, b: np.ndarray, max_dt: float) -> int:
    diff = np.abs(a[:, None] - b[None, :])
    pairs = sorted((d, i, j) for (i, j), d in np.ndenumerate(diff) if d <= max_dt)
    used_a, used_b = set(), set()
    for _, i, j in pairs:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
    return len(used_a)


def _stamps(path: Path) -> np.ndarray:
    return np.array([float(line.split()[0]) for line in path.read_text().splitlines() if not line.startswith("#")])


@pytest.mark.data
def test_tum_real_sequence(shared_data):
    root = shared_data / TUM
    reader = open_dataset("tum", root)
    rgb_t, depth_t = _stamps(root / "rgb.txt"), _stamps(root / "depth.txt")
    assert len(reader) == _brute_force_association(rgb_t, depth_t, 0.02)
    assert 700 < len(reader) <= len(rgb_t)
    k = reader.intrinsics
    assert (k.width, k.height, k.fx, k.fy, k.cx, k.cy) == (640, 480, 517.3, 516.5, 318.6, 255.3)
    assert k.distortion == (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)

    frame = reader[0]
    assert frame.color_rgb.shape == (480, 640, 3) and frame.depth_m.dtype == np.float32
    valid = frame.depth_m[frame.valid_depth_mask()]
    assert valid.size > 0.5 * frame.depth_m.size
    assert 0.5 < float(np.median(valid)) < 3.0  # a desk scene seen from about a metre

    gt = np.loadtxt(root / "groundtruth.txt")
    nearest = gt[np.argmin(np.abs(gt[:, 0] - frame.timestamp_s))]
    assert abs(nearest[0] - frame.timestamp_s) <= 0.02
    assert frame.T_world_cam_gt is not None
    np.testing.assert_allclose(frame.T_world_cam_gt.translation, nearest[1:4])
    np.testing.assert_allclose(frame.T_world_cam_gt.rotation, Rotation.from_quat(nearest[4:8]).as_matrix(), atol=1e-9)


@pytest.mark.data
def test_tum_real_sequence_selection_and_resize(shared_data):
    reader = open_dataset("tum", shared_data / TUM, stride=100, start=5, limit=3, resize=(320, 240))
    assert len(reader) == 3 and list(reader.indices) == [5, 105, 205]
    frames = list(reader)
    assert [f.index for f in frames] == [5, 105, 205]
    assert frames[0].color_rgb.shape == (240, 320, 3) and frames[0].depth_m.shape == (240, 320)
    assert reader.intrinsics.fx == pytest.approx(517.3 / 2)
    # Nearest-neighbour resizing never invents depths between two surfaces.
    full = open_dataset("tum", shared_data / TUM)[5].depth_m
    assert set(np.unique(frames[0].depth_m)) <= set(np.unique(full))


@pytest.mark.data
def test_replica_reader_on_the_fixture(shared_data):
    root = shared_data / REPLICA
    assert detect_kind(root) == "replica"
    reader = open_dataset("auto", root)
    assert len(reader) == 4
    k = reader.intrinsics
    assert (k.width, k.height, k.fx, k.fy, k.cx, k.cy) == (1200, 680, 600.0, 600.0, 599.5, 339.5)
    frame = reader[2]
    assert frame.color_rgb.shape == (680, 1200, 3)
    valid = frame.depth_m[frame.valid_depth_mask()]
    assert 0.3 < float(np.median(valid)) < 10.0  # /6553.5 gives metres inside an office
    line = (root / "traj.txt").read_text().splitlines()[2]
    np.testing.assert_allclose(frame.T_world_cam_gt.matrix, np.array(line.split(), float).reshape(4, 4))


# ----------------------------------------------------------------------------- TUM, made here


def test_tum_frames_carry_colour_times_on_request(tmp_path):
    root = make_tum(tmp_path / "fr1_small", n=5)
    by_colour = TumReader(root, ReaderOptions(timestamps="color"))
    by_depth = TumReader(root)
    assert by_colour[3].timestamp_s == pytest.approx(10.1)
    np.testing.assert_allclose(by_depth.timestamps_s() - by_colour.timestamps_s(), 0.004, atol=1e-9)
    with pytest.raises(ValueError, match="timestamps must be one of depth, color"):
        ReaderOptions(timestamps="rgb")


def test_tum_association_ground_truth_and_jpg(tmp_path):
    reader = TumReader(make_tum(tmp_path / "fr1_small", n=5, color_ext=".jpg"))
    assert len(reader) == 5  # the stray depth image is not associated
    assert reader.preset == "fr1"
    frame = reader[3]
    assert frame.timestamp_s == pytest.approx(10.104)  # the depth image's time (see ReaderOptions.timestamps)
    assert frame.depth_m[1, 1] == pytest.approx((1.5 * 5000 + 3) / 5000)
    assert frame.depth_m[0, 0] == 0.0
    assert frame.T_world_cam_gt.translation[0] == pytest.approx(0.10)  # GT line at 10.10 s
    assert abs(int(frame.color_rgb[5, 5, 2]) - 30) <= 3  # RGB order (BGR 30 written as blue)


def test_tum_intrinsics_and_depth_scale_overrides(tmp_path):
    root = make_tum(tmp_path / "other_sensor", n=3, size=(320, 240), depth_m=1.0)
    with pytest.raises(DatasetError, match="320x240.*--fx"):
        TumReader(root)
    reader = TumReader(root, ReaderOptions(fx=300.0, fy=301.0, cx=160.0, cy=120.0, depth_scale=2500.0))
    k = reader.intrinsics
    assert (k.width, k.height, k.fx, k.fy, k.cx, k.cy, k.distortion) == (320, 240, 300.0, 301.0, 160.0, 120.0, ())
    assert reader[0].depth_m[5, 5] == pytest.approx(5000 / 2500)


def test_reader_options_on_the_command_line(tmp_path, capsys):
    root = make_tum(tmp_path / "seq", n=4)
    rc = cli.main(
        ["dataset", str(root), "--fx", "400", "--depth-scale", "2500", "--stride", "2", "--resize", "320x240"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 selected of 4" in out and "fx 200.00" in out and "2500" in out


def test_selection_options(tmp_path):
    root = make_tum(tmp_path / "seq", n=6)
    reader = TumReader(root, ReaderOptions(start=1, stride=2))
    assert [f.index for f in reader] == [1, 3, 5]
    assert reader[-1].index == 5
    with pytest.raises(IndexError):
        reader[3]
    assert len(TumReader(root, ReaderOptions(limit=2))) == 2
    assert len(TumReader(root, ReaderOptions(start=10))) == 0
    for bad in ({"stride": 0}, {"start": -1}, {"resize": (0, 10)}, {"depth_scale": 0.0}):
        with pytest.raises(ValueError):
            ReaderOptions(**bad)


# ----------------------------------------------------------------------------- ScanNet layout


def test_scannet_round_trip_of_a_generated_sequence(generated):
    from gs4_slam.synthetic.generator import SyntheticConfig, SyntheticSequence

    reader = open_dataset("auto", generated)
    assert isinstance(reader, ScanNetReader)
    source = SyntheticSequence(SyntheticConfig(seed=2, frames=6, width=80, height=60))
    assert len(reader) == 6 and reader.num_skipped == 0
    assert reader.intrinsics == source.intrinsics
    labels = load_label_set("scannet20")
    for i in (0, 5):
        frame, view = reader[i], source.view(i)
        np.testing.assert_allclose(frame.T_world_cam_gt.matrix, source.poses[i], atol=1e-8)
        np.testing.assert_allclose(frame.depth_m, view.depth_m, atol=0.0006)  # stored in millimetres
        assert np.abs(frame.color_rgb.astype(int) - view.color_rgb).mean() < 3  # JPEG
        assert np.array_equal(frame.labels, labels.map_source(view.nyu40))
        assert frame.timestamp_s == pytest.approx(i / 30.0)


def test_scannet_skips_and_counts_non_finite_poses(generated, tmp_path):
    root = copy_of(generated, tmp_path)
    (root / "pose" / "3.txt").write_text("-inf -inf -inf -inf\n" * 4)
    reader = ScanNetReader(root)
    assert len(reader) == 5
    assert reader.skipped_invalid_pose == [3] and reader.num_skipped == 1
    assert [f.index for f in reader] == [0, 1, 2, 3, 4]  # positions in the usable sequence
    assert reader[3].timestamp_s == pytest.approx(4 / 30.0)


def test_scannet_colour_is_resized_to_depth_and_labels_mapped(generated, tmp_path):
    root = copy_of(generated, tmp_path)
    big = cv2.resize(cv2.imread(str(root / "color" / "0.jpg")), (160, 120))
    cv2.imwrite(str(root / "color" / "0.jpg"), big)
    nyu = np.full((120, 160), 22, np.uint8)  # ceiling: not a ScanNet-20 class
    nyu[:, :80] = 39  # otherfurniture
    cv2.imwrite(str(root / "label-filt" / "0.png"), nyu)
    frame = ScanNetReader(root)[0]
    assert frame.color_rgb.shape == (60, 80, 3)
    assert set(np.unique(frame.labels)) == {19, IGNORE_LABEL}


# ----------------------------------------------------------------------------- bad input


def test_missing_folder_and_unknown_layout(tmp_path):
    with pytest.raises(DatasetError, match="not found") as info:
        open_dataset("tum", tmp_path / "nowhere")
    assert "nowhere" in str(info.value)
    with pytest.raises(DatasetError, match="not a known dataset layout"):
        open_dataset("auto", tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset kind"):
        open_dataset("kitti", tmp_path)


def test_missing_list_file(tmp_path):
    root = make_tum(tmp_path / "seq", n=2)
    (root / "depth.txt").unlink()
    with pytest.raises(DatasetError, match="depth.txt: file not found"):
        TumReader(root)


def test_malformed_list_line_names_file_and_line(tmp_path):
    root = make_tum(tmp_path / "seq", n=2)
    with (root / "rgb.txt").open("a") as f:
        f.write("abc rgb/x.png\n")
    with pytest.raises(DatasetError, match=r"rgb.txt:4: timestamp 'abc'"):
        TumReader(root)


def test_invalid_ground_truth_names_the_file(tmp_path):
    root = make_tum(tmp_path / "seq", n=2)
    (root / "groundtruth.txt").write_text("10.0 0 0 0 0 0 1\n")
    with pytest.raises(DatasetError, match="groundtruth.txt:1: expected 8 values"):
        TumReader(root)


def test_missing_empty_and_corrupt_images(tmp_path):
    root = make_tum(tmp_path / "seq", n=3)
    color_files = sorted((root / "rgb").iterdir())
    depth_files = sorted((root / "depth").iterdir())
    color_files[0].unlink()
    with pytest.raises(DatasetError, match="file not found") as info:
        TumReader(root)  # the first colour image is read to learn the image size
    assert color_files[0].name in str(info.value)
    cv2.imwrite(str(color_files[0]), np.zeros((480, 640, 3), np.uint8))
    color_files[1].write_bytes(b"")
    depth_files[2].write_bytes(b"certainly not a png")
    reader = TumReader(root)
    assert reader[0].color_rgb.shape == (480, 640, 3)
    with pytest.raises(DatasetError, match="empty") as info:
        reader[1]
    assert color_files[1].name in str(info.value)
    with pytest.raises(DatasetError, match="cannot decode") as info:
        reader[2]
    assert depth_files[2].name in str(info.value)


def test_wrong_depth_scale_is_reported(tmp_path):
    root = make_tum(tmp_path / "seq", n=2)
    reader = TumReader(root, ReaderOptions(depth_scale=1.0))
    with pytest.raises(DatasetError, match="implausible.*depth scale") as info:
        reader[0]
    assert ".png" in str(info.value) and "depth" in str(info.value)


def test_wrong_image_sizes_and_channels(tmp_path):
    root = make_tum(tmp_path / "seq", n=2)
    depth_files = sorted((root / "depth").iterdir())
    cv2.imwrite(str(depth_files[0]), np.full((240, 320), 5000, np.uint16))
    cv2.imwrite(str(depth_files[1]), np.full((480, 640, 3), 50, np.uint8))
    reader = TumReader(root)
    with pytest.raises(DatasetError, match="320x240, expected 640x480") as info:
        reader[0]
    assert depth_files[0].name in str(info.value)
    with pytest.raises(DatasetError, match="one channel") as info:
        reader[1]
    assert depth_files[1].name in str(info.value)


def test_scannet_mismatched_lists_name_the_file(generated, tmp_path):
    root = copy_of(generated, tmp_path)
    (root / "depth" / "4.png").unlink()
    with pytest.raises(DatasetError, match="differ in length.*6 vs 5.*color/4.jpg"):
        ScanNetReader(root)


def test_scannet_bad_pose_and_intrinsics_files(generated, tmp_path):
    root = copy_of(generated, tmp_path)
    (root / "pose" / "2.txt").write_text("1 0 0\n")
    with pytest.raises(DatasetError, match="2.txt: expected 4x4"):
        ScanNetReader(root)
    root2 = Path(shutil.copytree(generated, tmp_path / "copy2"))
    (root2 / "intrinsic" / "intrinsic_depth.txt").unlink()
    with pytest.raises(DatasetError, match="intrinsic_depth.txt: file not found"):
        ScanNetReader(root2)


def test_replica_layout_errors(tmp_path):
    scene = tmp_path / "room0"
    (scene / "results").mkdir(parents=True)
    cv2.imwrite(str(scene / "results" / "frame000000.jpg"), np.zeros((68, 120, 3), np.uint8))
    cv2.imwrite(str(scene / "results" / "frame000001.jpg"), np.zeros((68, 120, 3), np.uint8))
    cv2.imwrite(str(scene / "results" / "depth000000.png"), np.full((68, 120), 13107, np.uint16))
    (scene / "traj.txt").write_text(" ".join(["1", "0", "0", "0"] * 4) + "\n")
    with pytest.raises(DatasetError, match="differ in length.*frame000001.jpg"):
        open_dataset("replica", scene)
    cv2.imwrite(str(scene / "results" / "depth000001.png"), np.full((68, 120), 13107, np.uint16))
    with pytest.raises(DatasetError, match="traj.txt: has 1 poses"):
        open_dataset("replica", scene)
    (scene / "traj.txt").write_text((" ".join(map(str, np.eye(4).ravel())) + "\n") * 2)
    reader = open_dataset("replica", scene, fx=60.0, fy=60.0, cx=59.5, cy=33.5)
    assert reader.intrinsics.width == 1200  # no cam_params.json: the renders' published size
    with pytest.raises(DatasetError, match="120x68, expected 1200x680"):
        reader[0]
