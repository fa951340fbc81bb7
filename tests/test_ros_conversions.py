"""Message <-> core conversions and every bad-input error (plain message objects, no spinning)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.frame import IGNORE_LABEL
from gs4_slam.gaussians import GaussianSet
from gs4_slam.labels import load_label_set
from gs4_slam.synthetic.generator import SyntheticConfig, SyntheticSequence

pytestmark = pytest.mark.ros

conv = pytest.importorskip("gs4_slam.ros.conversions", exc_type=ImportError)
STAMP = conv.stamp_from_seconds(12.25)


@pytest.fixture(scope="module")
def frame():
    return SyntheticSequence(SyntheticConfig(seed=3, frames=2, width=64, height=48)).frame(1)


def msgs_of(frame, depth_encoding="32FC1"):
    color = conv.image_msg_from_rgb(frame.color_rgb, "cam", STAMP)
    depth = conv.image_msg_from_depth(frame.depth_m, "cam", STAMP, encoding=depth_encoding)
    info = conv.camera_info_from_intrinsics(frame.intrinsics, "cam", STAMP)
    return color, depth, info


def test_stamps_round_trip_exactly():
    t = conv.stamp_from_seconds(1700000000.123456789)
    assert t.sec == 1700000000 and 0 <= t.nanosec < 1_000_000_000
    assert conv.seconds_from_stamp(t) == pytest.approx(1700000000.123456789, abs=1e-6)
    assert conv.seconds_from_stamp(STAMP) == 12.25


def test_frame_round_trip_32fc1_is_exact(frame):
    color, depth, info = msgs_of(frame)
    labels = conv.image_msg_from_label_ids(frame.labels, "cam", STAMP)
    out = conv.frame_from_msgs(color, depth, info, labels, index=7, num_classes=20)
    assert out.index == 7 and out.timestamp_s == 12.25
    np.testing.assert_array_equal(out.color_rgb, frame.color_rgb)
    np.testing.assert_array_equal(out.depth_m, frame.depth_m)
    np.testing.assert_array_equal(out.labels, frame.labels)
    assert out.intrinsics == frame.intrinsics


def test_frame_takes_the_depth_time_and_the_colour_delay(frame):
    color, depth, info = msgs_of(frame)
    assert conv.frame_from_msgs(color, depth, info).color_delay_s == 0.0  # a synchronised camera
    color.header.stamp = conv.stamp_from_seconds(12.25 + 0.0073)  # an unsynchronised one (TUM's Kinect)
    out = conv.frame_from_msgs(color, depth, info)
    assert out.timestamp_s == 12.25 and out.color_delay_s == pytest.approx(0.0073, abs=1e-9)
    color.header.stamp = conv.stamp_from_seconds(13.0)  # 0.75 s apart: not one frame
    with pytest.raises(ValueError, match="0.75 s apart"):
        conv.frame_from_msgs(color, depth, info)


def test_16uc1_depth_is_millimetres(frame):
    color, depth, info = msgs_of(frame, depth_encoding="16UC1")
    out = conv.frame_from_msgs(color, depth, info)
    assert depth.encoding == "16UC1" and depth.step == 2 * frame.width
    np.testing.assert_allclose(out.depth_m, frame.depth_m, atol=0.0005 + 1e-6)


def test_big_endian_depth_and_padded_rows():
    depth_mm = np.array([[1000, 2000, 0], [3, 65535, 1500]], dtype=">u2")
    padded = np.zeros((2, 8), dtype=np.uint8)
    padded[:, :6] = depth_mm.view(np.uint8).reshape(2, 6)
    msg = conv.Image(height=2, width=3, encoding="16UC1", is_bigendian=1, step=8, data=padded.tobytes())
    np.testing.assert_allclose(conv.depth_from_image(msg), depth_mm.astype(np.float32) / 1000.0)


@pytest.mark.parametrize("encoding,order", [("bgr8", [2, 1, 0]), ("rgba8", [0, 1, 2, 3]), ("bgra8", [2, 1, 0, 3])])
def test_other_colour_encodings(frame, encoding, order):
    rgba = np.concatenate([frame.color_rgb, np.full(frame.color_rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    pixels = np.ascontiguousarray(rgba[..., order])
    msg = conv.Image(height=frame.height, width=frame.width, encoding=encoding,
                     step=pixels.shape[2] * frame.width, data=pixels.tobytes())
    np.testing.assert_array_equal(conv.rgb_from_image(msg), frame.color_rgb)


def test_nan_depth_becomes_no_measurement_with_a_warning(frame):
    color, _, info = msgs_of(frame)
    bad = frame.depth_m.copy()
    bad[0, :5] = np.nan
    bad[1, 0] = np.inf
    bad[1, 1] = -2.0
    issues: list[str] = []
    out = conv.frame_from_msgs(color, conv.image_msg_from_depth(bad, "cam", STAMP), info, issues=issues)
    assert np.all(np.isfinite(out.depth_m)) and np.all(out.depth_m[0, :5] == 0) and out.depth_m[1, 1] == 0
    assert len(issues) == 1 and "NaN" in issues[0] and "7 " in issues[0]


@pytest.mark.parametrize(
    "case,pattern",
    [
        ("colour_encoding", "unsupported colour encoding 'yuv422'"),
        ("depth_encoding", "unsupported depth encoding '8UC3'"),
        ("missing_info", "no camera_info"),
        ("depth_size", "size mismatch: colour is 64x48, depth is 32x24"),
        ("info_size", "size mismatch: camera_info is 32x24"),
        ("uncalibrated", "uncalibrated"),
        ("truncated", "expected step\\*height"),
        ("label_encoding", "unsupported label encoding 'rgb8'"),
        ("label_size", "size mismatch: labels are 32x24"),
        ("empty", "empty"),
    ],
)
def test_bad_input_names_the_problem(frame, case, pattern):
    color, depth, info = msgs_of(frame)
    labels = None
    small = Intrinsics(32, 24, 26.0, 26.0, 15.5, 11.5)
    if case == "colour_encoding":
        color.encoding = "yuv422"
    elif case == "depth_encoding":
        depth.encoding = "8UC3"
    elif case == "missing_info":
        info = None
    elif case == "depth_size":
        depth = conv.image_msg_from_depth(frame.depth_m[::2, ::2], "cam", STAMP)
    elif case == "info_size":
        info = conv.camera_info_from_intrinsics(small, "cam", STAMP)
    elif case == "uncalibrated":
        info.k = [0.0] * 9
    elif case == "truncated":
        color.data = bytes(color.data)[:-10]
    elif case == "label_encoding":
        labels = conv.image_msg_from_rgb(frame.color_rgb, "cam", STAMP)
    elif case == "label_size":
        labels = conv.image_msg_from_label_ids(frame.labels[::2, ::2], "cam", STAMP)
    elif case == "empty":
        color = conv.Image(encoding="rgb8")
    with pytest.raises(conv.ConversionError, match=pattern):
        conv.frame_from_msgs(color, depth, info, labels, num_classes=20)
    assert issubclass(conv.ConversionError, ValueError)


def test_camera_info_distortion_and_unsupported_binning():
    k = Intrinsics(640, 480, 600.0, 601.0, 319.5, 239.5, (0.1, -0.2, 0.0, 0.0, 0.01))
    info = conv.camera_info_from_intrinsics(k, "cam", STAMP)
    assert conv.intrinsics_from_camera_info(info) == k
    info.distortion_model = "equidistant"
    with pytest.raises(conv.ConversionError, match="distortion model 'equidistant'"):
        conv.intrinsics_from_camera_info(info)
    info = conv.camera_info_from_intrinsics(k, "cam", STAMP)
    info.binning_x = 2
    with pytest.raises(conv.ConversionError, match="binning"):
        conv.intrinsics_from_camera_info(info)


def test_mono16_labels_outside_the_set_are_ignored():
    ids = np.array([[0, 19, 20], [255, 300, 5]], dtype=np.uint16)
    msg = conv.Image(height=2, width=3, encoding="mono16", step=6, data=ids.astype("<u2").tobytes())
    issues: list[str] = []
    out = conv.labels_from_image(msg, num_classes=20, issues=issues)
    np.testing.assert_array_equal(out, [[0, 19, IGNORE_LABEL], [IGNORE_LABEL, IGNORE_LABEL, 5]])
    assert out.dtype == np.uint8 and "2 pixels" in issues[0]


def test_pose_messages_round_trip():
    quat = np.array([0.1, 0.2, -0.3, 0.9])
    pose = Pose.from_quat_xyzw(np.array([1.0, -2.0, 0.5]), quat / np.linalg.norm(quat))
    stamped = conv.pose_stamped_from_pose(pose, "map", STAMP)
    assert stamped.header.frame_id == "map" and stamped.header.stamp == STAMP
    np.testing.assert_allclose(conv.pose_from_pose_msg(stamped.pose).matrix, pose.matrix, atol=1e-12)
    tf = conv.transform_stamped_from_pose(pose, "map", "camera", STAMP)
    assert (tf.header.frame_id, tf.child_frame_id) == ("map", "camera")
    assert (tf.transform.translation.x, tf.transform.rotation.w) == (1.0, stamped.pose.orientation.w)
    stamped.pose.orientation.w = stamped.pose.orientation.x = stamped.pose.orientation.y = 0.0
    stamped.pose.orientation.z = float("nan")
    with pytest.raises(conv.ConversionError, match="quaternion"):
        conv.pose_from_pose_msg(stamped.pose)


def test_odometry_twist_is_in_the_camera_frame():
    yaw90 = np.array([0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)])
    before = Pose.from_quat_xyzw(np.zeros(3), yaw90)
    after = Pose.from_quat_xyzw(np.array([0.0, 0.2, 0.0]), yaw90)  # moved +y in the world = +x in the camera
    odom = conv.odometry_from_pose(after, "map", "camera", conv.stamp_from_seconds(2.5), previous=(2.0, before))
    assert (odom.header.frame_id, odom.child_frame_id) == ("map", "camera")
    np.testing.assert_allclose([odom.twist.twist.linear.x, odom.twist.twist.linear.y], [0.4, 0.0], atol=1e-12)
    assert odom.twist.twist.angular.z == pytest.approx(0.0)
    assert conv.odometry_from_pose(after, "map", "camera", STAMP).twist.twist.linear.x == 0.0


def test_images_out():
    rgb = conv.image_msg_from_rgb(np.array([[[0.0, 0.5, 1.0]]], dtype=np.float32), "virtual", STAMP)
    assert (rgb.encoding, rgb.width, rgb.height, bytes(rgb.data)) == ("rgb8", 1, 1, bytes([0, 128, 255]))
    depth = conv.image_msg_from_depth(np.array([[1.5, 0.0]], dtype=np.float32), "virtual", STAMP)
    assert depth.encoding == "32FC1" and np.frombuffer(bytes(depth.data), "<f4").tolist() == [1.5, 0.0]
    label_set = load_label_set("scannet20")
    scores = np.zeros((1, 2, label_set.num_classes), dtype=np.float32)
    scores[0, 0, 3] = 0.8
    sem = conv.image_msg_from_class_scores(scores, label_set, "virtual", STAMP)
    pixels = np.frombuffer(bytes(sem.data), np.uint8).reshape(2, 3)
    assert pixels[0].tolist() == list(label_set.colors_rgb[3]) and pixels[1].tolist() == [0, 0, 0]
    with pytest.raises(conv.ConversionError, match="depth must be"):
        conv.image_msg_from_depth(np.zeros((2, 2, 2)), "x", STAMP)
    with pytest.raises(conv.ConversionError, match="16UC1"):
        conv.image_msg_from_depth(np.zeros((2, 2)), "x", STAMP, encoding="mono8")


def gaussians(n: int, num_classes: int | None) -> GaussianSet:
    g = torch.Generator().manual_seed(0)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1)
    return GaussianSet(
        means=torch.randn(n, 3, generator=g),
        log_scales=torch.full((n, 3), -3.0),
        quats=quats,
        opacity_logits=torch.zeros(n),
        sh_dc=torch.zeros(n, 3),
        semantics=None if num_classes is None else torch.softmax(torch.randn(n, num_classes, generator=g), dim=1),
    )


def test_pointcloud2_fields_and_values():
    label_set = load_label_set("scannet20")
    gs = gaussians(50, label_set.num_classes)
    cloud = conv.pointcloud2_from_gaussians(gs, label_set, "map", STAMP)
    names = [f.name for f in cloud.fields]
    for name in ["x", "y", "z", "rgb", "label", "confidence", "scale_x", "scale_y", "scale_z",
                 "rot_w", "rot_x", "rot_y", "rot_z", "opacity"]:
        assert name in names
    assert (cloud.header.frame_id, cloud.width, cloud.height) == ("map", 50, 1)
    assert cloud.row_step == cloud.point_step * 50 and len(cloud.data) == cloud.row_step
    assert all(f.offset % 4 == 0 for f in cloud.fields if f.datatype == conv.PointField.FLOAT32)
    points = conv.structured_from_pointcloud2(cloud)
    np.testing.assert_allclose(points["x"], gs.means[:, 0].numpy())
    np.testing.assert_allclose(points["scale_y"], np.exp(-3.0), rtol=1e-6)
    np.testing.assert_allclose(points["rot_w"], gs.quats[:, 0].numpy())
    np.testing.assert_allclose(points["opacity"], 0.5)
    np.testing.assert_array_equal(points["label"], gs.semantics.argmax(1).numpy())
    np.testing.assert_allclose(points["confidence"], gs.semantics.max(1).values.numpy())
    # sh_dc = 0 is grey 0.5 -> 128 in each channel, packed 0x00RRGGBB in a float32.
    assert set(points["rgb"].view(np.uint32).tolist()) == {(128 << 16) | (128 << 8) | 128}
    assert points.dtype["label"] == np.uint8


def test_pointcloud2_without_semantics_and_subsampled():
    label_set = load_label_set("scannet20")
    cloud = conv.pointcloud2_from_gaussians(gaussians(1000, None), label_set, "map", STAMP, max_points=100)
    points = conv.structured_from_pointcloud2(cloud)
    assert cloud.width == 100
    assert set(points["label"].tolist()) == {IGNORE_LABEL} and set(points["confidence"].tolist()) == {0.0}
    empty = conv.pointcloud2_from_gaussians(gaussians(0, None), label_set, "map", STAMP)
    assert empty.width == 0 and len(empty.data) == 0
