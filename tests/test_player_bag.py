"""rosbag2 bags as sequences (gs4_slam.ros.bag_io): written with rosbags, read back frame by frame."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.ros

FRAMES, WIDTH, HEIGHT = 6, 64, 48
PREFIX = "/camera/camera"  # realsense-ros 4.x names: the reader matches topics by their ending


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    from gs4_slam.datasets import open_dataset
    from gs4_slam.synthetic.generator import SyntheticConfig, write_sequence

    path = tmp_path_factory.mktemp("bag") / "room"
    write_sequence(path, SyntheticConfig(seed=4, frames=FRAMES, width=WIDTH, height=HEIGHT, noise=True))
    return open_dataset("synthetic", path)


def write_bag(path, frames, storage="sqlite3", with_depth=True, color_delay_s=0.0) -> None:
    """The frames as the player publishes them, serialised by rclpy, in the order a driver sends them
    (colour, its camera_info and labels ``color_delay_s`` after the depth image, as an unsynchronised camera)."""
    from rclpy.serialization import serialize_message

    from gs4_slam.ros import conversions as conv
    from gs4_slam.ros.bag_io import BagWriter

    topics = {"info": (f"{PREFIX}/color/camera_info", "sensor_msgs/msg/CameraInfo"),
              "depth": (f"{PREFIX}/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image"),
              "color": (f"{PREFIX}/color/image_raw", "sensor_msgs/msg/Image"),
              "labels": ("/camera/labels/image_raw", "sensor_msgs/msg/Image"),
              "truth": ("/ground_truth/pose", "geometry_msgs/msg/PoseStamped")}
    if not with_depth:
        del topics["depth"]
    writer = BagWriter(path, storage)
    for topic, msgtype in topics.values():
        writer.add_topic(topic, msgtype)
    for k, frame in enumerate(frames):
        stamp = conv.stamp_from_seconds(frame.timestamp_s)
        color_stamp = conv.stamp_from_seconds(frame.timestamp_s + color_delay_s)
        messages = {"info": conv.camera_info_from_intrinsics(frame.intrinsics, "cam", color_stamp),
                    "depth": conv.image_msg_from_depth(frame.depth_m, "cam", stamp, "16UC1"),
                    "color": conv.image_msg_from_rgb(frame.color_rgb, "cam", color_stamp),
                    "labels": conv.image_msg_from_label_ids(frame.labels, "cam", color_stamp),
                    "truth": conv.pose_stamped_from_pose(frame.T_world_cam_gt, "map", stamp)}
        for j, (role, (topic, _)) in enumerate(topics.items()):
            writer.write(topic, 10**9 * (k + 1) + 1000 * j, serialize_message(messages[role]))
    writer.close()


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_frames_equal_the_frames_recorded(reader, tmp_path, storage):
    from gs4_slam.ros.bag_io import BagFrameReader

    frames = list(reader)
    write_bag(tmp_path / "bag", frames, storage)
    bag = BagFrameReader(tmp_path / "bag")
    try:
        assert len(bag) == FRAMES and bag.intrinsics == reader.intrinsics
        assert bag.topics["color"] == f"{PREFIX}/color/image_raw"
        assert np.allclose(bag.timestamps_s(), reader.timestamps_s(), atol=1e-9)
        for k in (0, 3, FRAMES - 1):
            got, want = bag[k], frames[k]
            assert np.array_equal(got.color_rgb, want.color_rgb) and np.array_equal(got.depth_m, want.depth_m)
            assert np.array_equal(got.labels, want.labels) and got.intrinsics == want.intrinsics
            assert np.allclose(got.T_world_cam_gt.matrix, want.T_world_cam_gt.matrix, atol=1e-9)
        assert all(p is not None for p in bag.gt_poses())
    finally:
        bag.close()


def test_bag_frames_of_an_unsynchronised_camera_carry_the_depth_time_and_the_delay(reader, tmp_path):
    from gs4_slam.ros.bag_io import BagFrameReader

    frames = list(reader)
    write_bag(tmp_path / "bag", frames, color_delay_s=0.012)
    bag = BagFrameReader(tmp_path / "bag")
    try:
        assert np.allclose(bag.timestamps_s(), reader.timestamps_s(), atol=1e-9)  # the depth images' times
        for k in (0, FRAMES - 1):
            got = bag[k]
            assert got.timestamp_s == pytest.approx(frames[k].timestamp_s, abs=1e-9)
            assert got.color_delay_s == pytest.approx(0.012, abs=1e-9)
            assert np.array_equal(got.color_rgb, frames[k].color_rgb) and np.array_equal(got.labels, frames[k].labels)
            assert np.allclose(got.T_world_cam_gt.matrix, frames[k].T_world_cam_gt.matrix, atol=1e-9)
    finally:
        bag.close()


def test_bag_reader_options_select_and_resize(reader, tmp_path):
    from gs4_slam.datasets.base import ReaderOptions
    from gs4_slam.ros.bag_io import BagFrameReader

    write_bag(tmp_path / "bag", list(reader))
    bag = BagFrameReader(tmp_path / "bag", ReaderOptions(stride=2, start=1, limit=2, resize=(32, 24)))
    try:
        assert len(bag) == 2 and np.allclose(bag.timestamps_s(), reader.timestamps_s()[[1, 3]])
        frame = bag[1]
        assert frame.color_rgb.shape == (24, 32, 3) and frame.intrinsics == reader.intrinsics.scaled(32, 24)
        assert frame.index == 3
    finally:
        bag.close()


def test_a_bag_without_depth_is_refused_with_the_topics_it_has(reader, tmp_path):
    from gs4_slam.datasets.base import DatasetError
    from gs4_slam.ros.bag_io import BagFrameReader

    write_bag(tmp_path / "bag", list(reader)[:2], with_depth=False)
    with pytest.raises(DatasetError, match="aligned_depth_to_color/image_raw.*color/image_raw"):
        BagFrameReader(tmp_path / "bag")
    with pytest.raises(DatasetError, match="not found"):
        BagFrameReader(tmp_path / "missing")


def test_header_stamps_are_read_without_deserialising():
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from gs4_slam.ros.bag_io import header_stamp_ns

    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1305031102, 175304000
    assert header_stamp_ns(serialize_message(msg)) == 1305031102175304000
